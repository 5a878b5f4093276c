// SCRAM-SHA-256 verifiers in the exact form PostgreSQL stores in pg_authid.rolpassword, so that
// `CREATE ROLE … PASSWORD 'SCRAM-SHA-256$…'` sets a password without the plaintext ever reaching the server or its
// log (log_statement=ddl logs the whole statement). RFC 5802 section 3 and RFC 7677.
//
// PostgreSQL runs SASLprep on the password before hashing. Our generated passwords are printable ASCII
// (letters, digits, '-'), for which SASLprep is the identity, so the UTF-8 bytes are hashed as they are.

import { createHash, createHmac, pbkdf2, randomBytes } from 'node:crypto';
import { promisify } from 'node:util';

const pbkdf2Async = promisify(pbkdf2);

/** PostgreSQL's default (scram_iterations, fixed at 4096 before PostgreSQL 16). */
export const SCRAM_ITERATIONS = 4096;
/** PostgreSQL's SCRAM_DEFAULT_SALT_LEN. */
export const SCRAM_SALT_LENGTH = 16;

const SHA256_LENGTH = 32;

export interface ScramOptions {
  iterations?: number;
  /** Fixed salt, for tests and for comparing with a verifier the server computed; random by default. */
  salt?: Uint8Array;
}

/**
 * Computes "SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>" (base64 parts). The PBKDF2 step runs on
 * libuv's thread pool, off the event loop.
 */
export async function scramSha256Verifier(password: string, options: ScramOptions = {}): Promise<string> {
  const iterations = options.iterations ?? SCRAM_ITERATIONS;
  const salt = options.salt ?? randomBytes(SCRAM_SALT_LENGTH);
  if (!Number.isInteger(iterations) || iterations < 1) throw new RangeError('SCRAM iterations must be a positive integer');
  if (salt.length === 0) throw new RangeError('SCRAM salt must not be empty');

  const saltedPassword = await pbkdf2Async(Buffer.from(password, 'utf8'), salt, iterations, SHA256_LENGTH, 'sha256');
  const clientKey = hmacSha256(saltedPassword, 'Client Key');
  const storedKey = createHash('sha256').update(clientKey).digest();
  const serverKey = hmacSha256(saltedPassword, 'Server Key');
  return `SCRAM-SHA-256$${iterations}:${base64(salt)}$${base64(storedKey)}:${base64(serverKey)}`;
}

function hmacSha256(key: Uint8Array, message: string): Buffer {
  return createHmac('sha256', key).update(message, 'utf8').digest();
}

function base64(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('base64');
}
