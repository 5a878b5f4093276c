// BENCH_SCALE=K: the operator holding K credentials (ttl 1h). Measures what the burst cannot: heap and RSS per
// credential held, the API traffic of an idle steady state against the renewals actually due, and a restart at
// scale — time back to steady state, API requests per credential, PostgreSQL role rows changed, status and Secret
// rewrites, re-issued logins — and whether the operator's lists were served from the API server's watch cache.
import * as k8s from '@kubernetes/client-node';
import https from 'node:https';
import type pg from 'pg';
import { GROUP, VERSION, type DatabaseCredential } from '../../src/api/types.js';
import { OperatorUnderTest, countsDelta, sumMetric, totalOf } from './processes.js';
import { mapLimit, sleep } from './stats.js';

export interface ScaleDeps {
  kc: k8s.KubeConfig;
  custom: k8s.CustomObjectsApi;
  pgAdmin: pg.Pool;
  namespace: string;
  plural: string;
  roleName: string;
  concurrency: number;
  /** The operator now; restart() replaces it and resolves once the new one answers /readyz. */
  operator: () => OperatorUnderTest;
  restart: () => Promise<OperatorUnderTest>;
  createCredential: (name: string, spec: Record<string, unknown>) => Promise<void>;
  /** Whether a credential has its Secret and Ready=True (from the benchmark's watches). */
  isIssued: (name: string) => boolean;
  /** Writes seen by the benchmark's watches so far (MODIFIED events). */
  writesSeen: () => { credentials: number; secrets: number };
  /** Heap snapshot of the operator: live bytes (after V8's own GC). */
  heapLiveBytes: (label: string) => Promise<number>;
  rssKb: () => number;
  log: (msg: string) => void;
  failures: string[];
}

export interface ScaleResult {
  target: number;
  created: number;
  issueSeconds: number;
  held: number;
  heapLiveMiBBefore: number;
  heapLiveMiBAfter: number;
  heapBytesPerCredential: number;
  rssMiBBefore: number;
  rssMiBAfter: number;
  steady: { seconds: number; apiRequests: Record<string, number>; requestsPerSecond: number; renewalsDue: number; credentialWrites: number; secretWrites: number };
  restart: {
    readySeconds: number;
    steadySeconds: number;
    apiRequests: Record<string, number>;
    requestsPerCredential: number;
    reconciles: number;
    credentialWrites: number;
    secretWrites: number;
    roleRowsChanged: number;
    reissued: number;
    rssMiBAfter: number;
    /** The restarted operator's own account of its memory (prom-client), MiB. */
    memory: Record<string, number>;
  };
  lists: { fromCache: number; etcdObjects: number; fallbacks: number };
}

const STEADY_S = Number(process.env.BENCH_STEADY_S ?? 60);

/** GET a path of the API server with the kubeconfig's credentials (for /metrics). */
export async function apiServerGet(kc: k8s.KubeConfig, path: string): Promise<string> {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error('kubeconfig has no current cluster');
  const url = new URL(path, cluster.server);
  const opts: https.RequestOptions = { method: 'GET', hostname: url.hostname, port: url.port, path: url.pathname };
  await kc.applyToHTTPSOptions(opts);
  return new Promise((resolve, reject) => {
    const req = https.request(opts, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`${path} answered ${res.statusCode}`))));
    });
    req.on('error', reject);
    req.end();
  });
}

/**
 * Lists of our credentials and of Secrets that the API server answered from its watch cache, and the objects its
 * lists read from etcd for them. (A consistent list served from the cache still asks etcd for the current
 * revision, which apiserver_storage_list_total counts; the objects themselves come from the cache.)
 */
async function listCounts(kc: k8s.KubeConfig): Promise<{ fromCache: number; etcdObjects: number; fallbacks: number }> {
  const text = await apiServerGet(kc, '/metrics');
  const ours = [
    { group: 'dbcred.dev', resource: 'databasecredentials' },
    { group: '', resource: 'secrets' },
  ];
  let fromCache = 0;
  let etcdObjects = 0;
  let fallbacks = 0;
  for (const r of ours) {
    fromCache += sumMetric(text, 'apiserver_cache_list_total', r);
    etcdObjects += sumMetric(text, 'apiserver_storage_list_fetched_objects_total', r);
    fallbacks += sumMetric(text, 'apiserver_watch_cache_consistent_read_total', { ...r, fallback: 'true' });
  }
  return { fromCache, etcdObjects, fallbacks };
}

/** The operator's marked roles with the transaction id that last wrote each pg_authid row (any ALTER changes it). */
async function roleRows(pool: pg.Pool): Promise<Map<string, string>> {
  const res = await pool.query<{ rolname: string; x: string }>(
    `SELECT a.rolname, a.xmin::text AS x FROM pg_authid a JOIN pg_shdescription d ON d.objoid = a.oid AND d.classoid = 'pg_authid'::regclass WHERE d.description LIKE 'dbcred:%'`,
  );
  return new Map(res.rows.map((r) => [r.rolname, r.x]));
}

async function credentials(d: ScaleDeps): Promise<DatabaseCredential[]> {
  const out: DatabaseCredential[] = [];
  let cont: string | undefined;
  do {
    const page = (await d.custom.listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: d.namespace, plural: d.plural, limit: 500, _continue: cont })) as {
      items: DatabaseCredential[];
      metadata: { continue?: string };
    };
    out.push(...page.items);
    cont = page.metadata.continue || undefined;
  } while (cont);
  return out;
}

/** Waits until the operator's credential queue is empty and idle and its reconcile count has not moved for quietMs. */
async function untilQuiet(op: OperatorUnderTest, minReconciles: number, timeoutMs: number, quietMs = 2000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  let last = -1;
  let since = Date.now();
  while (Date.now() < deadline) {
    const done = await op.metric('dbcred_reconcile_total', { controller: 'databasecredential' });
    const depth = await op.metric('dbcred_workqueue_depth', { controller: 'databasecredential' });
    const busy = await op.metric('dbcred_workqueue_in_flight', { controller: 'databasecredential' });
    if (done !== last) [last, since] = [done, Date.now()];
    if (done >= minReconciles && depth === 0 && busy === 0 && Date.now() - since >= quietMs) return true;
    await sleep(100);
  }
  return false;
}

export async function runScale(d: ScaleDeps, target: number, held: number): Promise<ScaleResult> {
  const toCreate = Math.max(0, target - held);
  const names = Array.from({ length: toCreate }, (_, i) => `s-${String(i).padStart(5, '0')}`);
  const heapBefore = await d.heapLiveBytes(`holding ${held}`);
  const rssBefore = d.rssKb();

  // ---- fill up to the target ----
  d.log(`scale: creating ${toCreate} credentials (ttl 1h) to hold ${target}`);
  const t0 = Date.now();
  await mapLimit(names, d.concurrency, (name) => d.createCredential(name, { roleRef: { name: d.roleName }, ttl: '1h' }));
  const deadline = Date.now() + 300_000 + toCreate * 200;
  while (!names.every(d.isIssued)) {
    if (Date.now() > deadline) {
      d.failures.push(`scale: ${names.filter((n) => !d.isIssued(n)).length} of ${toCreate} credentials not issued in time`);
      break;
    }
    if (!d.operator().running) throw new Error(`the operator exited:\n${d.operator().lastOutput()}`);
    await sleep(250);
  }
  const issueSeconds = (Date.now() - t0) / 1000;
  await untilQuiet(d.operator(), 0, 60_000);
  // RSS first: writing a heap snapshot grows the process for a while.
  const rssAfter = d.rssKb();
  const heapAfter = await d.heapLiveBytes(`holding ${held + toCreate}`);
  const all = await credentials(d);

  // ---- steady state: an idle minute at `all.length` credentials ----
  d.log(`scale: ${all.length} credentials held; watching an idle ${STEADY_S} s`);
  const req0 = await d.operator().apiRequests();
  const w0 = d.writesSeen();
  const s0 = Date.now();
  await sleep(STEADY_S * 1000);
  const s1 = Date.now();
  const steadyReq = countsDelta(req0, await d.operator().apiRequests());
  const renewalsDue = all.filter((c) => {
    const at = Date.parse(c.status?.renewAt ?? '');
    return at >= s0 && at < s1;
  }).length;
  const w1 = d.writesSeen();

  // ---- restart at scale ----
  d.log('scale: restarting the operator');
  const rowsBefore = await roleRows(d.pgAdmin);
  const usersBefore = new Map(all.map((c) => [c.metadata.name, c.status?.username]));
  const lists0 = await listCounts(d.kc);
  const r0 = Date.now();
  const op = await d.restart();
  const readySeconds = (Date.now() - r0) / 1000;
  const quiet = await untilQuiet(op, all.length, 120_000);
  const steadySeconds = (Date.now() - r0) / 1000 - (quiet ? 2 : 0); // the quiet period itself is not work
  if (!quiet) d.failures.push(`scale: the restarted operator did not reach steady state (${all.length} reconciles, empty queue) in 120 s`);
  const restartReq = Object.fromEntries(await op.apiRequests());
  const reconciles = await op.metric('dbcred_reconcile_total', { controller: 'databasecredential' });
  await sleep(3000); // trailing writes, if any, reach the watches
  const w2 = d.writesSeen();
  const lists1 = await listCounts(d.kc);
  const rowsAfter = await roleRows(d.pgAdmin);
  let roleRowsChanged = 0;
  for (const [name, x] of rowsBefore) if (rowsAfter.get(name) !== x) roleRowsChanged++;
  for (const name of rowsAfter.keys()) if (!rowsBefore.has(name)) roleRowsChanged++;
  const after = await credentials(d);
  const reissued = after.filter((c) => usersBefore.get(c.metadata.name) !== c.status?.username).length;
  const requests = totalOf(new Map(Object.entries(restartReq)));
  const memory: Record<string, number> = {};
  for (const m of ['process_resident_memory_bytes', 'nodejs_heap_size_total_bytes', 'nodejs_heap_size_used_bytes', 'nodejs_external_memory_bytes']) {
    memory[m.replace(/^(process|nodejs)_/, '').replace(/_bytes$/, '')] = (await op.metric(m)) / 2 ** 20;
  }
  return {
    target,
    created: toCreate,
    issueSeconds,
    held: all.length,
    heapLiveMiBBefore: heapBefore / 2 ** 20,
    heapLiveMiBAfter: heapAfter / 2 ** 20,
    heapBytesPerCredential: toCreate ? (heapAfter - heapBefore) / toCreate : NaN,
    rssMiBBefore: rssBefore / 1024,
    rssMiBAfter: rssAfter / 1024,
    steady: {
      seconds: (s1 - s0) / 1000,
      apiRequests: steadyReq,
      requestsPerSecond: totalOf(new Map(Object.entries(steadyReq))) / ((s1 - s0) / 1000),
      renewalsDue,
      credentialWrites: w1.credentials - w0.credentials,
      secretWrites: w1.secrets - w0.secrets,
    },
    restart: {
      readySeconds,
      steadySeconds,
      apiRequests: restartReq,
      requestsPerCredential: requests / Math.max(1, all.length),
      reconciles,
      credentialWrites: w2.credentials - w1.credentials,
      secretWrites: w2.secrets - w1.secrets,
      roleRowsChanged,
      reissued,
      rssMiBAfter: d.rssKb() / 1024,
      memory,
    },
    lists: { fromCache: lists1.fromCache - lists0.fromCache, etcdObjects: lists1.etcdObjects - lists0.etcdObjects, fallbacks: lists1.fallbacks - lists0.fallbacks },
  };
}
