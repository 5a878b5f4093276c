// Keeping what the operator sends PostgreSQL (CREATE ROLE … PASSWORD '<verifier>', ALTER ROLE … PASSWORD, a static
// role's rotation) out of the server log and out of pg_stat_statements. Each of the operator's sessions sets the
// settings below to their quiet value, where the admin may; what stays loud is reported on the DatabaseConfig.
//
// Session level, not SET LOCAL: the server decides whether to log a query string when it arrives, and checks the
// duration settings when the message has run — after the COMMIT at the end of an issue batch, which would already
// have undone a SET LOCAL.
import { quoteLiteral } from './statements.js';

export interface QuietSetting {
  name: string;
  /** The value that keeps statement text out of logs and statistics. */
  quiet: string;
  /** Whether a session value (as pg_settings shows it) lets statement text through, given the other settings. */
  loud(value: string, all: ReadonlyMap<string, string>): boolean;
  /** What a loud value does, for the status message. */
  effect: string;
}

const notIn = (...quiet: string[]) => (value: string) => !quiet.includes(value.toLowerCase());

// log_min_error_statement: a failing statement is logged with its text at ERROR; "log", "fatal" and "panic" are
// above it in this setting's order.
const ERROR_STATEMENT_QUIET = ['log', 'fatal', 'panic'];

export const QUIET_SETTINGS: readonly QuietSetting[] = [
  { name: 'log_statement', quiet: 'none', loud: notIn('none'), effect: 'logs role statements (ddl, mod and all include CREATE/ALTER ROLE)' },
  { name: 'log_min_duration_statement', quiet: '-1', loud: notIn('-1'), effect: 'logs the text of statements that take longer than it' },
  {
    name: 'log_min_duration_sample',
    quiet: '-1',
    loud: (v, all) => v !== '-1' && Number(all.get('log_statement_sample_rate') ?? '1') > 0,
    effect: 'logs a sample of statements with their text',
  },
  { name: 'log_transaction_sample_rate', quiet: '0', loud: (v) => Number(v) > 0, effect: 'logs every statement of a sample of transactions' },
  { name: 'log_min_error_statement', quiet: 'panic', loud: notIn(...ERROR_STATEMENT_QUIET), effect: 'logs the text of a statement that fails' },
  // USERSET: every user may turn them off. Parse trees carry the literals.
  { name: 'debug_print_parse', quiet: 'off', loud: notIn('off'), effect: 'logs parse trees, literals included' },
  { name: 'debug_print_rewritten', quiet: 'off', loud: notIn('off'), effect: 'logs rewritten parse trees, literals included' },
  // pg_stat_statements keeps the text of utility statements (CREATE/ALTER ROLE) as sent, readable by
  // pg_read_all_stats; it normalises constants only in plannable statements. Only present when the library is loaded.
  {
    name: 'pg_stat_statements.track_utility',
    quiet: 'off',
    loud: (v, all) => v === 'on' && (all.get('pg_stat_statements.track') ?? 'top') !== 'none',
    effect: 'stores the text of role statements in pg_stat_statements',
  },
  { name: 'pgaudit.log', quiet: 'none', loud: notIn('none'), effect: 'writes audited statements with their text to the log' },
];

/**
 * One statement, run once on each new session: every setting the session's user may change is set to its quiet
 * value for the session. A setting the user may not change (42501), or one that does not exist on this server (an
 * extension not loaded: current_setting(…, true) is NULL, and setting it would only create a placeholder), is left
 * as it is, without an error in the server log (caught in PL/pgSQL).
 */
export const QUIET_SESSION_SQL =
  'DO $dbcred_quiet$ DECLARE s text[]; BEGIN ' +
  `FOREACH s SLICE 1 IN ARRAY ARRAY[${QUIET_SETTINGS.map((q) => `[${quoteLiteral(q.name)}, ${quoteLiteral(q.quiet)}]`).join(', ')}]::text[] LOOP ` +
  'BEGIN IF pg_catalog.current_setting(s[1], true) IS NOT NULL THEN PERFORM pg_catalog.set_config(s[1], s[2], false); END IF; ' +
  'EXCEPTION WHEN insufficient_privilege OR cant_change_runtime_param THEN NULL; END; ' +
  'END LOOP; END $dbcred_quiet$;';

/** The settings to read back (with the ones that decide whether another is loud), as pg_settings names them. */
export const LOG_SETTINGS_QUERY =
  'SELECT name, setting FROM pg_catalog.pg_settings WHERE name = ANY($1::text[])';
export const LOG_SETTING_NAMES: readonly string[] = [
  ...QUIET_SETTINGS.map((q) => q.name),
  'log_statement_sample_rate',
  'pg_stat_statements.track',
];

export interface LoudSetting {
  name: string;
  value: string;
  effect: string;
}

/** The settings that still let statement text through in a session that has run QUIET_SESSION_SQL. */
export function loudSettings(values: ReadonlyMap<string, string>): LoudSetting[] {
  return QUIET_SETTINGS.flatMap((q) => {
    const value = values.get(q.name);
    return value !== undefined && q.loud(value, values) ? [{ name: q.name, value, effect: q.effect }] : [];
  });
}
