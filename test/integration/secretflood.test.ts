// Issue 8, finding 3: anyone who can create a Secret can put the label app.kubernetes.io/managed-by=dbcred-operator
// on it. The operator must not cache such Secrets' data: here a namespace fills with large labelled Secrets that
// none of our kinds own, while the operator runs with a small heap. It must stay up (no exit, /healthz), keep
// issuing credentials, start again with those Secrets present (its first list), and its memory must not grow by
// their size.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { DatabaseConfig, DatabaseRole } from '../../src/api/types.js';
import { httpGet } from '../env/controlplane.js';
import { freePort } from '../env/processes.js';
import { assertNoViolations } from '../audit/auditor.js';
import { createNamespace, deleteNamespaceAndWait, loginError, testEnv, type TestEnv } from './harness.js';
import { OperatorProcess, apply, connectionFromSecret, credentialObject, platformObjects, readSecretData, waitForCondition } from './operator.js';

/** The operator's old-space limit here: what it needs to run, well below what the Secrets below hold. */
const HEAP_MB = 64;
const FLOOD_SECRETS = 48;
const SECRET_BYTES = 900 * 1024;
/** What the Secrets hold as the API server sends them (base64), the size a cache of their data would reach. */
const FLOOD_BYTES = FLOOD_SECRETS * Math.ceil(SECRET_BYTES / 3) * 4;

interface Memory {
  heapUsed: number;
  rss: number;
}

function metric(text: string, name: string): number {
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  assert.ok(m, `metric ${name} is served`);
  return Number(m[1]);
}

describe('labelled Secrets that are not ours: a metadata-only cache (issue 8, finding 3)', function () {
  this.timeout(300_000);
  let env: TestEnv;
  let ns: string;
  let flood: string;
  let port: number;
  let operator: OperatorProcess;
  /** Memory of the operator before any of the Secrets existed. */
  let baseline: Memory;

  /** The smallest heap seen over a few samples (after a GC, roughly what is live), and the largest RSS. */
  async function memory(): Promise<Memory> {
    let heapUsed = Infinity;
    let rss = 0;
    for (let i = 0; i < 6; i++) {
      const { status, body } = await httpGet(`http://127.0.0.1:${port}/metrics`);
      assert.equal(status, 200);
      heapUsed = Math.min(heapUsed, metric(body, 'nodejs_heap_size_used_bytes'));
      rss = Math.max(rss, metric(body, 'process_resident_memory_bytes'));
      await new Promise((r) => setTimeout(r, 500));
    }
    return { heapUsed, rss };
  }

  function startOperator(): OperatorProcess {
    const op = new OperatorProcess(env, { HEALTH_PORT: String(port), NODE_OPTIONS: `--max-old-space-size=${HEAP_MB}` });
    op.start();
    return op;
  }

  function outOfMemory(op: OperatorProcess): string {
    const oom = /FATAL ERROR[^\n]*|JavaScript heap out of memory/.exec(op.output);
    return oom ? `it ran out of memory: "${oom[0]}"` : 'no out-of-memory in its output';
  }

  async function assertAlive(op: OperatorProcess): Promise<void> {
    assert.ok(op.running, `the operator is still running; ${outOfMemory(op)}`);
    assert.equal((await httpGet(`http://127.0.0.1:${port}/healthz`)).status, 200);
  }

  async function issues(name: string): Promise<void> {
    await apply(env, ns, [credentialObject(name, { roleRef: { name: 'reader' } })]);
    await waitForCondition(env, 'databasecredentials', ns, name, 'Ready', 'True', undefined, 60_000).catch((err: Error) => {
      throw new Error(`${err.message}\n  the operator ${operator.running ? 'is running' : 'has ended'}; ${outOfMemory(operator)}`);
    });
    const data = await readSecretData(env, ns, name);
    assert.ok(data, `Secret ${name} exists`);
    assert.equal(await loginError(connectionFromSecret(data)), undefined, `${name} logs in`);
  }

  function assertNotGrownByTheData(now: Memory): void {
    const mib = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;
    const heapGrowth = now.heapUsed - baseline.heapUsed;
    const rssGrowth = now.rss - baseline.rss;
    const report = `heap ${mib(baseline.heapUsed)} -> ${mib(now.heapUsed)}, RSS ${mib(baseline.rss)} -> ${mib(now.rss)}, for ${mib(FLOOD_BYTES)} of labelled Secrets`;
    console.log(`      memory: ${report}`);
    assert.ok(heapGrowth < FLOOD_BYTES / 4, `heap grew too much: ${report}`);
    assert.ok(rssGrowth < FLOOD_BYTES / 2, `RSS grew too much: ${report}`);
  }

  before(async function () {
    this.timeout(600_000);
    env = await testEnv();
    ns = await createNamespace(env, 'flood-creds');
    flood = await createNamespace(env, 'flood');
    port = await freePort();
    operator = startOperator();
    await operator.waitReady();
    await apply(env, ns, platformObjects(env));
    await waitForCondition<DatabaseConfig>(env, 'databaseconfigs', ns, 'pg', 'Ready', 'True');
    await waitForCondition<DatabaseRole>(env, 'databaseroles', ns, 'reader', 'Ready', 'True');
  });

  after(async function () {
    this.timeout(180_000);
    try {
      if (env && ns && operator.running) await assertNoViolations(env, { namespaces: [ns] });
    } finally {
      await operator?.stop();
      if (env && flood) await deleteNamespaceAndWait(env, flood);
    }
  });

  it('stays up and keeps issuing while large labelled Secrets it does not own pile up, without holding their data', async () => {
    await issues('before-flood');
    baseline = await memory();
    // A ConfigMap as the controller of some of them: owned, but not by one of our kinds.
    const owner = await env.core.createNamespacedConfigMap({ namespace: flood, body: { metadata: { name: 'owner' } } });
    for (let i = 0; i < FLOOD_SECRETS; i++) {
      const ownerReferences = i % 4 === 0 ? [{ apiVersion: 'v1', kind: 'ConfigMap', name: 'owner', uid: owner.metadata?.uid ?? '', controller: true }] : undefined;
      await env.core.createNamespacedSecret({
        namespace: flood,
        body: {
          metadata: { name: `big-${i}`, labels: { 'app.kubernetes.io/managed-by': 'dbcred-operator' }, ownerReferences },
          data: { blob: randomBytes(SECRET_BYTES).toString('base64') },
        },
      });
      if (!operator.running) break; // it died: no need to write the rest
    }
    await issues('during-flood');
    // Give the watch time to deliver every one of them before looking at memory.
    await new Promise((r) => setTimeout(r, 3_000));
    await assertAlive(operator);
    const after = await memory();
    assertNotGrownByTheData(after);
    assert.doesNotMatch(operator.output, /heap out of memory|Allocation failed/);
  });

  it('starts with those Secrets present (its first list), and issues', async () => {
    await operator.stop();
    operator = startOperator();
    await operator.waitReady().catch((err: Error) => {
      throw new Error(`${err.message}\n  the operator ${operator.running ? 'is running' : 'has ended'}; ${outOfMemory(operator)}`);
    });
    await issues('after-restart');
    await new Promise((r) => setTimeout(r, 2_000));
    await assertAlive(operator);
    assertNotGrownByTheData(await memory());
  });
});
