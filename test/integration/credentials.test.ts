// Dynamic credentials end to end, against the real API server and PostgreSQL: what a platform team applies, what a
// pod would read from the Secret, and what PostgreSQL then lets it do.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type { DatabaseConfig, DatabaseCredential, DatabaseRole } from '../../src/api/types.js';
import pg from 'pg';
import { httpGet } from '../env/controlplane.js';
import { freePort } from '../env/processes.js';
import { assertNoViolations } from '../audit/auditor.js';
import { markedRolesOf as markedRolesOfOn, roleExists as roleExistsOn, createNamespace, deleteNamespaceAndWait, installationOf, markerComment, loginError, queryAs, testEnv, waitFor, type TestEnv } from './harness.js';
import {
  OperatorProcess,
  apply,
  condition,
  connectionFromSecret,
  credentialObject,
  getObject,
  platformObjects,
  readSecretData,
  waitForCondition,
} from './operator.js';

describe('dynamic credentials', function () {
  this.timeout(120_000);
  let env: TestEnv;
  let ns: string;
  let operator: OperatorProcess;
  let metricsPort: number;
  const passwordsSeen = new Set<string>();
  /** every namespace this suite made, for the invariant auditor at its end */
  const suiteNamespaces: string[] = [];

  const roleExists = (username: string) => roleExistsOn(env.postgres.connection, username);
  const markedRolesOf = (namespace: string, name: string) => markedRolesOfOn(env.postgres.connection, namespace, name);

  async function issued(name: string): Promise<{ cred: DatabaseCredential; data: Record<string, string> }> {
    const cred = await waitForCondition<DatabaseCredential>(env, 'databasecredentials', ns, name, 'Ready', 'True');
    const data = await readSecretData(env, ns, cred.status?.secretName ?? name);
    assert.ok(data, `Secret of ${name} exists`);
    if (data.password) passwordsSeen.add(data.password);
    return { cred, data };
  }

  before(async function () {
    this.timeout(600_000);
    env = await testEnv();
    ns = await createNamespace(env, 'creds');
    suiteNamespaces.push(ns);
    await queryAs(env.postgres.connection, 'CREATE TABLE IF NOT EXISTS public.items (id int); INSERT INTO public.items VALUES (1), (2);');
    metricsPort = await freePort();
    operator = new OperatorProcess(env, { ORPHAN_SWEEP_PERIOD: '2s', HEALTH_PORT: String(metricsPort) });
    operator.start();
    await operator.waitReady();
    await apply(env, ns, platformObjects(env));
    await waitForCondition<DatabaseConfig>(env, 'databaseconfigs', ns, 'pg', 'Ready', 'True');
    await waitForCondition<DatabaseRole>(env, 'databaseroles', ns, 'reader', 'Ready', 'True');
  });

  after(async function () {
    this.timeout(120_000);
    try {
      // Before the operator stops: everything this suite left must satisfy the invariants of issue 7.
      if (env && ns) await assertNoViolations(env, { namespaces: suiteNamespaces });
    } finally {
      await operator?.stop();
    }
  });

  it('reports the config Ready with the server version', async () => {
    const config = await getObject<DatabaseConfig>(env, 'databaseconfigs', ns, 'pg');
    assert.match(config?.status?.serverVersion ?? '', /^1[5-9]/);
    assert.equal(condition(config, 'Ready')?.observedGeneration, config?.metadata.generation);
  });

  it('issues a Secret whose keys log in and whose role can do what the role grants', async () => {
    await apply(env, ns, [credentialObject('app', { roleRef: { name: 'reader' }, ttl: '10m' })]);
    const { cred, data } = await issued('app');
    assert.equal(data.type, 'postgresql');
    assert.equal(data.provider, 'dbcred');
    assert.equal(data.username, cred.status?.username);
    assert.equal(data.sslmode, 'disable');
    assert.ok(Buffer.byteLength(data.username ?? '') <= 63);
    assert.match(data.username ?? '', /^v-reader-app-/);
    const rows = await queryAs(connectionFromSecret(data), 'SELECT count(*)::int AS n FROM public.items');
    assert.equal(rows.rows[0].n, 2);
    // The uri key alone is enough for a libpq-style client.
    const viaUri = await queryAs({ connectionString: data.uri } as never, 'SELECT current_user AS u');
    assert.equal(viaUri.rows[0].u, data.username);
    // And a wrong password really fails.
    assert.equal(await loginError({ ...connectionFromSecret(data), password: `${data.password}x` }), '28P01');
    // The role can read but not write.
    await assert.rejects(queryAs(connectionFromSecret(data), 'INSERT INTO public.items VALUES (3)'), /permission denied/);

    const secret = await env.core.readNamespacedSecret({ namespace: ns, name: 'app' });
    assert.equal(secret.type, 'servicebinding.io/postgresql');
    assert.equal(secret.metadata?.labels?.['app.kubernetes.io/managed-by'], 'dbcred-operator');
    const owner = secret.metadata?.ownerReferences?.[0];
    assert.equal(owner?.kind, 'DatabaseCredential');
    assert.equal(owner?.uid, cred.metadata.uid);
    assert.equal(owner?.controller, true);
    assert.equal(owner?.blockOwnerDeletion, true);
    assert.ok(cred.status?.expiresAt && cred.status.issuedAt);
    assert.equal(new Date(cred.status.expiresAt).getTime() - new Date(cred.status.issuedAt).getTime(), 10 * 60_000);
    // With rotation on (the default), expires-at is the latest this login can work: issuedAt + the role's maxTTL.
    assert.equal(new Date(data['expires-at'] ?? '').getTime() - new Date(cred.status.issuedAt).getTime(), 24 * 3600_000);
    assert.deepEqual(cred.status?.binding, { name: 'app' });
    assert.ok(cred.metadata.finalizers?.includes('dbcred.dev/revoke-roles'));
    // PostgreSQL's own backstop: VALID UNTIL is the lease end.
    const until = await queryAs(env.postgres.connection, `SELECT rolvaliduntil FROM pg_roles WHERE rolname = '${data.username}'`);
    assert.equal(new Date(until.rows[0].rolvaliduntil).toISOString().slice(0, 19), cred.status.expiresAt.slice(0, 19));
  });

  it('stores a SCRAM verifier, never the plaintext, in PostgreSQL', async () => {
    const { data } = await issued('app');
    const res = await queryAs(env.postgres.connection, `SELECT rolpassword FROM pg_authid WHERE rolname = '${data.username}'`);
    assert.match(res.rows[0].rolpassword, /^SCRAM-SHA-256\$4096:/);
  });

  it('revokes the role when the credential is deleted, and the Secret is garbage-collected', async () => {
    await apply(env, ns, [credentialObject('short-lived', { roleRef: { name: 'reader' } })]);
    const { data } = await issued('short-lived');
    assert.equal(await roleExists(data.username ?? ''), true);
    await env.kubectl(['-n', ns, 'delete', 'databasecredential', 'short-lived', '--wait=true', '--timeout=60s']);
    assert.equal(await roleExists(data.username ?? ''), false);
    assert.equal(await loginError(connectionFromSecret(data)), '28P01');
    await waitFor('the Secret to be garbage-collected', async () => (await readSecretData(env, ns, 'short-lived')) === undefined, { timeoutMs: 90_000, intervalMs: 500 });
  });

  it('revokes a role that owns a table and has an open session', async () => {
    await apply(env, ns, platformObjects(env, {
      role: 'owner',
      creationStatements: [
        `CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';`,
        'GRANT CREATE, USAGE ON SCHEMA public TO "{{name}}"; GRANT SELECT ON public.items TO "{{name}}";',
      ],
    }).slice(2));
    await waitForCondition<DatabaseRole>(env, 'databaseroles', ns, 'owner', 'Ready', 'True');
    await apply(env, ns, [credentialObject('maker', { roleRef: { name: 'owner' } })]);
    const { data } = await issued('maker');
    const session = new (await import('pg')).default.Client({ ...connectionFromSecret(data) });
    session.on('error', () => undefined);
    await session.connect();
    const table = `t_${Date.now()}`;
    await session.query(`CREATE TABLE public.${table} (x int)`);
    await env.kubectl(['-n', ns, 'delete', 'databasecredential', 'maker', '--wait=true', '--timeout=60s']);
    assert.equal(await roleExists(data.username ?? ''), false);
    await assert.rejects(session.query('SELECT 1'), 'the open session was terminated');
    await session.end().catch(() => undefined);
    const owner = await queryAs(env.postgres.connection, `SELECT tableowner FROM pg_tables WHERE tablename = '${table}'`);
    assert.equal(owner.rows[0].tableowner, 'postgres', 'the table was handed to the admin');
  });

  it('expires a credential at its TTL when rotation is disabled: role revoked, Secret deleted, object kept', async () => {
    await apply(env, ns, [credentialObject('brief', { roleRef: { name: 'reader' }, ttl: '3s', rotation: { enabled: false } })]);
    const { data } = await issued('brief');
    const cred = await waitForCondition<DatabaseCredential>(env, 'databasecredentials', ns, 'brief', 'Expired', 'True', 'TTLExpired', 30_000);
    assert.equal(condition(cred, 'Ready')?.reason, 'Expired');
    assert.equal(await roleExists(data.username ?? ''), false);
    await waitFor('the Secret to be deleted', async () => (await readSecretData(env, ns, 'brief')) === undefined, { timeoutMs: 10_000 });
    assert.ok(await getObject(env, 'databasecredentials', ns, 'brief'), 'the object stays for GitOps');
    // Nothing is re-issued afterwards.
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(await readSecretData(env, ns, 'brief'), undefined);
    assert.deepEqual(await markedRolesOf(ns, 'brief'), []);
  });

  it('issues many credentials for one role at once', async () => {
    const names = Array.from({ length: 25 }, (_, i) => `many-${i}`);
    await apply(env, ns, names.map((n) => credentialObject(n, { roleRef: { name: 'reader' } })));
    for (const n of names) {
      const { data } = await issued(n);
      assert.equal((await queryAs(connectionFromSecret(data), 'SELECT count(*)::int AS n FROM public.items')).rows[0].n, 2);
    }
    await env.kubectl(['-n', ns, 'delete', 'databasecredential', ...names, '--wait=true', '--timeout=90s']);
    for (const n of names) assert.deepEqual(await markedRolesOf(ns, n), []);
  });

  it('revokes overdue roles as soon as an operator that was down comes back', async () => {
    await apply(env, ns, [credentialObject('while-down', { roleRef: { name: 'reader' }, ttl: '2s', rotation: { enabled: false } })]);
    const { data } = await issued('while-down');
    await operator.stop();
    await new Promise((r) => setTimeout(r, 3000));
    assert.equal(await roleExists(data.username ?? ''), true, 'nobody revoked it while the operator was down');
    operator.start();
    await operator.waitReady();
    await waitForCondition(env, 'databasecredentials', ns, 'while-down', 'Expired', 'True', undefined, 20_000);
    assert.equal(await roleExists(data.username ?? ''), false);
  });

  it('leaves no orphan role when the operator is killed in the middle of issuing', async () => {
    await apply(env, ns, platformObjects(env, {
      role: 'slow',
      creationStatements: [
        `CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';`,
        'SELECT pg_sleep(2);',
      ],
    }).slice(2));
    await waitForCondition<DatabaseRole>(env, 'databaseroles', ns, 'slow', 'Ready', 'True');
    await apply(env, ns, [credentialObject('crash', { roleRef: { name: 'slow' } })]);
    // Kill once the intent is recorded, i.e. while CREATE ROLE's transaction is open.
    await waitFor('a pending role in status', async () => {
      const c = await getObject<DatabaseCredential>(env, 'databasecredentials', ns, 'crash');
      return c?.status?.roles?.some((r) => r.state === 'pending') ?? false;
    }, { timeoutMs: 20_000, intervalMs: 50 });
    await operator.kill();
    operator.start();
    await operator.waitReady();
    const { cred, data } = await issued('crash');
    assert.deepEqual(cred.status?.roles?.map((r) => [r.username, r.state]), [[data.username, 'active']]);
    await waitFor('exactly one marked role for the credential', async () => (await markedRolesOf(ns, 'crash')).length === 1, { timeoutMs: 20_000 });
    assert.deepEqual(await markedRolesOf(ns, 'crash'), [data.username]);
    assert.equal(await loginError(connectionFromSecret(data)), undefined);
  });

  it('sweeps a marked role whose credential no longer exists', async () => {
    const orphan = `v-orphan-${Date.now()}`;
    const marker = markerComment(await installationOf(env), ns, 'gone', '00000000-0000-0000-0000-000000000000', orphan);
    await queryAs(env.postgres.connection, `CREATE ROLE "${orphan}" LOGIN; COMMENT ON ROLE "${orphan}" IS ${pg.escapeLiteral(marker)}`);
    await waitFor('the orphan to be revoked', async () => !(await roleExists(orphan)), { timeoutMs: 20_000, intervalMs: 250 });
  });

  it('sweeps a marked role that a live credential does not hold', async () => {
    const { cred } = await issued('crash');
    const leaked = `v-leaked-${Date.now()}`;
    const marker = markerComment(await installationOf(env), ns, 'crash', cred.metadata.uid ?? '', leaked);
    await queryAs(env.postgres.connection, `CREATE ROLE "${leaked}" LOGIN; COMMENT ON ROLE "${leaked}" IS ${pg.escapeLiteral(marker)}`);
    await waitFor('the leaked role to be revoked', async () => !(await roleExists(leaked)), { timeoutMs: 20_000, intervalMs: 250 });
    assert.equal(await roleExists(cred.status?.username ?? ''), true, 'the role the credential holds stays');
  });

  it('refuses a Secret it does not own, and changes nothing in it', async () => {
    await env.core.createNamespacedSecret({ namespace: ns, body: { metadata: { name: 'taken' }, stringData: { mine: 'yes' } } });
    await apply(env, ns, [credentialObject('taker', { roleRef: { name: 'reader' }, secretName: 'taken' })]);
    await waitForCondition(env, 'databasecredentials', ns, 'taker', 'Ready', 'False', 'SecretConflict');
    assert.deepEqual(await readSecretData(env, ns, 'taken'), { mine: 'yes' });
    assert.deepEqual(await markedRolesOf(ns, 'taker'), [], 'no role was created');
  });

  it('refuses a role from a namespace it does not allow, without running SQL', async () => {
    const other = await createNamespace(env, 'tenant');
    suiteNamespaces.push(other);
    await apply(env, other, [credentialObject('sneaky', { roleRef: { name: 'reader', namespace: ns } })]);
    const cred = await waitForCondition<DatabaseCredential>(env, 'databasecredentials', other, 'sneaky', 'Ready', 'False', 'NamespaceNotAllowed');
    assert.match(condition(cred, 'Ready')?.message ?? '', /allowedNamespaces/);
    assert.deepEqual(await markedRolesOf(other, 'sneaky'), []);
  });

  it('allows a role from another namespace when allowedNamespaces names it', async () => {
    const tenant = await createNamespace(env, 'team');
    suiteNamespaces.push(tenant);
    await apply(env, ns, platformObjects(env, { role: 'shared', allowedNamespaces: [ns, 'team-*'] }).slice(2));
    await waitForCondition<DatabaseRole>(env, 'databaseroles', ns, 'shared', 'Ready', 'True');
    await apply(env, tenant, [credentialObject('cross', { roleRef: { name: 'shared', namespace: ns } })]);
    const cred = await waitForCondition<DatabaseCredential>(env, 'databasecredentials', tenant, 'cross', 'Ready', 'True');
    const data = await readSecretData(env, tenant, 'cross');
    assert.ok(data);
    passwordsSeen.add(data.password ?? '');
    assert.equal(data.username, cred.status?.username);
    assert.equal(await loginError(connectionFromSecret(data)), undefined);
  });

  it('reports a broken creation statement on the role before any credential needs it', async () => {
    await apply(env, ns, platformObjects(env, { role: 'broken', creationStatements: [`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}'; GRANT SELECT ON nosuchtable TO "{{name}}";`] }).slice(2));
    const role = await waitForCondition<DatabaseRole>(env, 'databaseroles', ns, 'broken', 'Ready', 'False', 'StatementsFailed');
    assert.match(condition(role, 'Ready')?.message ?? '', /nosuchtable/);
    assert.doesNotMatch(condition(role, 'Ready')?.message ?? '', /PASSWORD '[^*]/);
  });

  it('reports a login failure, then recovers when the root Secret is fixed', async () => {
    const objs = platformObjects(env, { config: 'badpw' });
    const secret = objs[0] as { stringData: { password: string } };
    const good = secret.stringData.password;
    secret.stringData.password = 'wrong-password';
    await apply(env, ns, objs.slice(0, 2));
    const config = await waitForCondition<DatabaseConfig>(env, 'databaseconfigs', ns, 'badpw', 'Ready', 'False', 'LoginFailed');
    assert.doesNotMatch(JSON.stringify(config.status), /wrong-password/);
    secret.stringData.password = good;
    await apply(env, ns, objs.slice(0, 1));
    await waitForCondition<DatabaseConfig>(env, 'databaseconfigs', ns, 'badpw', 'Ready', 'True', undefined, 20_000);
  });

  it('reports a missing root Secret', async () => {
    await apply(env, ns, [{ ...(platformObjects(env, { config: 'nosecret' })[1] as object), spec: { ...((platformObjects(env, { config: 'nosecret' })[1] as DatabaseConfig).spec), rootCredentialsSecretRef: { name: 'absent' } } }]);
    const config = await waitForCondition<DatabaseConfig>(env, 'databaseconfigs', ns, 'nosecret', 'Ready', 'False', 'SecretNotFound');
    assert.match(condition(config, 'Ready')?.message ?? '', /absent/);
  });

  it('refuses bad input at admission with a clear message', async () => {
    await assert.rejects(apply(env, ns, [credentialObject('badttl', { roleRef: { name: 'reader' }, ttl: 'abc' })]), /ttl/);
    await assert.rejects(apply(env, ns, [credentialObject('zerottl', { roleRef: { name: 'reader' }, ttl: '0s' })]), /ttl/);
    await assert.rejects(apply(env, ns, [credentialObject('unknown', { roleRef: { name: 'reader' }, bogus: true })]), /bogus|unknown field/);
    await assert.rejects(apply(env, ns, [credentialObject('noref', {})]), /roleRef/);
  });

  it('revokes every role when a namespace is deleted with its config, role, root Secret and credentials', async () => {
    const doomed = await createNamespace(env, 'doomed');
    suiteNamespaces.push(doomed);
    await apply(env, doomed, platformObjects(env));
    await waitForCondition<DatabaseRole>(env, 'databaseroles', doomed, 'reader', 'Ready', 'True');
    await apply(env, doomed, [credentialObject('c1', { roleRef: { name: 'reader' } }), credentialObject('c2', { roleRef: { name: 'reader' } })]);
    const usernames: string[] = [];
    for (const n of ['c1', 'c2']) {
      const cred = await waitForCondition<DatabaseCredential>(env, 'databasecredentials', doomed, n, 'Ready', 'True');
      usernames.push(cred.status?.username ?? '');
    }
    for (const u of usernames) assert.equal(await roleExists(u), true);
    await deleteNamespaceAndWait(env, doomed);
    for (const u of usernames) assert.equal(await roleExists(u), false, `${u} was revoked`);
  });

  it('keeps the finalizer and says why while revocation fails, then finishes when PostgreSQL is back', async () => {
    await apply(env, ns, [credentialObject('stuck', { roleRef: { name: 'reader' } })]);
    const { data } = await issued('stuck');
    await env.postgres.stop();
    try {
      await env.kubectl(['-n', ns, 'delete', 'databasecredential', 'stuck', '--wait=false']);
      const cred = await waitForCondition<DatabaseCredential>(env, 'databasecredentials', ns, 'stuck', 'Ready', 'False', 'RevocationFailed');
      assert.ok(cred.metadata.deletionTimestamp);
      assert.ok(cred.metadata.finalizers?.includes('dbcred.dev/revoke-roles'), 'the finalizer stays');
      assert.match(condition(cred, 'Ready')?.message ?? '', new RegExp(data.username ?? 'x'));
    } finally {
      await env.postgres.start();
    }
    await waitFor('the credential to be gone', async () => (await getObject(env, 'databasecredentials', ns, 'stuck')) === undefined, { timeoutMs: 60_000, intervalMs: 250 });
    assert.equal(await roleExists(data.username ?? ''), false);
  });

  it('serves health and Prometheus metrics that count what it did', async () => {
    assert.equal((await httpGet(`http://127.0.0.1:${metricsPort}/healthz`)).status, 200);
    assert.equal((await httpGet(`http://127.0.0.1:${metricsPort}/readyz`)).status, 200);
    const { status, body } = await httpGet(`http://127.0.0.1:${metricsPort}/metrics`);
    assert.equal(status, 200);
    const value = (series: string) => Number(new RegExp(`^${series.replace(/[{}"]/g, '\\$&')} (\\S+)$`, 'm').exec(body)?.[1] ?? NaN);
    // This operator process was restarted twice by earlier tests; what it did since still shows.
    assert.ok(value('dbcred_credential_events_total{event="issued"}') >= 1, 'issued counted');
    assert.ok(value('dbcred_credential_events_total{event="revoked"}') >= 1, 'revocations counted');
    assert.ok(value('dbcred_credential_events_total{event="revocation_failed"}') >= 1, 'the failed revocation counted');
    assert.ok(value('dbcred_reconcile_total{controller="databasecredential",result="success"}') >= 1);
    assert.ok(value('dbcred_api_requests_total{verb="watch"}') >= 4);
    assert.match(body, /^process_resident_memory_bytes \d+/m);
  });

  it('never logs a password, verifier or credential-bearing URL', async () => {
    assert.ok(passwordsSeen.size > 5, 'the suite saw passwords to look for');
    assert.ok(operator.output.length > 1000, 'the operator logged');
    for (const pw of passwordsSeen) assert.equal(operator.output.includes(pw), false, 'a password appears in the operator log');
    assert.equal(operator.output.includes(env.postgres.password), false, 'the root password appears in the operator log');
    assert.doesNotMatch(operator.output, /SCRAM-SHA-256\$4096:[A-Za-z0-9+/=]{8}/);
    assert.doesNotMatch(operator.output, /postgres(ql)?:\/\/[^:\s"]+:[^*\s"@]+@/);

    // Nor in Events, nor in PostgreSQL's own log (the test server runs with log_statement=all).
    const events = await env.kubectl(['get', 'events', '-A', '-o', 'json']);
    assert.match(events, /dbcred\.dev\/operator/, 'the operator recorded events');
    const pgLog = readFileSync(env.postgres.logFile, 'utf8');
    assert.match(pgLog, /CREATE TABLE IF NOT EXISTS public.items/, 'the server log records statements');
    for (const pw of passwordsSeen) {
      assert.equal(events.includes(pw), false, 'a password appears in an Event');
      assert.equal(pgLog.includes(pw), false, 'a password appears in the PostgreSQL log');
    }
    assert.doesNotMatch(pgLog, /SCRAM-SHA-256\$4096:/, 'a verifier appears in the PostgreSQL log');
  });
});
