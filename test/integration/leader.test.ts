// Leader election against the real API server's Lease: expiry is judged on the operator's own clock from when
// it saw the record change (so a holder with a skewed clock is neither trusted forever nor overrun), and a leader
// that loses its Lease stops acting at once. Lease times are shortened through the settings to keep this quick.
import assert from 'node:assert/strict';
import * as k8s from '@kubernetes/client-node';
import { assertNoViolations } from '../audit/auditor.js';
import { createNamespace, loginError, testEnv, waitFor, type TestEnv } from './harness.js';
import { OperatorProcess, apply, connectionFromSecret, credentialObject, platformObjects, readSecretData, waitForCondition } from './operator.js';

const SHORT_LEASE = { LEASE_DURATION: '4s', RENEW_DEADLINE: '3s', RETRY_PERIOD: '500ms' };

describe('leader election', function () {
  this.timeout(180_000);
  let env: TestEnv;
  let ns: string;
  let leases: k8s.CoordinationV1Api;
  const operators: OperatorProcess[] = [];

  before(async function () {
    this.timeout(600_000);
    env = await testEnv();
    ns = await createNamespace(env, 'leader');
    leases = env.kc.makeApiClient(k8s.CoordinationV1Api);
  });

  after(async () => {
    for (const o of operators) await o.stop();
    // The deposed leader left its credential behind: a plain operator revokes it so that nothing leaks.
    const cleaner = operator({ WATCH_NAMESPACE: ns });
    await cleaner.waitReady();
    await env.kubectl(['delete', 'databasecredentials', '--all', '-n', ns, '--wait=true', '--timeout=60s']);
    try {
      await assertNoViolations(env, { namespaces: [ns] });
    } finally {
      await cleaner.stop();
    }
  });

  function operator(extraEnv: Record<string, string>): OperatorProcess {
    const o = new OperatorProcess(env, extraEnv);
    o.start();
    operators.push(o);
    return o;
  }

  const exited = (o: OperatorProcess) => o.exitCode !== null && o.exitCode !== undefined;
  const readLease = (name: string) => leases.readNamespacedLease({ namespace: ns, name });

  it('takes over a Lease whose holder stopped renewing although its renewTime lies an hour in the future (clock skew)', async () => {
    const name = 'skewed';
    const inAnHour = new k8s.V1MicroTime(Date.now() + 3_600_000);
    await leases.createNamespacedLease({
      namespace: ns,
      body: {
        metadata: { name },
        spec: { holderIdentity: 'ghost', leaseDurationSeconds: 4, acquireTime: inAnHour, renewTime: inAnHour, leaseTransitions: 5 },
      },
    });
    const o = operator({ ...SHORT_LEASE, LEADER_ELECT: 'true', POD_NAMESPACE: ns, LEASE_NAME: name, POD_NAME: 'op-after-ghost', WATCH_NAMESPACE: ns });
    await waitFor('the operator to take the abandoned Lease over', async () => o.output.includes('became leader'), {
      timeoutMs: 60_000,
      intervalMs: 250,
      failFast: () => (exited(o) ? `operator exited ${o.exitCode}: ${o.output.slice(-2000)}` : undefined),
    });
    const lease = await readLease(name);
    assert.equal(lease.spec?.holderIdentity, 'op-after-ghost');
    assert.equal(lease.spec?.leaseTransitions, 6, 'a change of holder is one more transition');
    await o.waitReady();
    await o.stop();
    assert.equal((await readLease(name)).spec?.holderIdentity ?? '', '', 'a clean shutdown releases the Lease');
  });

  it('a leader whose Lease another identity takes exits at once, without draining, and does not fight back', async () => {
    const name = 'stolen';
    const o = operator({ ...SHORT_LEASE, LEADER_ELECT: 'true', POD_NAMESPACE: ns, LEASE_NAME: name, POD_NAME: 'op-victim', WATCH_NAMESPACE: ns });
    await o.waitReady();
    // It acts while it leads.
    await apply(env, ns, platformObjects(env));
    await apply(env, ns, [credentialObject('while-leading', { roleRef: { name: 'reader' } })]);
    await waitForCondition(env, 'databasecredentials', ns, 'while-leading', 'Ready', 'True');
    const data = await readSecretData(env, ns, 'while-leading');
    assert.ok(data);
    assert.equal(await loginError(connectionFromSecret(data)), undefined);

    // Another identity writes the Lease with a fresh renewTime, again and again, as a live leader would.
    let usurperWrites = 0;
    const usurp = async () => {
      const lease = await readLease(name);
      const now = new k8s.V1MicroTime(Date.now());
      lease.spec = { ...lease.spec, holderIdentity: 'usurper', renewTime: now, leaseDurationSeconds: 4 };
      await leases.replaceNamespacedLease({ namespace: ns, name, body: lease });
      usurperWrites++;
    };
    await waitFor('the deposed leader to exit', async () => {
      await usurp().catch(() => undefined); // a 409 means the victim wrote in between: try again
      return exited(o);
    }, { timeoutMs: 60_000, intervalMs: 300 });
    assert.ok(usurperWrites > 0);
    assert.equal(o.exitCode, 1);

    const lines = o.output.split('\n').filter((l) => l.trim() !== '');
    const lost = lines.findIndex((l) => l.includes('"message":"lost leadership"'));
    assert.ok(lost >= 0, `it said why it stopped: ${o.output.slice(-1500)}`);
    // Nothing after that line: no graceful drain that keeps reconciling, no release of a Lease it no longer holds.
    assert.deepEqual(lines.slice(lost + 1), [], 'it stopped at once');
    assert.equal((await readLease(name)).spec?.holderIdentity, 'usurper', 'the deposed leader did not write the Lease back');
  });
});
