// Issue 8, finding 4: what the operator sends PostgreSQL (CREATE ROLE … PASSWORD '<verifier>', the plaintext in
// password mode, static and root rotation) must not reach the server log or pg_stat_statements, on a server that
// logs as much as it can: log_statement=all, every statement's duration, sampled statements and transactions,
// failing statements, and pg_stat_statements tracking utility statements. Where the admin may not quiet a setting
// for its sessions, the DatabaseConfig says so (QuietLogs=False).
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { DatabaseConfig, DatabaseCredential, DatabaseRole } from '../../src/api/types.js';
import { PostgresServer } from '../env/postgres.js';
import { createNamespace, queryAs, testEnv, waitFor, type TestEnv } from './harness.js';
import { OperatorProcess, apply, condition, credentialObject, platformObjects, readSecretData, waitForCondition } from './operator.js';

const LOUD_SERVER = {
  shared_preload_libraries: 'pg_stat_statements',
  'pg_stat_statements.track_utility': 'on',
  log_min_duration_statement: '0',
  log_min_duration_sample: '0',
  log_statement_sample_rate: '1',
  log_transaction_sample_rate: '1',
  log_min_error_statement: 'error',
};

describe('secrets stay out of PostgreSQL logs and statistics (issue 8, finding 4)', function () {
  this.timeout(180_000);
  let env: TestEnv;
  let loudEnv: TestEnv;
  let server: PostgresServer;
  let dir: string;
  let ns: string;
  let operator: OperatorProcess;
  /** Every secret value the operator handled in this suite: none may show up in the log or the statistics. */
  const secrets = new Set<string>();
  /** The superuser's password changes with the root rotation below. */
  let suPassword = '';
  const su = () => ({ ...server.connection, password: suPassword });

  before(async function () {
    this.timeout(600_000);
    env = await testEnv();
    dir = mkdtempSync(path.join(os.tmpdir(), 'dbcred-loudpg-'));
    server = new PostgresServer(dir, LOUD_SERVER);
    await server.init();
    await server.start();
    suPassword = server.password;
    loudEnv = { ...env, postgres: server };
    await queryAs(su(), 'CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
    await queryAs(su(), 'CREATE TABLE public.fragile_items (id int)');
    await queryAs(su(), "CREATE ROLE app_static LOGIN");
    ns = await createNamespace(env, 'quietlogs');
    operator = new OperatorProcess(env, { ORPHAN_SWEEP_PERIOD: '0s' });
    operator.start();
    await operator.waitReady();
  });

  after(async function () {
    this.timeout(120_000);
    await operator?.stop();
    await server?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const pgLog = () => readFileSync(server.logFile, 'utf8');
  const statements = async () => (await queryAs(su(), 'SELECT query FROM pg_stat_statements')).rows.map((r) => r.query as string);

  it('a superuser admin quiets every setting: QuietLogs=True', async () => {
    const [rootSecret, config, reader] = platformObjects(loudEnv) as [object, DatabaseConfig, DatabaseRole];
    const plain = platformObjects(loudEnv, { config: 'pgplain', role: 'plainreader' }) as [object, DatabaseConfig, DatabaseRole];
    plain[1].spec.passwordAuthentication = 'password';
    const fragile = platformObjects(loudEnv, {
      role: 'fragile',
      creationStatements: [`CREATE ROLE "{{name}}" LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'; GRANT SELECT ON public.fragile_items TO "{{name}}";`],
    })[2] as DatabaseRole;
    const staticRole = { apiVersion: 'dbcred.dev/v1alpha1', kind: 'DatabaseRole', metadata: { name: 'static' }, spec: { configRef: { name: 'pg' }, static: { username: 'app_static' } } };
    await apply(env, ns, [rootSecret, config, reader, ...plain, fragile, staticRole]);
    for (const name of ['pg', 'pgplain']) {
      const cfg = await waitForCondition<DatabaseConfig>(env, 'databaseconfigs', ns, name, 'QuietLogs', 'True', 'Quiet');
      assert.equal(condition(cfg, 'Ready')?.status, 'True');
    }
    for (const name of ['reader', 'plainreader', 'fragile', 'static']) await waitForCondition<DatabaseRole>(env, 'databaseroles', ns, name, 'Ready', 'True');
  });

  it('issues (scram and password mode), rotates a static and the root password, and fails an issue, all quietly', async () => {
    await apply(env, ns, [
      credentialObject('scram-cred', { roleRef: { name: 'reader' } }),
      credentialObject('plain-cred', { roleRef: { name: 'plainreader' } }),
    ]);
    for (const name of ['scram-cred', 'plain-cred']) {
      await waitForCondition<DatabaseCredential>(env, 'databasecredentials', ns, name, 'Ready', 'True');
      const data = await readSecretData(env, ns, name);
      assert.ok(data?.password, `${name} has a password`);
      secrets.add(data.password);
      secrets.add(data.uri ?? '');
    }
    const plainUser = (await readSecretData(env, ns, 'plain-cred'))?.username ?? '';
    const stored = (await queryAs(su(), `SELECT rolpassword FROM pg_authid WHERE rolname = '${plainUser}'`)).rows[0]?.rolpassword as string;
    assert.match(stored, /^SCRAM-SHA-256\$/, 'the server hashed the plaintext itself (password mode)');

    // Static role: its password was rotated on first sight.
    await waitFor('the static password Secret', async () => (await readSecretData(env, ns, 'static-static-password'))?.password !== undefined, { timeoutMs: 30_000 });
    secrets.add((await readSecretData(env, ns, 'static-static-password'))!.password!);

    // Root rotation: a new root password, set through ALTER ROLE.
    await env.kubectl(['-n', ns, 'annotate', 'databaseconfig', 'pg', 'dbcred.dev/rotate-root=1', '--overwrite']);
    await waitFor('the root password to change', async () => (await readSecretData(env, ns, 'pg-root'))?.password !== server.password, { timeoutMs: 30_000 });
    suPassword = (await readSecretData(env, ns, 'pg-root'))!.password!;
    secrets.add(suPassword);
    await waitForCondition<DatabaseConfig>(env, 'databaseconfigs', ns, 'pg', 'Ready', 'True');

    // A creation that fails on the server, after the verifier was sent: with log_min_error_statement=error the
    // failing batch would be logged in full.
    await queryAs(su(), 'DROP TABLE public.fragile_items');
    await apply(env, ns, [credentialObject('fragile-cred', { roleRef: { name: 'fragile' } })]);
    await waitFor('the failed issue to reach the server log', async () => /relation "public.fragile_items" does not exist/.test(pgLog()), { timeoutMs: 30_000 });
  });

  it('left no password and no verifier in the server log', () => {
    const log = pgLog();
    // The server really logged: every statement, with durations, and errors.
    assert.match(log, /statement: CREATE TABLE public\.fragile_items/);
    assert.match(log, /duration: \d/);
    assert.match(log, /ERROR: {2}relation "public\.fragile_items" does not exist/);
    assert.ok(secrets.size >= 6, 'the suite collected the secrets to look for');
    for (const secret of secrets) assert.equal(log.includes(secret), false, 'a password or URL appears in the PostgreSQL log');
    assert.doesNotMatch(log, /SCRAM-SHA-256\$4096:/, 'a verifier appears in the PostgreSQL log');
    assert.doesNotMatch(log, /PASSWORD '/i, 'a password clause appears in the PostgreSQL log');
  });

  it('left no password and no verifier in pg_stat_statements', async () => {
    const queries = await statements();
    assert.ok(queries.some((q) => q.includes('CREATE TABLE public.fragile_items')), 'pg_stat_statements tracks utility statements of other sessions');
    for (const q of queries) {
      assert.doesNotMatch(q, /SCRAM-SHA-256\$/, 'a verifier is stored in pg_stat_statements');
      for (const secret of secrets) assert.equal(q.includes(secret), false, 'a password is stored in pg_stat_statements');
    }
  });

  it('a CREATEROLE-only admin that cannot quiet the server says so (QuietLogs=False), and quiets what it is granted', async () => {
    await queryAs(su(), "CREATE ROLE limited_admin LOGIN CREATEROLE PASSWORD 'limited-admin-password'");
    const [, config, role] = platformObjects(loudEnv, { config: 'pglimited', role: 'limitedreader' }) as [object, DatabaseConfig, DatabaseRole];
    const root = { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'pglimited-root' }, stringData: { username: 'limited_admin', password: 'limited-admin-password' } };
    await apply(env, ns, [root, config, role]);
    const cfg = await waitForCondition<DatabaseConfig>(env, 'databaseconfigs', ns, 'pglimited', 'QuietLogs', 'False', 'StatementsLogged');
    assert.equal(condition(cfg, 'Ready')?.status, 'True', 'reported, not a reason to refuse');
    const message = condition(cfg, 'QuietLogs')?.message ?? '';
    for (const setting of ['log_statement=all', 'log_min_duration_statement=0', 'log_min_error_statement=error', 'pg_stat_statements.track_utility=on', 'log_transaction_sample_rate=1']) {
      assert.ok(message.includes(setting), `the message names ${setting}: ${message}`);
    }
    assert.equal(message.includes('limited-admin-password'), false);
    // Told by the message what to do, the platform grants SET on the parameters (PostgreSQL 15+); the operator's new
    // sessions then quiet them.
    const params = ['log_statement', 'log_min_duration_statement', 'log_min_duration_sample', 'log_transaction_sample_rate', 'log_min_error_statement', 'pg_stat_statements.track_utility'];
    await queryAs(su(), `GRANT SET ON PARAMETER ${params.join(', ')} TO limited_admin`);
    await queryAs(su(), "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'limited_admin'");
    await env.kubectl(['-n', ns, 'annotate', 'databaseconfig', 'pglimited', 'test/recheck=1', '--overwrite']);
    await waitForCondition<DatabaseConfig>(env, 'databaseconfigs', ns, 'pglimited', 'QuietLogs', 'True', 'Quiet', 60_000);
  });
});
