// The full capability set on top of issuing: renewal, rotation with overlap, rollout restarts, static roles,
// root rotation, username and password policies. Short TTLs, real API server, real PostgreSQL.
import assert from 'node:assert/strict';
import pg from 'pg';
import type { DatabaseConfig, DatabaseCredential, DatabaseRole } from '../../src/api/types.js';
import { assertNoViolations } from '../audit/auditor.js';
import { createNamespace, loginError, queryAs, testEnv, waitFor, type TestEnv, roleExists as roleExistsOn } from './harness.js';
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

describe('renewal, rotation, static roles, root rotation, policies', function () {
  this.timeout(120_000);
  let env: TestEnv;
  let ns: string;
  let operator: OperatorProcess;

  const validUntil = async (username: string) =>
    new Date((await queryAs(env.postgres.connection, `SELECT rolvaliduntil FROM pg_roles WHERE rolname = '${username}'`)).rows[0]?.rolvaliduntil);
  const roleExists = (username: string) => roleExistsOn(env.postgres.connection, username);
  const getCred = (name: string) => getObject<DatabaseCredential>(env, 'databasecredentials', ns, name);
  const secretOf = async (name: string) => {
    const data = await readSecretData(env, ns, name);
    assert.ok(data, `Secret ${name} exists`);
    return data;
  };

  before(async function () {
    this.timeout(600_000);
    env = await testEnv();
    ns = await createNamespace(env, 'life');
    operator = new OperatorProcess(env);
    operator.start();
    await operator.waitReady();
    await apply(env, ns, platformObjects(env, { role: 'short', roleExtra: { defaultTTL: '4s', maxTTL: '1h' } }));
    await apply(env, ns, platformObjects(env, { role: 'capped', roleExtra: { defaultTTL: '3s', maxTTL: '4s' } }).slice(2));
    await waitForCondition<DatabaseConfig>(env, 'databaseconfigs', ns, 'pg', 'Ready', 'True');
    await waitForCondition<DatabaseRole>(env, 'databaseroles', ns, 'short', 'Ready', 'True');
    await waitForCondition<DatabaseRole>(env, 'databaseroles', ns, 'capped', 'Ready', 'True');
  });

  after(async function () {
    this.timeout(120_000);
    try {
      // Before the operator stops: everything this suite left must satisfy the invariants of issue 7.
      if (env && ns) await assertNoViolations(env, { namespaces: [ns] });
    } finally {
      await operator?.stop();
    }
  });

  it('renews the lease before it ends without changing the Secret', async () => {
    await apply(env, ns, [credentialObject('renewed', { roleRef: { name: 'short' }, rotation: { renewalPercent: 50 } })]);
    const first = await waitForCondition<DatabaseCredential>(env, 'databasecredentials', ns, 'renewed', 'Ready', 'True');
    const before = await secretOf('renewed');
    const firstExpiry = new Date(first.status?.expiresAt ?? 0);
    await waitFor('a renewal', async () => new Date((await getCred('renewed'))?.status?.expiresAt ?? 0) > firstExpiry, { timeoutMs: 15_000, intervalMs: 100 });
    const renewed = await getCred('renewed');
    assert.equal(renewed?.status?.username, first.status?.username, 'same login');
    assert.deepEqual(await secretOf('renewed'), before, 'the Secret did not change');
    assert.ok(new Date(renewed?.status?.renewAt ?? 0) > new Date(first.status?.renewAt ?? 0), 'renewAt moved too');
    const until = await validUntil(before.username ?? '');
    assert.ok(until > firstExpiry, `VALID UNTIL was extended (${until.toISOString()} > ${firstExpiry.toISOString()})`);
    // Several renewals later it still logs in with the same Secret.
    await new Promise((r) => setTimeout(r, 5000));
    assert.equal(await loginError(connectionFromSecret(before)), undefined);
  });

  it('rotates when maxTTL stops renewal: both logins work during the grace period, the old one fails after', async () => {
    await apply(env, ns, [credentialObject('rotated', { roleRef: { name: 'capped' }, rotation: { renewalPercent: 50, gracePeriod: '4s' } })]);
    await waitForCondition<DatabaseCredential>(env, 'databasecredentials', ns, 'rotated', 'Ready', 'True');
    const oldData = await secretOf('rotated');
    await waitFor('a rotation', async () => (await readSecretData(env, ns, 'rotated'))?.username !== oldData.username, { timeoutMs: 15_000, intervalMs: 100 });
    const newData = await secretOf('rotated');
    assert.notEqual(newData.password, oldData.password);
    assert.equal(await loginError(connectionFromSecret(newData)), undefined, 'the new login works');
    assert.equal(await loginError(connectionFromSecret(oldData)), undefined, 'the old login still works during the grace period');
    const cred = await getCred('rotated');
    assert.deepEqual(cred?.status?.roles?.map((r) => r.state).sort(), ['active', 'retiring']);
    await waitFor('the old role to be revoked after the grace period', async () => !(await roleExists(oldData.username ?? '')), { timeoutMs: 15_000, intervalMs: 200 });
    assert.equal(await loginError(connectionFromSecret(oldData)), '28P01');
  });

  it('rotates on a new value of the dbcred.dev/rotate annotation and restarts the Deployment once', async () => {
    await env.kubectl(['-n', ns, 'create', 'deployment', 'api', '--image=registry.example/api:1']);
    await waitFor('the first ReplicaSet', async () => (await env.apps.listNamespacedReplicaSet({ namespace: ns, labelSelector: 'app=api' })).items.length === 1, { timeoutMs: 30_000 });
    await apply(env, ns, [credentialObject('annotated', { roleRef: { name: 'short' }, ttl: '1h', rolloutRestartTargets: [{ kind: 'Deployment', name: 'api' }] })]);
    const first = await waitForCondition<DatabaseCredential>(env, 'databasecredentials', ns, 'annotated', 'Ready', 'True');
    const oldData = await secretOf('annotated');
    const deploymentBefore = await env.apps.readNamespacedDeployment({ namespace: ns, name: 'api' });
    assert.equal(deploymentBefore.spec?.template.metadata?.annotations?.['dbcred.dev/restartedAt'], undefined, 'a first issue restarts nothing');

    await env.kubectl(['-n', ns, 'annotate', 'databasecredential', 'annotated', 'dbcred.dev/rotate=now-1']);
    await waitFor('a rotation', async () => (await getCred('annotated'))?.status?.username !== first.status?.username, { timeoutMs: 15_000, intervalMs: 100 });
    const rotated = await waitForCondition<DatabaseCredential>(env, 'databasecredentials', ns, 'annotated', 'Ready', 'True');
    const newData = await secretOf('annotated');
    assert.equal(newData.username, rotated.status?.username);
    assert.equal(await loginError(connectionFromSecret(newData)), undefined);
    assert.equal(await loginError(connectionFromSecret(oldData)), undefined, 'default grace (5m): the old login still works');

    await waitFor('the Deployment to be restarted', async () => {
      const d = await env.apps.readNamespacedDeployment({ namespace: ns, name: 'api' });
      const stamp = rotated.status?.roles?.find((r) => r.state === 'active')?.issuedAt;
      return stamp !== undefined && d.spec?.template.metadata?.annotations?.['dbcred.dev/restartedAt'] === stamp;
    }, { timeoutMs: 15_000 });
    await waitFor('a new ReplicaSet', async () => (await env.apps.listNamespacedReplicaSet({ namespace: ns, labelSelector: 'app=api' })).items.length === 2, { timeoutMs: 30_000 });

    // An operator restart does not restart the workload again for the same rotation.
    await operator.stop();
    operator.start();
    await operator.waitReady();
    await waitForCondition(env, 'databasecredentials', ns, 'annotated', 'Ready', 'True');
    await new Promise((r) => setTimeout(r, 2000));
    assert.equal((await env.apps.listNamespacedReplicaSet({ namespace: ns, labelSelector: 'app=api' })).items.length, 2);
    assert.equal((await getCred('annotated'))?.status?.username, rotated.status?.username, 'no second rotation either');
  });

  it('manages a static user: its password rotates and every referencing Secret follows', async () => {
    const user = `app_static_${process.pid}`;
    await queryAs(env.postgres.connection, `CREATE ROLE "${user}" LOGIN PASSWORD 'initial-password-1'; GRANT SELECT ON ALL TABLES IN SCHEMA public TO "${user}"`);
    await apply(env, ns, [{
      apiVersion: 'dbcred.dev/v1alpha1',
      kind: 'DatabaseRole',
      metadata: { name: 'static' },
      spec: { configRef: { name: 'pg' }, static: { username: user, rotationPeriod: '5s' } },
    }]);
    const role = await waitForCondition<DatabaseRole>(env, 'databaseroles', ns, 'static', 'Ready', 'True');
    assert.ok(role.status?.lastRotationTime);
    assert.equal(await loginError({ ...env.postgres.connection, user, password: 'initial-password-1' }), '28P01', 'rotated on first sight');
    await apply(env, ns, [
      credentialObject('static-a', { roleRef: { name: 'static' } }),
      credentialObject('static-b', { roleRef: { name: 'static' } }),
    ]);
    await waitForCondition(env, 'databasecredentials', ns, 'static-a', 'Ready', 'True');
    await waitForCondition(env, 'databasecredentials', ns, 'static-b', 'Ready', 'True');
    const a1 = await secretOf('static-a');
    assert.equal(a1.username, user);
    assert.equal((await secretOf('static-b')).password, a1.password);
    assert.equal(await loginError(connectionFromSecret(a1)), undefined);

    await waitFor('the next rotation to reach both Secrets', async () => {
      const [a, b] = [await readSecretData(env, ns, 'static-a'), await readSecretData(env, ns, 'static-b')];
      return a?.password !== a1.password && a?.password === b?.password;
    }, { timeoutMs: 20_000, intervalMs: 200 });
    const a2 = await secretOf('static-a');
    assert.equal(await loginError(connectionFromSecret(a2)), undefined, 'the new password logs in');
    assert.equal(await loginError(connectionFromSecret(a1)), '28P01', 'the old password fails');

    // Deleting a credential never drops the static user.
    await env.kubectl(['-n', ns, 'delete', 'databasecredential', 'static-a', '--wait=true', '--timeout=60s']);
    assert.equal(await roleExists(user), true);
  });

  const admin = `dbadmin_${process.pid}`;

  it('rotates the root password without losing it, and keeps issuing', async () => {
    await queryAs(env.postgres.connection, `CREATE ROLE "${admin}" LOGIN CREATEROLE PASSWORD 'root-password-1'`);
    const pg = env.postgres.connection;
    await apply(env, ns, [
      { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'admin-root' }, stringData: { username: admin, password: 'root-password-1' } },
      {
        apiVersion: 'dbcred.dev/v1alpha1',
        kind: 'DatabaseConfig',
        metadata: { name: 'rotating' },
        spec: {
          connectionURL: `postgresql://{{username}}:{{password}}@${pg.host}:${pg.port}/${pg.database}?sslmode=disable`,
          rootCredentialsSecretRef: { name: 'admin-root' },
          allowedRoles: ['plain'],
        },
      },
      {
        apiVersion: 'dbcred.dev/v1alpha1',
        kind: 'DatabaseRole',
        metadata: { name: 'plain' },
        spec: { configRef: { name: 'rotating' }, creationStatements: [`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';`] },
      },
    ]);
    await waitForCondition<DatabaseConfig>(env, 'databaseconfigs', ns, 'rotating', 'Ready', 'True');
    await env.kubectl(['-n', ns, 'annotate', 'databaseconfig', 'rotating', 'dbcred.dev/rotate-root=1']);
    await waitFor('lastRootRotationTime', async () => Boolean((await getObject<DatabaseConfig>(env, 'databaseconfigs', ns, 'rotating'))?.status?.lastRootRotationTime), { timeoutMs: 20_000 });
    let root = await secretOf('admin-root');
    // One request, one rotation: the root Secret's own change enqueues the config again at once, while the cache
    // may not show the answered request yet; the Secret records it (read live), so nothing rotates twice.
    await new Promise((r) => setTimeout(r, 3000));
    const again = await secretOf('admin-root');
    assert.equal(again.password, root.password, 'a single dbcred.dev/rotate-root value rotated the password twice');
    root = again;
    const rootSecret = await env.core.readNamespacedSecret({ namespace: ns, name: 'admin-root' });
    assert.equal(rootSecret.metadata?.annotations?.['dbcred.dev/root-rotate-request'], '1');
    assert.notEqual(root.password, 'root-password-1');
    assert.equal(root['password.pending'], undefined, 'the pending password was promoted');
    assert.equal(await loginError({ ...pg, user: admin, password: root.password ?? '' }), undefined, 'the Secret logs in');
    assert.equal(await loginError({ ...pg, user: admin, password: 'root-password-1' }), '28P01', 'the old root password fails');
    await waitForCondition<DatabaseConfig>(env, 'databaseconfigs', ns, 'rotating', 'Ready', 'True');
    await waitForCondition<DatabaseRole>(env, 'databaseroles', ns, 'plain', 'Ready', 'True');
    await apply(env, ns, [credentialObject('after-root', { roleRef: { name: 'plain' } })]);
    await waitForCondition(env, 'databasecredentials', ns, 'after-root', 'Ready', 'True');
    assert.equal(await loginError(connectionFromSecret(await secretOf('after-root'))), undefined);
  });

  it('finishes a root rotation interrupted before or after ALTER ROLE', async () => {
    const pg = env.postgres.connection;
    const rootData = async () => (await readSecretData(env, ns, 'admin-root')) ?? {};
    const addPending = (password: string) =>
      env.kubectl(['-n', ns, 'patch', 'secret', 'admin-root', '--type=merge', '-p', JSON.stringify({ stringData: { 'password.pending': password } })]);
    // Killed after recording the new password, before PostgreSQL changed: the old one still logs in.
    await addPending('Pending-before-alter-1');
    await waitFor('the pending password to be applied and promoted', async () => (await rootData()).password === 'Pending-before-alter-1', { timeoutMs: 20_000, intervalMs: 200 });
    assert.equal((await rootData())['password.pending'], undefined);
    assert.equal(await loginError({ ...pg, user: admin, password: 'Pending-before-alter-1' }), undefined);
    // Killed after ALTER ROLE, before the promotion: only the pending password logs in.
    await queryAs(pg, `ALTER ROLE "${admin}" PASSWORD 'Pending-after-alter-2'`);
    await addPending('Pending-after-alter-2');
    await waitFor('the pending password to be promoted', async () => (await rootData()).password === 'Pending-after-alter-2', { timeoutMs: 20_000, intervalMs: 200 });
    assert.equal(await loginError({ ...pg, user: admin, password: (await rootData()).password ?? '' }), undefined, 'the Secret logs in');
    await waitForCondition<DatabaseConfig>(env, 'databaseconfigs', ns, 'rotating', 'Ready', 'True');
  });

  it('revokes through an admin that is not a superuser (CREATEROLE only), ending the open sessions', async () => {
    const config = await waitForCondition<DatabaseConfig>(env, 'databaseconfigs', ns, 'rotating', 'SessionTermination', 'True', 'RoleMembership');
    assert.match(config.status?.conditions?.find((c) => c.type === 'SessionTermination')?.message ?? '', /CREATEROLE/);
    const data = await secretOf('after-root');
    assert.equal(await roleExists(data.username ?? ''), true);
    // The application is connected: PostgreSQL 15 lets a CREATEROLE admin end only sessions of roles it is a member of.
    const session = new pg.Client({ ...connectionFromSecret(data), connectionTimeoutMillis: 5000 });
    session.on('error', () => undefined);
    await session.connect();
    try {
      await session.query('SELECT 1');
      await env.kubectl(['-n', ns, 'delete', 'databasecredential', 'after-root', '--wait=true', '--timeout=60s']);
      await assert.rejects(session.query('SELECT 1'), 'the open session was terminated');
    } finally {
      await session.end().catch(() => undefined);
    }
    assert.equal(await roleExists(data.username ?? ''), false);
  });

  it('moves the Secret and issues a new login when secretName changes', async () => {
    await apply(env, ns, [credentialObject('moving', { roleRef: { name: 'short' }, ttl: '1h', secretName: 'moving-a' })]);
    const first = await waitForCondition<DatabaseCredential>(env, 'databasecredentials', ns, 'moving', 'Ready', 'True');
    const a = await secretOf('moving-a');
    await apply(env, ns, [credentialObject('moving', { roleRef: { name: 'short' }, ttl: '1h', secretName: 'moving-b' })]);
    await waitFor('the Secret under its new name', async () => (await readSecretData(env, ns, 'moving-b')) !== undefined, { timeoutMs: 15_000, intervalMs: 100 });
    await waitFor('the old Secret to go', async () => (await readSecretData(env, ns, 'moving-a')) === undefined, { timeoutMs: 15_000, intervalMs: 100 });
    const b = await secretOf('moving-b');
    assert.notEqual(b.username, a.username, 'a new login');
    const cred = await waitForCondition<DatabaseCredential>(env, 'databasecredentials', ns, 'moving', 'Ready', 'True');
    assert.equal(cred.status?.secretName, 'moving-b');
    assert.notEqual(cred.status?.username, first.status?.username);
    assert.equal(await loginError(connectionFromSecret(b)), undefined);
  });

  it('makes usernames and passwords as the config\'s template and policy say', async () => {
    const pg = env.postgres.connection;
    await apply(env, ns, [{
      apiVersion: 'dbcred.dev/v1alpha1',
      kind: 'DatabaseConfig',
      metadata: { name: 'custom' },
      spec: {
        connectionURL: `postgresql://{{username}}:{{password}}@${pg.host}:${pg.port}/${pg.database}?sslmode=disable`,
        rootCredentialsSecretRef: { name: 'pg-root' },
        allowedRoles: ['*'],
        usernameTemplate: 'svc_{{namespace|truncate 4}}_{{credential|lowercase}}_{{random 6|lowercase}}',
        passwordPolicy: { length: 20 },
      },
    }, { ...(platformObjects(env, { config: 'custom', role: 'custom-reader' })[2] as object) }]);
    await waitForCondition<DatabaseRole>(env, 'databaseroles', ns, 'custom-reader', 'Ready', 'True');
    await apply(env, ns, [credentialObject('Tpl-App'.toLowerCase(), { roleRef: { name: 'custom-reader' } })]);
    await waitForCondition(env, 'databasecredentials', ns, 'tpl-app', 'Ready', 'True');
    const data = await secretOf('tpl-app');
    assert.match(data.username ?? '', new RegExp(`^svc_${ns.slice(0, 4)}_tpl-app_[a-z0-9]{6}$`));
    assert.equal(data.password?.length, 20);
    assert.match(data.password ?? '', /[a-z]/);
    assert.match(data.password ?? '', /[A-Z]/);
    assert.match(data.password ?? '', /[0-9]/);
    assert.match(data.password ?? '', /^[A-Za-z0-9-]+$/);
    assert.equal(await loginError(connectionFromSecret(data)), undefined);
  });

  it('refuses a username template that cannot make a valid role name', async () => {
    const pg = env.postgres.connection;
    await apply(env, ns, [{
      apiVersion: 'dbcred.dev/v1alpha1',
      kind: 'DatabaseConfig',
      metadata: { name: 'reserved' },
      spec: {
        connectionURL: `postgresql://{{username}}:{{password}}@${pg.host}:${pg.port}/${pg.database}`,
        rootCredentialsSecretRef: { name: 'pg-root' },
        usernameTemplate: 'pg_{{random 8}}',
      },
    }]);
    const config = await waitForCondition<DatabaseConfig>(env, 'databaseconfigs', ns, 'reserved', 'Ready', 'False', 'InvalidUsernameTemplate');
    assert.match(config.status?.conditions?.[0]?.message ?? '', /pg_/);
    await assert.rejects(apply(env, ns, [{
      apiVersion: 'dbcred.dev/v1alpha1', kind: 'DatabaseConfig', metadata: { name: 'bogus' },
      spec: { connectionURL: 'postgresql://{{username}}:{{password}}@h/db', rootCredentialsSecretRef: { name: 'pg-root' }, usernameTemplate: 'v-{{bogus}}' },
    }]), /usernameTemplate/);
  });
});
