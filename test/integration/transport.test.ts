// The admin connection's transport, end to end (issue 8, findings 7 and 9): a server that asks for the root
// password in cleartext or MD5 gets nothing; sslmode means what it means to libpq against the environment's
// PostgreSQL, which serves TLS with a CA of its own; a wrong CA and a wrong host name each fail with a reason of
// their own; and an issued credential's Secret carries the CA so that a libpq client (psql) verifies the server.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import type { DatabaseConfig, DatabaseCredential, DatabaseRole } from '../../src/api/types.js';
import { assertNoViolations } from '../audit/auditor.js';
import { FakePostgresServer } from '../env/fakePostgres.js';
import { PostgresServer } from '../env/postgres.js';
import { removeOnExit, runCommand } from '../env/processes.js';
import { CertificateAuthority } from '../env/tls.js';
import { createNamespace, queryAs, testEnv, waitFor, type TestEnv } from './harness.js';
import { OperatorProcess, apply, condition, credentialObject, readSecretData, waitForCondition } from './operator.js';

describe('admin connection transport: authentication requests and TLS', function () {
  this.timeout(120_000);
  let env: TestEnv;
  let ns: string;
  let operator: OperatorProcess;
  let tmp: string;
  const servers: Array<{ stop(): Promise<void> }> = [];

  before(async function () {
    this.timeout(600_000);
    env = await testEnv();
    ns = await createNamespace(env, 'transport');
    tmp = mkdtempSync(path.join(os.tmpdir(), 'dbcred-transport-'));
    removeOnExit(tmp);
    operator = new OperatorProcess(env);
    operator.start();
    await operator.waitReady();
    const pgc = env.postgres.connection;
    await apply(env, ns, [
      secret('pg-root', { username: pgc.user, password: pgc.password }),
      secret('pg-ca', { 'ca.crt': env.postgres.caPem }),
    ]);
  });

  after(async function () {
    this.timeout(120_000);
    try {
      if (env && ns) await assertNoViolations(env, { namespaces: [ns] });
    } finally {
      await operator?.stop();
      for (const s of servers) await s.stop().catch(() => undefined);
      if (tmp) rmSync(tmp, { recursive: true, force: true });
    }
  });

  function secret(name: string, stringData: Record<string, string>): object {
    return { apiVersion: 'v1', kind: 'Secret', metadata: { name }, stringData };
  }

  function config(name: string, url: string, extra: Record<string, unknown> = {}): object {
    return {
      apiVersion: 'dbcred.dev/v1alpha1',
      kind: 'DatabaseConfig',
      metadata: { name },
      spec: { connectionURL: url, rootCredentialsSecretRef: { name: 'pg-root' }, allowedRoles: ['*'], ...extra },
    };
  }

  const envURL = (query = '', host = '127.0.0.1', port = env.postgres.port) => `postgresql://{{username}}:{{password}}@${host}:${port}/postgres${query}`;

  /** Ready=False with this reason; the message names no password. */
  async function refusedWith(name: string, reason: string): Promise<DatabaseConfig> {
    const cfg = await waitForCondition<DatabaseConfig>(env, 'databaseconfigs', ns, name, 'Ready', 'False', reason);
    const message = condition(cfg, 'Ready')?.message ?? '';
    assert.ok(!message.includes(env.postgres.password), 'no password in the Ready message');
    return cfg;
  }

  for (const ask of ['password', 'md5'] as const) {
    it(`refuses a server that asks for ${ask === 'password' ? 'the cleartext password' : 'an MD5 hash'}: InsecureAuthentication, and nothing reaches it`, async () => {
      const fake = new FakePostgresServer(ask);
      await fake.start();
      servers.push(fake);
      const name = `fake-${ask}`;
      await apply(env, ns, [config(name, envURL('', '127.0.0.1', fake.port))]);
      const cfg = await refusedWith(name, 'InsecureAuthentication');
      assert.match(condition(cfg, 'Ready')?.message ?? '', /the password was not sent/);
      assert.ok(fake.connections.length >= 1, 'the operator did connect to the impostor');
      assert.equal(fake.answeredPasswordRequest, false, 'no byte after the password request');
      assert.equal(Buffer.concat(fake.connections.map((c) => c.received)).includes(env.postgres.password), false);

      // The control: allowed, the same impostor gets an answer, so the check above can see a leak.
      await env.kubectl(['-n', ns, 'patch', 'databaseconfig', name, '--type=merge', '-p', JSON.stringify({ spec: { allowedAuthenticationMethods: ['scram-sha-256', ask] } })]);
      await waitFor(`the impostor to get an answer once ${ask} is allowed`, async () => fake.answeredPasswordRequest, { timeoutMs: 30_000 });
      await env.kubectl(['-n', ns, 'delete', 'databaseconfig', name, '--wait=true', '--timeout=60s']);
    });
  }

  it('refuses a real PostgreSQL whose pg_hba asks for a cleartext password: nothing authenticates until it is allowed', async () => {
    const dir = path.join(tmp, 'pg-password');
    const server = new PostgresServer(dir, { log_connections: 'on' }, { tls: false, hostAuthMethod: 'password' });
    await server.init();
    await server.start();
    servers.push(server);
    await apply(env, ns, [secret('pw-root', { username: server.superuser, password: server.password })]);
    const url = `postgresql://{{username}}:{{password}}@127.0.0.1:${server.port}/postgres`;
    const log = () => readFileSync(server.logFile, 'utf8');
    const ours = /connection authorized: user=postgres .*application_name=dbcred-operator/;
    await apply(env, ns, [{ ...(config('pw', url) as DatabaseConfig), spec: { connectionURL: url, rootCredentialsSecretRef: { name: 'pw-root' } } }]);
    await refusedWith('pw', 'InsecureAuthentication');
    assert.match(log(), /connection received: host=127\.0\.0\.1/);
    assert.doesNotMatch(log(), ours, 'the operator never authenticated');

    // sslmode=require against a server without TLS: a reason of its own.
    await env.kubectl(['-n', ns, 'patch', 'databaseconfig', 'pw', '--type=merge', '-p', JSON.stringify({ spec: { connectionURL: `${url}?sslmode=require`, allowedAuthenticationMethods: ['scram-sha-256', 'password'] } })]);
    await refusedWith('pw', 'TLSUnavailable');
    assert.doesNotMatch(log(), ours);

    // Allowed, with prefer (the default): the server declines TLS, the operator falls back and says so.
    await env.kubectl(['-n', ns, 'patch', 'databaseconfig', 'pw', '--type=merge', '-p', JSON.stringify({ spec: { connectionURL: url } })]);
    const ready = await waitForCondition<DatabaseConfig>(env, 'databaseconfigs', ns, 'pw', 'Ready', 'True');
    assert.deepEqual([condition(ready, 'TLS')?.status, condition(ready, 'TLS')?.reason], ['False', 'ServerDeclinedTLS']);
    assert.match(log(), ours, 'the control: once allowed, the operator authenticates');
    await env.kubectl(['-n', ns, 'delete', 'databaseconfig', 'pw', '--wait=true', '--timeout=60s']);
  });

  const succeeding: Array<[string, string, boolean, string]> = [
    // name, query, with caSecretRef, TLS reason
    ['tls-require', '?sslmode=require', false, 'NotVerified'],
    ['tls-prefer', '', false, 'NotVerified'],
    ['tls-verify-ca', '?sslmode=verify-ca', true, 'VerifiedCA'],
    ['tls-verify-full', '?sslmode=verify-full', true, 'VerifiedFull'],
    ['tls-default-ca', '', true, 'VerifiedFull'],
  ];
  for (const [name, query, withCA, reason] of succeeding) {
    it(`connects with ${query || 'no sslmode'}${withCA ? ' and caSecretRef' : ''}: TLS=True (${reason})`, async () => {
      await apply(env, ns, [config(name, envURL(query), withCA ? { caSecretRef: { name: 'pg-ca' } } : {})]);
      const cfg = await waitForCondition<DatabaseConfig>(env, 'databaseconfigs', ns, name, 'Ready', 'True');
      assert.deepEqual([condition(cfg, 'TLS')?.status, condition(cfg, 'TLS')?.reason], ['True', reason]);
      assert.match(condition(cfg, 'TLS')?.message ?? '', /^TLSv1\.[23]/);
    });
  }

  it('the server sees the operator over TLS (pg_stat_ssl)', async () => {
    // A server of this test's own, signed by the environment's CA. On the shared one, this operator (it watches
    // every namespace) also serves the configs that earlier test files left behind, with sslmode=disable: their
    // plaintext sessions carry the same application_name, so a server-wide count there says nothing about ours.
    const server = new PostgresServer(path.join(tmp, 'pg-stat-ssl'), {}, { tls: { ca: env.postgres.ca } });
    await server.init();
    await server.start();
    servers.push(server);
    const root = { rootCredentialsSecretRef: { name: 'stat-root' } };
    const statConfig = (name: string, query: string, extra: Record<string, unknown> = {}) =>
      config(name, envURL(query, '127.0.0.1', server.port), { ...root, ...extra });
    await apply(env, ns, [
      secret('stat-root', { username: server.superuser, password: server.password }),
      ...succeeding.map(([name, query, withCA]) => statConfig(`stat-${name}`, query, withCA ? { caSecretRef: { name: 'pg-ca' } } : {})),
    ]);
    for (const [name] of succeeding) {
      const cfg = await waitForCondition<DatabaseConfig>(env, 'databaseconfigs', ns, `stat-${name}`, 'Ready', 'True');
      assert.equal(condition(cfg, 'TLS')?.status, 'True');
    }
    // The operator's sessions on this server, by transport (a pool keeps its connection idle for 30s after use).
    const sessions = async (): Promise<{ tls: number; plain: number }> => {
      const res = await queryAs(server.connection,
        "SELECT count(*) FILTER (WHERE s.ssl)::int AS tls, count(*) FILTER (WHERE NOT s.ssl)::int AS plain FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.application_name = 'dbcred-operator'");
      return res.rows[0] as { tls: number; plain: number };
    };
    const seen = await sessions();
    assert.ok(seen.tls > 0, `the operator has TLS connections (${JSON.stringify(seen)})`);
    assert.equal(seen.plain, 0, 'none of them is plaintext (every config above uses TLS)');

    // The control: a plaintext config against the same server, and the same query sees its session.
    await apply(env, ns, [statConfig('stat-plain', '?sslmode=disable')]);
    const plain = await waitForCondition<DatabaseConfig>(env, 'databaseconfigs', ns, 'stat-plain', 'Ready', 'True');
    assert.equal(condition(plain, 'TLS')?.status, 'False');
    const withPlain = await sessions();
    assert.ok(withPlain.plain > 0, `the query sees a plaintext session of the operator (${JSON.stringify(withPlain)})`);
    await env.kubectl(['-n', ns, 'delete', 'databaseconfig', 'stat-plain', ...succeeding.map(([name]) => `stat-${name}`), '--wait=true', '--timeout=60s']);
  });

  it('a wrong CA fails with TLSCertificateUntrusted', async () => {
    const other = await CertificateAuthority.create(path.join(tmp, 'other-ca'), 'not the server CA');
    await apply(env, ns, [secret('other-ca', { 'ca.crt': other.certPem }), config('wrong-ca', envURL('?sslmode=verify-ca'), { caSecretRef: { name: 'other-ca' } })]);
    const cfg = await refusedWith('wrong-ca', 'TLSCertificateUntrusted');
    assert.equal(condition(cfg, 'TLS')?.reason, 'TLSCertificateUntrusted');
    await env.kubectl(['-n', ns, 'delete', 'databaseconfig', 'wrong-ca', '--wait=true', '--timeout=60s']);
  });

  it('a certificate for another host name fails verify-full with TLSHostnameMismatch, and passes verify-ca', async () => {
    const server = new PostgresServer(path.join(tmp, 'pg-other-name'), {}, { tls: { ca: env.postgres.ca, subjectAltNames: ['DNS:db.example.internal'] } });
    await server.init();
    await server.start();
    servers.push(server);
    await apply(env, ns, [
      secret('named-root', { username: server.superuser, password: server.password }),
      ...['verify-full', 'verify-ca'].map((mode) => ({
        ...(config(`named-${mode}`, '') as DatabaseConfig),
        spec: { connectionURL: envURL(`?sslmode=${mode}`, '127.0.0.1', server.port), rootCredentialsSecretRef: { name: 'named-root' }, caSecretRef: { name: 'pg-ca' } },
      })),
    ]);
    const cfg = await waitForCondition<DatabaseConfig>(env, 'databaseconfigs', ns, 'named-verify-full', 'Ready', 'False', 'TLSHostnameMismatch');
    assert.match(condition(cfg, 'Ready')?.message ?? '', /not valid for host "127\.0\.0\.1"/);
    assert.ok(!(condition(cfg, 'Ready')?.message ?? '').includes(server.password));
    const control = await waitForCondition<DatabaseConfig>(env, 'databaseconfigs', ns, 'named-verify-ca', 'Ready', 'True');
    assert.equal(condition(control, 'TLS')?.reason, 'VerifiedCA');
    await env.kubectl(['-n', ns, 'delete', 'databaseconfig', 'named-verify-full', 'named-verify-ca', '--wait=true', '--timeout=60s']);
  });

  it('refuses verify-ca without a CA (CARequired) and a CA Secret without a PEM certificate (InvalidCA)', async () => {
    await apply(env, ns, [
      secret('not-a-ca', { 'ca.crt': 'not a certificate' }),
      config('no-ca', envURL('?sslmode=verify-ca')),
      config('bad-ca', envURL('?sslmode=require'), { caSecretRef: { name: 'not-a-ca' } }),
    ]);
    await refusedWith('no-ca', 'CARequired');
    await refusedWith('bad-ca', 'InvalidCA');
    await env.kubectl(['-n', ns, 'delete', 'databaseconfig', 'no-ca', 'bad-ca', '--wait=true', '--timeout=60s']);
  });

  it('the API server refuses a ?password= parameter and a parameter naming a local file', async () => {
    await assert.rejects(apply(env, ns, [config('pw-param', envURL('?sslmode=require&password=hunter2'))]), (err: Error) =>
      /must not have a password parameter/.test(err.message) && !err.message.includes('hunter2'));
    await assert.rejects(apply(env, ns, [config('file-param', envURL('?sslrootcert=/var/run/secrets/kubernetes.io/serviceaccount/ca.crt'))]),
      /must not name a file on the operator's machine/);
  });

  it("issues a Secret that carries the CA, and psql verifies the server with it (verify-full)", async () => {
    await apply(env, ns, [{
      apiVersion: 'dbcred.dev/v1alpha1',
      kind: 'DatabaseRole',
      metadata: { name: 'tls-reader' },
      spec: {
        configRef: { name: 'tls-default-ca' },
        creationStatements: [`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';`],
      },
    }]);
    await waitForCondition<DatabaseRole>(env, 'databaseroles', ns, 'tls-reader', 'Ready', 'True');
    await apply(env, ns, [credentialObject('tls-app', { roleRef: { name: 'tls-reader' } })]);
    const cred = await waitForCondition<DatabaseCredential>(env, 'databasecredentials', ns, 'tls-app', 'Ready', 'True');
    const data = await readSecretData(env, ns, cred.status?.secretName ?? 'tls-app');
    assert.ok(data);
    assert.equal(data.sslmode, 'verify-full', 'the default with a CA');
    assert.equal(data.sslrootcert, 'root.crt');
    assert.equal(data['root.crt'], env.postgres.caPem);

    // node-postgres, as kube-service-bindings sets it up: ssl.ca from root.crt, host name checked.
    const client = new pg.Client({ host: data.host, port: Number(data.port), user: data.username, password: data.password, database: data.database,
      ssl: { ca: data['root.crt'], rejectUnauthorized: true }, connectionTimeoutMillis: 5000 });
    await client.connect();
    try {
      const res = await client.query('SELECT ssl, current_user AS u FROM pg_stat_ssl WHERE pid = pg_backend_pid()');
      assert.deepEqual(res.rows[0], { ssl: true, u: data.username });
    } finally {
      await client.end();
    }

    // psql with the uri as it is and root.crt where libpq looks by default (~/.postgresql/root.crt), and with
    // sslrootcert added where a pod mounts the key.
    const psql = async (home: string, uri: string) =>
      runCommand('psql', [uri, '-XAtc', 'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()'], { env: { PATH: process.env.PATH ?? '', HOME: home } });
    const home = path.join(tmp, 'home');
    mkdirSync(path.join(home, '.postgresql'), { recursive: true });
    writeFileSync(path.join(home, '.postgresql', 'root.crt'), data['root.crt'] ?? '');
    assert.equal((await psql(home, data.uri ?? '')).trim(), 't');
    const mounted = path.join(tmp, 'binding');
    mkdirSync(mounted, { recursive: true });
    writeFileSync(path.join(mounted, data.sslrootcert ?? ''), data['root.crt'] ?? '');
    const emptyHome = path.join(tmp, 'empty-home');
    mkdirSync(emptyHome, { recursive: true });
    assert.equal((await psql(emptyHome, `${data.uri}&sslrootcert=${path.join(mounted, 'root.crt')}`)).trim(), 't');
    // The control: verification is real; another CA is refused, and no CA at all too.
    const other = await CertificateAuthority.create(path.join(tmp, 'psql-other-ca'), 'another CA');
    await assert.rejects(psql(emptyHome, `${data.uri}&sslrootcert=${other.certFile}`), /certificate verify failed/);
    await assert.rejects(psql(emptyHome, data.uri ?? ''), /root certificate file .* does not exist/);
    await env.kubectl(['-n', ns, 'delete', 'databasecredential', 'tls-app', '--wait=true', '--timeout=60s']);
  });
});
