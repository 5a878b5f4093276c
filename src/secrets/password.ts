// Password generation for issued roles and root rotation. The alphabet avoids every character that needs quoting
// in SQL, URLs, shells or YAML, so a password can be pasted anywhere; length carries the entropy
// (32 characters from 63 symbols ≈ 191 bits).

import { randomBytes as cryptoRandomBytes } from 'node:crypto';

/** A source of uniformly random bytes; crypto.randomBytes in production, a fixed sequence in tests. */
export type RandomBytes = (size: number) => Uint8Array;

const LOWER = 'abcdefghijklmnopqrstuvwxyz';
const UPPER = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ';
const DIGITS = '0123456789';
const DASH = '-';

/** Letters and digits: the alphabet of {{random N}} in username templates. */
export const ALPHANUMERIC = LOWER + UPPER + DIGITS;
export const PASSWORD_ALPHABET = ALPHANUMERIC + DASH;
export const PASSWORD_CLASSES: readonly string[] = [LOWER, UPPER, DIGITS, DASH];

export const MIN_PASSWORD_LENGTH = 16;
export const MAX_PASSWORD_LENGTH = 128;
export const DEFAULT_PASSWORD_LENGTH = 32;

// With crypto randomness a 16-character draw has all four classes about one time in five, so a thousand
// failures in a row means the injected source is broken, not unlucky.
const MAX_PASSWORD_DRAWS = 1000;
// Guards against an injected source that never yields an acceptable byte; crypto randomness never gets close.
const MAX_SAMPLING_ROUNDS = 1000;

/**
 * Returns `length` characters drawn uniformly from `alphabet`. Bytes that would bias the modulo are discarded
 * (rejection sampling), so every character is equally likely.
 */
export function randomString(alphabet: string, length: number, randomBytes: RandomBytes = cryptoRandomBytes): string {
  if (alphabet.length < 2 || alphabet.length > 256) throw new RangeError('alphabet must have 2 to 256 characters');
  const acceptBelow = 256 - (256 % alphabet.length);
  let result = '';
  for (let round = 0; result.length < length; round++) {
    if (round === MAX_SAMPLING_ROUNDS) throw new Error('random source keeps producing unusable bytes');
    for (const byte of randomBytes(length - result.length)) {
      if (byte < acceptBelow && result.length < length) result += alphabet[byte % alphabet.length];
    }
  }
  return result;
}

/**
 * Generates a password of letters, digits and '-' with at least one lowercase letter, one uppercase letter, one
 * digit and one '-'. A draw lacking a class is discarded whole rather than patched, which keeps the result
 * uniform over all passwords that satisfy the policy.
 */
export function generatePassword(
  length: number = DEFAULT_PASSWORD_LENGTH,
  randomBytes: RandomBytes = cryptoRandomBytes,
): string {
  if (!Number.isInteger(length) || length < MIN_PASSWORD_LENGTH || length > MAX_PASSWORD_LENGTH) {
    throw new RangeError(
      `password length must be an integer from ${MIN_PASSWORD_LENGTH} to ${MAX_PASSWORD_LENGTH}, got ${length}`,
    );
  }
  for (let draw = 0; draw < MAX_PASSWORD_DRAWS; draw++) {
    const candidate = randomString(PASSWORD_ALPHABET, length, randomBytes);
    if (hasEveryClass(candidate)) return candidate;
  }
  throw new Error(`random source produced no password with every character class in ${MAX_PASSWORD_DRAWS} draws`);
}

function hasEveryClass(password: string): boolean {
  return PASSWORD_CLASSES.every((characterClass) => [...password].some((c) => characterClass.includes(c)));
}
