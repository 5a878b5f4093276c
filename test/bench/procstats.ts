// What the benchmark reads from /proc: a process's resident memory (sampled, plus the kernel's high-water mark)
// and the CPU time of every process this benchmark started, grouped by what it is (operator, kube-apiserver,
// etcd, postgres, ...), so a phase's cost can be attributed.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

let clockTicks: number | undefined;
function ticksPerSecond(): number {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

/** VmRSS and VmHWM of a process in KiB, or undefined when it is gone. */
export function memoryOf(pid: number): { rssKb: number; hwmKb: number } | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return undefined;
  }
  const field = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+)\\s+kB`, 'm').exec(text)?.[1] ?? NaN);
  return { rssKb: field('VmRSS'), hwmKb: field('VmHWM') };
}

/** Samples VmRSS every intervalMs; keeps the overall peak and the peak per named phase. */
export class RssSampler {
  private timer: NodeJS.Timeout | undefined;
  private phase = 'start';
  peakKb = 0;
  lastKb = 0;
  readonly phasePeakKb = new Map<string, number>();
  samples = 0;
  /** Every sample: ms since the epoch and RSS in KiB (for the chart). */
  readonly series: Array<{ at: number; kb: number }> = [];

  constructor(
    private pid: number,
    private readonly intervalMs = 100,
  ) {}

  start(): void {
    this.sample();
    this.timer = setInterval(() => this.sample(), this.intervalMs);
    this.timer.unref();
  }

  /** Samples another process from now on (the operator after a restart). */
  follow(pid: number): void {
    this.pid = pid;
  }

  setPhase(name: string): void {
    this.phase = name;
    this.sample();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  private sample(): void {
    const m = memoryOf(this.pid);
    if (!m || !Number.isFinite(m.rssKb)) return;
    this.samples++;
    this.series.push({ at: Date.now(), kb: m.rssKb });
    this.lastKb = m.rssKb;
    this.peakKb = Math.max(this.peakKb, m.rssKb);
    this.phasePeakKb.set(this.phase, Math.max(this.phasePeakKb.get(this.phase) ?? 0, m.rssKb));
  }
}

interface ProcStat {
  pid: number;
  ppid: number;
  comm: string;
  /** utime + stime, and for processes other than ours also cutime + cstime (reaped children, e.g. PG backends). */
  ticks: number;
}

function readStat(pid: number, includeChildren: boolean): ProcStat | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  const comm = text.slice(open + 1, close);
  const rest = text.slice(close + 2).split(' ');
  // rest[0] = state (field 3); utime is field 14, so rest[11]; stime rest[12]; cutime rest[13]; cstime rest[14].
  const n = (i: number) => Number(rest[i] ?? 0);
  const ticks = n(11) + n(12) + (includeChildren ? n(13) + n(14) : 0);
  return { pid, ppid: n(1), comm, ticks };
}

/** The group a process is accounted under. */
function groupOf(stat: ProcStat, self: number, named: ReadonlyMap<number, string>): string {
  if (stat.pid === self) return 'bench';
  const name = named.get(stat.pid);
  if (name) return name;
  if (stat.comm.startsWith('kube-controller')) return 'kube-controller-manager';
  if (stat.comm === 'kube-apiserver' || stat.comm === 'etcd') return stat.comm;
  if (stat.comm === 'postgres' || stat.comm.startsWith('postgres')) return 'postgres';
  return 'other';
}

/**
 * CPU seconds used so far by this process and all its descendants, by group. `named` gives groups to specific pids
 * (the operator). Processes that exited and were not reaped by a descendant are not counted (negligible here).
 */
export function cpuByGroup(named: ReadonlyMap<number, string> = new Map()): Map<string, number> {
  const self = process.pid;
  const stats = new Map<number, ProcStat>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    const s = readStat(pid, pid !== self);
    if (s) stats.set(pid, s);
  }
  const children = new Map<number, number[]>();
  for (const s of stats.values()) {
    const list = children.get(s.ppid) ?? [];
    list.push(s.pid);
    children.set(s.ppid, list);
  }
  const out = new Map<string, number>();
  const stack = [self];
  const seen = new Set<number>();
  while (stack.length) {
    const pid = stack.pop() as number;
    if (seen.has(pid)) continue;
    seen.add(pid);
    const s = stats.get(pid);
    if (!s) continue;
    const group = groupOf(s, self, named);
    out.set(group, (out.get(group) ?? 0) + s.ticks / ticksPerSecond());
    for (const c of children.get(pid) ?? []) stack.push(c);
  }
  return out;
}

/** after - before, per group (groups only in `after` count from zero). */
export function cpuDelta(before: ReadonlyMap<string, number>, after: ReadonlyMap<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [group, v] of after) {
    const d = v - (before.get(group) ?? 0);
    if (d > 0.004) out[group] = Math.round(d * 100) / 100;
  }
  return out;
}

/** CPU seconds the whole machine has been busy (all CPUs: user, nice, system, irq, softirq, steal), from /proc/stat. */
export function machineBusySeconds(): number {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    const busy = (f[0] ?? 0) + (f[1] ?? 0) + (f[2] ?? 0) + (f[5] ?? 0) + (f[6] ?? 0) + (f[7] ?? 0);
    return busy / ticksPerSecond();
  } catch {
    return NaN;
  }
}
