import assert from 'node:assert/strict';
import {
  ALPHANUMERIC,
  generatePassword,
  PASSWORD_ALPHABET,
  randomString,
  type RandomBytes,
} from '../../src/secrets/password.js';

/** Replays the given bytes in order, cycling. */
function replay(bytes: number[]): RandomBytes {
  let next = 0;
  return (size) => Uint8Array.from({ length: size }, () => bytes[next++ % bytes.length] ?? 0);
}

describe('randomString', () => {
  it('maps bytes onto the alphabet', () => {
    assert.equal(randomString('abc', 4, replay([0, 1, 2, 3])), 'abca');
  });

  it('discards bytes that would bias the modulo', () => {
    // 256 % 63 = 4, so bytes 252..255 are skipped rather than folded onto the first four characters.
    assert.equal(randomString(PASSWORD_ALPHABET, 3, replay([252, 253, 254, 255, 0, 62, 1])), 'a-b');
  });

  it('is uniform: every accepted byte value maps to each character equally often', () => {
    const everyByte = Array.from({ length: 256 }, (_, i) => i);
    const text = randomString(PASSWORD_ALPHABET, 252, replay(everyByte));
    const counts = new Map<string, number>();
    for (const c of text) counts.set(c, (counts.get(c) ?? 0) + 1);
    assert.equal(counts.size, 63);
    assert.deepEqual(new Set(counts.values()), new Set([4]));
  });

  it('gives up on a source that never yields a usable byte', () => {
    assert.throws(() => randomString(ALPHANUMERIC, 8, replay([255])), /unusable bytes/);
  });
});

describe('generatePassword', () => {
  it('defaults to 32 characters from letters, digits and "-"', () => {
    assert.match(generatePassword(), /^[A-Za-z0-9-]{32}$/);
  });

  it('has every class in each of 2000 minimum-length draws', () => {
    for (let i = 0; i < 2000; i++) {
      const password = generatePassword(16);
      assert.equal(password.length, 16);
      for (const characterClass of [/[a-z]/, /[A-Z]/, /[0-9]/, /-/]) assert.match(password, characterClass);
    }
  });

  it('accepts the bounds 16 and 128', () => {
    assert.equal(generatePassword(16).length, 16);
    assert.equal(generatePassword(128).length, 128);
  });

  for (const length of [0, 15, 129, 16.5, Number.NaN]) {
    it(`refuses length ${length}`, () => assert.throws(() => generatePassword(length), /from 16 to 128/));
  }

  it('redraws instead of patching a password that lacks a class', () => {
    // First 16 bytes: all 'a' (rejected); next 16: a, A, 0, - then 'a's (accepted).
    const first = Array<number>(16).fill(0);
    const second = [0, 26, 52, 62, ...Array<number>(12).fill(0)];
    assert.equal(generatePassword(16, replay([...first, ...second])), 'aA0-aaaaaaaaaaaa');
  });

  it('reports a source that never yields every class', () => {
    assert.throws(() => generatePassword(16, replay([0])), /every character class/);
  });
});
