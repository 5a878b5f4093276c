// The test workload's login (test/images/workload/login.mjs and serve.mjs, the files the workload image runs), run
// with this machine's node against real PostgreSQL servers: one with scram-sha-256 and TLS, one without TLS.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { REPO_ROOT } from '../env/controlplane.js';
import { PostgresServer } from '../env/postgres.js';
import { removeOnExit } from '../env/processes.js';

const WORKLOAD_DIR = path.join(REPO_ROOT, 'test', 'images', 'workload');

interface Run {
  code: number | null;
  out: string;
  ms: number;
}

function runNode(script: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(WORKLOAD_DIR, script), ...args], { env: { PATH: process.env.PATH, ...env } });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, out, ms: Date.now() - started }));
  });
}

describe('workload login (login.mjs, serve.mjs) against real PostgreSQL', function () {
  this.timeout(60_000);
  let tmp: string;
  let tlsServer: PostgresServer;
  let plainServer: PostgresServer;
  const role = 'workload_probe';
  const password = 'Wk-' + Math.random().toString(36).slice(2, 14);

  before(async function () {
    this.timeout(120_000);
    tmp = mkdtempSync(path.join(os.tmpdir(), 'dbcred-workload-'));
    removeOnExit(tmp);
    tlsServer = new PostgresServer(path.join(tmp, 'pg-tls'));
    plainServer = new PostgresServer(path.join(tmp, 'pg-plain'), {}, { tls: false });
    for (const server of [tlsServer, plainServer]) {
      await server.init();
      await server.start();
      const admin = new pg.Client(server.connection);
      await admin.connect();
      await admin.query(`CREATE ROLE ${role} LOGIN PASSWORD '${password}'`);
      await admin.end();
    }
  });

  after(async () => {
    await tlsServer?.stop();
    await plainServer?.stop();
  });

  function secretKeys(server: PostgresServer, over: Partial<Record<string, string>> = {}): Record<string, string> {
    return { host: '127.0.0.1', port: String(server.port), database: 'postgres', username: role, password, sslmode: 'require', ...over };
  }

  function secretDir(name: string, keys: Record<string, string>): string {
    const dir = path.join(tmp, name);
    mkdirSync(dir);
    // As a Secret volume: one file per key (and others the operator writes, which the login ignores).
    for (const [k, v] of Object.entries({ ...keys, uri: 'postgresql://ignored', 'expires-at': 'x' })) writeFileSync(path.join(dir, k), v);
    return dir;
  }

  function prefixed(prefix: string, keys: Record<string, string>): NodeJS.ProcessEnv {
    return Object.fromEntries(Object.entries(keys).map(([k, v]) => [prefix + k, v]));
  }

  it('logs in with the keys as files (a Secret volume), over TLS', async () => {
    const run = await runNode('login.mjs', ['files', secretDir('files-ok', secretKeys(tlsServer))]);
    assert.deepEqual([run.code, run.out], [0, `logged in as ${role}\n`]);
  });

  it('logs in with the keys as prefixed variables (envFrom with a prefix)', async () => {
    const run = await runNode('login.mjs', ['env', 'DB_'], prefixed('DB_', secretKeys(tlsServer)));
    assert.deepEqual([run.code, run.out], [0, `logged in as ${role}\n`]);
  });

  it('fails with the server reason and without printing either password', async () => {
    const wrong = 'Wrong-' + password;
    const run = await runNode('login.mjs', ['env', 'DB_'], prefixed('DB_', secretKeys(tlsServer, { password: wrong })));
    assert.deepEqual([run.code, run.out], [1, `login failed: password authentication failed for user "${role}"\n`]);
    assert.ok(!run.out.includes(password));
  });

  it('sslmode means TLS: require fails where the server has none, disable logs in without it', async () => {
    const required = await runNode('login.mjs', ['env', 'P_'], prefixed('P_', secretKeys(plainServer)));
    assert.deepEqual([required.code, required.out], [1, 'login failed: The server does not support SSL connections\n']);
    const plain = await runNode('login.mjs', ['env', 'P_'], prefixed('P_', secretKeys(plainServer, { sslmode: 'disable' })));
    assert.deepEqual([plain.code, plain.out], [0, `logged in as ${role}\n`]);
  });

  it('gives up after 5 seconds when the server never answers', async () => {
    const silent = net.createServer(() => {}); // accepts, says nothing
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    try {
      const port = String((silent.address() as net.AddressInfo).port);
      const run = await runNode('login.mjs', ['env', 'S_'], prefixed('S_', secretKeys(tlsServer, { port, sslmode: 'disable' })));
      assert.equal(run.code, 1);
      assert.match(run.out, /^login failed: .+\n$/);
      assert.ok(run.ms >= 4500 && run.ms < 8000, `took ${run.ms}ms`);
    } finally {
      silent.close();
    }
  });

  it('serve.mjs logs in once, prints the result, waits, and exits 0 on SIGTERM', async () => {
    const child = spawn(process.execPath, [path.join(WORKLOAD_DIR, 'serve.mjs'), 'files', secretDir('serve', secretKeys(tlsServer))]);
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    const deadline = Date.now() + 10_000;
    while (!out.includes('\n') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.equal(out, `logged in as ${role}\n`);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(child.exitCode, null, 'serve.mjs must keep running after the login');
    const stopped = Date.now();
    child.kill('SIGTERM');
    assert.equal(await exited, 0);
    assert.ok(Date.now() - stopped < 2000);
  });
});
