// Deleting a namespace that holds everything (root and CA Secrets, config, role, credentials) must revoke every
// role even when the operator is not running at that moment: the namespace controller deletes the Secrets at once,
// and a new operator process has no pool in memory. The dbcred.dev/in-use finalizer keeps them for it.
import assert from 'node:assert/strict';
import type { DatabaseConfig, DatabaseCredential, DatabaseRole } from '../../src/api/types.js';
import { assertNoViolations } from '../audit/auditor.js';
import { createNamespace, deleteNamespaceAndWait, loginError, queryAs, testEnv, waitFor, type TestEnv, roleExists as roleExistsOn } from './harness.js';
import {
  OperatorProcess,
  apply,
  connectionFromSecret,
  credentialObject,
  getObject,
  platformObjects,
  readSecretData,
  waitForCondition,
} from './operator.js';

const IN_USE = 'dbcred.dev/in-use';

describe('namespace deletion and the in-use finalizer on root Secrets', function () {
  this.timeout(240_000);
  let env: TestEnv;
  let operator: OperatorProcess | undefined;

  const roleExists = (username: string) => roleExistsOn(env.postgres.connection, username);
  const finalizersOf = async (namespace: string, name: string): Promise<string[] | undefined> => {
    try {
      return (await env.core.readNamespacedSecret({ namespace, name })).metadata?.finalizers ?? [];
    } catch (err) {
      if ((err as { code?: number }).code === 404) return undefined;
      throw err;
    }
  };

  /** Config, role and root Secret (plus a CA Secret the config references) in ns; a Ready credential; its login. */
  async function platformWithCredential(ns: string, withCA: boolean) {
    const objects = platformObjects(env);
    if (withCA) {
      const config = objects[1] as DatabaseConfig;
      config.spec.caSecretRef = { name: 'pg-ca' };
      // sslmode=disable: the CA is read (it must exist) but not used, so any PEM-looking text does.
      objects.unshift({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'pg-ca' }, stringData: { 'ca.crt': '-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n' } });
    }
    await apply(env, ns, objects);
    await waitForCondition<DatabaseRole>(env, 'databaseroles', ns, 'reader', 'Ready', 'True');
    await apply(env, ns, [credentialObject('app', { roleRef: { name: 'reader' } })]);
    const cred = await waitForCondition<DatabaseCredential>(env, 'databasecredentials', ns, 'app', 'Ready', 'True');
    const data = await readSecretData(env, ns, cred.status?.secretName ?? 'app');
    assert.ok(data, 'the credential Secret exists');
    assert.equal(await loginError(connectionFromSecret(data)), undefined, 'the issued login works');
    return { username: cred.status?.username ?? '', data };
  }

  before(async function () {
    this.timeout(600_000);
    env = await testEnv();
  });

  const namespaces: string[] = [];

  afterEach(async () => {
    await operator?.stop();
    operator = undefined;
  });

  after(async function () {
    this.timeout(120_000);
    // Deleted namespaces leave nothing behind: no marked role, no stuck object (the operator is stopped by now,
    // so this is a final verdict, not something it could still fix).
    if (env && namespaces.length) await assertNoViolations(env, { namespaces });
  });

  it('revokes every role when the namespace was deleted while the operator was down', async () => {
    const ns = await createNamespace(env, 'nsdown');
    namespaces.push(ns);
    operator = new OperatorProcess(env);
    operator.start();
    await operator.waitReady();
    // The config is Ready (the credential is): whatever it must keep for revocation is in place by now.
    const { username, data } = await platformWithCredential(ns, true);
    await operator.kill();
    await env.core.deleteNamespace({ name: ns });
    // The namespace controller has been through the namespace: the credential is being deleted, the Secrets are
    // gone or (with the fix) held by the finalizer.
    await waitFor('the namespace controller to delete the contents', async () => {
      const cred = await getObject<DatabaseCredential>(env, 'databasecredentials', ns, 'app');
      const root = await env.core.readNamespacedSecret({ namespace: ns, name: 'pg-root' }).catch(() => undefined);
      return !!cred?.metadata.deletionTimestamp && (!root || !!root.metadata?.deletionTimestamp);
    }, { timeoutMs: 60_000, intervalMs: 250 });
    assert.equal(await loginError(connectionFromSecret(data)), undefined, 'nothing revoked the login while the operator was down');

    operator = new OperatorProcess(env);
    operator.start();
    await operator.waitReady();
    await waitFor(`namespace ${ns} to disappear`, async () => {
      try {
        await env.core.readNamespace({ name: ns });
        return false;
      } catch (err) {
        return (err as { code?: number }).code === 404;
      }
    }, { timeoutMs: 150_000, intervalMs: 500 });
    assert.equal(await loginError(connectionFromSecret(data)), '28P01', 'the issued login no longer works');
    assert.equal(await roleExists(username), false, `${username} is gone from pg_roles`);
  });

  it('revokes every role when the namespace is deleted with the operator running', async () => {
    const ns = await createNamespace(env, 'nsup');
    namespaces.push(ns);
    operator = new OperatorProcess(env);
    operator.start();
    await operator.waitReady();
    const { username, data } = await platformWithCredential(ns, true);
    await deleteNamespaceAndWait(env, ns);
    assert.equal(await loginError(connectionFromSecret(data)), '28P01');
    assert.equal(await roleExists(username), false);
  });

  it('holds only the Secrets a config references, and lets go of one that is no longer referenced or being deleted', async () => {
    const ns = await createNamespace(env, 'inuse');
    operator = new OperatorProcess(env);
    operator.start();
    await operator.waitReady();
    const [rootSecret, config] = platformObjects(env) as [{ stringData: object }, DatabaseConfig];
    await apply(env, ns, [
      { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'root-a' }, stringData: rootSecret.stringData },
      { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'root-b' }, stringData: rootSecret.stringData },
      { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'unrelated' }, stringData: { x: 'y' } },
      { ...config, spec: { ...config.spec, rootCredentialsSecretRef: { name: 'root-a' } } },
    ]);
    await waitForCondition<DatabaseConfig>(env, 'databaseconfigs', ns, 'pg', 'Ready', 'True');
    await waitFor('root-a held', async () => (await finalizersOf(ns, 'root-a'))?.includes(IN_USE) === true, { timeoutMs: 30_000, intervalMs: 200 });
    assert.deepEqual(await finalizersOf(ns, 'root-b'), [], 'an unreferenced Secret gets no finalizer');
    assert.deepEqual(await finalizersOf(ns, 'unrelated'), []);

    // The reference moves to root-b: root-b is held, root-a let go.
    await apply(env, ns, [{ ...config, spec: { ...config.spec, rootCredentialsSecretRef: { name: 'root-b' } } }]);
    await waitFor('root-b held and root-a released', async () =>
      (await finalizersOf(ns, 'root-b'))?.includes(IN_USE) === true && (await finalizersOf(ns, 'root-a'))?.includes(IN_USE) === false,
    { timeoutMs: 30_000, intervalMs: 200 });
    const status = (await getObject<DatabaseConfig>(env, 'databaseconfigs', ns, 'pg'))?.status;
    assert.deepEqual(status?.secretsInUse, ['root-b']);

    // No credential holds a role through the config: deleting its root Secret is not blocked.
    await env.kubectl(['-n', ns, 'delete', 'secret', 'root-b', '--wait=true', '--timeout=60s']);
    assert.equal(await finalizersOf(ns, 'root-b'), undefined, 'root-b is gone');
    await waitForCondition<DatabaseConfig>(env, 'databaseconfigs', ns, 'pg', 'Ready', 'False', 'SecretNotFound');
    await deleteNamespaceAndWait(env, ns);
  });
});
