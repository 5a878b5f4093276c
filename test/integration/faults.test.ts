// Faults the operator must ride out without a restart: the API server going away (every watch and request
// fails, then must resume) and PostgreSQL restarting under its pools.
import assert from 'node:assert/strict';
import type { DatabaseCredential, DatabaseRole } from '../../src/api/types.js';
import { loginError, waitFor, type TestEnv } from './harness.js';
import { operatorSuite } from './suite.js';
import { OperatorProcess, apply, connectionFromSecret, credentialObject, platformObjects, readSecretData, waitForCondition } from './operator.js';

describe('faults', function () {
  this.timeout(180_000);
  let env: TestEnv;
  let ns: string;
  let operator: OperatorProcess;

  const issuedLogin = async (name: string) => {
    await waitForCondition<DatabaseCredential>(env, 'databasecredentials', ns, name, 'Ready', 'True', undefined, 90_000);
    const data = await readSecretData(env, ns, name);
    assert.ok(data);
    return data;
  };

  operatorSuite('faults', {}, (suite) => ({ env, ns, operator } = suite));

  it('resumes its watches after the API server was down, and keeps issuing and revoking', async function () {
    if (!env.restartApiServer) this.skip(); // only the embedded control plane can be stopped by a test
    await apply(env, ns, [credentialObject('before-outage', { roleRef: { name: 'reader' } })]);
    const before = await issuedLogin('before-outage');
    await env.restartApiServer(5_000);
    assert.equal(operator.exitCode, null, 'the operator is still running');
    await apply(env, ns, [credentialObject('after-outage', { roleRef: { name: 'reader' } })]);
    const after = await issuedLogin('after-outage');
    assert.equal(await loginError(connectionFromSecret(after)), undefined);
    await env.kubectl(['-n', ns, 'delete', 'databasecredential', 'before-outage', '--wait=true', '--timeout=90s']);
    assert.equal(await loginError(connectionFromSecret(before)), '28P01', 'the deletion after the outage revoked the role');
    assert.match(operator.output, /watch failed; retrying/, 'the outage was noticed');
  });

  it('reconnects to PostgreSQL after it restarted', async () => {
    await env.postgres.restart();
    await apply(env, ns, [credentialObject('after-pg-restart', { roleRef: { name: 'reader' } })]);
    const data = await issuedLogin('after-pg-restart');
    assert.equal(await loginError(connectionFromSecret(data)), undefined);
    await waitFor('the operator to stay up', async () => operator.exitCode === null, { timeoutMs: 1000 });
  });
});
