// The invariant auditor against the real environment: it passes a healthy namespace, and it names the objects
// when the world is broken behind the operator's back (the operator stopped, so nobody repairs anything): a Ready
// credential whose role was dropped, a leaked marked role, a rotating credential marked Expired, a deletion stuck
// on its finalizer. Every other integration suite ends with this auditor; this suite proves it can fail.
import assert from 'node:assert/strict';
import type { DatabaseCredential, DatabaseRole } from '../../src/api/types.js';
import { assertNoViolations, audit, markedRoles } from '../audit/auditor.js';
import { createNamespace, deleteNamespaceAndWait, queryAs, testEnv, type TestEnv } from './harness.js';
import { OperatorProcess, apply, credentialObject, platformObjects, waitForCondition } from './operator.js';

describe('invariant auditor', function () {
  this.timeout(180_000);
  let env: TestEnv;
  let ns: string;
  let operator: OperatorProcess;
  const planted = `v-planted-${process.pid}`;
  let operatorStopped = false;

  before(async function () {
    this.timeout(600_000);
    env = await testEnv();
    ns = await createNamespace(env, 'audit');
    operator = new OperatorProcess(env);
    operator.start();
    await operator.waitReady();
    await apply(env, ns, platformObjects(env));
    await waitForCondition<DatabaseRole>(env, 'databaseroles', ns, 'reader', 'Ready', 'True');
  });

  after(async function () {
    this.timeout(180_000);
    try {
      await queryAs(env.postgres.connection, `DROP ROLE IF EXISTS "${planted}"`).catch(() => undefined);
      if (operatorStopped) {
        operator.start();
        await operator.waitReady();
      }
      if (ns) await deleteNamespaceAndWait(env, ns);
    } finally {
      await operator?.stop();
    }
  });

  it('finds nothing wrong in a healthy namespace', async () => {
    await apply(env, ns, [credentialObject('app', { roleRef: { name: 'reader' } }), credentialObject('other', { roleRef: { name: 'reader' } })]);
    await waitForCondition(env, 'databasecredentials', ns, 'app', 'Ready', 'True');
    await waitForCondition(env, 'databasecredentials', ns, 'other', 'Ready', 'True');
    await assertNoViolations(env, { namespaces: [ns] });
  });

  it('names the credential, the role and the stuck object for each broken invariant', async () => {
    const app = await waitForCondition<DatabaseCredential>(env, 'databasecredentials', ns, 'app', 'Ready', 'True');
    const username = app.status?.username ?? '';
    await operator.stop(); // nobody repairs anything from here on
    operatorStopped = true;
    // A role dropped behind the operator's back: the Ready credential's Secret no longer logs in.
    await queryAs(env.postgres.connection, `DROP ROLE "${username}"`);
    // A marked role no credential lists: leaked.
    await queryAs(env.postgres.connection,
      `CREATE ROLE "${planted}" LOGIN; COMMENT ON ROLE "${planted}" IS 'dbcred:{"namespace":"${ns}","name":"ghost","uid":"00000000-0000-0000-0000-000000000000"}'`);
    // A rotating credential said to be Expired.
    await env.kubectl(['-n', ns, 'patch', 'databasecredential', 'other', '--subresource=status', '--type=merge', '-p', JSON.stringify({
      status: { conditions: [{ type: 'Expired', status: 'True', reason: 'TTLExpired', message: 'planted', lastTransitionTime: new Date().toISOString().replace(/\.\d+Z$/, 'Z') }] },
    })]);
    // A deletion that nobody finishes (the finalizer stays while the operator is down).
    await env.kubectl(['-n', ns, 'delete', 'databasecredential', 'other', '--wait=false']);

    const violations = await audit(env, { namespaces: [ns], quietPeriodMs: 0 });
    const found = violations.map((v) => `${v.invariant} ${v.objects.join(' ')}`).sort();
    assert.ok(found.includes(`ready-secret-logs-in ${ns}/app ${ns}/app role "${username}"`), found.join('\n'));
    assert.ok(found.includes(`marked-role-listed role "${planted}" ${ns}/ghost`), found.join('\n'));
    assert.ok(found.includes(`rotating-never-expires ${ns}/other`), found.join('\n'));
    assert.ok(found.includes(`no-stuck-deletion ${ns}/other`), found.join('\n'));
    assert.ok(violations.every((v) => !/password/i.test(v.message)), 'no violation mentions a password');
    await assert.rejects(assertNoViolations(env, { namespaces: [ns], quietPeriodMs: 0, settleMs: 0 }), (err: Error) => {
      assert.match(err.message, /invariant auditor: \d+ violation\(s\) in /);
      assert.match(err.message, new RegExp(`role "${planted}"`));
      return true;
    });
    assert.deepEqual((await markedRoles(env, [ns])).map((m) => m.username).includes(planted), true);
  });
});
