import assert from 'node:assert/strict';
import { classifyPgError, redactSecrets, safeErrorMessage, sqlState, type PgErrorKind } from '../../src/postgres/errors.js';

/** The shape of pg's DatabaseError: a message, a SQLSTATE code and a severity. */
function serverError(code: string, message = 'boom', detail?: string): Error {
  return Object.assign(new Error(message), { code, severity: 'ERROR', ...(detail === undefined ? {} : { detail }) });
}

function networkError(code: string, message = `connect ${code} 10.0.0.1:5432`): Error {
  return Object.assign(new Error(message), { code, errno: -1, syscall: 'connect' });
}

describe('classifyPgError', () => {
  const bySqlState: Array<[string, PgErrorKind]> = [
    ['42710', 'exists'],
    ['42704', 'gone'],
    ['2BP01', 'dependent-objects'],
    ['28P01', 'auth'],
    ['28000', 'auth'],
    ['42501', 'privilege'],
    ['40001', 'transient'],
    ['40P01', 'transient'],
    ['55P03', 'transient'],
    ['57014', 'transient'],
    ['57P01', 'transient'],
    ['57P02', 'transient'],
    ['57P03', 'transient'],
    ['53300', 'transient'],
    ['08006', 'transient'],
    ['08001', 'transient'],
    ['42601', 'invalid-statement'],
    ['42P01', 'invalid-statement'],
    ['22007', 'invalid-statement'],
    ['XX000', 'unknown'],
    ['23505', 'unknown'],
    ['3D000', 'unknown'],
  ];
  for (const [code, kind] of bySqlState) {
    it(`SQLSTATE ${code} → ${kind}`, () => assert.equal(classifyPgError(serverError(code)), kind));
  }

  it('XX000 "tuple concurrently updated" (concurrent GRANTs) → transient', () => {
    assert.equal(classifyPgError(serverError('XX000', 'tuple concurrently updated')), 'transient');
  });

  for (const code of ['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH']) {
    it(`network ${code} → transient`, () => assert.equal(classifyPgError(networkError(code)), 'transient'));
  }

  it("a node code that looks like a SQLSTATE is not one (no severity)", () => {
    assert.equal(sqlState(networkError('EPIPE')), undefined);
    assert.equal(sqlState(serverError('42704')), '42704');
  });

  it('AggregateError from dual-stack connect → classified by its first error', () => {
    const err = Object.assign(new AggregateError([networkError('ECONNREFUSED'), networkError('ECONNREFUSED')], ''), { code: 'ECONNREFUSED' });
    assert.equal(classifyPgError(err), 'transient');
  });

  for (const message of [
    'Connection terminated unexpectedly',
    'Connection terminated due to connection timeout',
    'timeout exceeded when trying to connect',
    'Query read timeout',
    'Client has encountered a connection error and is not queryable',
  ]) {
    it(`pg client error "${message}" → transient`, () => assert.equal(classifyPgError(new Error(message)), 'transient'));
  }

  it('anything else → unknown', () => {
    assert.equal(classifyPgError(new Error('self-signed certificate')), 'unknown');
    assert.equal(classifyPgError('a string'), 'unknown');
    assert.equal(classifyPgError(undefined), 'unknown');
  });
});

describe('safeErrorMessage', () => {
  it('adds detail and SQLSTATE on one line', () => {
    assert.equal(
      safeErrorMessage(serverError('2BP01', 'role "u" cannot be dropped because some objects depend on it', 'privileges for table a\nowner of table b')),
      'role "u" cannot be dropped because some objects depend on it: privileges for table a; owner of table b (SQLSTATE 2BP01)',
    );
  });

  it('redacts the literal after PASSWORD, in any quoting', () => {
    assert.equal(redactSecrets(`CREATE ROLE x PASSWORD 'it''s-secret' LOGIN`), `CREATE ROLE x PASSWORD '***' LOGIN`);
    assert.equal(redactSecrets(`ALTER ROLE x WITH ENCRYPTED password E'a\\'b'`), `ALTER ROLE x WITH ENCRYPTED password '***'`);
    assert.equal(redactSecrets(`PASSWORD 'truncated-secr`), `PASSWORD '***'`);
  });

  it('redacts SCRAM verifiers', () => {
    assert.equal(
      redactSecrets(`PASSWORD_X SCRAM-SHA-256$4096:EoFDZlDH8vEn45UBVHorRg==$kwgDrq+/=:g0+Bk1P= end`),
      'PASSWORD_X SCRAM-SHA-256$*** end',
    );
  });

  it('redacts the password of connection URLs and key=value strings', () => {
    assert.equal(
      redactSecrets('dial postgresql://admin:p%40ss@w0rd@db:5432/app?sslmode=require failed'),
      'dial postgresql://admin:***@db:5432/app?sslmode=require failed',
    );
    assert.equal(redactSecrets('postgres://admin@db/app'), 'postgres://admin@db/app');
    assert.equal(redactSecrets("host=db password=hunter2 user=x"), 'host=db password=*** user=x');
    assert.equal(redactSecrets("host=db password='a b' user=x"), 'host=db password=*** user=x');
  });

  it('redacts a string literal quoted by a syntax error', () => {
    assert.equal(
      safeErrorMessage(serverError('42601', `syntax error at or near "'Secret-123'"`)),
      `syntax error at or near "'***'" (SQLSTATE 42601)`,
    );
    assert.equal(
      safeErrorMessage(serverError('42601', `unterminated quoted string at or near "'Sec"ret"`)),
      `unterminated quoted string at or near "'***'" (SQLSTATE 42601)`,
    );
    assert.equal(safeErrorMessage(serverError('42601', 'syntax error at or near "VALID"')), 'syntax error at or near "VALID" (SQLSTATE 42601)');
  });

  it('redacts known secrets wherever they appear', () => {
    assert.equal(
      safeErrorMessage(new Error('role "x" has password Secret-123 or Secret-1234'), ['Secret-123', 'Secret-1234', '']),
      'role "x" has password *** or ***',
    );
  });

  it('keeps authentication failures readable', () => {
    assert.equal(
      safeErrorMessage(serverError('28P01', 'password authentication failed for user "admin"')),
      'password authentication failed for user "admin" (SQLSTATE 28P01)',
    );
  });

  it('describes errors without a message', () => {
    const aggregate = new AggregateError([networkError('ECONNREFUSED', 'connect ECONNREFUSED ::1:5432'), networkError('ECONNREFUSED', 'connect ECONNREFUSED 127.0.0.1:5432')], '');
    assert.equal(safeErrorMessage(aggregate), 'connect ECONNREFUSED ::1:5432; connect ECONNREFUSED 127.0.0.1:5432');
    assert.equal(safeErrorMessage('plain text'), 'plain text');
    assert.equal(safeErrorMessage({}), 'unknown error');
    assert.equal(safeErrorMessage(new TypeError('')), 'TypeError');
  });
});

describe('safeErrorMessage hints', () => {
  it('says to use a group role when a GRANT overflows an object\'s ACL row (54000 "row is too big")', () => {
    const err = Object.assign(new Error('row is too big: size 8168, maximum size 8160'), { code: '54000', severity: 'ERROR' });
    const text = safeErrorMessage(err);
    assert.match(text, /^row is too big: size 8168, maximum size 8160 \(SQLSTATE 54000\); .*group role.*GRANT <group> TO "\{\{name\}\}"/);
  });

  it('adds nothing to other program-limit errors', () => {
    const err = Object.assign(new Error('index row size 9000 exceeds maximum'), { code: '54000', severity: 'ERROR' });
    assert.equal(safeErrorMessage(err), 'index row size 9000 exceeds maximum (SQLSTATE 54000)');
  });
});
