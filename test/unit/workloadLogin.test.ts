// The pure parts of the test workload's login (test/images/workload/login.mjs): reading the Secret's keys from
// files or prefixed variables, sslmode to TLS settings, the client settings, and failure lines without the password.
import assert from 'node:assert/strict';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { REPO_ROOT } from '../env/controlplane.js';

type LoginModule = typeof import('../images/workload/login.mjs');
// The .mjs runs in the image as it is (tsc does not copy it to dist): loaded from the source tree.
const loginModule = import(pathToFileURL(path.join(REPO_ROOT, 'test', 'images', 'workload', 'login.mjs')).href) as Promise<LoginModule>;

const settings = { host: 'pg.platform.svc', port: '5432', database: 'app', username: 'v-role-abc', password: 'pW-9xyz', sslmode: 'require' };

describe('workload login (test/images/workload/login.mjs)', () => {
  let m: LoginModule;
  before(async () => {
    m = await loginModule;
  });

  describe('readSettings', () => {
    it('reads each key from its file in the directory, exactly as written', async () => {
      const files: Record<string, string> = Object.fromEntries(Object.entries(settings).map(([k, v]) => [`/etc/db/${k}`, v]));
      files['/etc/db/password'] = 'with trailing newline\n';
      const read: string[] = [];
      const got = await m.readSettings('files', '/etc/db', {
        readText: async (file) => {
          read.push(file);
          const text = files[file];
          if (text === undefined) throw Object.assign(new Error('no such file'), { code: 'ENOENT' });
          return text;
        },
      });
      assert.deepEqual(got, { ...settings, password: 'with trailing newline\n' });
      assert.deepEqual(read.sort(), m.SETTING_KEYS.map((k) => `/etc/db/${k}`).sort());
    });

    it('names the missing file', async () => {
      await assert.rejects(
        m.readSettings('files', '/etc/db', { readText: async () => Promise.reject(Object.assign(new Error('x'), { code: 'ENOENT' })) }),
        (err: Error) => err instanceof m.UsageError && err.message === 'cannot read /etc/db/host: ENOENT',
      );
    });

    it('reads prefixed variables, as envFrom with a prefix sets them', async () => {
      const env = Object.fromEntries(Object.entries(settings).map(([k, v]) => [`DB_${k}`, v]));
      assert.deepEqual(await m.readSettings('env', 'DB_', { env: { ...env, host: 'not this one' } }), settings);
    });

    it('names the missing variable', async () => {
      await assert.rejects(m.readSettings('env', 'DB_', { env: { DB_host: 'h' } }), /environment variable DB_port is not set/);
    });

    it('refuses an unknown mode or a missing argument with the usage', async () => {
      await assert.rejects(m.readSettings('vault', 'x', { env: {} }), /usage: login.mjs files <dir> \| env <PREFIX>/);
      await assert.rejects(m.readSettings('files', undefined, { env: {} }), /usage:/);
      await assert.rejects(m.readSettings(undefined, undefined, { env: {} }), /usage:/);
    });
  });

  describe('tlsFor', () => {
    const cases: Array<[string, false | { rejectUnauthorized: boolean }]> = [
      ['disable', false],
      ['allow', false],
      ['prefer', { rejectUnauthorized: false }],
      ['require', { rejectUnauthorized: false }],
      ['verify-ca', { rejectUnauthorized: true }],
      ['verify-full', { rejectUnauthorized: true }],
    ];
    for (const [mode, want] of cases) it(`sslmode=${mode}`, () => assert.deepEqual(m.tlsFor(mode), want));
    it('refuses anything else', () => assert.throws(() => m.tlsFor('on'), /sslmode "on" is not one of/));
  });

  describe('clientConfig', () => {
    it('maps the Secret keys to node-postgres settings with the deadline', () => {
      assert.deepEqual(m.clientConfig(settings, 5000), {
        host: 'pg.platform.svc',
        port: 5432,
        database: 'app',
        user: 'v-role-abc',
        password: 'pW-9xyz',
        ssl: { rejectUnauthorized: false },
        connectionTimeoutMillis: 5000,
        query_timeout: 5000,
        application_name: 'dbcred-workload',
      });
    });
    for (const port of ['0', '65536', '54x', '', ' 5432'])
      it(`refuses port ${JSON.stringify(port)}`, () => assert.throws(() => m.clientConfig({ ...settings, port }), /is not a TCP port/));
  });

  describe('failureLine', () => {
    it('prints the error message', () => {
      assert.equal(m.failureLine(new Error('password authentication failed for user "v-role-abc"'), 'pW-9xyz'),
        'login failed: password authentication failed for user "v-role-abc"');
    });
    it('never prints the password, even if an error carried it', () => {
      assert.equal(m.failureLine(new Error('bad pW-9xyz and pW-9xyz'), 'pW-9xyz'), 'login failed: bad *** and ***');
    });
    it('falls back to the error code when there is no message', () => {
      assert.equal(m.failureLine(Object.assign(new Error(''), { code: 'ECONNRESET' }), undefined), 'login failed: ECONNRESET');
    });
  });
});
