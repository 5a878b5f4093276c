// Static roles against the real control plane and PostgreSQL (issue 8, findings 2 and 9): a static role may take
// over only an ordinary application login. The config's admin, superusers, users with powers the config does not
// allow, roles the operator issued and users another static role manages are refused before any SQL changes
// anything: each keeps its password (proved by logging in with it) and the root Secret stays as it was. A namespace
// that loses access loses its Secret, and the password it saw stops working. A username full of quotes is quoted
// for the SQL it stands in, also inside EXECUTE '…'.
import assert from 'node:assert/strict';
import pg from 'pg';
import type { DatabaseCredential, DatabaseRole } from '../../src/api/types.js';
import type { PostgresConnection } from '../env/postgres.js';
import { createNamespace, loginError, queryAs, waitFor, type TestEnv } from './harness.js';
import { operatorSuite } from './suite.js';
import {
  apply,
  condition,
  connectionFromSecret,
  credentialObject,
  platformObjects,
  readSecretData,
  waitForCondition,
  type OperatorProcess,
} from './operator.js';

describe('static roles take over only what they may (issue 8)', function () {
  this.timeout(120_000);
  let env: TestEnv;
  let ns: string;
  let operator: OperatorProcess;
  const tag = `${process.pid}`;

  const admin = () => env.postgres.connection;
  const as = (user: string, password: string): PostgresConnection => ({ ...admin(), user, password });
  /** Creates (or re-creates) a PostgreSQL role with a known password; options as in CREATE ROLE. */
  const createUser = async (user: string, password: string, options = '') => {
    await queryAs(admin(), `DROP ROLE IF EXISTS ${pg.escapeIdentifier(user)}`);
    await queryAs(admin(), `CREATE ROLE ${pg.escapeIdentifier(user)} LOGIN PASSWORD ${pg.escapeLiteral(password)} ${options}`);
  };
  const staticRole = (name: string, username: string, extra: object = {}, config = 'pg') => ({
    apiVersion: 'dbcred.dev/v1alpha1',
    kind: 'DatabaseRole',
    metadata: { name },
    spec: { configRef: { name: config }, static: { username, ...extra } },
  });
  const refused = async (role: string, reason: string, namespace = ns) => {
    const obj = await waitForCondition<DatabaseRole>(env, 'databaseroles', namespace, role, 'Ready', 'False', reason);
    return condition(obj, 'Ready')?.message ?? '';
  };
  const rootSecret = () => readSecretData(env, ns, 'pg-root');
  const staticPassword = async (role: string, namespace = ns) => (await readSecretData(env, namespace, `${role}-static-password`))?.password;

  operatorSuite('static', {}, (suite) => ({ env, ns, operator } = suite));

  it("refuses the config's admin: the root password, the root Secret and the config stay as they were", async () => {
    const root = await rootSecret();
    await apply(env, ns, [staticRole('takeover-admin', env.postgres.superuser), credentialObject('from-admin', { roleRef: { name: 'takeover-admin' } })]);
    const message = await refused('takeover-admin', 'StaticUserIsAdmin');
    assert.match(message, /is the admin this DatabaseConfig connects as/);
    assert.ok(!message.includes(`"${env.postgres.superuser}"`), 'the message does not say who the admin is');
    const cred = await waitForCondition<DatabaseCredential>(env, 'databasecredentials', ns, 'from-admin', 'Ready', 'False', 'RoleNotReady');
    assert.equal(cred.status?.username, undefined);
    assert.equal(await readSecretData(env, ns, 'from-admin'), undefined, 'no tenant Secret with the admin password');
    assert.equal(await staticPassword('takeover-admin'), undefined, 'no password was generated for the admin');
    assert.equal(await loginError(admin()), undefined, 'the admin still logs in with its password');
    assert.deepEqual(await rootSecret(), root, 'the root Secret is intact');
    await waitForCondition(env, 'databaseconfigs', ns, 'pg', 'Ready', 'True');
  });

  it('refuses a superuser, a CREATEROLE user, a member of the admin role and a member of pg_signal_backend; each keeps its password', async () => {
    const cases = [
      { role: 'takeover-su', user: `su_${tag}`, options: 'SUPERUSER', reason: 'StaticUserIsSuperuser', message: /is a superuser/ },
      { role: 'takeover-cr', user: `cr_${tag}`, options: 'CREATEROLE', reason: 'StaticUserPrivileged', message: /CREATEROLE \(the platform may allow them in the DatabaseConfig's spec.staticRoles\)/ },
      { role: 'takeover-member', user: `member_${tag}`, options: `IN ROLE ${pg.escapeIdentifier(env.postgres.superuser)}`, reason: 'StaticUserIsAdmin', message: /member of the admin role/ },
      { role: 'takeover-signal', user: `signal_${tag}`, options: 'IN ROLE pg_signal_backend', reason: 'StaticUserPrivileged', message: /membership in pg_signal_backend/ },
    ];
    for (const c of cases) await createUser(c.user, `old-${c.user}`, c.options);
    const root = await rootSecret();
    await apply(env, ns, cases.map((c) => staticRole(c.role, c.user)));
    for (const c of cases) {
      assert.match(await refused(c.role, c.reason), c.message);
      assert.equal(await staticPassword(c.role), undefined);
    }
    for (const c of cases) assert.equal(await loginError(as(c.user, `old-${c.user}`)), undefined, `${c.user} keeps its password`);
    assert.deepEqual(await rootSecret(), root);
  });

  it('takes over a CREATEROLE user once the DatabaseConfig allows it (spec.staticRoles)', async () => {
    const user = `allowed_cr_${tag}`;
    await createUser(user, 'old-allowed', 'CREATEROLE');
    const [root, config] = platformObjects(env, { config: 'pg-allow' }) as [object, { spec: object }];
    await apply(env, ns, [
      root,
      { ...config, spec: { ...config.spec, staticRoles: { allowedAttributes: ['CREATEROLE'] } } },
      staticRole('allowed-cr', user, {}, 'pg-allow'),
    ]);
    await waitForCondition<DatabaseRole>(env, 'databaseroles', ns, 'allowed-cr', 'Ready', 'True');
    const password = await staticPassword('allowed-cr');
    assert.ok(password);
    assert.equal(await loginError(as(user, password)), undefined, 'the rotated password logs in');
    assert.equal(await loginError(as(user, 'old-allowed')), '28P01', 'the old one no longer does');
  });

  it('refuses a role the operator issued for a credential; that credential keeps working', async () => {
    await apply(env, ns, [credentialObject('dyn', { roleRef: { name: 'reader' } })]);
    const cred = await waitForCondition<DatabaseCredential>(env, 'databasecredentials', ns, 'dyn', 'Ready', 'True');
    const issued = cred.status?.username ?? '';
    await apply(env, ns, [staticRole('takeover-dyn', issued)]);
    assert.match(await refused('takeover-dyn', 'StaticUserIsDynamic'), /issued by the operator/);
    const data = await readSecretData(env, ns, 'dyn');
    assert.ok(data);
    assert.equal(await loginError(connectionFromSecret(data)), undefined, "the credential's own password still works");
    assert.equal(await staticPassword('takeover-dyn'), undefined);
  });

  it('a second static role on one user is refused (the winner named only within its namespace) and takes over when the first goes', async () => {
    const user = `claimed_${tag}`;
    await createUser(user, 'old-claimed');
    await apply(env, ns, [staticRole('first', user)]);
    await waitForCondition<DatabaseRole>(env, 'databaseroles', ns, 'first', 'Ready', 'True');
    const first = await staticPassword('first');
    assert.ok(first);
    await apply(env, ns, [staticRole('second', user)]);
    assert.match(await refused('second', 'StaticUserClaimed'), new RegExp(`already managed by DatabaseRole ${ns}/first `));
    assert.equal(await staticPassword('second'), undefined);

    // A static role in another namespace, on its own config for the same server: refused without naming ours.
    const other = await createNamespace(env, 'static-other');
    await apply(env, other, [...platformObjects(env).slice(0, 2), staticRole('third', user)]);
    const message = await refused('third', 'StaticUserClaimed', other);
    assert.match(message, /already managed by a static DatabaseRole in another namespace/);
    assert.ok(!message.includes(ns) && !message.includes('first'), message);
    assert.equal(await loginError(as(user, first)), undefined, "the first role's password is untouched");

    // The first goes: the oldest remaining claimant (second) takes over and rotates.
    await env.kubectl(['-n', ns, 'delete', 'databaserole', 'first', '--wait=true', '--timeout=60s']);
    await waitForCondition<DatabaseRole>(env, 'databaseroles', ns, 'second', 'Ready', 'True');
    const second = await staticPassword('second');
    assert.ok(second);
    assert.equal(await loginError(as(user, second)), undefined);
    assert.equal(await loginError(as(user, first)), '28P01');
    await refused('third', 'StaticUserClaimed', other);
    await env.kubectl(['delete', 'namespace', other, '--wait=false']);
  });

  it('moves to a new static.username at once: the Secret and the credential log in as the new user', async () => {
    const [before, after] = [`renamed_a_${tag}`, `renamed_b_${tag}`];
    await createUser(before, 'old-a');
    await createUser(after, 'old-b');
    await apply(env, ns, [staticRole('renamed', before), credentialObject('uses-renamed', { roleRef: { name: 'renamed' } })]);
    await waitForCondition<DatabaseCredential>(env, 'databasecredentials', ns, 'uses-renamed', 'Ready', 'True');
    const first = await readSecretData(env, ns, 'uses-renamed');
    assert.equal(first?.username, before);
    // No rotationPeriod: only the change of user can make it rotate now.
    await apply(env, ns, [staticRole('renamed', after)]);
    await waitFor('the credential to carry the new user', async () => (await readSecretData(env, ns, 'uses-renamed'))?.username === after, { timeoutMs: 30_000, intervalMs: 200 });
    const cred = await waitForCondition<DatabaseCredential>(env, 'databasecredentials', ns, 'uses-renamed', 'Ready', 'True');
    assert.equal(cred.status?.username, after);
    const data = await readSecretData(env, ns, 'uses-renamed');
    assert.equal(await loginError(connectionFromSecret(data ?? {})), undefined, 'the Secret logs in as the new user');
    assert.equal(await loginError(as(after, 'old-b')), '28P01', "the new user's earlier password no longer works");
    assert.equal((await readSecretData(env, ns, 'renamed-static-password'))?.username, after);
    await env.kubectl(['-n', ns, 'delete', 'databasecredential', 'uses-renamed', '--wait=true', '--timeout=60s']);
  });

  it('checks again before every rotation: a user that gains CREATEROLE later is left alone', async () => {
    const user = `later_${tag}`;
    await createUser(user, 'old-later');
    await apply(env, ns, [staticRole('later', user, { rotationPeriod: '2s' })]);
    await waitForCondition<DatabaseRole>(env, 'databaseroles', ns, 'later', 'Ready', 'True');
    await queryAs(admin(), `ALTER ROLE ${pg.escapeIdentifier(user)} CREATEROLE`);
    await refused('later', 'StaticUserPrivileged');
    const password = await staticPassword('later');
    assert.ok(password);
    await new Promise((r) => setTimeout(r, 5_000)); // two rotation periods
    assert.equal(await staticPassword('later'), password, 'no rotation was recorded');
    assert.equal(await loginError(as(user, password)), undefined, 'and none happened in PostgreSQL');
    await refused('later', 'StaticUserPrivileged');
  });

  it('a namespace that loses access loses its Secret, and the password it saw stops working', async () => {
    const user = `shared_${tag}`;
    await createUser(user, 'old-shared');
    const team = await createNamespace(env, 'static-team');
    await apply(env, ns, [{ ...staticRole('shared', user), spec: { ...staticRole('shared', user).spec, allowedNamespaces: [ns, team] } }, credentialObject('mine', { roleRef: { name: 'shared' } })]);
    await apply(env, team, [credentialObject('theirs', { roleRef: { name: 'shared', namespace: ns } })]);
    await waitForCondition(env, 'databasecredentials', team, 'theirs', 'Ready', 'True');
    const seen = await readSecretData(env, team, 'theirs');
    assert.ok(seen?.password);
    assert.equal(await loginError(connectionFromSecret(seen)), undefined);

    await env.kubectl(['-n', ns, 'patch', 'databaserole', 'shared', '--type', 'merge', '-p', JSON.stringify({ spec: { allowedNamespaces: [ns] } })]);
    await waitForCondition(env, 'databasecredentials', team, 'theirs', 'Ready', 'False', 'NamespaceNotAllowed');
    await waitFor('the Secret of the namespace that lost access to be deleted', async () => (await readSecretData(env, team, 'theirs')) === undefined, { timeoutMs: 30_000 });
    await waitFor('the password it saw to stop working', async () => (await loginError(connectionFromSecret(seen))) === '28P01', { timeoutMs: 30_000 });
    await waitFor('the allowed namespace to get the new password', async () => {
      const mine = await readSecretData(env, ns, 'mine');
      return mine !== undefined && mine.password !== seen.password && (await loginError(connectionFromSecret(mine))) === undefined;
    }, { timeoutMs: 30_000 });
    await env.kubectl(['delete', 'namespace', team, '--wait=false']);
  });

  it('a namespace that had the password, deleted its credential and then lost access still gets it rotated', async () => {
    const user = `left_${tag}`;
    await createUser(user, 'old-left');
    const team = await createNamespace(env, 'static-left');
    await apply(env, ns, [{ ...staticRole('left', user), spec: { ...staticRole('left', user).spec, allowedNamespaces: [ns, team] } }]);
    await apply(env, team, [credentialObject('gone', { roleRef: { name: 'left', namespace: ns } })]);
    await waitForCondition(env, 'databasecredentials', team, 'gone', 'Ready', 'True');
    const seen = await readSecretData(env, team, 'gone');
    assert.ok(seen?.password);
    await env.kubectl(['-n', team, 'delete', 'databasecredential', 'gone', '--wait=true', '--timeout=60s']);
    assert.equal(await loginError(connectionFromSecret(seen)), undefined, 'deleting a credential does not rotate a static password');

    await env.kubectl(['-n', ns, 'patch', 'databaserole', 'left', '--type', 'merge', '-p', JSON.stringify({ spec: { allowedNamespaces: [ns] } })]);
    await waitFor('the password the namespace saw to stop working', async () => (await loginError(connectionFromSecret(seen))) === '28P01', { timeoutMs: 30_000 });
    const now = await staticPassword('left');
    assert.ok(now && now !== seen.password);
    assert.equal(await loginError(as(user, now)), undefined);
    await env.kubectl(['delete', 'namespace', team, '--wait=false']);
  });

  it('rotates a user whose name is full of quotes through EXECUTE, and only that user', async () => {
    const bystander = `by_${tag}`;
    // With only the outer quoting, EXECUTE would run: ALTER ROLE "by_…" PASSWORD 'pwned' --" WITH PASSWORD '…'
    const hostile = `${bystander}" PASSWORD 'pwned' --`;
    await createUser(bystander, 'bystander-pw');
    await createUser(hostile, 'hostile-old');
    await apply(env, ns, [staticRole('quoted', hostile, {
      rotationStatements: [`DO $$ BEGIN EXECUTE 'ALTER ROLE "{{name}}" WITH PASSWORD ''{{password}}'''; END $$;`],
    })]);
    await waitForCondition<DatabaseRole>(env, 'databaseroles', ns, 'quoted', 'Ready', 'True');
    const data = await readSecretData(env, ns, 'quoted-static-password');
    assert.equal(data?.username, hostile);
    assert.ok(data?.password);
    assert.equal(await loginError(as(hostile, data.password)), undefined, 'the named user got the new password');
    assert.equal(await loginError(as(hostile, 'hostile-old')), '28P01');
    assert.equal(await loginError(as(bystander, 'bystander-pw')), undefined, 'the bystander keeps its password');
    assert.equal(await loginError(as(bystander, 'pwned')), '28P01');
    await waitFor('the operator to stay up', async () => operator.exitCode === null, { timeoutMs: 1000 });
  });

  it('refuses at admission a static username longer than 63 bytes or with a NUL', async () => {
    await assert.rejects(apply(env, ns, [staticRole('too-long', 'é'.repeat(40))]), /static.username must be at most 63 bytes/);
    await assert.rejects(apply(env, ns, [staticRole('nul', 'a\0b')]), /spec\.static\.username in body should match '\^\[\^\\x00\]\+\$'/);
  });
});
