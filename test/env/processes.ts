// Child processes of the local environment: each runs in its own process group so that stopping it stops
// everything it started, and every group is killed when this node process exits, however it exits.
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, rmSync, type WriteStream } from 'node:fs';
import net from 'node:net';

const liveGroups = new Set<number>();
const tempDirs = new Set<string>();
const exitHooks = new Set<() => void>();

function cleanUpSync(): void {
  for (const pgid of liveGroups) {
    try {
      process.kill(-pgid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  liveGroups.clear();
  // After the groups (a kubelet no longer restarts what a hook kills), before the directories (a hook unmounts).
  for (const hook of exitHooks) {
    try {
      hook();
    } catch {
      // best effort: the next hook and the directories still get their turn
    }
  }
  exitHooks.clear();
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
  tempDirs.clear();
}
process.once('exit', cleanUpSync);
// Node's default reaction to a signal skips 'exit' handlers. Where nobody else handles the signal (a test run
// interrupted with Ctrl-C), clean up and exit; where someone does (make run, env serve), let them stop gracefully.
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.once(signal, () => {
    if (process.listenerCount(signal) > 0) return;
    cleanUpSync();
    process.exit(128 + (signal === 'SIGINT' ? 2 : signal === 'SIGTERM' ? 15 : 1));
  });
}

/** A directory removed when this process exits, however it exits (unless it was removed before). */
export function removeOnExit(dir: string): void {
  tempDirs.add(dir);
}

/**
 * A synchronous clean-up run when this process exits, however it exits, after every managed process group was
 * killed and before the directories of removeOnExit are removed: for what a process group does not cover
 * (processes that left their group, mounts, cgroups). Returns the function that unregisters it.
 */
export function onExitSync(hook: () => void): () => void {
  exitHooks.add(hook);
  return () => exitHooks.delete(hook);
}


export interface ManagedProcessOptions {
  name: string;
  command: string;
  args: string[];
  logFile: string;
  env?: NodeJS.ProcessEnv;
  uid?: number;
  gid?: number;
  cwd?: string;
}

/** A long-running child in its own process group, with stdout/stderr appended to a log file. */
export class ManagedProcess {
  private child: ChildProcess | undefined;
  private exited: Promise<number | null> = Promise.resolve(null);
  private log: WriteStream | undefined;

  constructor(private readonly opts: ManagedProcessOptions) {}

  get name(): string {
    return this.opts.name;
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  start(): void {
    if (this.running) return;
    this.log = createWriteStream(this.opts.logFile, { flags: 'a' });
    const child = spawn(this.opts.command, this.opts.args, {
      detached: true, // own process group: kill(-pid) reaches its children too
      stdio: ['ignore', 'pipe', 'pipe'],
      env: this.opts.env ?? process.env,
      cwd: this.opts.cwd,
      uid: this.opts.uid,
      gid: this.opts.gid,
    });
    child.stdout?.pipe(this.log, { end: false });
    child.stderr?.pipe(this.log, { end: false });
    const pid = child.pid;
    if (pid !== undefined) liveGroups.add(pid);
    this.exited = new Promise((resolve) => {
      child.once('exit', (code) => {
        if (pid !== undefined) liveGroups.delete(pid);
        resolve(code);
      });
      child.once('error', (err) => {
        this.log?.write(`spawn error: ${err.message}\n`);
        resolve(null);
      });
    });
    this.child = child;
  }

  /** Signals the whole group, waits up to timeoutMs, then SIGKILLs it. */
  async stop(signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 10_000): Promise<void> {
    const child = this.child;
    if (!child || child.pid === undefined) return;
    if (this.running) {
      try {
        process.kill(-child.pid, signal);
      } catch {
        // the group is already gone
      }
      const timer = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), timeoutMs).unref());
      if ((await Promise.race([this.exited, timer])) === 'timeout') {
        try {
          process.kill(-child.pid, 'SIGKILL');
        } catch {
          // gone meanwhile
        }
        await this.exited;
      }
    }
    // Children of the group may outlive the leader: make sure none remains.
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch {
      // nothing left, as expected
    }
    this.child = undefined;
    await new Promise<void>((r) => (this.log ? this.log.end(r) : r()));
  }

  /** The process (and process group) id while it runs. */
  get pid(): number | undefined {
    return this.running ? this.child?.pid : undefined;
  }

  /**
   * Sends a signal to the whole process group (fault tests: SIGSTOP/SIGCONT). Only ever this process's own group,
   * by its id; returns false when it is not running.
   */
  signalGroup(signal: NodeJS.Signals): boolean {
    const pid = this.pid;
    if (pid === undefined) return false;
    try {
      process.kill(-pid, signal);
      return true;
    } catch {
      return false;
    }
  }

  /** Resolves when the process exits (for callers that want to fail fast on a crash). */
  whenExited(): Promise<number | null> {
    return this.exited;
  }
}

/** Runs a command to completion and returns its output; rejects with the output on a non-zero exit. */
export function runCommand(
  command: string,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; uid?: number; gid?: number; input?: string; cwd?: string } = {},
): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: opts.env ?? process.env,
      uid: opts.uid,
      gid: opts.gid,
      cwd: opts.cwd,
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.once('error', reject);
    child.once('exit', (code) => {
      if (code === 0) resolve(out);
      else reject(new Error(`${command} ${args.join(' ')} exited ${code}: ${out.trim()}`));
    });
    // A command that exits without reading its input closes the pipe: not an error of ours.
    child.stdin.on('error', () => undefined);
    child.stdin.end(opts.input ?? '');
  });
}

/** A free TCP port on the loopback interface (asks the kernel for one, then releases it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** Polls check() until it returns true or the deadline passes. */
export async function waitFor(
  what: string,
  check: () => Promise<boolean>,
  { timeoutMs = 60_000, intervalMs = 200, failFast }: { timeoutMs?: number; intervalMs?: number; failFast?: () => string | undefined } = {},
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError = '';
  while (Date.now() < deadline) {
    const reason = failFast?.();
    if (reason) throw new Error(`${what}: ${reason}`);
    try {
      if (await check()) return;
    } catch (err) {
      lastError = err instanceof Error ? err.message : String(err);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError ? ` (last error: ${lastError})` : ''}`);
}
