// `make bench`: N DatabaseCredentials applied at once against the local environment (real etcd + kube-apiserver +
// kube-controller-manager + PostgreSQL, the operator as the process a user runs). Prints credentials/s, the
// create → Secret latency distribution, revocation lag after TTL, the operator's peak RSS and API requests per
// credential — and, in the same run, the floor: the same PostgreSQL and API work done by a straight-line script
// (floor.ts), so the operator's overhead is a ratio. A measurement tool: no timing assertions; exits non-zero only
// when something failed outright (a credential never became Ready, a Secret did not log in, ...).
//
// Settings (environment): BENCH_N (200) credentials in the burst; BENCH_TTL_N (50) credentials in the revocation
// phase; BENCH_CONCURRENCY (20) creates in flight; BENCH_TIMEOUT_S (600) for the burst; BENCH_SKIP_FLOOR=true;
// BENCH_FLOOR_KEEPALIVE=false skips the keep-alive floor; WORKERS (operator default 8) is passed to the operator and
// used as the floor's concurrency. For diagnosis: BENCH_LOG_LEVEL=debug (counts reconciles; distorts timing) and
// BENCH_OPERATOR_LOG=<file> (the operator's output).
// BENCH_SCALE=K (e.g. 10000): after the burst, fill up to K credentials held and measure memory per credential,
// an idle steady state and a restart at scale (scale.ts); the revocation phase then runs during a burst of
// BENCH_TTL_BURST (default 1000) creates. BENCH_PROFILE=true: a CPU profile of the operator (whole run) and heap
// snapshots, summarized in the output. Everything is written under .dev/bench/<time>/ (table, JSON, chart.svg).
import * as k8s from '@kubernetes/client-node';
import os from 'node:os';
import pg from 'pg';
import { API_VERSION, GROUP, VERSION, type Condition, type DatabaseCredential } from '../../src/api/types.js';
import { loadConfig } from '../../src/config.js';
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Environment } from '../env/environment.js';
import { KubeClient } from '../../src/k8s/client.js';
import { clusterAccessFromFile } from '../../src/k8s/kubeconfig.js';
import { REPO_ROOT } from '../env/controlplane.js';
import { freePort } from '../env/processes.js';
import { Floor } from './floor.js';
import { PgSampler, type SessionState } from './pgsampler.js';
import { RssSampler, cpuByGroup, cpuDelta, machineBusySeconds, memoryOf } from './procstats.js';
import { KeepWatching, OperatorUnderTest, countsDelta, totalOf } from './processes.js';
import { newestFile, summarizeCpuProfile, summarizeHeapSnapshot, type Share } from './profile.js';
import { runScale, type ScaleResult } from './scale.js';
import { renderChart } from './chart.js';
import { fmt, mapLimit, sleep, summarize, type Summary } from './stats.js';

// ---- settings ----

function intEnv(name: string, dflt: number, min = 1): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return dflt;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) throw new Error(`${name}=${raw}: want an integer >= ${min}`);
  return n;
}

const N = intEnv('BENCH_N', 200);
const TTL_N = intEnv('BENCH_TTL_N', 50, 0);
const CONCURRENCY = intEnv('BENCH_CONCURRENCY', 20);
const TIMEOUT_MS = intEnv('BENCH_TIMEOUT_S', 600) * 1000;
const SKIP_FLOOR = process.env.BENCH_SKIP_FLOOR === 'true';
const SCALE = intEnv('BENCH_SCALE', 0, 0);
const TTL_BURST = intEnv('BENCH_TTL_BURST', SCALE ? 1000 : 0, 0);
const PROFILE = process.env.BENCH_PROFILE === 'true';
const OUT_DIR = path.join(REPO_ROOT, '.dev', 'bench', new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19));
/** Where node writes the operator's CPU profile and heap snapshots. */
const PROF_DIR = path.join(OUT_DIR, 'profile');
/** The heap settings the Deployment ships (deploy/base/deployment.yaml NODE_OPTIONS): the operator runs as deployed. */
const DEPLOYED_NODE_OPTIONS = (readFileSync(path.join(REPO_ROOT, 'deploy', 'base', 'deployment.yaml'), 'utf8').match(/name: NODE_OPTIONS\s+value: (.*)/)?.[1] ?? '').split(/\s+/).filter(Boolean);
const OPERATOR_NODE_ARGS = [
  ...DEPLOYED_NODE_OPTIONS,
  // BENCH_OPERATOR_NODE_ARGS: more flags for the operator's node only (e.g. V8 heap sizing experiments).
  ...(process.env.BENCH_OPERATOR_NODE_ARGS ?? '').split(/\s+/).filter(Boolean),
  ...(SCALE || PROFILE ? [`--diagnostic-dir=${PROF_DIR}`, '--heapsnapshot-signal=SIGUSR2'] : []),
  ...(PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${PROF_DIR}`] : []),
];
const IDLE_SAMPLES = 3;
const TTL = '5s';
const VERIFY_SAMPLE = 5;
/** The operator's worker count (its own default unless WORKERS is set), also the floor's concurrency. */
const WORKERS = loadConfig(process.env).workers;
const POOL_SIZE = 4; // DatabaseConfig.spec.maxOpenConnections default (not set in the benchmark's config)

const NS = 'bench';
const NS_FLOOR = 'bench-floor';
const NS_FLOOR_KA = 'bench-floor-keepalive';
const FLOOR_KEEPALIVE = process.env.BENCH_FLOOR_KEEPALIVE !== 'false';
const CONFIG = 'pg';
const ROLE = 'reader';
const PLURAL = 'databasecredentials';
// Privileges through a group role, as PostgreSQL needs at scale: a table's ACL lives in its pg_class row, which
// has no TOAST, so granting a table to each login directly fails past about 2,000 grantees ("row is too big").
const GROUP_ROLE = 'bench_reader';
const CREATION_STATEMENTS = [
  `CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';`,
  `GRANT ${GROUP_ROLE} TO "{{name}}";`,
];
const TABLE_ROWS = 10;

// ---- bookkeeping ----

interface Track {
  createdAt?: number;
  secretAt?: number;
  readyAt?: number;
  username?: string;
  expiresAt?: string;
  expiredAt?: number;
  secretDeletedAt?: number;
  roleGoneAt?: number;
}

const tracks = new Map<string, Track>();
/** Successful writes seen by the benchmark's watches (MODIFIED events), to tell wasted requests from useful ones. */
const writesSeen = { credentials: 0, roles: 0, secrets: 0 };

interface IssuerResult {
  throughput: number;
  createToSecret: Summary;
  createToReady: Summary;
  apiRequestsPerCredential: number;
  apiRequestsByVerb: Record<string, number>;
  cpuSeconds: Record<string, number>;
  /** Cores busy on the whole machine during the burst, and CPU seconds used by processes that are not ours. */
  machineBusyCores: number;
  outsideCpuSeconds: number;
  /** Mean number of the issuer's PostgreSQL sessions in each state, and % of samples with an advisory-lock waiter. */
  pgSessions: Record<SessionState, number> & { lockContendedPct: number; samples: number };
}

/** CPU by process group, machine load and PostgreSQL session states over one burst. */
function startProbe(pool: pg.Pool, named: () => ReadonlyMap<number, string>) {
  const cpu0 = cpuByGroup(named());
  const busy0 = machineBusySeconds();
  const t0 = Date.now();
  const sampler = new PgSampler(pool, 100);
  sampler.start();
  return () => {
    sampler.stop();
    const cpuSeconds = cpuDelta(cpu0, cpuByGroup(named()));
    const busy = machineBusySeconds() - busy0;
    const ours = Object.values(cpuSeconds).reduce((a, b) => a + b, 0);
    return {
      cpuSeconds,
      machineBusyCores: busy / ((Date.now() - t0) / 1000),
      outsideCpuSeconds: Math.max(0, busy - ours),
      pgSessions: { ...sampler.means(), lockContendedPct: (100 * sampler.samplesWithLockWaiters) / Math.max(1, sampler.samples), samples: sampler.samples },
    };
  };
}
function track(namespace: string, name: string): Track {
  const key = `${namespace}/${name}`;
  let t = tracks.get(key);
  if (!t) tracks.set(key, (t = {}));
  return t;
}

const condition = (obj: { status?: { conditions?: Condition[] } }, type: string) => obj.status?.conditions?.find((c) => c.type === type);

const phaseWallMs: Record<string, number> = {};
const phaseSpans: Array<{ name: string; start: number; end: number }> = [];
/** The burst's credential names (for the chart's latency distribution). */
let issueTrackNames: string[] = [];
async function phase<T>(name: string, fn: () => Promise<T>): Promise<T> {
  const start = Date.now();
  try {
    return await fn();
  } finally {
    phaseWallMs[name] = Date.now() - start;
    phaseSpans.push({ name, start, end: Date.now() });
    log(`phase ${name}: ${((Date.now() - start) / 1000).toFixed(1)} s`);
  }
}

function log(msg: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 23)}] ${msg}\n`);
}

async function waitUntil(what: string, check: () => boolean | Promise<boolean>, timeoutMs: number, intervalMs = 100, failFast?: () => string | undefined): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const reason = failFast?.();
    if (reason) throw new Error(`${what}: ${reason}`);
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${Math.round(timeoutMs / 1000)} s waiting for ${what}`);
    await sleep(intervalMs);
  }
}

const names = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => `${prefix}-${String(i).padStart(4, '0')}`);
const ms = (a: number | undefined, b: number | undefined) => (a !== undefined && b !== undefined ? b - a : undefined);
const defined = (xs: Array<number | undefined>) => xs.filter((x): x is number => x !== undefined);

// ---- the run ----

let env: Environment | undefined;
let operator: OperatorUnderTest | undefined;
const watches: Array<KeepWatching<never>> = [];
let cleaning: Promise<void> | undefined;

function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    for (const w of watches) w.stop();
    await operator?.stop(10_000).catch(() => operator?.killNow());
    await env?.stop().catch(() => undefined);
  })();
  return cleaning;
}

process.on('SIGINT', () => {
  log('interrupted: stopping the operator and the environment');
  void cleanup().finally(() => process.exit(130));
});
process.on('SIGTERM', () => void cleanup().finally(() => process.exit(143)));
process.on('exit', () => operator?.killNow());

async function main(): Promise<number> {
  const failures: string[] = [];
  const machine = {
    nproc: os.availableParallelism(),
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    memGiB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    loadAvgStart: os.loadavg().map((x) => Math.round(x * 100) / 100),
    postgres: '',
    kubernetes: '',
  };
  log(`N=${N} TTL_N=${TTL_N} concurrency=${CONCURRENCY} workers=${WORKERS}; starting the environment`);
  const started = Date.now();

  env = await phase('env-start', () => Environment.start());
  const e = env;
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(e.kubeconfigPath);
  const core = kc.makeApiClient(k8s.CoreV1Api);
  const custom = kc.makeApiClient(k8s.CustomObjectsApi);
  const conn = e.postgres.connection;
  const pgAdmin = new pg.Pool({ ...conn, max: 2 });
  pgAdmin.on('error', () => undefined);
  const markedRoles = async () =>
    Number((await pgAdmin.query<{ n: string }>(`SELECT count(*) AS n FROM pg_shdescription d JOIN pg_roles r ON d.objoid = r.oid AND d.classoid = 'pg_authid'::regclass WHERE d.description LIKE 'dbcred:%'`)).rows[0]?.n ?? 0);

  try {
    machine.postgres = (await pgAdmin.query<{ v: string }>(`SELECT current_setting('server_version') AS v`)).rows[0]?.v ?? '';
    machine.kubernetes = (await kc.makeApiClient(k8s.VersionApi).getCode()).gitVersion;

    // ---- set-up: a table for the GRANT, namespaces, the operator, the platform objects ----
    const operatorPort = await freePort();
    mkdirSync(PROF_DIR, { recursive: true });
    const newOperator = () =>
      new OperatorUnderTest(e.kubeconfigPath, operatorPort, process.env.BENCH_LOG_LEVEL ? { LOG_LEVEL: process.env.BENCH_LOG_LEVEL } : {}, process.env.BENCH_OPERATOR_LOG || undefined, OPERATOR_NODE_ARGS);
    const t0 = Date.now();
    let rss: RssSampler | undefined;
    const opPids = () => new Map(operator?.pid ? [[operator.pid, 'operator']] : []);
    let rssAtReady = 0;

    await phase('setup', async () => {
      await pgAdmin.query('CREATE TABLE IF NOT EXISTS public.bench_items (id int PRIMARY KEY, label text NOT NULL)');
      await pgAdmin.query(`INSERT INTO public.bench_items SELECT g, 'item ' || g FROM generate_series(1, ${TABLE_ROWS}) g ON CONFLICT DO NOTHING`);
      await pgAdmin.query(`DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '${GROUP_ROLE}') THEN CREATE ROLE ${GROUP_ROLE} NOLOGIN; END IF; END $$`);
      await pgAdmin.query(`GRANT SELECT ON public.bench_items TO ${GROUP_ROLE}`);
      await core.createNamespace({ body: { metadata: { name: NS } } });

      operator = newOperator();
      operator.start();
      await operator.waitReady();
      rss = new RssSampler(operator.pid as number, 100);
      rss.start();
      rssAtReady = memoryOf(operator.pid as number)?.rssKb ?? 0;

      await core.createNamespacedSecret({ namespace: NS, body: { metadata: { name: `${CONFIG}-root` }, stringData: { username: conn.user, password: conn.password } } });
      await custom.createNamespacedCustomObject({
        group: GROUP, version: VERSION, namespace: NS, plural: 'databaseconfigs',
        body: {
          apiVersion: API_VERSION, kind: 'DatabaseConfig', metadata: { name: CONFIG },
          spec: {
            plugin: 'postgresql',
            connectionURL: `postgresql://{{username}}:{{password}}@${conn.host}:${conn.port}/${conn.database}?sslmode=disable`,
            rootCredentialsSecretRef: { name: `${CONFIG}-root` },
            allowedRoles: ['*'],
          },
        },
      });
      await custom.createNamespacedCustomObject({
        group: GROUP, version: VERSION, namespace: NS, plural: 'databaseroles',
        body: {
          apiVersion: API_VERSION, kind: 'DatabaseRole', metadata: { name: ROLE },
          spec: { configRef: { name: CONFIG }, creationStatements: CREATION_STATEMENTS, defaultTTL: '1h', maxTTL: '24h' },
        },
      });
      for (const [plural, name] of [['databaseconfigs', CONFIG], ['databaseroles', ROLE]] as const) {
        let last: unknown;
        await waitUntil(`${plural} ${NS}/${name} Ready`, async () => {
          last = await custom.getNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: NS, plural, name });
          return condition(last as DatabaseCredential, 'Ready')?.status === 'True';
        }, 60_000, 200, () => (operator?.running ? undefined : 'the operator exited')).catch((err: Error) => {
          throw new Error(`${err.message}; last status: ${JSON.stringify((last as { status?: unknown } | undefined)?.status)}`);
        });
      }
    });
    let op = operator as unknown as OperatorUnderTest;
    const operatorAlive = () => (op.running ? undefined : `the operator exited:\n${op.lastOutput()}`);
    // A heap snapshot (node writes it on SIGUSR2, after a full GC): live bytes, and by constructor (largest first).
    const heapSnapshots: Array<{ label: string; totalMiB: number; top: Array<{ what: string; bytes: number; count: number }> }> = [];
    const heapSnapshot = async (label: string): Promise<number> => {
      const before = newestFile(PROF_DIR, '.heapsnapshot');
      op.signal('SIGUSR2');
      let file: string | undefined;
      let size = -1;
      await waitUntil(`heap snapshot ${label}`, () => {
        const f = newestFile(PROF_DIR, '.heapsnapshot');
        if (!f || f === before) return false;
        const now = statSync(f).size;
        const stable = f === file && now === size && now > 0;
        [file, size] = [f, now];
        return stable;
      }, 300_000, 1000);
      const summary = summarizeHeapSnapshot(file as string, 12);
      heapSnapshots.push({ label, totalMiB: summary.totalBytes / 2 ** 20, top: summary.shares });
      return summary.totalBytes;
    };
    if (PROFILE) await heapSnapshot('ready'); // (grows the process: its RSS figures are then not comparable)

    // Watches: when each Secret appears/disappears and when each credential turns Ready/Expired.
    const secretWatch = (ns: string) =>
      new KeepWatching<k8s.V1Secret>(kc, `/api/v1/namespaces/${ns}/secrets`, (type, s, at) => {
        const t = track(ns, s.metadata?.name ?? '');
        if (type === 'DELETED') t.secretDeletedAt ??= at;
        else t.secretAt ??= at;
        if (type === 'MODIFIED' && ns === NS) writesSeen.secrets++;
      });
    const credWatch = new KeepWatching<DatabaseCredential>(kc, `/apis/${API_VERSION}/namespaces/${NS}/${PLURAL}`, (type, c, at) => {
      if (type === 'DELETED') return;
      if (type === 'MODIFIED') writesSeen.credentials++;
      const t = track(NS, c.metadata.name);
      if (t.readyAt === undefined && condition(c, 'Ready')?.status === 'True' && c.status?.username) {
        t.readyAt = at;
        t.username = c.status.username;
        t.expiresAt = c.status.expiresAt;
      }
      if (t.expiredAt === undefined && condition(c, 'Expired')?.status === 'True') t.expiredAt = at;
    });
    const roleWatch = new KeepWatching<{ metadata?: { resourceVersion?: string } }>(kc, `/apis/${API_VERSION}/namespaces/${NS}/databaseroles`, (type) => {
      if (type === 'MODIFIED') writesSeen.roles++;
    });
    const opSecrets = secretWatch(NS);
    for (const w of [opSecrets, credWatch, roleWatch]) {
      watches.push(w as unknown as KeepWatching<never>);
      await w.start();
    }

    const createCredential = async (ns: string, name: string, spec: Record<string, unknown>) => {
      await custom.createNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: PLURAL, body: { apiVersion: API_VERSION, kind: 'DatabaseCredential', metadata: { name }, spec } });
      track(ns, name).createdAt = Date.now();
    };

    // ---- idle: one credential at a time on an otherwise idle operator (the README's "within a second") ----
    const idleNames = names('idle', IDLE_SAMPLES);
    await phase('idle', async () => {
      for (const name of idleNames) {
        await createCredential(NS, name, { roleRef: { name: ROLE } });
        await waitUntil(`idle credential ${name}`, () => track(NS, name).readyAt !== undefined && track(NS, name).secretAt !== undefined, 60_000, 20, operatorAlive);
      }
    });
    const idleLatency = idleNames.map((n) => ms(track(NS, n).createdAt, track(NS, n).secretAt) ?? NaN);

    // ---- issue: N at once ----
    const issueNames = names('c', N);
    issueTrackNames = issueNames;
    rss?.setPhase('issue');
    await sleep(1500); // let the role's activeCredentials update from the idle phase pass
    const reqBefore = await op.apiRequests();
    const writesBefore = { ...writesSeen };
    const reconcilesBefore = new Map(op.reconciles);
    const finishProbe = startProbe(pgAdmin, opPids);
    let issueTimedOut = false;
    await phase('issue', async () => {
      await mapLimit(issueNames, CONCURRENCY, (name) => createCredential(NS, name, { roleRef: { name: ROLE } }));
      const done = () => issueNames.every((n) => track(NS, n).secretAt !== undefined && track(NS, n).readyAt !== undefined);
      await waitUntil(`${N} credentials to get their Secret and turn Ready`, done, TIMEOUT_MS, 100, operatorAlive).catch((err: Error) => {
        issueTimedOut = true;
        const missing = issueNames.filter((n) => track(NS, n).secretAt === undefined || track(NS, n).readyAt === undefined);
        failures.push(`${err.message} (${missing.length} missing, e.g. ${missing.slice(0, 5).join(', ')})`);
      });
    });
    const issueProbe = finishProbe();
    // Let the operator settle (trailing status writes, the role's activeCredentials) before reading the counter.
    const reqAfter = await phase('settle', async () => {
      let last = totalOf(await op.apiRequests());
      let stableSince = Date.now();
      const deadline = Date.now() + 30_000;
      while (Date.now() - stableSince < 2000 && Date.now() < deadline) {
        await sleep(250);
        const now = totalOf(await op.apiRequests());
        if (now !== last) {
          last = now;
          stableSince = Date.now();
        }
      }
      return op.apiRequests();
    });
    const issueReq = countsDelta(reqBefore, reqAfter);
    const issueWrites = {
      patches: issueReq.patch ?? 0,
      credentialWrites: writesSeen.credentials - writesBefore.credentials,
      roleStatusWrites: writesSeen.roles - writesBefore.roles,
      /** Patches that changed nothing: rejected (409 on a stale resourceVersion) or no-ops. */
      rejectedOrNoop: (issueReq.patch ?? 0) - (writesSeen.credentials - writesBefore.credentials) - (writesSeen.roles - writesBefore.roles),
    };
    const issueRss = rss?.phasePeakKb.get('issue') ?? 0;

    const issued = issueNames.map((n) => track(NS, n));
    const firstCreate = Math.min(...defined(issued.map((t) => t.createdAt)));
    const lastSecret = Math.max(...defined(issued.map((t) => t.secretAt)));
    const opResult: IssuerResult & { writes: typeof issueWrites; reconciles: Record<string, number> } = {
      writes: issueWrites,
      reconciles: countsDelta(reconcilesBefore, op.reconciles),
      throughput: issueTimedOut ? NaN : N / ((lastSecret - firstCreate) / 1000),
      createToSecret: summarize(defined(issued.map((t) => ms(t.createdAt, t.secretAt)))),
      createToReady: summarize(defined(issued.map((t) => ms(t.createdAt, t.readyAt)))),
      apiRequestsPerCredential: totalOf(new Map(Object.entries(issueReq))) / N,
      apiRequestsByVerb: issueReq,
      ...issueProbe,
    };
    log(`operator: ${fmt(opResult.throughput, 1)} credentials/s, p50 ${fmt(opResult.createToSecret.p50)} ms, p99 ${fmt(opResult.createToSecret.p99)} ms, ${fmt(opResult.apiRequestsPerCredential, 2)} API requests/credential`);

    // ---- verify: a sample of the Secrets log in with their own keys and can read the table ----
    const verified = await phase('verify', async () => {
      const ok: string[] = [];
      const pick = [...new Set(Array.from({ length: Math.min(VERIFY_SAMPLE, N) }, (_, i) => issueNames[Math.floor((i * N) / Math.min(VERIFY_SAMPLE, N))] as string))];
      for (const name of pick) {
        if (track(NS, name).secretAt === undefined) continue;
        try {
          const s = await core.readNamespacedSecret({ namespace: NS, name });
          const d = (k: string) => Buffer.from(s.data?.[k] ?? '', 'base64').toString('utf8');
          const client = new pg.Client({ host: d('host'), port: Number(d('port')), user: d('username'), password: d('password'), database: d('database'), connectionTimeoutMillis: 5000 });
          client.on('error', () => undefined);
          await client.connect();
          try {
            const n = (await client.query<{ n: number }>('SELECT count(*)::int AS n FROM public.bench_items')).rows[0]?.n;
            if (n !== TABLE_ROWS) throw new Error(`read ${n} rows, want ${TABLE_ROWS}`);
          } finally {
            await client.end().catch(() => undefined);
          }
          ok.push(name);
        } catch (err) {
          failures.push(`Secret ${NS}/${name} does not log in: ${err instanceof Error ? err.message : String(err)}`);
        }
      }
      return ok.length;
    });

    // ---- revocation lag: TTL_N credentials with ttl 5s and no rotation ----
    const ttlNames = names('ttl', TTL_N);
    const ttlBurstNames = names('b', TTL_BURST);
    rss?.setPhase('ttl');
    const cpuTtlBefore = cpuByGroup(opPids());
    const reqTtlBefore = await op.apiRequests();
    await phase('ttl', async () => {
      if (!TTL_N) return;
      if (issueTimedOut) {
        failures.push('revocation phase skipped: the burst did not complete');
        return;
      }
      const creating = mapLimit(ttlNames, CONCURRENCY, (name) => createCredential(NS, name, { roleRef: { name: ROLE }, ttl: TTL, rotation: { enabled: false } }));
      // With BENCH_TTL_BURST, a burst of creates runs while these leases end: revocation must not queue behind it.
      const burst = TTL_BURST
        ? (async () => {
            await creating;
            await waitUntil('the TTL credentials to be Ready', () => ttlNames.every((n) => track(NS, n).readyAt !== undefined), 60_000, 50);
            await mapLimit(ttlBurstNames, CONCURRENCY, (name) => createCredential(NS, name, { roleRef: { name: ROLE } }));
          })()
        : Promise.resolve();
      const deadline = Date.now() + 180_000;
      // Poll PostgreSQL every 50 ms for every username known so far (status.username once Ready).
      for (;;) {
        const pending = ttlNames.map((n) => ({ n, t: track(NS, n) })).filter(({ t }) => t.roleGoneAt === undefined);
        if (!pending.length) break;
        if (Date.now() > deadline) {
          failures.push(`revocation after TTL: ${pending.length} of ${TTL_N} roles still present (or never issued) 180 s after the phase began`);
          break;
        }
        const known = pending.filter(({ t }) => t.username !== undefined);
        if (known.length) {
          const at = Date.now();
          const res = await pgAdmin.query<{ rolname: string }>('SELECT rolname FROM pg_roles WHERE rolname = ANY($1::text[])', [known.map(({ t }) => t.username)]);
          const present = new Set(res.rows.map((r) => r.rolname));
          for (const { t } of known) if (!present.has(t.username as string)) t.roleGoneAt = at;
        }
        if (operatorAlive()) {
          failures.push(operatorAlive() as string);
          break;
        }
        await sleep(50);
      }
      await creating;
      await burst;
      if (TTL_BURST) await waitUntil(`the ${TTL_BURST} burst credentials to be issued`, () => ttlBurstNames.every((n) => track(NS, n).readyAt !== undefined), 600_000, 250, operatorAlive).catch((err: Error) => failures.push(err.message));
      // The Secret deletions and Expired conditions trail the DROP ROLE slightly.
      await waitUntil('TTL Secrets deleted and Expired=True', () => ttlNames.every((n) => track(NS, n).secretDeletedAt !== undefined && track(NS, n).expiredAt !== undefined), 30_000).catch((err: Error) => failures.push(err.message));
    });
    const ttlTracks = ttlNames.map((n) => track(NS, n));
    const lagAfter = (f: (t: Track) => number | undefined) => summarize(defined(ttlTracks.map((t) => (t.expiresAt && f(t) !== undefined ? (f(t) as number) - Date.parse(t.expiresAt) : undefined))));
    const ttlResult = {
      n: TTL_N,
      ttl: TTL,
      duringBurstOf: TTL_BURST,
      roleGoneLag: lagAfter((t) => t.roleGoneAt),
      secretDeletedLag: lagAfter((t) => t.secretDeletedAt),
      expiredConditionLag: lagAfter((t) => t.expiredAt),
      apiRequests: countsDelta(reqTtlBefore, await op.apiRequests()),
      cpuSeconds: cpuDelta(cpuTtlBefore, cpuByGroup(opPids())),
    };

    const hwmBeforeScale = memoryOf(op.pid as number)?.hwmKb ?? NaN;
    const rssPeakBeforeScale = rss?.peakKb ?? NaN;

    // ---- scale: hold BENCH_SCALE credentials; steady state; restart ----
    let scale: ScaleResult | undefined;
    if (SCALE && !issueTimedOut) {
      rss?.setPhase('scale');
      const held = [...tracks].filter(([key, t]) => key.startsWith(`${NS}/`) && t.readyAt !== undefined && t.expiredAt === undefined).length;
      scale = await phase('scale', () =>
        runScale(
          {
            kc,
            custom,
            pgAdmin,
            namespace: NS,
            plural: PLURAL,
            roleName: ROLE,
            concurrency: CONCURRENCY,
            operator: () => op,
            restart: async () => {
              rss?.setPhase('restart');
              await op.stop();
              op = newOperator();
              operator = op;
              op.start();
              await op.waitReady(300_000);
              rss?.follow(op.pid as number);
              return op;
            },
            createCredential: (name, spec) => createCredential(NS, name, spec),
            isIssued: (name) => track(NS, name).readyAt !== undefined && track(NS, name).secretAt !== undefined,
            writesSeen: () => ({ credentials: writesSeen.credentials, secrets: writesSeen.secrets }),
            heapLiveBytes: (label) => heapSnapshot(label),
            rssKb: () => memoryOf(op.pid as number)?.rssKb ?? NaN,
            log,
            failures,
          },
          SCALE,
          held,
        ),
      );
      log(`scale result: ${JSON.stringify(scale)}`);
    }

    // ---- teardown: delete every credential while the operator runs (its finalizer revokes the roles) ----
    rss?.setPhase('teardown');
    const cpuTdBefore = cpuByGroup(opPids());
    const reqTdBefore = await op.apiRequests();
    const total = [...tracks].filter(([key, t]) => key.startsWith(`${NS}/`) && t.createdAt !== undefined).length;
    let rolesLeft = NaN;
    await phase('teardown', async () => {
      // A DeleteCollection of thousands can outlast the API server's 60 s request timeout (504) with part of the
      // collection marked; it is repeated every 30 s while objects remain.
      const deleteAll = () => custom.deleteCollectionNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: NS, plural: PLURAL }).catch((err: unknown) => log(`delete collection: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}; repeating`));
      let lastDelete = Date.now();
      await deleteAll();
      // How many are left, from one object and the server's remainingItemCount (a full list of 10,000 every
      // 250 ms would load the API server more than the deletions); a failed count is just not yet.
      const left = async () => {
        const page = (await custom.listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: NS, plural: PLURAL, limit: 1 })) as { items: unknown[]; metadata?: { remainingItemCount?: number } };
        return page.items.length + (page.metadata?.remainingItemCount ?? 0);
      };
      await waitUntil(`${total} credentials deleted (finalizer: roles revoked)`, async () => {
        const n = await left().catch(() => -1);
        if (n > 0 && Date.now() - lastDelete > 30_000) {
          lastDelete = Date.now();
          void deleteAll();
        }
        return n === 0;
      }, issueTimedOut ? 30_000 : 300_000 + total * 50, 500, operatorAlive).catch((err: Error) => failures.push(err.message));
      rolesLeft = await markedRoles();
      if (rolesLeft) failures.push(`${rolesLeft} roles marked by the operator remain after every credential was deleted`);
    });
    const teardown = {
      credentials: total,
      wallMs: phaseWallMs.teardown ?? NaN,
      apiRequests: countsDelta(reqTdBefore, await op.apiRequests()),
      cpuSeconds: cpuDelta(cpuTdBefore, cpuByGroup(opPids())),
      rolesLeft,
    };

    // ---- the operator's memory, then stop it ----
    rss?.stop();
    // Before the scale phase: the burst's figures (the scale phase reports its own).
    const memory = { rssAtReadyMiB: rssAtReady / 1024, peakSampledIssueMiB: issueRss / 1024, peakSampledMiB: rssPeakBeforeScale / 1024, vmHWMMiB: hwmBeforeScale / 1024, samples: rss?.samples ?? 0 };
    await phase('operator-stop', () => op.stop());
    opSecrets.stop();
    credWatch.stop();
    roleWatch.stop();

    // ---- the floor: the same work by a straight-line script, with the operator's client; then with keep-alive ----
    const runFloor = async (label: string, ns: string, prefix: string, keepAlive: boolean): Promise<IssuerResult | undefined> => {
      await core.createNamespace({ body: { metadata: { name: ns } } });
      const floorNames = names(prefix, N);
      const floorSecrets = secretWatch(ns);
      watches.push(floorSecrets as unknown as KeepWatching<never>);
      await floorSecrets.start();
      const floor = new Floor({
        kc,
        operatorClient: keepAlive ? new KubeClient(clusterAccessFromFile(e.kubeconfigPath)) : undefined,
        namespace: ns,
        names: floorNames,
        platformNamespace: NS,
        roleName: ROLE,
        configName: CONFIG,
        creationStatements: CREATION_STATEMENTS,
        settings: { host: conn.host, port: conn.port, database: conn.database, user: conn.user, password: conn.password, sslmode: 'disable', maxConnections: POOL_SIZE },
        createConcurrency: CONCURRENCY,
        workers: WORKERS,
        ttlMs: 3600_000,
        onCreated: (name, at) => (track(ns, name).createdAt = at),
        onSecretCreated: () => undefined, // the Secret watch times it, as for the operator
        onReady: (name, at) => (track(ns, name).readyAt = at),
      });
      try {
        const finishFloorProbe = startProbe(pgAdmin, () => new Map());
        const res = await phase(label, async () => {
          const r = await floor.run();
          await waitUntil('the floor Secrets to be seen by the watch', () => floorNames.every((n) => track(ns, n).secretAt !== undefined), 60_000, 50);
          return r;
        });
        const floorProbe = finishFloorProbe();
        const ft = floorNames.map((n) => track(ns, n));
        const first = Math.min(...defined(ft.map((t) => t.createdAt)));
        const last = Math.max(...defined(ft.map((t) => t.secretAt)));
        // Clean up what the floor made: revoke its roles, let go of its objects.
        await phase(`${label}-cleanup`, async () => {
          await mapLimit(res.usernames, POOL_SIZE, (u) => floor.revoke(u));
          await mapLimit(floorNames, CONCURRENCY, (name) =>
            custom.patchNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: PLURAL, name, body: { metadata: { finalizers: null } } }, k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch)),
          );
          await custom.deleteCollectionNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: PLURAL });
          await core.deleteNamespace({ name: ns }).catch(() => undefined);
          const left = await markedRoles();
          if (left) failures.push(`${left} marked roles remain after the ${label} cleanup`);
        });
        return {
          throughput: N / ((last - first) / 1000),
          createToSecret: summarize(defined(ft.map((t) => ms(t.createdAt, t.secretAt)))),
          createToReady: summarize(defined(ft.map((t) => ms(t.createdAt, t.readyAt)))),
          apiRequestsPerCredential: totalOf(new Map(Object.entries(res.apiRequests))) / N,
          apiRequestsByVerb: res.apiRequests,
          ...floorProbe,
        };
      } catch (err) {
        failures.push(`${label}: ${err instanceof Error ? err.message : String(err)}`);
        return undefined;
      } finally {
        floorSecrets.stop();
        await floor.close();
      }
    };
    const floorResult = SKIP_FLOOR ? undefined : await runFloor('floor', NS_FLOOR, 'f', false);
    const floorKeepAlive = SKIP_FLOOR || !FLOOR_KEEPALIVE ? undefined : await runFloor('floor-keepalive', NS_FLOOR_KA, 'k', true);
    await core.deleteNamespace({ name: NS }).catch(() => undefined);

    // ---- report ----
    const loadAvgEnd = os.loadavg().map((x) => Math.round(x * 100) / 100);
    const result = {
      n: N,
      concurrency: CONCURRENCY,
      workers: WORKERS,
      poolSize: POOL_SIZE,
      machine: { ...machine, loadAvgEnd },
      wallMs: { ...phaseWallMs, total: Date.now() - started },
      idle: { createToSecretMs: idleLatency },
      operator: { ...opResult, memory, logLines: Object.fromEntries(op.linesByLevel), verifiedLogins: verified },
      floor: floorResult,
      floorKeepAlive,
      ratio: ratios(opResult, floorResult),
      ratioKeepAlive: ratios(opResult, floorKeepAlive),
      revocation: ttlResult,
      scale,
      teardown,
      heapSnapshots,
      cpuProfile: undefined as undefined | { totalMs: number; busyMs: number; shares: Share[] },
      failures,
    };
    // The CPU profile is written when the operator exits (it did, above).
    const cpuFile = PROFILE ? newestFile(PROF_DIR, '.cpuprofile') : undefined;
    if (cpuFile) result.cpuProfile = summarizeCpuProfile(cpuFile, 16);
    const table = printTable(result, op);
    writeOutputs(result, table, rss?.series ?? [], t0);
    process.stdout.write(`BENCH_JSON ${JSON.stringify(result, (_k, v: unknown) => (typeof v === 'number' && !Number.isInteger(v) ? Math.round(v * 1000) / 1000 : v))}\n`);
    return failures.length ? 1 : 0;
  } finally {
    await pgAdmin.end().catch(() => undefined);
    await cleanup();
  }
}

// ---- output ----

/** operator / floor for throughput, p50, p99 and API requests (above 1: the operator needs more; for throughput, is faster). */
function ratios(op: IssuerResult, floor: IssuerResult | undefined) {
  if (!floor) return undefined;
  return {
    throughput: op.throughput / floor.throughput,
    p50: op.createToSecret.p50 / floor.createToSecret.p50,
    p99: op.createToSecret.p99 / floor.createToSecret.p99,
    apiRequests: op.apiRequestsPerCredential / floor.apiRequestsPerCredential,
    cpuAllProcesses: sum(op.cpuSeconds) / sum(floor.cpuSeconds),
  };
}

const sum = (x: Record<string, number>) => Object.values(x).reduce((a, b) => a + b, 0);

type Result = {
  n: number;
  concurrency: number;
  workers: number;
  poolSize: number;
  machine: Record<string, unknown>;
  wallMs: Record<string, number>;
  idle: { createToSecretMs: number[] };
  operator: IssuerResult & {
    writes: { patches: number; credentialWrites: number; roleStatusWrites: number; rejectedOrNoop: number };
    reconciles: Record<string, number>;
    memory: { rssAtReadyMiB: number; peakSampledIssueMiB: number; peakSampledMiB: number; vmHWMMiB: number; samples: number };
    verifiedLogins: number;
  };
  floor?: IssuerResult;
  floorKeepAlive?: IssuerResult;
  ratio?: { throughput: number; p50: number; p99: number; apiRequests: number };
  revocation: { n: number; ttl: string; duringBurstOf: number; roleGoneLag: Summary; secretDeletedLag: Summary; expiredConditionLag: Summary; apiRequests: Record<string, number>; cpuSeconds: Record<string, number> };
  teardown: { credentials: number; wallMs: number; apiRequests: Record<string, number>; cpuSeconds: Record<string, number>; rolesLeft: number };
  scale?: ScaleResult;
  heapSnapshots: Array<{ label: string; totalMiB: number; top: Array<{ what: string; bytes: number; count: number }> }>;
  cpuProfile?: { totalMs: number; busyMs: number; shares: Share[] };
  failures: string[];
};

/** Writes of the issue path: every verb that changes something (Event creates included). */
const WRITE_VERBS = ['create', 'patch', 'update', 'delete'];

/** The issue's targets, each with what this run measured. */
function targets(r: Result): Array<{ target: string; measured: string; met: boolean | undefined }> {
  const o = r.operator;
  const k = r.floorKeepAlive;
  const cpu = (x: IssuerResult) => (Object.values(x.cpuSeconds).reduce((a, b) => a + b, 0) * 1000) / r.n;
  const writes = WRITE_VERBS.reduce((a, v) => a + (o.apiRequestsByVerb[v] ?? 0), 0) / r.n;
  const rows: Array<{ target: string; measured: string; met: boolean | undefined }> = [
    { target: 'throughput >= 70 credentials/s', measured: `${fmt(o.throughput, 1)}/s`, met: o.throughput >= 70 },
    { target: 'throughput >= 0.9 x floor with keep-alive (same run)', measured: k ? `${(o.throughput / k.throughput).toFixed(2)}x of ${fmt(k.throughput, 1)}/s` : 'no floor', met: k ? o.throughput >= 0.9 * k.throughput : undefined },
    { target: 'CPU <= 28 ms / credential, all processes', measured: `${fmt(cpu(o), 1)} ms`, met: cpu(o) <= 28 },
    { target: 'CPU <= 5 ms / credential, operator', measured: `${fmt(((o.cpuSeconds.operator ?? NaN) * 1000) / r.n, 1)} ms`, met: ((o.cpuSeconds.operator ?? Infinity) * 1000) / r.n <= 5 },
    { target: 'create -> Secret p99 < 2 s under the burst', measured: `${fmt(o.createToSecret.p99)} ms`, met: o.createToSecret.p99 < 2000 },
    { target: 'API writes <= 3 / issued credential', measured: `${writes.toFixed(2)} (${fmt(o.apiRequestsPerCredential, 2)} requests)`, met: writes <= 3 },
    { target: 'operator RSS <= 80 MiB when ready', measured: `${fmt(o.memory.rssAtReadyMiB, 1)} MiB`, met: o.memory.rssAtReadyMiB <= 80 },
    { target: `revocation lag p99 <= 1 s${r.revocation.duringBurstOf ? ` (during a burst of ${r.revocation.duringBurstOf})` : ' (quiet)'}`, measured: `${fmt(r.revocation.roleGoneLag.p99)} ms`, met: r.revocation.roleGoneLag.p99 <= 1000 },
  ];
  const sc = r.scale;
  if (sc) {
    rows.push(
      { target: `${sc.held} credentials held with RSS <= 150 MiB (the restarted operator)`, measured: `${fmt(sc.restart.rssMiBAfter, 1)} MiB (${fmt(sc.rssMiBAfter, 1)} after issuing them)`, met: sc.restart.rssMiBAfter <= 150 },
      { target: '<= 4 KiB of heap per credential held', measured: `${fmt(sc.heapBytesPerCredential / 1024, 2)} KiB`, met: sc.heapBytesPerCredential <= 4096 },
      { target: 'restart: steady within 60 s', measured: `${fmt(sc.restart.steadySeconds, 1)} s (ready after ${fmt(sc.restart.readySeconds, 1)} s)`, met: sc.restart.steadySeconds <= 60 },
      { target: 'restart: <= 1 API request / credential', measured: `${fmt(sc.restart.requestsPerCredential, 2)}`, met: sc.restart.requestsPerCredential <= 1 },
      { target: 'restart: nothing re-issued, no status or Secret rewritten', measured: `${sc.restart.reissued} re-issued, ${sc.restart.credentialWrites} status, ${sc.restart.secretWrites} Secret writes`, met: sc.restart.reissued + sc.restart.credentialWrites + sc.restart.secretWrites === 0 },
      { target: 'restart: no PostgreSQL writes', measured: `${sc.restart.roleRowsChanged} role rows changed`, met: sc.restart.roleRowsChanged === 0 },
      { target: 'steady state: API requests/s ~ renewals due', measured: `${fmt(sc.steady.requestsPerSecond, 2)}/s with ${sc.steady.renewalsDue} renewals due in ${fmt(sc.steady.seconds)} s`, met: sc.steady.requestsPerSecond <= (sc.steady.renewalsDue * 3) / sc.steady.seconds + 0.05 },
      { target: 'lists paginated and served from the watch cache', measured: `${sc.lists.fromCache} list requests from the cache, ${sc.lists.etcdObjects} objects read from etcd (at restart)`, met: sc.lists.fromCache > 0 && sc.lists.etcdObjects === 0 && sc.lists.fallbacks === 0 },
    );
  }
  return rows;
}

function printTable(r: Result, op: OperatorUnderTest): string {
  const out: string[] = [];
  const o = r.operator;
  const f = r.floor;
  const k = r.floorKeepAlive;
  const ratio = (a: number | undefined, b: number | undefined) => (a !== undefined && b !== undefined && Number.isFinite(a / b) ? `${(a / b).toFixed(2)}x` : '-');
  const row = (label: string, a: number | undefined, b: number | undefined, c: number | undefined, digits = 0, ratios = true) =>
    out.push(
      `  ${label.padEnd(38)}${fmt(a, digits).padStart(10)}${fmt(b, digits).padStart(10)}${(ratios ? ratio(a, b) : '').padStart(10)}` +
        `${fmt(c, digits).padStart(12)}${(ratios ? ratio(a, c) : '').padStart(10)}`,
    );
  const totalCpu = (x: IssuerResult | undefined) => (x ? (Object.values(x.cpuSeconds).reduce((a, b) => a + b, 0) * 1000) / r.n : undefined);
  const m = r.machine;
  const perCred = (x: IssuerResult | undefined, group: string) => (x?.cpuSeconds[group] !== undefined ? (x.cpuSeconds[group] * 1000) / r.n : undefined);
  const verbs = (x: Record<string, number> | undefined) => (x ? Object.entries(x).sort().map(([v, n]) => `${v} ${(n / r.n).toFixed(2)}`).join(', ') : '-');

  out.push('');
  out.push(`dbcred-operator benchmark: N=${r.n} credentials at once (${r.concurrency} creates in flight), operator WORKERS=${r.workers}, pool ${r.poolSize}`);
  out.push(`machine: ${String(m.nproc)} CPUs (${String(m.cpuModel)}), ${String(m.memGiB)} GiB, node ${String(m.node)}, PostgreSQL ${String(m.postgres)}, Kubernetes ${String(m.kubernetes)}`);
  out.push(`load average before the environment started ${JSON.stringify(m.loadAvgStart)} (other work on the machine: see "CPU s used outside the benchmark")`);
  out.push('');
  out.push(`  ${''.padEnd(38)}${'operator'.padStart(10)}${'floor'.padStart(10)}${'op/floor'.padStart(10)}${'floor+k-a'.padStart(12)}${'op/f+k-a'.padStart(10)}`);
  row('credentials/s', o.throughput, f?.throughput, k?.throughput, 1);
  for (const p of ['p50', 'p95', 'p99', 'max'] as const) row(`create -> Secret ${p} (ms)`, o.createToSecret[p], f?.createToSecret[p], k?.createToSecret[p]);
  for (const p of ['p50', 'p99'] as const) row(`create -> Ready ${p} (ms)`, o.createToReady[p], f?.createToReady[p], k?.createToReady[p]);
  row('API requests / credential', o.apiRequestsPerCredential, f?.apiRequestsPerCredential, k?.apiRequestsPerCredential, 2);
  row('CPU ms / credential: all processes', totalCpu(o), totalCpu(f), totalCpu(k), 1);
  row('CPU ms / credential: issuer', perCred(o, 'operator'), perCred(f, 'bench'), perCred(k, 'bench'), 1);
  for (const g of ['kube-apiserver', 'etcd', 'postgres', 'kube-controller-manager']) row(`CPU ms / credential: ${g.replace('kube-controller-manager', 'kube-ctrl-mgr')}`, perCred(o, g), perCred(f, g), perCred(k, g), 1);
  row('machine busy (cores of ' + String(m.nproc) + ')', o.machineBusyCores, f?.machineBusyCores, k?.machineBusyCores, 2, false);
  row('CPU s used outside the benchmark', o.outsideCpuSeconds, f?.outsideCpuSeconds, k?.outsideCpuSeconds, 1, false);
  row('PG sessions waiting for the DDL lock', o.pgSessions.lockWait, f?.pgSessions.lockWait, k?.pgSessions.lockWait, 2, false);
  row('PG sessions idle in transaction', o.pgSessions.idleInTransaction, f?.pgSessions.idleInTransaction, k?.pgSessions.idleInTransaction, 2, false);
  row('PG sessions running a statement', o.pgSessions.running, f?.pgSessions.running, k?.pgSessions.running, 2, false);
  row('% of samples with a lock waiter', o.pgSessions.lockContendedPct, f?.pgSessions.lockContendedPct, k?.pgSessions.lockContendedPct, 0, false);
  out.push('');
  out.push('  floor     = the same API and PostgreSQL work by a straight-line script (test/bench/floor.ts), same client library');
  out.push('              (client-node: a new TLS connection per request), same WORKERS, same pool size');
  out.push('  floor+k-a = the floor with the operator\'s own API client for its requests (src/k8s/rest.ts: one keep-alive pool)');
  out.push('  all processes = operator or script + kube-apiserver + etcd + PostgreSQL + controller manager + the benchmark itself:');
  out.push('              the least noisy measure of cost when the machine is CPU-bound (machine busy near its core count)');
  out.push('  issuer CPU = the operator process, or the script process (which also runs the benchmark\'s Secret watch)');
  out.push('  PG sessions = mean number of the issuer\'s PostgreSQL sessions per state (pg_stat_activity every 100 ms); "idle in');
  out.push('              transaction" = PostgreSQL waits for the issuer\'s next statement, often while holding the DDL lock');
  out.push(`  API requests / credential by verb (the benchmark's own DatabaseCredential creates excluded on every side):`);
  out.push(`    operator {${verbs(o.apiRequestsByVerb)}}   floor {${verbs(f?.apiRequestsByVerb)}}`);
  out.push(`    operator patches: ${o.writes.patches} = ${o.writes.credentialWrites} credential writes + ${o.writes.roleStatusWrites} DatabaseRole status writes + ${o.writes.rejectedOrNoop} rejected (409) or no-op`);
  if (Object.keys(o.reconciles).length) {
    out.push(`    reconciles during the burst (debug log; distorts timing): ${Object.entries(o.reconciles).map(([c, n]) => `${c} ${n} (${(n / r.n).toFixed(2)}/credential)`).join(', ')}`);
  }
  out.push(`  idle operator, one credential at a time: create -> Secret ${r.idle.createToSecretMs.map((x) => `${fmt(x)} ms`).join(', ')}`);
  out.push(`  operator RSS: ${fmt(o.memory.rssAtReadyMiB, 1)} MiB when ready, peak ${fmt(o.memory.peakSampledIssueMiB, 1)} MiB during the burst, ${fmt(o.memory.peakSampledMiB, 1)} MiB overall (sampled every 100 ms), VmHWM ${fmt(o.memory.vmHWMMiB, 1)} MiB`);
  out.push(`  verified logins: ${o.verifiedLogins} of ${Math.min(VERIFY_SAMPLE, r.n)} sampled Secrets log in with their own keys and read the granted table`);
  out.push('');
  const rv = r.revocation;
  out.push(`  revocation lag after TTL (${rv.n} credentials, ttl ${rv.ttl}, rotation disabled; from status.expiresAt, whole seconds; PG polled every 50 ms):`);
  const lagRow = (label: string, x: Summary) => out.push(`    ${label.padEnd(28)} p50 ${fmt(x.p50).padStart(6)} ms   p95 ${fmt(x.p95).padStart(6)} ms   max ${fmt(x.max).padStart(6)} ms   (n=${x.n})`);
  lagRow('role gone from pg_roles', rv.roleGoneLag);
  lagRow('Secret deleted (watch)', rv.secretDeletedLag);
  lagRow('Expired=True (watch)', rv.expiredConditionLag);
  out.push(`    operator API requests in the phase (issue + expiry of ${rv.n}): ${JSON.stringify(rv.apiRequests)}`);
  const td = r.teardown;
  out.push(`  teardown: deleting ${td.credentials} credentials (finalizer revokes) took ${fmt(td.wallMs / 1000, 1)} s (${fmt(td.credentials / (td.wallMs / 1000), 1)}/s), operator API requests ${JSON.stringify(td.apiRequests)}, marked roles left ${fmt(td.rolesLeft)}`);
  out.push('');
  out.push(`  CPU seconds during the burst: operator run ${JSON.stringify(o.cpuSeconds)}`);
  out.push(`                                floor run ${JSON.stringify(f?.cpuSeconds ?? {})}; floor+k-a run ${JSON.stringify(k?.cpuSeconds ?? {})}`);
  out.push(`  wall time by phase (s): ${Object.entries(r.wallMs).map(([name, v]) => `${name} ${(v / 1000).toFixed(1)}`).join(', ')}`);
  const problems = [...op.problems].sort((a, b) => b[1] - a[1]).slice(0, 8);
  out.push(`  operator log lines at warn/error: ${problems.length ? problems.map(([msg, n]) => `${n}x "${msg}"`).join('; ') : 'none'}`);
  if (r.failures.length) {
    out.push('');
    out.push('  FAILURES:');
    for (const x of r.failures) out.push(`    - ${x}`);
  }
  const sc = r.scale;
  if (sc) {
    out.push('');
    out.push(`  scale (BENCH_SCALE=${sc.target}): ${sc.created} more credentials issued in ${fmt(sc.issueSeconds, 1)} s; ${sc.held} held`);
    out.push(`    heap (live, from snapshots) ${fmt(sc.heapLiveMiBBefore, 1)} -> ${fmt(sc.heapLiveMiBAfter, 1)} MiB = ${fmt(sc.heapBytesPerCredential)} bytes per credential; RSS ${fmt(sc.rssMiBBefore, 1)} -> ${fmt(sc.rssMiBAfter, 1)} MiB`);
    out.push(`    idle ${fmt(sc.steady.seconds)} s: API requests ${JSON.stringify(sc.steady.apiRequests)} (${fmt(sc.steady.requestsPerSecond, 2)}/s), renewals due ${sc.steady.renewalsDue}, status writes ${sc.steady.credentialWrites}, Secret writes ${sc.steady.secretWrites}`);
    const rs = sc.restart;
    out.push(`    restart: ready ${fmt(rs.readySeconds, 1)} s, steady ${fmt(rs.steadySeconds, 1)} s; ${rs.reconciles} reconciles; API requests ${JSON.stringify(rs.apiRequests)} (${fmt(rs.requestsPerCredential, 2)}/credential);`);
    out.push(`             status writes ${rs.credentialWrites}, Secret writes ${rs.secretWrites}, re-issued ${rs.reissued}, PostgreSQL role rows changed ${rs.roleRowsChanged}; RSS after ${fmt(rs.rssMiBAfter, 1)} MiB`);
    out.push(`             memory of the restarted operator (MiB): ${Object.entries(rs.memory).map(([k, v]) => `${k} ${fmt(v, 1)}`).join(', ')}`);
    out.push(`    lists at restart (apiserver metrics, credentials + Secrets): ${sc.lists.fromCache} list requests served from the watch cache, ${sc.lists.etcdObjects} objects read from etcd by lists, ${sc.lists.fallbacks} consistent reads that fell back to etcd`);
  }
  for (const h of r.heapSnapshots) {
    out.push(`  heap snapshot "${h.label}": ${fmt(h.totalMiB, 1)} MiB live; largest: ${h.top.slice(0, 8).map((x) => `${x.what} ${fmt(x.bytes / 1024)} KiB (${x.count})`).join(', ')}`);
  }
  if (r.cpuProfile) {
    const p = r.cpuProfile;
    out.push(`  operator CPU profile (whole run, ${fmt(p.busyMs)} ms busy): ${p.shares.map((x) => `${x.what} ${fmt(x.pct, 1)}%`).join(', ')}`);
  }
  out.push('');
  out.push('  targets (issue 10):');
  for (const t of targets(r)) out.push(`    ${(t.met === undefined ? '  -  ' : t.met ? ' met ' : 'MISSED').padEnd(7)} ${t.target.padEnd(60)} ${t.measured}`);
  out.push('');
  const text = out.join('\n');
  process.stdout.write(`${text}\n`);
  return text;
}

/** The table, the JSON and the chart under .dev/bench/<time>/. */
function writeOutputs(r: Result, table: string, rssSeries: ReadonlyArray<{ at: number; kb: number }>, t0: number): void {
  mkdirSync(OUT_DIR, { recursive: true });
  writeFileSync(path.join(OUT_DIR, 'table.txt'), `${table}\n`);
  writeFileSync(path.join(OUT_DIR, 'result.json'), `${JSON.stringify(r, null, 1)}\n`);
  const mine = [...tracks].filter(([key]) => key.startsWith(`${NS}/`)).map(([, t]) => t);
  const floorTracks = [...tracks].filter(([key]) => key.startsWith(`${NS_FLOOR_KA}/`)).map(([, t]) => t);
  const floorT0 = Math.min(...defined(floorTracks.map((t) => t.createdAt)));
  const svg = renderChart({
    title: `dbcred-operator bench, N=${r.n}${r.scale ? `, scale ${r.scale.held}` : ''}, ${new Date(t0).toISOString().slice(0, 16)}Z`,
    issued: defined(mine.map((t) => t.secretAt)).map((x) => x - t0),
    revoked: defined(mine.map((t) => t.roleGoneAt)).map((x) => x - t0),
    floorIssued: floorTracks.length ? defined(floorTracks.map((t) => t.secretAt)).map((x) => x - floorT0) : undefined,
    latenciesMs: defined(issueTrackNames.map((n) => ms(track(NS, n).createdAt, track(NS, n).secretAt))),
    floorLatenciesMs: floorTracks.length ? defined(floorTracks.map((t) => ms(t.createdAt, t.secretAt))) : undefined,
    rss: rssSeries.map((x) => ({ t: x.at - t0, mib: x.kb / 1024 })),
    rssLimitMiB: 80,
    phases: phaseSpans.map((p) => ({ name: p.name, startMs: p.start - t0, endMs: p.end - t0 })),
  });
  writeFileSync(path.join(OUT_DIR, 'chart.svg'), svg);
  log(`wrote ${path.relative(REPO_ROOT, OUT_DIR)}/{table.txt,result.json,chart.svg}`);
}

main().then(
  (code) => process.exit(code),
  async (err: unknown) => {
    log(`benchmark failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    await cleanup();
    process.exit(1);
  },
);
