import assert from 'node:assert/strict';
import { DurationError, formatDuration, parseDuration, toRFC3339 } from '../../src/api/duration.js';

describe('parseDuration', () => {
  const cases: Array<[string, number]> = [
    ['0', 0],
    ['0s', 0],
    ['30s', 30_000],
    ['90m', 5_400_000],
    ['1h', 3_600_000],
    ['24h', 86_400_000],
    ['1h30m', 5_400_000],
    ['1.5h', 5_400_000],
    ['.5s', 500],
    ['5.s', 5_000],
    ['500ms', 500],
    ['1h1m1s1ms', 3_661_001],
    ['1500us', 1.5],
    ['1500µs', 1.5],
    ['1500μs', 1.5],
    ['2000000ns', 2],
    ['720h', 2_592_000_000],
  ];
  for (const [text, ms] of cases) {
    it(`parses ${JSON.stringify(text)} as ${ms} ms`, () => assert.equal(parseDuration(text), ms));
  }

  const invalid: Array<[string, RegExp]> = [
    ['', /empty/],
    ['1d', /unknown unit "d"/],
    ['abc', /missing number/],
    ['-1h', /negative/],
    ['+1h', /sign/],
    ['10', /expected a number followed by a unit/],
    ['1h30', /expected a number followed by a unit/],
    ['.s', /missing number/],
    ['1.5.5h', /expected a number followed by a unit/],
    ['1 h', /unknown unit " h"/],
    ['3000000h', /out of range/],
  ];
  for (const [text, message] of invalid) {
    it(`refuses ${JSON.stringify(text)}`, () => {
      assert.throws(() => parseDuration(text), (err: unknown) => err instanceof DurationError && message.test(err.message));
    });
  }
});

describe('formatDuration', () => {
  const cases: Array<[number, string]> = [
    [0, '0s'],
    [5_400_000, '1h30m0s'],
    [3_600_000, '1h0m0s'],
    [300_000, '5m0s'],
    [61_500, '1m1.5s'],
    [1_500, '1.5s'],
    [500, '500ms'],
    [0.0015, '1.5µs'],
    [1.5, '1.5ms'],
    [0.000001, '1ns'],
    [-90_000, '-1m30s'],
    [86_400_000, '24h0m0s'],
  ];
  for (const [ms, text] of cases) {
    it(`formats ${ms} ms as ${text}`, () => assert.equal(formatDuration(ms), text));
  }

  it('round-trips through parseDuration', () => {
    for (const text of ['1h30m0s', '1m1.5s', '500ms', '1.5µs', '0s']) {
      assert.equal(formatDuration(parseDuration(text)), text);
    }
  });
});

describe('toRFC3339', () => {
  it('writes UTC with whole seconds, as metav1.Time', () => {
    assert.equal(toRFC3339(new Date('2024-05-01T12:34:56.789+02:00')), '2024-05-01T10:34:56Z');
  });
  it('refuses an invalid date', () => assert.throws(() => toRFC3339(new Date('nope')), RangeError));
});
