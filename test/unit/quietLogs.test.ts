import assert from 'node:assert/strict';
import { LOG_SETTING_NAMES, QUIET_SESSION_SQL, QUIET_SETTINGS, loudSettings } from '../../src/postgres/quietLogs.js';

const quietServer = new Map(QUIET_SETTINGS.map((q) => [q.name, q.quiet]));
const names = (values: Map<string, string>) => loudSettings(values).map((s) => s.name);

describe('quietLogs: which server settings let role statements through', () => {
  it('a session with every setting at its quiet value is quiet', () => {
    assert.deepEqual(loudSettings(quietServer), []);
  });

  it("PostgreSQL's defaults: only log_min_error_statement=error (a failing statement is logged with its text)", () => {
    const defaults = new Map([
      ['log_statement', 'none'],
      ['log_min_duration_statement', '-1'],
      ['log_min_duration_sample', '-1'],
      ['log_statement_sample_rate', '1'],
      ['log_transaction_sample_rate', '0'],
      ['log_min_error_statement', 'error'],
      ['debug_print_parse', 'off'],
      ['debug_print_rewritten', 'off'],
    ]);
    assert.deepEqual(names(defaults), ['log_min_error_statement']);
  });

  it('each loud value is named, with its effect, and no other', () => {
    const cases: Array<[string, string]> = [
      ['log_statement', 'ddl'],
      ['log_statement', 'mod'],
      ['log_statement', 'all'],
      ['log_min_duration_statement', '0'],
      ['log_min_duration_statement', '250'],
      ['log_min_duration_sample', '0'],
      ['log_transaction_sample_rate', '0.01'],
      ['log_min_error_statement', 'warning'],
      ['log_min_error_statement', 'debug5'],
      ['debug_print_parse', 'on'],
      ['pg_stat_statements.track_utility', 'on'],
      ['pgaudit.log', 'role'],
    ];
    for (const [name, value] of cases) {
      const loud = loudSettings(new Map([...quietServer, [name, value]]));
      assert.deepEqual(loud.map((s) => [s.name, s.value]), [[name, value]], `${name}=${value}`);
      assert.ok(loud[0]!.effect.length > 10);
    }
  });

  it('a setting is loud only together with what enables it', () => {
    assert.deepEqual(names(new Map([...quietServer, ['log_min_duration_sample', '0'], ['log_statement_sample_rate', '0']])), []);
    assert.deepEqual(names(new Map([...quietServer, ['pg_stat_statements.track_utility', 'on'], ['pg_stat_statements.track', 'none']])), []);
    assert.deepEqual(names(new Map([...quietServer, ['pg_stat_statements.track_utility', 'on'], ['pg_stat_statements.track', 'all']])), ['pg_stat_statements.track_utility']);
    for (const quiet of ['log', 'fatal', 'panic', 'PANIC']) {
      assert.deepEqual(names(new Map([...quietServer, ['log_min_error_statement', quiet]])), [], quiet);
    }
  });

  it('a setting the server does not have (an extension not loaded) is not reported', () => {
    const withoutExtensions = new Map([...quietServer].filter(([n]) => !n.includes('.')));
    assert.deepEqual(loudSettings(withoutExtensions), []);
  });

  it('the session statement sets every setting, skips unknown ones and swallows only privilege errors', () => {
    for (const q of QUIET_SETTINGS) assert.ok(QUIET_SESSION_SQL.includes(`['${q.name}', '${q.quiet}']`), q.name);
    assert.match(QUIET_SESSION_SQL, /current_setting\(s\[1\], true\) IS NOT NULL/);
    assert.match(QUIET_SESSION_SQL, /set_config\(s\[1\], s\[2\], false\)/, 'session level: survives the COMMIT of an issue batch');
    assert.match(QUIET_SESSION_SQL, /EXCEPTION WHEN insufficient_privilege OR cant_change_runtime_param THEN NULL/);
    assert.ok(LOG_SETTING_NAMES.includes('log_statement_sample_rate') && LOG_SETTING_NAMES.includes('pg_stat_statements.track'));
  });
});
