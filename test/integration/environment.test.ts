// Proof that the environment is real: a kube-apiserver that establishes our CRDs and enforces RBAC, a controller
// manager that garbage-collects and deletes namespaces, and a PostgreSQL that refuses a wrong password.
import assert from 'node:assert/strict';
import { createNamespace, deleteNamespaceAndWait, loginError, queryAs, testEnv, waitFor, type TestEnv } from './harness.js';

describe('local environment', function () {
  this.timeout(180_000);
  let env: TestEnv;
  let ns: string;

  before(async function () {
    this.timeout(600_000);
    env = await testEnv();
    ns = await createNamespace(env, 'env');
  });

  it('establishes the three CRDs from crds/', async () => {
    const out = await env.kubectl(['get', 'crd', '-o',
      'jsonpath={range .items[?(@.spec.group=="dbcred.dev")]}{.metadata.name}={.status.conditions[?(@.type=="Established")].status}{"\\n"}{end}']);
    const established = out.trim().split('\n').sort();
    assert.deepEqual(established, [
      'databaseconfigs.dbcred.dev=True',
      'databasecredentials.dbcred.dev=True',
      'databaseroles.dbcred.dev=True',
    ]);
  });

  it('garbage-collects an object whose owner is deleted', async () => {
    const owner = await env.core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: 'owner' } } });
    await env.core.createNamespacedSecret({
      namespace: ns,
      body: {
        metadata: {
          name: 'dependent',
          ownerReferences: [{ apiVersion: 'v1', kind: 'ConfigMap', name: 'owner', uid: owner.metadata!.uid!, controller: true, blockOwnerDeletion: true }],
        },
        stringData: { k: 'v' },
      },
    });
    await env.core.deleteNamespacedConfigMap({ namespace: ns, name: 'owner' });
    await waitFor('the dependent Secret to be collected', async () => {
      try {
        await env.core.readNamespacedSecret({ namespace: ns, name: 'dependent' });
        return false;
      } catch (err) {
        return (err as { code?: number }).code === 404;
      }
    }, { timeoutMs: 90_000, intervalMs: 500 });
  });

  it('deletes a namespace with its contents', async () => {
    const doomed = await createNamespace(env, 'doomed');
    await env.core.createNamespacedConfigMap({ namespace: doomed, body: { metadata: { name: 'x' } } });
    await deleteNamespaceAndWait(env, doomed);
  });

  it('issues ServiceAccount tokens and enforces RBAC on them', async () => {
    await env.kubectl(['-n', ns, 'create', 'serviceaccount', 'reader']);
    const token = (await env.kubectl(['-n', ns, 'create', 'token', 'reader', '--duration', '10m'])).trim();
    assert.match(token, /^ey/);
    const asReader = (args: string[]) => env.kubectl(['--token', token, '-n', ns, ...args]);
    await assert.rejects(asReader(['get', 'secrets']), /forbidden/i);
    await env.kubectl(['-n', ns, 'create', 'role', 'secret-reader', '--verb=list', '--resource=secrets']);
    await env.kubectl(['-n', ns, 'create', 'rolebinding', 'reader', '--role=secret-reader', `--serviceaccount=${ns}:reader`]);
    await waitFor('the RoleBinding to take effect', async () => {
      await asReader(['get', 'secrets']);
      return true;
    }, { timeoutMs: 30_000 });
    await assert.rejects(asReader(['delete', 'secret', 'anything']), /forbidden/i);
  });

  it('PostgreSQL refuses a wrong password and accepts the right one', async () => {
    const conn = env.postgres.connection;
    assert.equal(await loginError({ ...conn, password: `${conn.password}x` }), '28P01');
    const res = await queryAs(conn, 'SELECT current_user AS u, version() AS v');
    assert.equal(res.rows[0].u, 'postgres');
    assert.match(res.rows[0].v, /^PostgreSQL 1[5-9]/);
  });

  it('PostgreSQL serves TLS with the environment CA (host name verified), and plaintext too', async () => {
    const sslOf = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";
    for (const host of ['127.0.0.1', 'localhost']) {
      const tls = await queryAs({ ...env.postgres.connection, host, ssl: { ca: env.postgres.caPem, rejectUnauthorized: true } } as never, sslOf);
      assert.equal(tls.rows[0].ssl, true, host);
    }
    assert.equal((await queryAs(env.postgres.connection, sslOf)).rows[0].ssl, false);
  });

  it('PostgreSQL can be stopped and restarted by a test', async () => {
    await env.postgres.stop();
    assert.equal(await loginError(env.postgres.connection), 'ECONNREFUSED');
    await env.postgres.start();
    assert.equal(await loginError(env.postgres.connection), undefined);
  });
});
