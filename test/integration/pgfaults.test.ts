// PostgreSQL failing under the operator while it works: connections cut while checked out (a server restart in
// fast mode, pg_terminate_backend) must be retried, never crash the process; and a pool replaced by new settings
// (a root rotation) must let what is in flight on the old one finish.
import assert from 'node:assert/strict';
import pg from 'pg';
import type { DatabaseConfig, DatabaseCredential, DatabaseRole } from '../../src/api/types.js';
import { createLogger } from '../../src/logger.js';
import { PoolRegistry, poolConfig, type ClientSource, type ConnectionSettings } from '../../src/postgres/pool.js';
import { RoleAdmin } from '../../src/postgres/roleAdmin.js';
import { assertNoViolations } from '../audit/auditor.js';
import { operatorSuite } from './suite.js';
import { createNamespace, loginError, markerComment, queryAs, testEnv, waitFor, type TestEnv, roleExists as roleExistsOn } from './harness.js';
import { OperatorProcess, apply, condition, connectionFromSecret, credentialObject, platformObjects, readSecretData, waitForCondition } from './operator.js';

describe('PostgreSQL faults under load', function () {
  this.timeout(300_000);
  let env: TestEnv;

  before(async function () {
    this.timeout(600_000);
    env = await testEnv();
  });

  describe('connections cut while a burst of credentials is issued', () => {
    let ns: string;
    let operator: OperatorProcess;

    operatorSuite('pgfaults', {}, (suite) => ({ ns, operator } = suite));

    const burst = (prefix: string, n: number) =>
      Array.from({ length: n }, (_, i) => credentialObject(`${prefix}-${i}`, { roleRef: { name: 'reader' } }));

    /** The operator's sessions that are doing something (a query, or a transaction open between queries). */
    /** The advisory lock key RoleAdmin takes for every role creation (roleAdmin.ts, DDL_LOCK_KEY: "dbcr"). */
    const DDL_LOCK_KEY = 0x64626372;
    const busyOperatorSessions = async (): Promise<number> =>
      Number((await queryAs(env.postgres.connection,
        "SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = 'dbcred-operator' AND state <> 'idle'")).rows[0]?.n ?? 0);

    /** Every credential of the burst ends Ready with a Secret that logs in, and the operator never exited. */
    const assertAllIssued = async (names: string[]) => {
      for (const name of names) {
        assert.equal(operator.exitCode, null, `the operator is still running (output tail: ${operator.output.slice(-1500)})`);
        await waitForCondition<DatabaseCredential>(env, 'databasecredentials', ns, name, 'Ready', 'True', undefined, 180_000);
        const data = await readSecretData(env, ns, name);
        assert.ok(data, `Secret ${name} exists`);
        assert.equal(await loginError(connectionFromSecret(data)), undefined, `the Secret of ${name} logs in`);
      }
      assert.equal(operator.exitCode, null, 'the operator is still running');
      assert.doesNotMatch(operator.output, /Unhandled 'error' event/);
    };

    it('survives PostgreSQL restarting (fast shutdown: 57P01 on checked-out clients) mid-burst', async () => {
      const docs = burst('restart', 30);
      // Cut while the operator holds connections mid-transaction: a session of the test holds the advisory lock that
      // every creation takes first, so the burst's transactions wait inside the server until the restart ends them.
      // (Polling for a busy session instead raced a burst that finished between two polls.)
      const blocker = new pg.Client({ ...env.postgres.connection });
      blocker.on('error', () => undefined);
      await blocker.connect();
      try {
        await blocker.query('SELECT pg_advisory_lock($1)', [DDL_LOCK_KEY]);
        await apply(env, ns, docs);
        await waitFor('the operator to be waiting inside its creation transactions', async () => (await busyOperatorSessions()) > 0, { timeoutMs: 30_000, intervalMs: 50 });
        await env.postgres.restart();
      } finally {
        await blocker.end().catch(() => undefined);
      }
      await assertAllIssued(docs.map((d) => (d as { metadata: { name: string } }).metadata.name));
    });

    it("survives its sessions being terminated (pg_terminate_backend) mid-burst", async () => {
      const docs = burst('terminated', 30);
      await apply(env, ns, docs);
      // From the moment the burst is applied, for a few seconds: whatever the operator holds, idle or in use.
      let terminated = 0;
      const until = Date.now() + 4_000;
      while (Date.now() < until) {
        const res = await queryAs(env.postgres.connection,
          "SELECT pg_terminate_backend(pid) AS t FROM pg_stat_activity WHERE application_name = 'dbcred-operator'");
        terminated += res.rows.filter((r: { t: boolean }) => r.t).length;
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.ok(terminated > 0, 'some of the operator\'s sessions were terminated');
      await assertAllIssued(docs.map((d) => (d as { metadata: { name: string } }).metadata.name));
    });
  });

  describe('a CREATEROLE-only admin', () => {
    let ns: string;
    let operator: OperatorProcess;
    const roleExists = (username: string) => roleExistsOn(env.postgres.connection, username);

    /** Root Secret, DatabaseConfig and DatabaseRole for a new CREATEROLE login with the given extra options. */
    const adminObjects = async (name: string, options: string): Promise<object[]> => {
      const user = `${name}_${process.pid}`;
      await queryAs(env.postgres.connection, `CREATE ROLE "${user}" LOGIN CREATEROLE ${options} PASSWORD '${name}-Password-1'`);
      const [secret, config, role] = platformObjects(env, {
        config: name,
        role: `${name}-role`,
        creationStatements: [`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';`],
      }) as [{ stringData: Record<string, string> }, object, object];
      secret.stringData = { username: user, password: `${name}-Password-1` };
      return [secret, config, role];
    };

    before(async function () {
      this.timeout(120_000);
      ns = await createNamespace(env, 'pgadmin');
      operator = new OperatorProcess(env);
      operator.start();
      await operator.waitReady();
    });

    after(async function () {
      this.timeout(120_000);
      try {
        if (env && ns) await assertNoViolations(env, { namespaces: [ns] });
      } finally {
        await operator?.stop();
      }
    });

    it('says when the admin cannot end sessions (NOINHERIT), and stays Ready', async () => {
      await apply(env, ns, await adminObjects('noinherit', 'NOINHERIT'));
      const config = await waitForCondition<DatabaseConfig>(env, 'databaseconfigs', ns, 'noinherit', 'SessionTermination', 'False', 'CannotTerminateSessions');
      assert.equal(condition(config, 'Ready')?.status, 'True', 'issuing still works: the config stays Ready');
      assert.match(condition(config, 'SessionTermination')?.message ?? '', /NOINHERIT/);
    });

    it('finishes a revocation that stopped part-way (role NOLOGIN, admin already a member) and ends the session', async () => {
      const objects = await adminObjects('partial', '');
      const admin = (objects[0] as { stringData: Record<string, string> }).stringData.username ?? '';
      await apply(env, ns, [...objects, credentialObject('partial', { roleRef: { name: 'partial-role' } })]);
      await waitForCondition<DatabaseCredential>(env, 'databasecredentials', ns, 'partial', 'Ready', 'True', undefined, 60_000);
      const data = await readSecretData(env, ns, 'partial');
      assert.ok(data?.username);
      const session = new pg.Client({ ...connectionFromSecret(data), connectionTimeoutMillis: 5000 });
      session.on('error', () => undefined);
      await session.connect();
      try {
        // What a revocation that failed after its first two steps leaves behind.
        await queryAs(env.postgres.connection, `ALTER ROLE "${data.username}" NOLOGIN; GRANT "${data.username}" TO "${admin}"`);
        await session.query('SELECT 1');
        await env.kubectl(['-n', ns, 'delete', 'databasecredential', 'partial', '--wait=true', '--timeout=60s']);
        await assert.rejects(session.query('SELECT 1'), 'the open session was terminated');
      } finally {
        await session.end().catch(() => undefined);
      }
      assert.equal(await roleExists(data.username), false);
    });
  });

  describe('a pool replaced by new settings (root rotation)', () => {
    const user = `pooltest_${process.pid}`;
    let registry: PoolRegistry;
    let settings: ConnectionSettings;

    before(async () => {
      await queryAs(env.postgres.connection, `CREATE ROLE "${user}" LOGIN PASSWORD 'pool-password-1'`);
      registry = new PoolRegistry(createLogger('error'));
      const pgc = env.postgres.connection;
      settings = { host: pgc.host, port: pgc.port, database: pgc.database, user, password: 'pool-password-1', sslmode: 'disable', maxConnections: 1 };
    });

    after(async () => {
      await registry?.closeAll();
      await queryAs(env.postgres.connection, `DROP ROLE IF EXISTS "${user}"`).catch(() => undefined);
    });

    /** One query on a client checked out the way RoleAdmin does (works on whatever the registry hands out). */
    const run = async (source: ClientSource, sql: string): Promise<unknown> => {
      const client = await source.connect();
      try {
        return (await client.query(sql)).rows[0];
      } finally {
        client.release();
      }
    };

    it('turns a connection cut in the middle of a transaction into a retried error, not a crash', async () => {
      const admin = new RoleAdmin(registry.get('ns/cut', settings), (database) => poolConfig({ ...settings, database }));
      // renewRole runs its statements in a transaction on a checked-out client: cut that client mid-statement. It
      // renews only a role whose marker names the caller, so the role is one "issued" by a test installation.
      const target = `${user}-renewed`;
      const owner = { installation: 'pgfaults-test', uid: 'cut-uid', acceptLegacy: false };
      await queryAs(env.postgres.connection, `DROP ROLE IF EXISTS "${target}"; CREATE ROLE "${target}";
        COMMENT ON ROLE "${target}" IS ${pg.escapeLiteral(markerComment(owner.installation, 'ns', 'cut', owner.uid, target))}`);
      const busy = admin.renewRole(target, owner, new Date(), ['SELECT pg_sleep(1)']);
      const sleeping = `SELECT pid FROM pg_stat_activity WHERE usename = '${user}' AND query LIKE '%pg_sleep(1)%' AND state = 'active'`;
      await waitFor('the statement to run', async () => ((await queryAs(env.postgres.connection, sleeping)).rowCount ?? 0) > 0, { timeoutMs: 10_000, intervalMs: 10 });
      await queryAs(env.postgres.connection, `SELECT pg_terminate_backend(pid) FROM (${sleeping}) s`);
      await busy; // the pg Client emitted 'error' while checked out: heard, and the statements were retried
      assert.equal(await admin.roleExists(user), true, 'the admin still works');
      registry.remove('ns/cut');
      await queryAs(env.postgres.connection, `DROP ROLE "${target}"`);
    });

    it('lets a query in flight and a checkout queued on the old pool finish, and sends later checkouts to the new one', async () => {
      const pgc = env.postgres.connection;
      const held = registry.get('ns/cfg', settings); // what an in-flight reconcile's RoleAdmin holds
      await run(held, 'SELECT 1'); // warm: the one connection exists and is authenticated
      const inFlight = run(held, 'SELECT 1 AS n FROM pg_sleep(0.5)');
      const queued = run(held, 'SELECT 2 AS n'); // the pool has one connection: this one waits for it
      // Root rotation: PostgreSQL gets the new password, then the operator switches to it.
      await queryAs(pgc, `ALTER ROLE "${user}" PASSWORD 'pool-password-2'`);
      const fresh = registry.get('ns/cfg', { ...settings, password: 'pool-password-2' });
      assert.deepEqual(await inFlight, { n: 1 }, 'the query in flight on the old pool finished');
      assert.deepEqual(await queued, { n: 2 }, 'the checkout queued on the old pool was served');
      assert.deepEqual(await run(held, 'SELECT 3 AS n'), { n: 3 }, 'a later checkout through the old reference works (new pool, new password)');
      assert.deepEqual(await run(fresh, 'SELECT 4 AS n'), { n: 4 });
      await waitFor('the retired pool to close its connection', async () =>
        Number((await queryAs(pgc, `SELECT count(*) AS n FROM pg_stat_activity WHERE usename = '${user}'`)).rows[0]?.n) === 1,
      { timeoutMs: 10_000, intervalMs: 100 });
    });
  });
});
