// The operator as the real process a user runs (node dist/src/main.js), with its health port for readiness and
// /metrics, and a watch that keeps going (the benchmark must not miss a Secret because a watch ended).
import * as k8s from '@kubernetes/client-node';
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { REPO_ROOT, httpGet } from '../env/controlplane.js';
import { sleep } from './stats.js';

export class OperatorUnderTest {
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  /** The last lines it printed (for a failure report). */
  private tail: string[] = [];
  private partial = '';
  /** Log lines by level ("error", "warn", ...). */
  readonly linesByLevel = new Map<string, number>();
  /** Messages of error/warn lines, counted (what went wrong, without the noise). */
  readonly problems = new Map<string, number>();
  /** Reconciles by controller, from the debug line each one logs (only with BENCH_LOG_LEVEL=debug). */
  readonly reconciles = new Map<string, number>();

  constructor(
    private readonly kubeconfigPath: string,
    readonly healthPort: number,
    private readonly extraEnv: Record<string, string> = {},
    /** Also append everything it prints to this file (BENCH_OPERATOR_LOG). */
    private readonly logPath?: string,
    /** Flags for node itself (profiling: --cpu-prof, --heapsnapshot-signal, ...). */
    private readonly nodeArgs: readonly string[] = [],
  ) {}

  private logFile: WriteStream | undefined;

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  start(): void {
    const child = spawn(process.execPath, [...this.nodeArgs, path.join(REPO_ROOT, 'dist', 'src', 'main.js')], {
      env: {
        ...process.env,
        KUBECONFIG: this.kubeconfigPath,
        LOG_LEVEL: 'warn',
        HEALTH_PORT: String(this.healthPort),
        ...this.extraEnv,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    if (this.logPath) this.logFile = createWriteStream(this.logPath, { flags: 'a' });
    const onData = (d: Buffer) => {
      this.logFile?.write(d);
      this.consume(d.toString());
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    this.exited = new Promise((r) =>
      child.once('exit', () => {
        this.logFile?.end();
        r();
      }),
    );
    this.child = child;
  }

  private consume(text: string): void {
    const lines = (this.partial + text).split('\n');
    this.partial = lines.pop() ?? '';
    for (const line of lines) {
      if (!line.trim()) continue;
      this.tail.push(line);
      if (this.tail.length > 50) this.tail.shift();
      let level = 'unparsed';
      let message = line.slice(0, 120);
      try {
        const parsed = JSON.parse(line) as { level?: string; message?: string; error?: string; controller?: string };
        level = parsed.level ?? 'unknown';
        if (parsed.controller && (parsed.message === 'reconciled' || parsed.message?.startsWith('reconcile failed'))) {
          this.reconciles.set(parsed.controller, (this.reconciles.get(parsed.controller) ?? 0) + 1);
        }
        message = `${parsed.message ?? ''}${parsed.error ? `: ${parsed.error}` : ''}`.slice(0, 160);
      } catch {
        // not JSON: counted as unparsed
      }
      this.linesByLevel.set(level, (this.linesByLevel.get(level) ?? 0) + 1);
      if (level !== 'info' && level !== 'debug') this.problems.set(message, (this.problems.get(message) ?? 0) + 1);
    }
  }

  lastOutput(): string {
    return [...this.tail, this.partial].join('\n');
  }

  async waitReady(timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (!this.running) throw new Error(`operator exited before it was ready:\n${this.lastOutput()}`);
      try {
        if ((await httpGet(`http://127.0.0.1:${this.healthPort}/readyz`, { timeoutMs: 1000 })).status === 200) return;
      } catch {
        // not listening yet
      }
      await sleep(100);
    }
    throw new Error(`operator not ready after ${timeoutMs} ms:\n${this.lastOutput()}`);
  }

  /** dbcred_api_requests_total by verb. */
  async apiRequests(): Promise<Map<string, number>> {
    const { status, body } = await httpGet(`http://127.0.0.1:${this.healthPort}/metrics`);
    if (status !== 200) throw new Error(`/metrics answered ${status}`);
    const out = new Map<string, number>();
    for (const m of body.matchAll(/^dbcred_api_requests_total\{verb="([^"]+)"\}\s+(\d+)/gm)) {
      out.set(m[1] ?? '?', Number(m[2]));
    }
    return out;
  }

  /** Sum of the samples of one metric in /metrics whose labels contain every given label="value" pair. */
  async metric(name: string, labels: Record<string, string> = {}): Promise<number> {
    const { status, body } = await httpGet(`http://127.0.0.1:${this.healthPort}/metrics`);
    if (status !== 200) throw new Error(`/metrics answered ${status}`);
    return sumMetric(body, name, labels);
  }

  /** Sends a signal (e.g. SIGUSR2 for a heap snapshot under --heapsnapshot-signal). */
  signal(sig: NodeJS.Signals): void {
    if (this.running) this.child?.kill(sig);
  }

  /** SIGTERM, wait up to timeoutMs, then SIGKILL. */
  async stop(timeoutMs = 20_000): Promise<void> {
    const child = this.child;
    if (!child || !this.running) return;
    child.kill('SIGTERM');
    const timedOut = await Promise.race([this.exited.then(() => false), sleep(timeoutMs).then(() => true)]);
    if (timedOut && this.running) {
      child.kill('SIGKILL');
      await this.exited;
    }
  }

  /** Synchronous last resort (process exit handlers). */
  killNow(): void {
    if (this.running) this.child?.kill('SIGKILL');
  }
}

/** Sum of the samples of one metric in a Prometheus text exposition, filtered by labels. */
export function sumMetric(text: string, name: string, labels: Record<string, string> = {}): number {
  let total = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name) || (line[name.length] !== '{' && line[name.length] !== ' ')) continue;
    if (!Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) continue;
    const value = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (Number.isFinite(value)) total += value;
  }
  return total;
}

export function totalOf(counts: ReadonlyMap<string, number>): number {
  let n = 0;
  for (const v of counts.values()) n += v;
  return n;
}

export function countsDelta(before: ReadonlyMap<string, number>, after: ReadonlyMap<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [verb, n] of after) {
    const d = n - (before.get(verb) ?? 0);
    if (d) out[verb] = d;
  }
  return out;
}

/**
 * A watch on one collection that re-establishes itself (from the last resourceVersion) whenever it ends, and
 * hands every ADDED/MODIFIED/DELETED to onEvent with the time it arrived.
 */
export class KeepWatching<T extends { metadata?: { resourceVersion?: string } }> {
  private abort: AbortController | undefined;
  private stopped = false;
  private resourceVersion = '';
  restarts = 0;

  constructor(
    private readonly kc: k8s.KubeConfig,
    private readonly path: string,
    private readonly onEvent: (type: 'ADDED' | 'MODIFIED' | 'DELETED', obj: T, atMs: number) => void,
  ) {}

  /** Resolves once the watch is established (the API server answered). */
  async start(): Promise<void> {
    await this.once();
  }

  stop(): void {
    this.stopped = true;
    this.abort?.abort();
  }

  private async once(): Promise<void> {
    const query: Record<string, string | boolean> = { allowWatchBookmarks: true };
    if (this.resourceVersion) query.resourceVersion = this.resourceVersion;
    this.abort = await new k8s.Watch(this.kc).watch(
      this.path,
      query,
      (type: string, obj: T & { code?: number }) => {
        const at = Date.now();
        if (type === 'ERROR') {
          if (obj.code === 410) this.resourceVersion = '';
          return;
        }
        const rv = obj.metadata?.resourceVersion;
        if (rv) this.resourceVersion = rv;
        if (type === 'ADDED' || type === 'MODIFIED' || type === 'DELETED') this.onEvent(type, obj, at);
      },
      (err: unknown) => {
        if (this.stopped) return;
        this.restarts++;
        setTimeout(() => void this.once().catch(() => undefined), err ? 200 : 0);
      },
    );
  }
}
