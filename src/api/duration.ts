// Go-style durations ("30s", "1h30m", "1.5h") as used by every TTL and period field of the API, and the RFC 3339
// timestamps written to status. Parsing follows Go's time.ParseDuration so that values copied from Vault or from
// other Kubernetes operators mean the same thing here; negative durations are refused because no field of the API
// can use one.

const NANOS_PER_MILLI = 1_000_000n;
const MAX_DURATION_NANOS = 2n ** 63n - 1n; // Go's time.Duration is an int64 of nanoseconds

const UNIT_NANOS: ReadonlyMap<string, bigint> = new Map([
  ['ns', 1n],
  ['us', 1_000n],
  ['µs', 1_000n], // U+00B5 micro sign
  ['μs', 1_000n], // U+03BC Greek mu
  ['ms', 1_000_000n],
  ['s', 1_000_000_000n],
  ['m', 60_000_000_000n],
  ['h', 3_600_000_000_000n],
]);

// One component: digits with an optional fraction (either side of the dot may be empty, not both), then a unit.
const COMPONENT = /^(\d*)(?:\.(\d*))?([^\d.]+)/;

export class DurationError extends Error {
  override name = 'DurationError';
}

/**
 * Parses a Go-style duration into milliseconds. Sub-millisecond units yield a fractional result ("500us" → 0.5).
 * Throws a DurationError for "", a missing or unknown unit ("10", "1d"), a sign, or a value beyond Go's range.
 */
export function parseDuration(text: string): number {
  return Number(parseDurationNanos(text)) / Number(NANOS_PER_MILLI);
}

function parseDurationNanos(text: string): bigint {
  const quoted = JSON.stringify(text);
  if (text === '') throw new DurationError('invalid duration "": empty (use a value such as "30s", "90m" or "1h")');
  if (text.startsWith('-')) throw new DurationError(`invalid duration ${quoted}: negative durations are not allowed`);
  if (text.startsWith('+')) throw new DurationError(`invalid duration ${quoted}: leading sign not allowed`);
  if (text === '0') return 0n; // Go's only unit-less duration

  let rest = text;
  let total = 0n;
  while (rest !== '') {
    const match = COMPONENT.exec(rest);
    if (match === null) throw new DurationError(`invalid duration ${quoted}: expected a number followed by a unit`);
    const [component, whole = '', fraction = '', unit = ''] = match;
    if (whole === '' && fraction === '') throw new DurationError(`invalid duration ${quoted}: missing number`);
    const unitNanos = UNIT_NANOS.get(unit);
    if (unitNanos === undefined) {
      throw new DurationError(`invalid duration ${quoted}: unknown unit "${unit}" (use ns, us, ms, s, m or h)`);
    }
    total += componentNanos(whole, fraction, unitNanos);
    if (total > MAX_DURATION_NANOS) throw new DurationError(`invalid duration ${quoted}: out of range`);
    rest = rest.slice(component.length);
  }
  return total;
}

// Exact integer arithmetic, as Go does: "1.5h" must be exactly 5400000 ms, not 5399999.999.
function componentNanos(whole: string, fraction: string, unitNanos: bigint): bigint {
  const integerPart = BigInt(whole === '' ? '0' : whole) * unitNanos;
  if (fraction === '') return integerPart;
  const scale = 10n ** BigInt(fraction.length);
  return integerPart + (BigInt(fraction) * unitNanos) / scale;
}

/**
 * Formats milliseconds exactly as Go's time.Duration.String(): "1h30m0s", "5m0s", "1.5s", "500ms", "0s".
 * Chosen over a shorter form so that status and events match what kubectl users see from Go controllers.
 */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms)) throw new DurationError(`cannot format duration ${ms}`);
  const nanos = BigInt(Math.round(ms * Number(NANOS_PER_MILLI)));
  const sign = nanos < 0n ? '-' : '';
  return sign + formatNanos(nanos < 0n ? -nanos : nanos);
}

function formatNanos(nanos: bigint): string {
  if (nanos === 0n) return '0s';
  if (nanos < 1_000n) return `${nanos}ns`;
  if (nanos < 1_000_000n) return `${decimal(nanos, 3)}µs`;
  if (nanos < 1_000_000_000n) return `${decimal(nanos, 6)}ms`;

  const seconds = decimal(nanos % 60_000_000_000n, 9);
  const totalMinutes = nanos / 60_000_000_000n;
  if (totalMinutes === 0n) return `${seconds}s`;
  const minutes = totalMinutes % 60n;
  const hours = totalMinutes / 60n;
  return hours === 0n ? `${minutes}m${seconds}s` : `${hours}h${minutes}m${seconds}s`;
}

// value / 10^precision without trailing zeros, as Go's fmtFrac does.
function decimal(value: bigint, precision: number): string {
  const scale = 10n ** BigInt(precision);
  const fraction = (value % scale).toString().padStart(precision, '0').replace(/0+$/, '');
  const whole = (value / scale).toString();
  return fraction === '' ? whole : `${whole}.${fraction}`;
}

/** RFC 3339 in UTC with second precision ("2024-05-01T12:00:00Z"), the form Kubernetes uses for metav1.Time. */
export function toRFC3339(date: Date): string {
  if (Number.isNaN(date.getTime())) throw new RangeError('cannot format an invalid Date as RFC 3339');
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}
