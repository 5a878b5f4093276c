// Where the operator's CPU and heap go, read from the files node writes itself (BENCH_PROFILE=true): a V8 CPU
// profile (--cpu-prof) summarized by package or source file, and a heap snapshot (--heapsnapshot-signal) summarized
// by constructor. Plain JSON parsing of V8's documented formats; no profiler library.
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';

interface CpuProfile {
  nodes: Array<{ id: number; callFrame: { functionName: string; url: string } }>;
  samples: number[];
  timeDeltas: number[];
}

export interface Share {
  what: string;
  ms: number;
  pct: number;
}

/** Which part of the process a source URL belongs to: an npm package, one of our files, or node itself. */
export function ownerOf(url: string, functionName: string): string {
  if (!url) return functionName.startsWith('(') ? functionName : '(native)';
  const nm = url.lastIndexOf('/node_modules/');
  if (nm >= 0) {
    const rest = url.slice(nm + '/node_modules/'.length).split('/');
    return rest[0]?.startsWith('@') ? `${rest[0]}/${rest[1]}` : (rest[0] ?? url);
  }
  const dist = url.indexOf('/dist/src/');
  if (dist >= 0) return `src/${url.slice(dist + '/dist/src/'.length).replace(/\.js$/, '')}`;
  if (url.startsWith('node:')) return url.startsWith('node:internal/') ? `node:${url.split('/')[1]}` : url;
  return url;
}

/** Self time by owner (package, our file, node module, GC, idle), largest first. */
export function summarizeCpuProfile(file: string, top = 15): { totalMs: number; busyMs: number; shares: Share[] } {
  const prof = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const owner = new Map(prof.nodes.map((n) => [n.id, ownerOf(n.callFrame.url, n.callFrame.functionName)]));
  const byOwner = new Map<string, number>();
  let total = 0;
  for (let i = 0; i < prof.samples.length; i++) {
    const us = prof.timeDeltas[i] ?? 0;
    const who = owner.get(prof.samples[i] as number) ?? '(unknown)';
    byOwner.set(who, (byOwner.get(who) ?? 0) + us);
    total += us;
  }
  const idle = byOwner.get('(idle)') ?? 0;
  const busy = total - idle;
  const shares = [...byOwner]
    .filter(([what]) => what !== '(idle)')
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([what, us]) => ({ what, ms: us / 1000, pct: (100 * us) / Math.max(1, busy) }));
  return { totalMs: total / 1000, busyMs: busy / 1000, shares };
}

interface HeapSnapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]] } };
  nodes: number[];
  strings: string[];
}

/** Self size by node type and constructor name (what the heap holds), largest first. */
export function summarizeHeapSnapshot(file: string, top = 20): { totalBytes: number; shares: Array<{ what: string; bytes: number; count: number }> } {
  const snap = JSON.parse(readFileSync(file, 'utf8')) as HeapSnapshot;
  const fields = snap.snapshot.meta.node_fields;
  const types = snap.snapshot.meta.node_types[0];
  const [fType, fName, fSize] = ['type', 'name', 'self_size'].map((f) => fields.indexOf(f)) as [number, number, number];
  const width = fields.length;
  const by = new Map<string, { bytes: number; count: number }>();
  let total = 0;
  for (let i = 0; i < snap.nodes.length; i += width) {
    const type = types[snap.nodes[i + fType] as number] ?? '?';
    const size = snap.nodes[i + fSize] as number;
    // Strings and code by type; objects by constructor name.
    const name = type === 'object' || type === 'closure' ? `${type} ${snap.strings[snap.nodes[i + fName] as number] ?? '?'}` : type;
    const e = by.get(name) ?? { bytes: 0, count: 0 };
    e.bytes += size;
    e.count++;
    by.set(name, e);
    total += size;
  }
  const shares = [...by].sort((a, b) => b[1].bytes - a[1].bytes).slice(0, top).map(([what, e]) => ({ what, ...e }));
  return { totalBytes: total, shares };
}

/** The newest file in dir whose name ends with suffix. */
export function newestFile(dir: string, suffix: string): string | undefined {
  const files = readdirSync(dir).filter((f) => f.endsWith(suffix)).sort();
  const last = files[files.length - 1];
  return last ? path.join(dir, last) : undefined;
}
