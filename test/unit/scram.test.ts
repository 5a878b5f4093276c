import assert from 'node:assert/strict';
import { createHash, createHmac } from 'node:crypto';
import { scramSha256Verifier } from '../../src/postgres/scram.js';

const VERIFIER = /^SCRAM-SHA-256\$(\d+):([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+):([A-Za-z0-9+/=]+)$/;

function parts(verifier: string): { iterations: number; salt: Buffer; storedKey: Buffer; serverKey: Buffer } {
  const match = VERIFIER.exec(verifier);
  assert.ok(match, `not a verifier: ${verifier}`);
  const [, iterations = '', salt = '', storedKey = '', serverKey = ''] = match;
  const b64 = (s: string) => Buffer.from(s, 'base64');
  return { iterations: Number(iterations), salt: b64(salt), storedKey: b64(storedKey), serverKey: b64(serverKey) };
}

const hmac = (key: Buffer, text: string) => createHmac('sha256', key).update(text).digest();

describe('scramSha256Verifier', () => {
  it('equals what PostgreSQL 15 stores for the same password and salt', async () => {
    // SET password_encryption = 'scram-sha-256'; CREATE ROLE r LOGIN PASSWORD 'Ab3-…-Q';
    // SELECT rolpassword FROM pg_authid WHERE rolname = 'r';
    const fromServer =
      'SCRAM-SHA-256$4096:EoFDZlDH8vEn45UBVHorRg==$kwgDrqieSBVga8c7tLFL66wov6cJIVZGZDYuAgbhpcg=:g0+Bk1PciG2Jnr8B/Ksbib9+4AL9yl6RRmbN6GVDzVI=';
    const salt = Buffer.from('EoFDZlDH8vEn45UBVHorRg==', 'base64');
    assert.equal(await scramSha256Verifier('Ab3-xyzXYZ0123456789abcdefghij-Q', { salt }), fromServer);
  });

  it('yields keys that complete the RFC 7677 example exchange (user "user", password "pencil")', async () => {
    const salt = Buffer.from('W22ZaJ0SNY7soEsUEjb6gQ==', 'base64');
    const { storedKey, serverKey } = parts(await scramSha256Verifier('pencil', { salt, iterations: 4096 }));
    const nonce = 'rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0';
    const authMessage = `n=user,r=rOprNGfwEbeRWgbNEkqO,r=${nonce},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r=${nonce}`;

    // The server proves itself with HMAC(ServerKey, AuthMessage): v= of the RFC's server-final-message.
    assert.equal(hmac(serverKey, authMessage).toString('base64'), '6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=');

    // The server checks the client: ClientKey = ClientProof XOR HMAC(StoredKey, AuthMessage); SHA-256(ClientKey) = StoredKey.
    const proof = Buffer.from('dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=', 'base64');
    const signature = hmac(storedKey, authMessage);
    const clientKey = Buffer.from(proof.map((byte, i) => byte ^ (signature[i] ?? 0)));
    assert.deepEqual(createHash('sha256').update(clientKey).digest(), storedKey);
  });

  it('uses 4096 iterations and a fresh 16-byte salt by default', async () => {
    const first = parts(await scramSha256Verifier('Password-1234567'));
    const second = parts(await scramSha256Verifier('Password-1234567'));
    assert.equal(first.iterations, 4096);
    assert.equal(first.salt.length, 16);
    assert.equal(first.storedKey.length, 32);
    assert.equal(first.serverKey.length, 32);
    assert.notDeepEqual(first.salt, second.salt);
    assert.notDeepEqual(first.storedKey, second.storedKey);
  });

  it('writes the iteration count it used', async () => {
    assert.equal(parts(await scramSha256Verifier('x', { iterations: 10 })).iterations, 10);
  });

  it('refuses zero iterations and an empty salt', async () => {
    await assert.rejects(scramSha256Verifier('x', { iterations: 0 }), RangeError);
    await assert.rejects(scramSha256Verifier('x', { salt: new Uint8Array() }), RangeError);
  });
});
