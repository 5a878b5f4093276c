// The fault suite of issue 7: a seeded random interleaving of what tenants and admins do (create, delete, annotate
// and edit credentials; edit roles and configs; delete whole namespaces) with faults (SIGKILL of the operator,
// PostgreSQL restart, SIGSTOP of PostgreSQL or the kube-apiserver for a few seconds, kube-apiserver restart, an
// operator restart during a namespace deletion). Then a quiet period, then the invariant auditor; then every chaos
// namespace is deleted and no marked role may remain. Run by test/integration/chaos.test.ts (short) and
// test/chaos/cli.ts (`make chaos`, a soak).
//
// Two lanes run at once: operations and faults, each drawing from its own PRNG seeded from the seed, so a seed
// replays the same sequence of choices (the timing between the lanes varies from run to run, as it would in a
// cluster). Only the environment's own processes are signalled, by PID; whatever was SIGSTOPped is SIGCONTed,
// also on failure.
import yaml from 'js-yaml';
import { audit, markedRoles, type Violation } from '../audit/auditor.js';
import { formatViolations } from '../audit/invariants.js';
import type { DatabaseCredential } from '../../src/api/types.js';
import { createNamespace, waitFor, type TestEnv } from '../integration/harness.js';
import { OperatorProcess, credentialObject, getObject, platformObjects, waitForCondition } from '../integration/operator.js';

export { mulberry32 } from '../random.js';
import { mulberry32 } from '../random.js';

class Random {
  constructor(readonly next: () => number) {}
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }
  pick<T>(items: readonly T[]): T {
    const item = items[Math.floor(this.next() * items.length)];
    if (item === undefined) throw new Error('pick from an empty list');
    return item;
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  weighted<T extends string>(weights: Record<T, number>): T {
    const entries = Object.entries(weights) as Array<[T, number]>;
    let r = this.next() * entries.reduce((s, [, w]) => s + w, 0);
    for (const [k, w] of entries) if ((r -= w) < 0) return k;
    return entries[entries.length - 1]![0];
  }
}

export interface ChaosOptions {
  env: TestEnv;
  seed: number;
  /** how long operations and faults are injected */
  durationMs: number;
  /** operator running, no faults, before the audit; also the age at which a deletion counts as stuck */
  quietMs?: number;
  /** how long the auditor may retry before its violations count */
  settleMs?: number;
  /** live namespaces at any time (each with a config, two roles and credentials) */
  namespaces?: number;
  /** credential names per namespace */
  credentialsPerNamespace?: number;
  log?: (line: string) => void;
}

export interface ChaosReport {
  seed: number;
  operations: Record<string, { ok: number; failed: number }>;
  faults: Record<string, number>;
  /** the auditor after the quiet period */
  violations: Violation[];
  /** marked roles of chaos namespaces left after every chaos namespace was deleted */
  leakedAfterCleanup: string[];
  /** chaos namespaces still there after the final cleanup */
  stuckNamespaces: string[];
  /** the operator exited without being told to (with the last lines it printed) */
  operatorCrashes: string[];
  /** informational: credentials with rotation on that were not Ready after the quiet period */
  notReady: string[];
  passed: boolean;
}

const OP_WEIGHTS = {
  createCredential: 4,
  createBurst: 0.5,
  deleteCredential: 2,
  annotateRotate: 2,
  editTTL: 1,
  editSecretName: 1,
  editRoleAllowedNamespaces: 1,
  editConfigAllowedRoles: 1,
  deleteNamespace: 0.15,
};
type Op = keyof typeof OP_WEIGHTS;

const FAULT_WEIGHTS = {
  killOperator: 3,
  restartPostgres: 1,
  stopPostgres: 1.5,
  stopApiServer: 1.5,
  restartApiServer: 1,
  killOperatorDuringNamespaceDeletion: 1,
};
type Fault = keyof typeof FAULT_WEIGHTS;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** The gist of an error: for a failed kubectl, what it said rather than the command line. */
const errorText = (err: unknown) => {
  const text = err instanceof Error ? err.message : String(err);
  return (/ exited \d+: ([\s\S]*)$/.exec(text)?.[1] ?? text).replace(/\s+/g, ' ').slice(0, 240);
};

export async function runChaos(opts: ChaosOptions): Promise<ChaosReport> {
  const { env, seed } = opts;
  const quietMs = opts.quietMs ?? 45_000;
  const settleMs = opts.settleMs ?? 30_000;
  const nsCount = opts.namespaces ?? 3;
  const names = Array.from({ length: opts.credentialsPerNamespace ?? 6 }, (_, i) => `c${i}`);
  const t0 = Date.now();
  const log = (line: string) => opts.log?.(`[chaos +${((Date.now() - t0) / 1000).toFixed(1)}s] ${line}`);
  const opRng = new Random(mulberry32(seed));
  const faultRng = new Random(mulberry32(seed ^ 0x9e3779b9));
  const nsGlob = `chaos-${process.pid}-*`;

  const report: ChaosReport = {
    seed, operations: {}, faults: {}, violations: [], leakedAfterCleanup: [], stuckNamespaces: [], operatorCrashes: [], notReady: [], passed: false,
  };
  const allNamespaces: string[] = [];
  const live: string[] = [];
  /** credential names we created and have not deleted, per namespace (a model; the cluster may differ) */
  const created = new Map<string, Set<string>>();

  const kubectl = (args: string[], input?: string) => env.kubectl(['--request-timeout=20s', ...args], input);
  const applyDocs = (ns: string, docs: object[]) => kubectl(['apply', '-n', ns, '-f', '-'], docs.map((d) => yaml.dump(d)).join('---\n'));

  const platformFor = (ns: string): object[] => [
    ...platformObjects(env, { role: 'reader', roleExtra: { defaultTTL: '20s', maxTTL: '1m' } }),
    platformObjects(env, { role: 'shared', allowedNamespaces: [nsGlob], roleExtra: { defaultTTL: '20s', maxTTL: '1m' } })[2] as object,
  ].map((o) => ({ ...o, metadata: { ...(o as { metadata: object }).metadata, namespace: ns } }));

  async function addNamespace(): Promise<string> {
    const ns = await createNamespace(env, 'chaos');
    allNamespaces.push(ns);
    live.push(ns);
    created.set(ns, new Set());
    await applyDocs(ns, platformFor(ns));
    // A few credentials from the start, so that faults find work in flight.
    const first = names.slice(0, 3);
    await applyDocs(ns, first.map((name) => credentialObject(name, { roleRef: { name: 'reader' }, ttl: '30s', rotation: { renewalPercent: 60, gracePeriod: '5s' } })));
    first.forEach((name) => created.get(ns)?.add(name));
    return ns;
  }

  // ---- the operator as a real process, restarted after every kill; an exit nobody asked for is a crash ----
  const operator = new OperatorProcess(env, { ORPHAN_SWEEP_PERIOD: '5s', LOG_LEVEL: process.env.CHAOS_OPERATOR_LOG_LEVEL || 'info' });
  let operatorDown = false; // true while we deliberately keep it down
  async function startOperator(): Promise<void> {
    const from = operator.output.length;
    operator.start();
    operatorDown = false;
    await waitFor('the operator to be ready', async () => operator.output.slice(from).includes('operator ready'), {
      timeoutMs: 90_000,
      failFast: () => (operator.exitCode !== null && operator.exitCode !== undefined ? `operator exited ${operator.exitCode}` : undefined),
    });
  }
  let lastCrashCheckAt = 0;
  async function checkOperatorAlive(): Promise<void> {
    if (operatorDown || operator.exitCode === null || operator.exitCode === undefined) return;
    const tail = operator.output.slice(lastCrashCheckAt).split('\n').filter((l) => /error|unhandled|exit/i.test(l)).slice(-3).join(' | ').slice(0, 600);
    lastCrashCheckAt = operator.output.length;
    report.operatorCrashes.push(`exit code ${operator.exitCode} at +${((Date.now() - t0) / 1000).toFixed(1)}s: ${tail}`);
    log(`OPERATOR CRASHED (exit ${operator.exitCode}); restarting`);
    operatorDown = true;
    await startOperator().catch((err) => log(`operator restart failed: ${errorText(err)}`));
  }

  // ---- what was SIGSTOPped, to be SIGCONTed whatever happens ----
  const stopped = new Set<'postgres' | 'kube-apiserver'>();
  const cont = () => {
    if (stopped.delete('postgres')) env.postgres.signal('SIGCONT');
    if (stopped.delete('kube-apiserver')) env.signalApiServer?.('SIGCONT');
  };
  const contOnExit = () => cont();
  process.once('exit', contOnExit);

  let apiServerDown = false;
  const deadline = t0 + opts.durationMs;
  const running = () => Date.now() < deadline;

  // ---- operations ----
  const credentialSpec = (ns: string): Record<string, unknown> => {
    const shared = opRng.chance(0.3);
    const spec: Record<string, unknown> = {
      roleRef: shared ? { name: 'shared', namespace: opRng.pick(live.length ? live : [ns]) } : { name: 'reader' },
      ttl: opRng.pick(['15s', '30s', '1m']),
      rotation: opRng.chance(0.2) ? { enabled: false } : { renewalPercent: opRng.int(50, 80), gracePeriod: '5s' },
    };
    if (opRng.chance(0.3)) spec.secretName = `SELF-s${opRng.int(0, 2)}`;
    return spec;
  };

  /** Carries out op (or a create where op needs a credential that is not there); returns what it did. */
  async function doOp(op: Op): Promise<[Op, string]> {
    const text = await doOpOn(op);
    return [effectiveOp, text];
  }
  let effectiveOp: Op = 'createCredential';
  async function doOpOn(op: Op): Promise<string> {
    effectiveOp = op;
    const ns = opRng.pick(live);
    const existing = [...(created.get(ns) ?? [])];
    const target = existing.length ? opRng.pick(existing) : opRng.pick(names);
    // An edit of a credential that does not exist would only exercise kubectl: create one instead.
    if (!existing.length && ['deleteCredential', 'annotateRotate', 'editTTL', 'editSecretName'].includes(op)) op = 'createCredential';
    effectiveOp = op;
    switch (op) {
      case 'createCredential': {
        const name = opRng.pick(names);
        const spec = credentialSpec(ns);
        if (typeof spec.secretName === 'string') spec.secretName = spec.secretName.replace('SELF', name);
        await applyDocs(ns, [credentialObject(name, spec)]);
        created.get(ns)?.add(name);
        return `${ns}/${name} ${JSON.stringify(spec.roleRef)} ttl=${String(spec.ttl)}${(spec.rotation as { enabled?: boolean }).enabled === false ? ' rotation=off' : ''}`;
      }
      case 'createBurst': {
        // Every name of the namespace at once: many issues in flight when a fault strikes.
        await applyDocs(ns, names.map((name) => credentialObject(name, { roleRef: { name: 'reader' }, ttl: '30s', rotation: { renewalPercent: 60, gracePeriod: '5s' } })));
        names.forEach((name) => created.get(ns)?.add(name));
        return `${ns}/{${names.join(',')}}`;
      }
      case 'deleteCredential':
        created.get(ns)?.delete(target);
        await kubectl(['-n', ns, 'delete', 'databasecredential', target, '--wait=false', '--ignore-not-found']);
        return `${ns}/${target}`;
      case 'annotateRotate': {
        const long = opRng.chance(0.1);
        const value = long ? 'x'.repeat(1500) : `r${opRng.int(0, 1e9)}`;
        await kubectl(['-n', ns, 'annotate', 'databasecredential', target, `dbcred.dev/rotate=${value}`, '--overwrite']);
        return `${ns}/${target}${long ? ' (1500-character value)' : ''}`;
      }
      case 'editTTL': {
        const ttl = opRng.pick(['15s', '30s', '1m']);
        await kubectl(['-n', ns, 'patch', 'databasecredential', target, '--type=merge', '-p', JSON.stringify({ spec: { ttl } })]);
        return `${ns}/${target} ttl=${ttl}`;
      }
      case 'editSecretName': {
        const secretName = opRng.chance(0.25) ? null : `${target}-s${opRng.int(0, 2)}`;
        await kubectl(['-n', ns, 'patch', 'databasecredential', target, '--type=merge', '-p', JSON.stringify({ spec: { secretName } })]);
        return `${ns}/${target} secretName=${secretName ?? '(default)'}`;
      }
      case 'editRoleAllowedNamespaces': {
        const allowed = opRng.chance(0.5) ? [nsGlob] : [ns];
        await kubectl(['-n', ns, 'patch', 'databaserole', 'shared', '--type=merge', '-p', JSON.stringify({ spec: { allowedNamespaces: allowed } })]);
        return `${ns}/shared allowedNamespaces=${allowed.join(',')}`;
      }
      case 'editConfigAllowedRoles': {
        const allowed = opRng.chance(0.5) ? ['*'] : ['reader'];
        await kubectl(['-n', ns, 'patch', 'databaseconfig', 'pg', '--type=merge', '-p', JSON.stringify({ spec: { allowedRoles: allowed } })]);
        return `${ns}/pg allowedRoles=${allowed.join(',')}`;
      }
      case 'deleteNamespace':
        return replaceNamespace(ns);
    }
  }

  async function replaceNamespace(ns: string): Promise<string> {
    live.splice(live.indexOf(ns), 1);
    created.delete(ns);
    await env.core.deleteNamespace({ name: ns });
    const fresh = await addNamespace();
    return `${ns} (replaced by ${fresh})`;
  }

  async function operationsLane(): Promise<void> {
    while (running()) {
      await sleep(opRng.int(150, 1000));
      if (!running()) break;
      // While the API server is away every request is refused at once: wait rather than burn the operations.
      while (apiServerDown && running()) await sleep(250);
      const chosen = opRng.weighted(OP_WEIGHTS);
      try {
        const [op, text] = await doOp(chosen);
        (report.operations[op] ??= { ok: 0, failed: 0 }).ok++;
        log(`op ${op} ${text}`);
      } catch (err) {
        (report.operations[effectiveOp] ??= { ok: 0, failed: 0 }).failed++;
        log(`op ${effectiveOp} failed: ${errorText(err)}`);
      }
    }
  }

  // ---- faults ----
  async function doFault(fault: Fault): Promise<string> {
    switch (fault) {
      case 'killOperator': {
        operatorDown = true;
        await operator.kill();
        const down = faultRng.int(0, 2000);
        await sleep(down);
        await startOperator();
        return `SIGKILL, restarted after ${down} ms`;
      }
      case 'restartPostgres':
        await env.postgres.restart();
        return 'fast shutdown and start';
      case 'stopPostgres':
      case 'stopApiServer': {
        const which = fault === 'stopPostgres' ? 'postgres' : 'kube-apiserver';
        const ms = faultRng.int(2000, 5000);
        const signal = (sig: NodeJS.Signals) => (which === 'postgres' ? env.postgres.signal(sig) : env.signalApiServer?.(sig) ?? false);
        if (!signal('SIGSTOP')) throw new Error(`${which} is not running`);
        stopped.add(which);
        try {
          await sleep(ms);
        } finally {
          cont();
        }
        return `SIGSTOP ${which} for ${ms} ms`;
      }
      case 'restartApiServer': {
        if (!env.restartApiServer) throw new Error('not the embedded control plane');
        const ms = faultRng.int(1000, 4000);
        const started = Date.now();
        apiServerDown = true;
        try {
          await env.restartApiServer(ms);
        } finally {
          apiServerDown = false;
        }
        return `stopped, ${ms} ms down, ready again after ${((Date.now() - started) / 1000).toFixed(1)} s in all`;
      }
      case 'killOperatorDuringNamespaceDeletion': {
        // Either the operator dies just after the deletion starts, or the deletion happens while it is down (the
        // namespace controller then removes the root Secret before any revocation).
        const ns = faultRng.pick(live);
        const killFirst = faultRng.chance(0.5);
        const gap = faultRng.int(0, 1500);
        const down = faultRng.int(1000, 4000);
        live.splice(live.indexOf(ns), 1);
        created.delete(ns);
        if (!killFirst) {
          await env.core.deleteNamespace({ name: ns });
          await sleep(gap);
        }
        operatorDown = true;
        await operator.kill();
        if (killFirst) {
          await sleep(gap);
          await env.core.deleteNamespace({ name: ns });
        }
        await sleep(down);
        await startOperator();
        const fresh = await addNamespace();
        return killFirst
          ? `SIGKILL, deleted namespace ${ns} ${gap} ms later while down, restarted after ${down} ms (replaced by ${fresh})`
          : `deleted namespace ${ns}; SIGKILL ${gap} ms later, restarted after ${down} ms (replaced by ${fresh})`;
      }
    }
  }

  async function faultsLane(): Promise<void> {
    await sleep(faultRng.int(2000, 5000));
    while (running()) {
      const fault = faultRng.weighted(FAULT_WEIGHTS);
      if (fault === 'stopApiServer' && !env.signalApiServer) continue;
      if ((fault === 'restartApiServer') && !env.restartApiServer) continue;
      report.faults[fault] = (report.faults[fault] ?? 0) + 1;
      try {
        log(`FAULT ${fault}: ${await doFault(fault)}`);
      } catch (err) {
        log(`FAULT ${fault} failed: ${errorText(err)}`);
      }
      await sleep(faultRng.int(3000, 8000));
    }
  }

  async function watchdogLane(): Promise<void> {
    while (running()) {
      await checkOperatorAlive();
      await sleep(500);
    }
  }

  try {
    opts.log?.(`chaos seed ${seed} (replay: SEED=${seed}), duration ${opts.durationMs / 1000}s, quiet period ${quietMs / 1000}s`);
    for (let i = 0; i < nsCount; i++) await addNamespace();
    await startOperator();
    for (const ns of live) await waitForCondition(env, 'databaseroles', ns, 'reader', 'Ready', 'True', undefined, 60_000);
    log(`namespaces ${live.join(', ')} ready; injecting`);

    await Promise.all([operationsLane(), faultsLane(), watchdogLane()]);
    cont();

    // ---- quiet period: heal what the operations broke on purpose, operator running, no faults ----
    await checkOperatorAlive();
    log('quiet period: allowing every role again');
    for (const ns of live) {
      await waitFor(`healing ${ns}`, async () => {
        await kubectl(['-n', ns, 'patch', 'databaseconfig', 'pg', '--type=merge', '-p', JSON.stringify({ spec: { allowedRoles: ['*'] } })]);
        await kubectl(['-n', ns, 'patch', 'databaserole', 'shared', '--type=merge', '-p', JSON.stringify({ spec: { allowedNamespaces: [nsGlob] } })]);
        return true;
      }, { timeoutMs: 60_000, intervalMs: 1000 });
    }
    const quietUntil = Date.now() + quietMs;
    while (Date.now() < quietUntil) {
      await checkOperatorAlive();
      await sleep(1000);
    }

    // ---- the auditor ----
    log('auditing');
    const auditDeadline = Date.now() + settleMs;
    for (;;) {
      report.violations = await audit(env, { namespaces: allNamespaces, quietPeriodMs: quietMs }).catch((err: unknown) => {
        log(`audit failed: ${errorText(err)}`);
        return [{ invariant: 'audit-failed' as const, objects: [], message: `the audit itself failed: ${errorText(err)}` }];
      });
      if (report.violations.length === 0 || Date.now() >= auditDeadline) break;
      await sleep(2000);
    }
    if (report.violations.length) log(`auditor: ${report.violations.length} violation(s)\n${formatViolations(report.violations)}`);
    for (const ns of live) {
      for (const name of names) {
        const cred = await getObject<DatabaseCredential>(env, 'databasecredentials', ns, name);
        const ready = cred?.status?.conditions?.find((c) => c.type === 'Ready');
        if (cred && cred.spec.rotation?.enabled !== false && !cred.metadata.deletionTimestamp && ready?.status !== 'True') {
          report.notReady.push(`${ns}/${name}: ${ready?.reason ?? 'no Ready condition'}`);
        }
      }
    }

    // ---- final cleanup: every chaos namespace goes, and with it every role it held ----
    log('deleting every chaos namespace');
    await checkOperatorAlive();
    for (const ns of live.splice(0)) await env.core.deleteNamespace({ name: ns }).catch(() => undefined);
    const exists = async (name: string) => env.core.readNamespace({ name }).then(() => true, (err: { code?: number }) => err.code !== 404);
    await waitFor('every chaos namespace to disappear', async () => {
      await checkOperatorAlive();
      for (const ns of allNamespaces) if (await exists(ns)) return false;
      return true;
    }, { timeoutMs: Math.max(120_000, quietMs), intervalMs: 1000 }).catch(() => undefined);
    for (const ns of allNamespaces) if (await exists(ns)) report.stuckNamespaces.push(ns);
    // A role might still be on its way out (the orphan sweep runs every 5 s): give it a little time.
    await waitFor('no marked role of a chaos namespace', async () => (await markedRoles(env, allNamespaces)).length === 0, { timeoutMs: 20_000, intervalMs: 1000 }).catch(() => undefined);
    report.leakedAfterCleanup = (await markedRoles(env, allNamespaces)).map((m) => `role "${m.username}" of ${m.marker.namespace}/${m.marker.name}`);
  } finally {
    cont();
    process.removeListener('exit', contOnExit);
    operatorDown = true;
    await operator.stop();
  }
  report.passed = report.violations.length === 0 && report.leakedAfterCleanup.length === 0 && report.stuckNamespaces.length === 0 && report.operatorCrashes.length === 0;
  return report;
}

/** The report as lines: counts per operation and fault, then every finding. Never a password. */
export function formatReport(r: ChaosReport): string {
  const lines = [`chaos seed ${r.seed}`];
  const ops = Object.entries(r.operations).sort();
  const total = ops.reduce((s, [, c]) => s + c.ok + c.failed, 0);
  lines.push(`operations: ${total} (${ops.map(([k, c]) => `${k} ${c.ok}${c.failed ? `+${c.failed} failed` : ''}`).join(', ')})`);
  const faults = Object.entries(r.faults).sort();
  lines.push(`faults: ${faults.reduce((s, [, n]) => s + n, 0)} (${faults.map(([k, n]) => `${k} ${n}`).join(', ')})`);
  if (r.operatorCrashes.length) lines.push(`operator crashes: ${r.operatorCrashes.length}`, ...r.operatorCrashes.map((c) => `  ${c}`));
  lines.push(`violations after the quiet period: ${r.violations.length}`);
  if (r.violations.length) lines.push(formatViolations(r.violations));
  lines.push(`leaked roles after deleting every chaos namespace: ${r.leakedAfterCleanup.length}`, ...r.leakedAfterCleanup.map((l) => `  ${l}`));
  lines.push(`namespaces stuck after the final cleanup: ${r.stuckNamespaces.length}`, ...r.stuckNamespaces.map((n) => `  ${n}`));
  if (r.notReady.length) lines.push(`(info) rotating credentials not Ready after the quiet period: ${r.notReady.join('; ')}`);
  return lines.join('\n');
}
