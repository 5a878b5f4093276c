// The revocation guard against the real control plane and PostgreSQL (issue 8, finding 6): the operator never
// revokes (NOLOGIN, terminate, DROP OWNED, DROP ROLE) the admin it connects as, a superuser, or a role it did not
// create — not when a DatabaseRole's own SQL or a CREATEROLE user of the database puts the operator's marker on it,
// not when a credential's status lists it. Creation never adopts an existing role, and never issues a superuser.
// Every "untouched" is proved by logging in with the role's own password.
import assert from 'node:assert/strict';
import pg from 'pg';
import type { DatabaseCredential } from '../../src/api/types.js';
import { httpGet } from '../env/controlplane.js';
import type { PostgresConnection } from '../env/postgres.js';
import { freePort } from '../env/processes.js';
import { installationOf, loginError, sweptTwice as sweptTwiceOn, markedRolesOf as markedRolesOfOn, markerComment, queryAs, roleExists as roleExistsOn, waitFor, type TestEnv } from './harness.js';
import { operatorSuite } from './suite.js';
import { apply, condition, connectionFromSecret, credentialObject, getObject, readSecretData, waitForCondition, type OperatorProcess } from './operator.js';

describe('revocation guard: the operator revokes only roles it created (issue 8)', function () {
  this.timeout(120_000);
  let env: TestEnv;
  let ns: string;
  let operator: OperatorProcess;
  let healthPort = 0;
  let installation = '';
  const tag = `${process.pid}`;
  const crAdmin = `cradmin-${tag}`;
  const crAdminPassword = `cr-${Math.random().toString(36).slice(2)}-Aa1`;

  const admin = () => env.postgres.connection;
  const as = (user: string, password: string): PostgresConnection => ({ ...admin(), user, password });
  const q = (sql: string, conn = admin()) => queryAs(conn, sql);
  const ident = (name: string) => pg.escapeIdentifier(name);
  const literal = (text: string) => pg.escapeLiteral(text);
  const roleExists = (username: string) => roleExistsOn(admin(), username);
  const markedRolesOf = (name: string) => markedRolesOfOn(admin(), ns, name);
  const attributes = async (user: string) =>
    (await q(`SELECT rolcanlogin, rolsuper, rolcreaterole, pg_catalog.shobj_description(oid, 'pg_authid') AS comment FROM pg_roles WHERE rolname = ${literal(user)}`)).rows[0] as
      | { rolcanlogin: boolean; rolsuper: boolean; rolcreaterole: boolean; comment: string | null }
      | undefined;

  operatorSuite('guard', async () => {
    healthPort = await freePort();
    return { HEALTH_PORT: String(healthPort), ORPHAN_SWEEP_PERIOD: '1s' };
  }, (suite) => ({ env, ns, operator } = suite));

  before(async function () {
    this.timeout(120_000);
    installation = await installationOf(env);
    await q(`DROP ROLE IF EXISTS ${ident(crAdmin)}; CREATE ROLE ${ident(crAdmin)} LOGIN CREATEROLE PASSWORD ${literal(crAdminPassword)}`);
    const pgc = admin();
    const config = (name: string, root: string, extra: object = {}) => ({
      apiVersion: 'dbcred.dev/v1alpha1',
      kind: 'DatabaseConfig',
      metadata: { name },
      spec: { connectionURL: `postgresql://{{username}}:{{password}}@${pgc.host}:${pgc.port}/${pgc.database}?sslmode=disable`, rootCredentialsSecretRef: { name: root }, allowedRoles: ['*'], ...extra },
    });
    await apply(env, ns, [
      { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'cr-root' }, stringData: { username: crAdmin, password: crAdminPassword } },
      // Usernames without {{random}}: the credential's name is the username, so a credential can name an existing user.
      config('su-fixed', 'pg-root', { usernameTemplate: '{{credential}}' }),
      config('cr-fixed', 'cr-root', { usernameTemplate: '{{credential}}' }),
      config('cr', 'cr-root'),
    ]);
    for (const c of ['su-fixed', 'cr-fixed', 'cr']) await waitForCondition(env, 'databaseconfigs', ns, c, 'Ready', 'True');
  });

  after(async function () {
    this.timeout(60_000);
    // Each test deletes its credentials; what this file made outside the operator goes here.
    await q(`COMMENT ON ROLE ${ident(admin().user)} IS NULL`).catch(() => undefined);
    await q(`COMMENT ON ROLE ${ident(crAdmin)} IS NULL`).catch(() => undefined);
  });

  const role = (name: string, config: string, creationStatements: string[]) => ({
    apiVersion: 'dbcred.dev/v1alpha1',
    kind: 'DatabaseRole',
    metadata: { name },
    spec: { configRef: { name: config }, creationStatements, defaultTTL: '1h', maxTTL: '24h' },
  });
  const plainCreation = [`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';`];

  const sweptTwice = () => sweptTwiceOn(admin(), installation, ns);

  async function unprovenGauge(): Promise<number> {
    const { body } = await httpGet(`http://127.0.0.1:${healthPort}/metrics`);
    const line = body.split('\n').find((l) => l.startsWith('dbcred_orphan_sweep_unproven_roles '));
    assert.ok(line, 'the gauge is exported');
    return Number(line.split(' ')[1]);
  }

  /** The user still logs in with its own password, may log in, and kept its attributes. */
  async function untouched(user: string, password: string, expected: { rolsuper: boolean; rolcreaterole: boolean }): Promise<void> {
    assert.equal(await loginError(as(user, password)), undefined, `${user} still logs in with its password`);
    const a = await attributes(user);
    assert.deepEqual([a?.rolcanlogin, a?.rolsuper, a?.rolcreaterole], [true, expected.rolsuper, expected.rolcreaterole], `${user} keeps LOGIN and its attributes`);
  }

  it('refuses to create a role that exists (the superuser admin, the CREATEROLE admin, a bystander), touching none of them', async () => {
    const bystander = `bystander-${tag}`;
    await q(`DROP ROLE IF EXISTS ${ident(bystander)}; CREATE ROLE ${ident(bystander)} LOGIN PASSWORD 'bystander-pw'`);
    // Idempotent creation SQL: on an existing role it would only set the password — an adoption, without the guard.
    const adopting = [
      `DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = '{{name}}') THEN CREATE ROLE "{{name}}" LOGIN; END IF; END $$;`,
      `ALTER ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}';`,
    ];
    await apply(env, ns, [
      role('adopt-su', 'su-fixed', adopting),
      role('adopt-cr', 'cr-fixed', adopting),
      credentialObject(admin().user, { roleRef: { name: 'adopt-su' } }),
      credentialObject(crAdmin, { roleRef: { name: 'adopt-cr' } }),
      credentialObject(bystander, { roleRef: { name: 'adopt-su' } }),
    ]);
    for (const name of [admin().user, crAdmin, bystander]) {
      const cred = await waitForCondition<DatabaseCredential>(env, 'databasecredentials', ns, name, 'Ready', 'False', 'RoleExists');
      assert.match(condition(cred, 'Ready')?.message ?? '', /exists already; the operator creates only new roles/);
      assert.equal(await readSecretData(env, ns, name), undefined, 'no Secret');
    }
    await untouched(admin().user, admin().password, { rolsuper: true, rolcreaterole: true });
    await untouched(crAdmin, crAdminPassword, { rolsuper: false, rolcreaterole: true });
    await untouched(bystander, 'bystander-pw', { rolsuper: false, rolcreaterole: false });
    for (const user of [admin().user, crAdmin, bystander]) assert.equal((await attributes(user))?.comment, null, `${user} carries no marker`);
    // The failed issues' pending entries were let go without a revocation (the guard refused it): status lists none.
    for (const name of [admin().user, crAdmin, bystander]) {
      const cred = await getObject<DatabaseCredential>(env, 'databasecredentials', ns, name);
      assert.deepEqual(cred?.status?.roles ?? [], [], `${name} lists no role`);
    }
    const refusals = await env.core.listNamespacedEvent({ namespace: ns, fieldSelector: 'reason=RevocationRefused' });
    assert.ok(refusals.items.length >= 3, 'each let-go entry is a Warning Event');
    // The control: a name that is free is created, with this very SQL.
    await apply(env, ns, [credentialObject(`fresh-${tag}`, { roleRef: { name: 'adopt-su' } })]);
    await waitForCondition(env, 'databasecredentials', ns, `fresh-${tag}`, 'Ready', 'True');
    const data = await readSecretData(env, ns, `fresh-${tag}`);
    assert.equal(data?.username, `fresh-${tag}`);
    assert.equal(await loginError(connectionFromSecret(data ?? {})), undefined);
    for (const name of [admin().user, crAdmin, bystander, `fresh-${tag}`]) {
      await env.kubectl(['-n', ns, 'delete', 'databasecredential', name, '--wait=true', '--timeout=60s']);
    }
    assert.equal(await roleExists(`fresh-${tag}`), false, 'the role it created is revoked on delete');
    await untouched(admin().user, admin().password, { rolsuper: true, rolcreaterole: true });
    await untouched(crAdmin, crAdminPassword, { rolsuper: false, rolcreaterole: true });
    await untouched(bystander, 'bystander-pw', { rolsuper: false, rolcreaterole: false });
    await q(`DROP ROLE ${ident(bystander)}`);
  });

  it('refuses creation statements that make a superuser (a superuser is never revoked, so never issued)', async () => {
    const superusers = async () => (await q('SELECT rolname FROM pg_roles WHERE rolsuper ORDER BY 1')).rows.map((r) => r.rolname as string);
    const before = await superusers();
    await apply(env, ns, [
      role('makes-su', 'pg', [`CREATE ROLE "{{name}}" WITH LOGIN SUPERUSER PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';`]),
      credentialObject('wants-su', { roleRef: { name: 'makes-su' } }),
    ]);
    const cred = await waitForCondition<DatabaseCredential>(env, 'databasecredentials', ns, 'wants-su', 'Ready', 'False', 'IssueFailed');
    assert.match(condition(cred, 'Ready')?.message ?? '', /a superuser; the operator never issues superusers/);
    assert.deepEqual(await superusers(), before, 'no new superuser');
    assert.deepEqual(await markedRolesOf('wants-su'), []);
    assert.equal(await readSecretData(env, ns, 'wants-su'), undefined);
    await env.kubectl(['-n', ns, 'delete', 'databasecredential', 'wants-su', '--wait=true', '--timeout=60s']);
  });

  it("never revokes the admin when a DatabaseRole's creation SQL puts a marker on it (legacy or forged v2)", async () => {
    const adminUser = admin().user;
    // The credential first, so that the role's SQL can forge a marker naming its uid.
    await apply(env, ns, [credentialObject('victim', { roleRef: { name: 'marks-admin' } })]);
    const pending = await waitForCondition<DatabaseCredential>(env, 'databasecredentials', ns, 'victim', 'Ready', 'False', 'RoleNotFound');
    const uid = pending.metadata.uid ?? '';
    const forged = {
      v2: markerComment(installation, ns, 'victim', uid, adminUser),
      legacy: `dbcred:${JSON.stringify({ namespace: ns, name: 'victim', uid })}`,
    };
    try {
      for (const [kind, marker] of Object.entries(forged)) {
        await apply(env, ns, [role('marks-admin', 'pg', [...plainCreation, `COMMENT ON ROLE ${ident(adminUser)} IS ${literal(marker)};`])]);
        if (kind === 'legacy') await env.kubectl(['-n', ns, 'annotate', '--overwrite', 'databasecredential', 'victim', 'dbcred.dev/rotate=legacy']);
        await waitFor(`the role's SQL to mark the admin (${kind})`, async () => (await attributes(adminUser))?.comment === marker, { timeoutMs: 30_000, intervalMs: 200 });
        await waitForCondition(env, 'databasecredentials', ns, 'victim', 'Ready', 'True');
        await sweptTwice();
        await untouched(adminUser, admin().password, { rolsuper: true, rolcreaterole: true });
        if (kind === 'v2') assert.match(operator.output, new RegExp(`orphan sweep refused to revoke a marked role.*"username":"${adminUser}"`), 'the sweep did look at it');
        else assert.ok((await unprovenGauge()) >= 1, 'the legacy-marked admin is counted as unproven');
      }
      // Deleting the credential revokes its own roles, and only those.
      const held = ((await getObject<DatabaseCredential>(env, 'databasecredentials', ns, 'victim'))?.status?.roles ?? []).map((r) => r.username);
      assert.ok(held.length >= 1 && !held.includes(adminUser));
      await env.kubectl(['-n', ns, 'delete', 'databasecredential', 'victim', '--wait=true', '--timeout=60s']);
      for (const u of held) assert.equal(await roleExists(u), false, `${u} revoked`);
      await untouched(adminUser, admin().password, { rolsuper: true, rolcreaterole: true });
    } finally {
      await q(`COMMENT ON ROLE ${ident(adminUser)} IS NULL`);
    }
  });

  it("forgets, without touching them, roles its status lists that are not the credential's (the admin, an unmarked bystander)", async () => {
    const bystander = `listed-${tag}`;
    await q(`DROP ROLE IF EXISTS ${ident(bystander)}; CREATE ROLE ${ident(bystander)} LOGIN PASSWORD 'listed-pw'`);
    await apply(env, ns, [credentialObject('holder', { roleRef: { name: 'reader' } })]);
    const cred = await waitForCondition<DatabaseCredential>(env, 'databasecredentials', ns, 'holder', 'Ready', 'True');
    const own = cred.status?.roles ?? [];
    const past = new Date(Date.now() - 60_000).toISOString().replace(/\.\d+Z$/, 'Z');
    const future = new Date(Date.now() + 3600_000).toISOString().replace(/\.\d+Z$/, 'Z');
    const retiring = (username: string) => ({ username, state: 'retiring', config: `${ns}/pg`, role: `${ns}/reader`, issuedAt: past, expiresAt: future, revokeAfter: past });
    // What a status edited by hand (or restored from elsewhere) could say: two roles due for revocation.
    await env.kubectl(['-n', ns, 'patch', 'databasecredential', 'holder', '--subresource=status', '--type=merge', '-p',
      JSON.stringify({ status: { roles: [...own, retiring(admin().user), retiring(bystander)] } })]);
    await env.kubectl(['-n', ns, 'annotate', '--overwrite', 'databasecredential', 'holder', 'test.dbcred.dev/poke=1']);
    await waitFor('both to be let go', async () => {
      const listed = ((await getObject<DatabaseCredential>(env, 'databasecredentials', ns, 'holder'))?.status?.roles ?? []).map((r) => r.username);
      return !listed.includes(admin().user) && !listed.includes(bystander);
    }, { timeoutMs: 30_000, intervalMs: 200 });
    await untouched(admin().user, admin().password, { rolsuper: true, rolcreaterole: true });
    await untouched(bystander, 'listed-pw', { rolsuper: false, rolcreaterole: false });
    // One Warning Event counts both refusals (a repeated Event is a series, not a new object); the log names each.
    const events = await env.core.listNamespacedEvent({ namespace: ns, fieldSelector: 'involvedObject.name=holder,reason=RevocationRefused' });
    assert.equal(events.items.length, 1, 'one RevocationRefused Event');
    assert.ok((events.items[0]?.series?.count ?? 1) >= 2, 'that counts both refusals');
    assert.match(events.items[0]?.message ?? '', new RegExp(`role (${admin().user}|${bystander}) was not revoked`));
    for (const u of [admin().user, bystander]) {
      assert.match(operator.output, new RegExp(`"message":"revocation refused; role forgotten without touching it".*"username":"${u}"`), `the log names ${u}`);
    }
    const after = await waitForCondition<DatabaseCredential>(env, 'databasecredentials', ns, 'holder', 'Ready', 'True');
    assert.deepEqual(after.status?.roles?.map((r) => r.username), own.map((r) => r.username), 'its own role stays');
    assert.equal(await loginError(connectionFromSecret((await readSecretData(env, ns, 'holder')) ?? {})), undefined);
    await env.kubectl(['-n', ns, 'delete', 'databasecredential', 'holder', '--wait=true', '--timeout=60s']);
    await untouched(bystander, 'listed-pw', { rolsuper: false, rolcreaterole: false });
    await q(`DROP ROLE ${ident(bystander)}`);
  });

  it('never renews the admin listed as the active role (a VALID UNTIL would revoke it later): forgets it and issues a new login', async () => {
    const validUntil = async () => (await q(`SELECT rolvaliduntil FROM pg_roles WHERE rolname = ${literal(admin().user)}`)).rows[0]?.rolvaliduntil as Date | null;
    const before = await validUntil();
    await apply(env, ns, [credentialObject('renewer', { roleRef: { name: 'reader' } })]);
    const cred = await waitForCondition<DatabaseCredential>(env, 'databasecredentials', ns, 'renewer', 'Ready', 'True');
    const own = cred.status?.username ?? '';
    const past = new Date(Date.now() - 60_000).toISOString().replace(/\.\d+Z$/, 'Z');
    const future = new Date(Date.now() + 3600_000).toISOString().replace(/\.\d+Z$/, 'Z');
    // The status says the admin is the active login, due for renewal; the credential's own role is retiring.
    const active = { username: admin().user, state: 'active', config: `${ns}/pg`, role: `${ns}/reader`, issuedAt: past, expiresAt: future, renewAt: past };
    const retiring = { ...(cred.status?.roles?.[0] ?? {}), state: 'retiring', revokeAfter: future };
    await env.kubectl(['-n', ns, 'patch', 'databasecredential', 'renewer', '--subresource=status', '--type=merge', '-p',
      JSON.stringify({ status: { username: admin().user, roles: [retiring, active] } })]);
    // And the Secret names it too (else the operator would replace the login for a changed Secret, not renew).
    await env.kubectl(['-n', ns, 'patch', 'secret', 'renewer', '--type=merge', '-p', JSON.stringify({ stringData: { username: admin().user } })]);
    await env.kubectl(['-n', ns, 'annotate', '--overwrite', 'databasecredential', 'renewer', 'test.dbcred.dev/poke=1']);
    await waitFor('a new login in place of the listed admin', async () => {
      const c = await getObject<DatabaseCredential>(env, 'databasecredentials', ns, 'renewer');
      const users = (c?.status?.roles ?? []).map((r) => r.username);
      return !users.includes(admin().user) && c?.status?.username !== undefined && c.status.username !== own && condition(c, 'Ready')?.status === 'True';
    }, { timeoutMs: 30_000, intervalMs: 200 });
    assert.deepEqual(await validUntil(), before, "the admin's VALID UNTIL is unchanged");
    await untouched(admin().user, admin().password, { rolsuper: true, rolcreaterole: true });
    const events = await env.core.listNamespacedEvent({ namespace: ns, fieldSelector: 'involvedObject.name=renewer,reason=RenewalRefused' });
    assert.ok(events.items.some((e) => (e.message ?? '').includes(`role ${admin().user} was not renewed`)), 'a Warning Event says so');
    assert.match(operator.output, new RegExp(`"message":"renewal refused; role forgotten without touching it".*"username":"${admin().user}"`), 'refused at renewal');
    assert.equal(await loginError(connectionFromSecret((await readSecretData(env, ns, 'renewer')) ?? {})), undefined, 'the new login works');
    await env.kubectl(['-n', ns, 'delete', 'databasecredential', 'renewer', '--wait=true', '--timeout=60s']);
    assert.equal(await roleExists(own), false, 'its own earlier role is revoked on delete');
  });

  it('never revokes the CREATEROLE admin when a CREATEROLE tenant marks it (legacy or forged v2)', async () => {
    const tenant = `tenant-${tag}`;
    await q(`DROP ROLE IF EXISTS ${ident(tenant)}; CREATE ROLE ${ident(tenant)} LOGIN CREATEROLE PASSWORD 'tenant-pw'`);
    await apply(env, ns, [role('cr-reader', 'cr', plainCreation), credentialObject('cr-app', { roleRef: { name: 'cr-reader' } })]);
    const cred = await waitForCondition<DatabaseCredential>(env, 'databasecredentials', ns, 'cr-app', 'Ready', 'True');
    const uid = cred.metadata.uid ?? '';
    const asTenant = as(tenant, 'tenant-pw');
    try {
      for (const marker of [markerComment(installation, ns, 'cr-app', uid, crAdmin), `dbcred:${JSON.stringify({ namespace: ns, name: 'cr-app', uid })}`]) {
        // PostgreSQL 15: CREATEROLE may comment on any non-superuser role.
        await q(`COMMENT ON ROLE ${ident(crAdmin)} IS ${literal(marker)}`, asTenant);
        assert.equal((await attributes(crAdmin))?.comment, marker);
        await sweptTwice();
        await untouched(crAdmin, crAdminPassword, { rolsuper: false, rolcreaterole: true });
      }
      const data = await readSecretData(env, ns, 'cr-app');
      assert.equal(await loginError(connectionFromSecret(data ?? {})), undefined, "the CREATEROLE admin's credential still works");
      await env.kubectl(['-n', ns, 'delete', 'databasecredential', 'cr-app', '--wait=true', '--timeout=60s']);
      assert.equal(await roleExists(data?.username ?? ''), false, 'its own role is revoked');
      await untouched(crAdmin, crAdminPassword, { rolsuper: false, rolcreaterole: true });
    } finally {
      await q(`COMMENT ON ROLE ${ident(crAdmin)} IS NULL`);
      await q(`DROP ROLE ${ident(tenant)}`);
    }
  });
});
