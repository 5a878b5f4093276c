// What a failed PostgreSQL call means for the reconciler, and how to describe it without leaking a secret.
// SQLSTATEs: https://www.postgresql.org/docs/current/errcodes-appendix.html

/**
 * exists: the object is already there (a retried CREATE ROLE). gone: it is not (revoking a dropped role).
 * dependent-objects: DROP ROLE blocked by owned objects or privileges. auth: the root login was refused.
 * privilege: the admin lacks a right. transient: retry with backoff. invalid-statement: the DatabaseRole's SQL is
 * wrong; retrying will not help. unknown: anything else.
 */
export type PgErrorKind =
  | 'exists'
  | 'gone'
  | 'dependent-objects'
  | 'auth'
  | 'privilege'
  | 'transient'
  | 'invalid-statement'
  | 'unknown';

const KIND_BY_SQLSTATE: ReadonlyMap<string, PgErrorKind> = new Map([
  ['42710', 'exists'], // duplicate_object
  ['42704', 'gone'], // undefined_object
  ['2BP01', 'dependent-objects'], // dependent_objects_still_exist
  ['28P01', 'auth'], // invalid_password
  ['28000', 'auth'], // invalid_authorization_specification
  ['42501', 'privilege'], // insufficient_privilege
  ['40001', 'transient'], // serialization_failure
  ['40P01', 'transient'], // deadlock_detected
  ['55P03', 'transient'], // lock_not_available (lock_timeout)
  ['57014', 'transient'], // query_canceled (statement_timeout)
  ['57P01', 'transient'], // admin_shutdown
  ['57P02', 'transient'], // crash_shutdown
  ['57P03', 'transient'], // cannot_connect_now (starting up, recovering)
]);

const KIND_BY_SQLSTATE_CLASS: ReadonlyMap<string, PgErrorKind> = new Map([
  ['08', 'transient'], // connection_exception
  ['53', 'transient'], // insufficient_resources, including 53300 too_many_connections
  ['42', 'invalid-statement'], // syntax_error_or_access_rule_violation, including 42601 syntax_error
  ['22', 'invalid-statement'], // data_exception, e.g. VALID UNTIL 'not a time'
]);

const NETWORK_ERROR_CODES: ReadonlySet<string> = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ENETUNREACH',
  'ENETDOWN',
  'ENOTFOUND', // in a cluster, usually a Service that does not exist yet
  'EAI_AGAIN',
]);

// pg's own errors carry no code: a dropped connection, connectionTimeoutMillis, query_timeout.
const PG_CLIENT_TRANSIENT_MESSAGE =
  /Connection terminated|timeout exceeded when trying to connect|connection timeout|Query read timeout|is not queryable/i;

interface ErrorFields {
  code?: unknown;
  severity?: unknown;
  message?: unknown;
  detail?: unknown;
  errors?: unknown;
}

function fields(err: unknown): ErrorFields {
  return typeof err === 'object' && err !== null ? (err as ErrorFields) : {};
}

/** The SQLSTATE of an error the server sent (pg's DatabaseError), else undefined. */
export function sqlState(err: unknown): string | undefined {
  const { code, severity } = fields(err);
  // Node's error codes can also be five capitals ("EPIPE"); only server errors carry a severity.
  return typeof code === 'string' && typeof severity === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

/** Maps a pg or network error to what the reconciler should do about it. */
export function classifyPgError(err: unknown): PgErrorKind {
  const state = sqlState(err);
  if (state !== undefined) return classifySqlState(state, fields(err).message);

  const { code, message, errors } = fields(err);
  // Node 20 tries IPv6 and IPv4 in turn and reports both failures as one AggregateError.
  if (Array.isArray(errors) && errors.length > 0) return classifyPgError(errors[0]);
  if (typeof code === 'string' && NETWORK_ERROR_CODES.has(code)) return 'transient';
  if (typeof message === 'string' && PG_CLIENT_TRANSIENT_MESSAGE.test(message)) return 'transient';
  return 'unknown';
}

function classifySqlState(state: string, message: unknown): PgErrorKind {
  const exact = KIND_BY_SQLSTATE.get(state);
  if (exact !== undefined) return exact;
  // XX000 is any internal error; only this one is a known race (concurrent GRANTs), see notes/pitfalls.md.
  if (state === 'XX000') return typeof message === 'string' && /tuple concurrently updated/.test(message) ? 'transient' : 'unknown';
  return KIND_BY_SQLSTATE_CLASS.get(state.slice(0, 2)) ?? 'unknown';
}

const REDACTED = '***';

/**
 * Removes what must never reach a log, Event or condition: SCRAM verifiers, the password of a connection URL
 * or key=value connection string, the literal after PASSWORD, a string literal quoted by a syntax error
 * ('… at or near "'secret'"'), and any value in knownSecrets (pass the password and verifier in play).
 */
export function redactSecrets(text: string, knownSecrets: readonly string[] = []): string {
  const byLengthDescending = [...knownSecrets].filter((s) => s !== '').sort((a, b) => b.length - a.length);
  const withoutKnown = byLengthDescending.reduce((result, secret) => result.replaceAll(secret, REDACTED), text);
  return withoutKnown
    .replace(/SCRAM-SHA-256\$[^'"\s]*/g, `SCRAM-SHA-256$${REDACTED}`)
    .replace(/(postgres(?:ql)?:\/\/[^:@/\s]*):\S*@/gi, `$1:${REDACTED}@`)
    .replace(/\b(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)/gi, `$1${REDACTED}`)
    .replace(/\b(PASSWORD\s+)(?:E'(?:[^'\\]|''|\\.)*'?|'(?:[^']|'')*'?|"(?:[^"]|"")*"?)/gi, `$1'${REDACTED}'`)
    .replace(/(at or near ")(?:[eE]|[uU]&)?'.*"/g, `$1'${REDACTED}'"`);
}

/**
 * One line describing an error, safe for a condition message, an Event or a log: message, detail (which for
 * 2BP01 lists the blocking objects) and SQLSTATE, with every secret redacted.
 */
export function safeErrorMessage(err: unknown, knownSecrets: readonly string[] = []): string {
  return redactSecrets(describe(err), knownSecrets).replace(/\s*[\r\n]+\s*/g, '; ').trim();
}

function describe(err: unknown): string {
  if (typeof err === 'string') return err;
  const { message, detail, errors } = fields(err);
  const text = typeof message === 'string' ? message : '';
  if (text === '' && Array.isArray(errors) && errors.length > 0) return errors.map(describe).join('; ');
  if (text === '') return err instanceof Error ? err.name : 'unknown error';
  const state = sqlState(err);
  const withDetail = typeof detail === 'string' && detail !== '' ? `${text}: ${detail}` : text;
  return state === undefined ? withDetail : `${withDetail} (SQLSTATE ${state})${hintFor(state, text)}`;
}

/** What to do about errors whose message does not say it. */
function hintFor(state: string, message: string): string {
  // A GRANT on a table or schema appends to its ACL in one catalog row, which is not TOASTed: past roughly 2,000
  // grantees the row no longer fits a page. Seen in make bench at scale with per-login GRANTs.
  if (state === '54000' && message.startsWith('row is too big')) {
    return '; an object\'s privileges are kept in one catalog row, which holds about 2,000 grantees: grant the privileges to a group role once and make each login a member (GRANT <group> TO "{{name}}" in creationStatements)';
  }
  return '';
}
