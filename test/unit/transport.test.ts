// The admin connection's transport (issue 8, finding 7): which authentication requests it answers, what each
// sslmode asks of TLS, and how a TLS failure is named. The guard is exercised from the wire, against a fake
// server on 127.0.0.1 that asks for the password in cleartext or MD5 and records what the client sends.
import assert from 'node:assert/strict';
import pg from 'pg';
import { FakePostgresServer } from '../env/fakePostgres.js';
import {
  ConfigPool,
  InsecureAuthenticationError,
  clientConfig,
  poolConfig,
  tlsVerification,
  transportFailure,
  type ConnectionSettings,
} from '../../src/postgres/pool.js';
import { tlsCondition } from '../../src/reconcilers/databaseconfig.js';
import type { Logger } from '../../src/logger.js';

const quiet = { debug() {}, info() {}, warn() {}, error() {} } as unknown as Logger;
const PASSWORD = 'root-password-that-must-stay-home';

function settings(port: number, extra: Partial<ConnectionSettings> = {}): ConnectionSettings {
  return { host: '127.0.0.1', port, database: 'postgres', user: 'postgres', password: PASSWORD, sslmode: 'disable', maxConnections: 1, ...extra };
}

async function connectThroughPool(s: ConnectionSettings): Promise<unknown> {
  const pool = new ConfigPool('ns/config', s, quiet);
  try {
    await pool.transport();
    return undefined;
  } catch (err) {
    return err;
  } finally {
    await pool.close();
  }
}

describe('admin connection: authentication requests', function () {
  this.timeout(20_000);
  for (const ask of ['password', 'md5'] as const) {
    describe(`a server that asks for ${ask === 'password' ? 'the cleartext password' : 'an MD5 hash'}`, () => {
      let server: FakePostgresServer;
      beforeEach(async () => {
        server = new FakePostgresServer(ask);
        await server.start();
      });
      afterEach(() => server.stop());

      for (const sslmode of ['disable', 'prefer']) {
        it(`is refused by default (sslmode=${sslmode}), and gets nothing after its request`, async () => {
          const err = await connectThroughPool(settings(server.port, { sslmode }));
          assert.ok(err instanceof InsecureAuthenticationError, `refused with InsecureAuthenticationError, got ${String(err)}`);
          assert.equal(err.method, ask);
          assert.match(err.message, /does not allow; the password was not sent/);
          assert.ok(server.connections.length >= 1, 'the client reached the fake server');
          assert.equal(server.answeredPasswordRequest, false, 'no byte after the password request');
          assert.equal(Buffer.concat(server.connections.map((c) => c.received)).includes(PASSWORD), false);
          assert.deepEqual(transportFailure(err, settings(server.port)), { reason: 'InsecureAuthentication', message: err.message });
        });
      }

      it('is refused by a one-off client too (clientConfig)', async () => {
        const client = new pg.Client(clientConfig(settings(server.port)));
        client.on('error', () => undefined);
        await assert.rejects(client.connect(), InsecureAuthenticationError);
        await client.end().catch(() => undefined);
        assert.equal(server.answeredPasswordRequest, false);
      });

      it(`is answered when allowedAuthentication lists ${ask} (the fake server does see what a client sends)`, async () => {
        await connectThroughPool(settings(server.port, { allowedAuthentication: ['scram-sha-256', ask] }));
        assert.equal(server.answeredPasswordRequest, true);
        const sent = Buffer.concat(server.connections.map((c) => c.afterAuthenticationRequest));
        assert.equal(sent[0], 'p'.charCodeAt(0), 'a PasswordMessage');
        // Cleartext carries the password itself; MD5 a hash of it (which is as good as the password for MD5 logins).
        assert.equal(sent.includes(PASSWORD), ask === 'password');
      });
    });
  }

  it('prefer: a server that declines TLS gets a second, plaintext connection (libpq behaviour)', async () => {
    const server = new FakePostgresServer('password');
    await server.start();
    try {
      await connectThroughPool(settings(server.port, { sslmode: 'prefer' }));
      assert.equal(server.connections.length, 2, 'one TLS attempt, one plaintext attempt');
      const [first, second] = server.connections;
      assert.equal(first?.received.readInt32BE(4), 80877103, 'the first connection asked for TLS');
      assert.equal(second?.received.readInt32BE(4), 196608, 'the second one started plaintext (protocol 3.0)');
    } finally {
      await server.stop();
    }
  });

  it('require: a server that declines TLS is refused with TLSUnavailable, before any startup message', async () => {
    const server = new FakePostgresServer('password');
    await server.start();
    try {
      const s = settings(server.port, { sslmode: 'require' });
      const err = await connectThroughPool(s);
      assert.equal(transportFailure(err, s)?.reason, 'TLSUnavailable');
      assert.equal(server.connections.length, 1);
      assert.equal(server.connections[0]?.received.length, 8, 'only the SSLRequest');
    } finally {
      await server.stop();
    }
  });
});

describe('admin connection: sslmode as libpq means it', () => {
  const ca = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
  const ssl = (extra: Partial<ConnectionSettings>) => poolConfig(settings(5432, extra)).ssl;

  it('disable and allow: no TLS', () => {
    assert.equal(ssl({ sslmode: 'disable' }), false);
    assert.equal(ssl({ sslmode: 'allow' }), false);
  });

  it('prefer and require: TLS without verification, or the chain verified when a CA is given', () => {
    for (const sslmode of ['prefer', 'require']) {
      assert.deepEqual(ssl({ sslmode }), { rejectUnauthorized: false });
      const withCA = ssl({ sslmode, ca }) as { ca?: string; rejectUnauthorized?: boolean; checkServerIdentity?: () => unknown };
      assert.equal(withCA.ca, ca);
      assert.equal(withCA.rejectUnauthorized, true);
      assert.equal(withCA.checkServerIdentity?.(), undefined, 'no host name check');
      assert.equal(tlsVerification(settings(5432, { sslmode, ca })), 'ca');
      assert.equal(tlsVerification(settings(5432, { sslmode })), 'none');
    }
  });

  it('verify-ca: the chain only; verify-full: the chain and the host name (Node checks it by default)', () => {
    const verifyCA = ssl({ sslmode: 'verify-ca', ca }) as { ca?: string; rejectUnauthorized?: boolean; checkServerIdentity?: unknown };
    assert.equal(verifyCA.ca, ca);
    assert.equal(verifyCA.rejectUnauthorized, true);
    assert.equal(typeof verifyCA.checkServerIdentity, 'function');
    assert.deepEqual(ssl({ sslmode: 'verify-full', ca }), { ca, rejectUnauthorized: true });
    assert.deepEqual(ssl({ sslmode: 'verify-full' }), { rejectUnauthorized: true }, 'the system CAs without caSecretRef');
    assert.equal(tlsVerification(settings(5432, { sslmode: 'verify-full', ca })), 'full');
  });
});

describe('admin connection: naming a failure', () => {
  const s = settings(5432, { sslmode: 'verify-full', ca: 'x', host: 'db.example' });
  const failure = (code: string | undefined, message: string) => transportFailure(Object.assign(new Error(message), code ? { code } : {}), s);

  it('gives wrong CA, wrong host name, expired certificate and no TLS distinct reasons', () => {
    assert.equal(failure('ERR_TLS_CERT_ALTNAME_INVALID', "Hostname/IP does not match certificate's altnames")?.reason, 'TLSHostnameMismatch');
    for (const code of ['SELF_SIGNED_CERT_IN_CHAIN', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'DEPTH_ZERO_SELF_SIGNED_CERT']) {
      assert.equal(failure(code, 'x')?.reason, 'TLSCertificateUntrusted', code);
    }
    assert.equal(failure('CERT_HAS_EXPIRED', 'certificate has expired')?.reason, 'TLSCertificateInvalid');
    assert.equal(failure(undefined, 'The server does not support SSL connections')?.reason, 'TLSUnavailable');
    assert.equal(failure('ERR_SSL_WRONG_VERSION_NUMBER', 'wrong version number')?.reason, 'TLSHandshakeFailed');
  });

  it('leaves other failures (a wrong password, an unreachable server) to the usual reasons', () => {
    assert.equal(transportFailure(Object.assign(new Error('password authentication failed'), { code: '28P01', severity: 'FATAL' }), s), undefined);
    assert.equal(failure('ECONNREFUSED', 'connect ECONNREFUSED'), undefined);
  });

  it('reports the TLS condition: verified how, plaintext, or fell back', () => {
    assert.equal(tlsCondition(s, { tls: true, protocol: 'TLSv1.3', fellBack: false }).reason, 'VerifiedFull');
    assert.equal(tlsCondition({ ...s, sslmode: 'verify-ca' }, { tls: true, fellBack: false }).reason, 'VerifiedCA');
    assert.equal(tlsCondition({ ...s, sslmode: 'require', ca: undefined }, { tls: true, fellBack: false }).reason, 'NotVerified');
    const fellBack = tlsCondition({ ...s, sslmode: 'prefer' }, { tls: false, fellBack: true });
    assert.deepEqual([fellBack.status, fellBack.reason], ['False', 'ServerDeclinedTLS']);
    assert.deepEqual([tlsCondition({ ...s, sslmode: 'disable' }, { tls: false, fellBack: false }).reason], ['Disabled']);
  });
});
