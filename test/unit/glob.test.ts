import assert from 'node:assert/strict';
import { globMatch } from '../../src/api/glob.js';
import { globMatch as globMatchFromContext } from '../../src/reconcilers/context.js';
import { mulberry32 } from '../random.js';

/** Reference: the textbook dynamic programme over (pattern prefix, value prefix), O(n·m), obviously right. */
function referenceMatch(pattern: string, value: string): boolean {
  let row = Array.from({ length: value.length + 1 }, (_, j) => j === 0);
  for (const p of pattern) {
    const next = new Array<boolean>(value.length + 1).fill(false);
    next[0] = p === '*' && row[0] === true;
    for (let j = 1; j <= value.length; j++) {
      next[j] = p === '*' ? row[j] === true || next[j - 1] === true : row[j - 1] === true && value[j - 1] === p;
    }
    row = next;
  }
  return row[value.length] === true;
}

/** Runs fn, asserts its result, and that it took less than ms (a guard against exponential backtracking only). */
function fast(ms: number, fn: () => boolean, expected: boolean): void {
  const start = process.hrtime.bigint();
  const result = fn();
  const took = Number(process.hrtime.bigint() - start) / 1e6;
  assert.equal(result, expected);
  assert.ok(took < ms, `took ${took.toFixed(1)} ms`);
}

describe('globMatch', () => {
  const table: Array<[string, string, boolean]> = [
    ['*', '', true],
    ['*', 'team-a', true],
    ['team-a', 'team-a', true],
    ['team-a', 'team-ab', false],
    ['team-*', 'team-', true],
    ['team-*', 'team-a', true],
    ['team-*', 'xteam-a', false],
    ['*-prod', 'shop-prod', true],
    ['*-prod', 'shop-prod-2', false],
    ['a*b*c', 'abc', true],
    ['a*b*c', 'aXbYc', true],
    ['a*b*c', 'acb', false],
    ['ab*ba', 'aba', false], // prefix and suffix may not overlap
    ['a**b', 'ab', true],
    ['*a*', 'bab', true],
    ['*a*', 'bbb', false],
    ['a.b', 'aXb', false], // regex characters are literal
    ['a+b', 'a+b', true],
    ['(x)|[y]?', '(x)|[y]?', true],
    ['^$\\', '^$\\', true],
    ['', '', true],
    ['', 'a', false],
  ];
  for (const [pattern, value, expected] of table) {
    it(`${JSON.stringify(pattern)} ${expected ? 'matches' : 'does not match'} ${JSON.stringify(value)}`, () => {
      assert.equal(globMatch(pattern, value), expected);
      assert.equal(referenceMatch(pattern, value), expected, 'the reference agrees');
    });
  }

  it('agrees with the reference on 20,000 random patterns and values over a small alphabet', () => {
    const random = mulberry32(8_2026);
    const word = (alphabet: string, max: number) => Array.from({ length: Math.floor(random() * (max + 1)) }, () => alphabet[Math.floor(random() * alphabet.length)]).join('');
    for (let i = 0; i < 20_000; i++) {
      const pattern = word('ab*', 8);
      const value = word('ab', 10);
      assert.equal(globMatch(pattern, value), referenceMatch(pattern, value), `${JSON.stringify(pattern)} vs ${JSON.stringify(value)}`);
    }
  });

  describe('adversarial inputs finish at once (the RegExp version backtracked for seconds to minutes)', () => {
    it("'a*a*a*a*a*a*a*a*a*a*a*b' against 'a' × 60 does not match", () => {
      fast(50, () => globMatch('a*a*a*a*a*a*a*a*a*a*a*b', 'a'.repeat(60)), false);
    });
    it('the 22-character namespace pattern of the report against a 63-character namespace', () => {
      fast(50, () => globMatch('a*a*a*a*a*a*a*a*a*a*ab', 'a'.repeat(63)), false);
      fast(50, () => globMatch('a*a*a*a*a*a*a*a*a*a*ab', `${'a'.repeat(61)}ab`), true);
    });
    it('CRD maxima: a 63-character allowedNamespaces pattern of 32 stars against a 63-character namespace', () => {
      const pattern = `${'a*'.repeat(31)}b`; // 63 characters
      fast(50, () => globMatch(pattern, 'a'.repeat(63)), false);
      fast(50, () => globMatch(pattern, `${'a'.repeat(62)}b`), true);
    });
    it('CRD maxima: a 253-character allowedRoles pattern against a 253-character role name, 100 entries', () => {
      const pattern = `${'a*'.repeat(126)}b`; // 253 characters
      const name = 'a'.repeat(253);
      fast(50, () => Array.from({ length: 100 }, () => pattern).some((p) => globMatch(p, name)), false);
      fast(50, () => globMatch(pattern, `${'a'.repeat(252)}b`), true);
    });
    it('pieces that almost match everywhere', () => {
      fast(50, () => globMatch(`*${'ab'.repeat(60)}c*`, 'ab'.repeat(2000)), false);
      fast(50, () => globMatch(`*${'a'.repeat(100)}b*`, 'a'.repeat(100_000)), false);
    });
  });

  it('is what the reconcilers use (context.ts re-exports it)', () => {
    assert.equal(globMatchFromContext, globMatch);
  });
});
