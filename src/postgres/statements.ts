// Pure builders of the SQL the operator runs: the DatabaseRole's statements with their placeholders filled, the
// built-in revocation, and the COMMENT that marks a role as ours. Role DDL cannot take bind parameters, so every
// value is quoted here, for the exact place it stands in.
//
// Assumes standard_conforming_strings=on (PostgreSQL's default since 9.1; the pool should set it per connection):
// a backslash in '…' is then an ordinary character. In E'…' and U&'…' it is an escape and is doubled.

import { splitPlaceholders } from './usernameTemplate.js';

export class StatementTemplateError extends Error {
  override name = 'StatementTemplateError';
}

export type StatementPlaceholder = 'name' | 'password' | 'expiration';

const PLACEHOLDER_ALIASES: ReadonlyMap<string, StatementPlaceholder> = new Map([
  ['name', 'name'],
  ['username', 'name'],
  ['password', 'password'],
  ['expiration', 'expiration'],
]);

export interface StatementValues {
  name: string;
  /** The plaintext, or a SCRAM verifier in scram-sha-256 mode. */
  password?: string;
  expiration?: Date;
}

export const defaultRenewStatements: readonly string[] = [`ALTER ROLE "{{name}}" VALID UNTIL '{{expiration}}';`];

/** Sets a password in place: static roles' rotation and root rotation. */
export const defaultRotationStatements: readonly string[] = [`ALTER ROLE "{{name}}" WITH PASSWORD '{{password}}';`];

// ---------------------------------------------------------------------------------------------------------------
// Lexing just enough SQL to know what quotes a placeholder stands in.

type QuotedContext = 'single' | 'escape-single' | 'unicode-single' | 'double' | 'unicode-double';
type Context = 'code' | 'comment' | 'dollar' | QuotedContext;

interface SqlSegment {
  context: Context;
  open: string;
  body: string;
  close: string;
}

const DOLLAR_TAG = /\$(?:[A-Za-z_\u0080-\uffff][A-Za-z0-9_\u0080-\uffff]*)?\$/y;

function isIdentifierChar(c: string | undefined): boolean {
  return c !== undefined && /[A-Za-z0-9_$\u0080-\uffff]/.test(c);
}

/** Splits SQL into code, comments, quoted strings/identifiers and dollar-quoted bodies. */
function scanSql(sql: string): SqlSegment[] {
  const segments: SqlSegment[] = [];
  let codeStart = 0;
  let i = 0;
  const push = (segment: SqlSegment, end: number): void => {
    if (i > codeStart) segments.push({ context: 'code', open: '', body: sql.slice(codeStart, i), close: '' });
    segments.push(segment);
    i = end;
    codeStart = end;
  };

  while (i < sql.length) {
    const c = sql[i];
    const next = sql[i + 1];
    if (c === '-' && next === '-') {
      const end = lineEnd(sql, i);
      push({ context: 'comment', open: '', body: sql.slice(i, end), close: '' }, end);
    } else if (c === '/' && next === '*') {
      const end = blockCommentEnd(sql, i);
      push({ context: 'comment', open: '', body: sql.slice(i, end), close: '' }, end);
    } else if (c === "'" || c === '"') {
      const context = quotedContext(sql, i);
      const end = quotedEnd(sql, i, context);
      push({ context, open: c, body: sql.slice(i + 1, end - 1), close: c }, end);
    } else if (c === '$' && !isIdentifierChar(sql[i - 1])) {
      DOLLAR_TAG.lastIndex = i;
      const tag = DOLLAR_TAG.exec(sql)?.[0];
      if (tag === undefined) {
        i++; // a parameter such as $1
        continue;
      }
      const close = sql.indexOf(tag, i + tag.length);
      if (close < 0) throw unterminated(`dollar-quoted string ${tag}`, i);
      push({ context: 'dollar', open: tag, body: sql.slice(i + tag.length, close), close: tag }, close + tag.length);
    } else {
      i++;
    }
  }
  if (i > codeStart) segments.push({ context: 'code', open: '', body: sql.slice(codeStart), close: '' });
  return segments;
}

function unterminated(what: string, offset: number): StatementTemplateError {
  return new StatementTemplateError(`unterminated ${what} starting at offset ${offset}`);
}

function lineEnd(sql: string, from: number): number {
  const match = /[\r\n]/.exec(sql.slice(from));
  return match === null ? sql.length : from + match.index;
}

// PostgreSQL block comments nest.
function blockCommentEnd(sql: string, from: number): number {
  let depth = 0;
  for (let i = from; i < sql.length - 1; i++) {
    const pair = sql.slice(i, i + 2);
    if (pair === '/*') depth++;
    if (pair === '*/') depth--;
    if (pair === '/*' || pair === '*/') i++;
    if (depth === 0) return i + 1;
  }
  throw unterminated('block comment', from);
}

// E'…' and U&'…' / U&"…" prefixes count only at the start of a token, as in PostgreSQL's lexer.
function quotedContext(sql: string, quoteAt: number): QuotedContext {
  const single = sql[quoteAt] === "'";
  const before = sql.slice(Math.max(0, quoteAt - 2), quoteAt);
  if (/[uU]&$/.test(before) && !isIdentifierChar(sql[quoteAt - 3])) return single ? 'unicode-single' : 'unicode-double';
  if (single && /[eE]$/.test(before) && !isIdentifierChar(sql[quoteAt - 2])) return 'escape-single';
  return single ? 'single' : 'double';
}

/** Index just past the closing quote. A doubled quote is an escaped quote; in E'…' so is a backslash-quote. */
function quotedEnd(sql: string, openAt: number, context: QuotedContext): number {
  const quote = sql[openAt];
  for (let i = openAt + 1; i < sql.length; i++) {
    if (context === 'escape-single' && sql[i] === '\\') {
      i++;
    } else if (sql[i] === quote) {
      if (sql[i + 1] !== quote) return i + 1;
      i++;
    }
  }
  throw unterminated(quote === "'" ? 'quoted string' : 'quoted identifier', openAt);
}

// ---------------------------------------------------------------------------------------------------------------
// Quoting.

const doubleQuotes = (quote: string) => (value: string) => value.replaceAll(quote, quote + quote);
const doubleBackslashes = (value: string) => value.replaceAll('\\', '\\\\');

const ESCAPE_INSIDE: Readonly<Record<QuotedContext, (value: string) => string>> = {
  single: doubleQuotes("'"),
  'escape-single': (value) => doubleQuotes("'")(doubleBackslashes(value)),
  'unicode-single': (value) => doubleQuotes("'")(doubleBackslashes(value)),
  double: doubleQuotes('"'),
  'unicode-double': (value) => doubleQuotes('"')(doubleBackslashes(value)),
};

/** "value" with " doubled: a PostgreSQL identifier, as pg.escapeIdentifier. */
export function quoteIdentifier(value: string): string {
  return `"${ESCAPE_INSIDE.double(value)}"`;
}

/**
 * 'value' with ' doubled; E'…' with backslashes doubled when the value has one, so the literal means the same
 * whatever standard_conforming_strings says. As pg.escapeLiteral, without its leading space.
 */
export function quoteLiteral(value: string): string {
  return value.includes('\\') ? `E'${ESCAPE_INSIDE['escape-single'](value)}'` : `'${ESCAPE_INSIDE.single(value)}'`;
}

/** Dollar-quotes a body with a tag that does not occur in it, so no value inside can end the quote early. */
function dollarQuote(body: string): string {
  let tag = '$dbcred$';
  for (let n = 1; body.includes(tag); n++) tag = `$dbcred${n}$`;
  return `${tag} ${body} ${tag}`;
}

// ---------------------------------------------------------------------------------------------------------------
// Placeholders.

/** VALID UNTIL form: "YYYY-MM-DD HH:MM:SS+00", UTC, whole seconds (rounded down). */
export function formatExpiration(date: Date): string {
  if (Number.isNaN(date.getTime())) throw new StatementTemplateError('expiration is not a valid date');
  return `${date.toISOString().slice(0, 19).replace('T', ' ')}+00`;
}

function placeholderName(expression: string): StatementPlaceholder {
  const name = PLACEHOLDER_ALIASES.get(expression);
  if (name === undefined) {
    throw new StatementTemplateError(
      `unknown placeholder {{${expression}}} in statement; known: {{name}} (or {{username}}), {{password}}, {{expiration}}`,
    );
  }
  return name;
}

function placeholderValue(name: StatementPlaceholder, values: StatementValues): string {
  const value = name === 'expiration' ? values.expiration && formatExpiration(values.expiration) : values[name];
  if (value === undefined) throw new StatementTemplateError(`statement uses {{${name}}} but no ${name} is available`);
  // PostgreSQL text cannot hold NUL; refusing here beats a protocol error with the value in it.
  if (value.includes('\0')) throw new StatementTemplateError(`the ${name} contains a NUL character`);
  return value;
}

function renderBare(name: StatementPlaceholder, value: string): string {
  return name === 'name' ? quoteIdentifier(value) : quoteLiteral(value);
}

function hasPlaceholders(text: string): boolean {
  return splitPlaceholders(text).some((part) => part.kind === 'placeholder');
}

function fillPlaceholders(text: string, fill: (name: StatementPlaceholder) => string): string {
  return splitPlaceholders(text)
    .map((part) => (part.kind === 'text' ? part.text : fill(placeholderName(part.expression))))
    .join('');
}

/** A placeholder's value, escaped by the caller for where it stands; renderers ask for it only where it is used. */
type ValueOf = (name: StatementPlaceholder) => string;

type SingleQuotedContext = 'single' | 'escape-single' | 'unicode-single';
const isSingleQuoted = (context: Context): context is SingleQuotedContext =>
  context === 'single' || context === 'escape-single' || context === 'unicode-single';

// PL/pgSQL's EXECUTE runs its string as SQL. (E'…' and U&'…' leave their prefix letter in the code before them.)
const EXECUTE_BEFORE = /\bEXECUTE\s*(?:[eE]|[uU]&)?$/i;

/** Whether the quoted string at index i is the argument of EXECUTE (only comments between). */
function isExecuted(segments: readonly SqlSegment[], i: number): boolean {
  for (let j = i - 1; j >= 0; j--) {
    const segment = segments[j];
    if (segment?.context === 'comment' || (segment?.context === 'code' && segment.body.trim() === '')) continue;
    return segment?.context === 'code' && EXECUTE_BEFORE.test(segment.body);
  }
  return false;
}

function firstPlaceholder(text: string): string {
  const part = splitPlaceholders(text).find((p) => p.kind === 'placeholder');
  return part?.kind === 'placeholder' ? `{{${part.expression}}}` : 'a placeholder';
}

/**
 * The body of a '…' string with placeholders. A plain value (PASSWORD '{{password}}', VALID UNTIL '{{expiration}}',
 * a comment's text) gets its placeholders escaped as literal text, as everywhere. A string that is itself SQL —
 * the argument of EXECUTE, or text that holds quoting of its own ('ALTER ROLE "{{name}}" PASSWORD ''{{password}}''')
 * — is SQL twice over: its text (quotes un-doubled) is rendered as SQL, so each placeholder is escaped for the
 * quotes it stands in inside, and the result is escaped again for the string around it. Where that cannot be done
 * reliably (unbalanced quotes inside; E'…' or U&'…' holding quoted SQL) the template is refused.
 */
function renderQuotedString(context: SingleQuotedContext, body: string, executed: boolean, valueOf: ValueOf): string {
  const escape = ESCAPE_INSIDE[context];
  if (!hasPlaceholders(body)) return body;
  if (context !== 'single') {
    if (executed || /['"$]|--|\/\*/.test(body)) {
      throw new StatementTemplateError(
        `${firstPlaceholder(body)} stands in an ${context === 'escape-single' ? "E'…'" : "U&'…'"} string that holds SQL; ` +
          "write that string as '…' (or build the statement with format('%I', …) / format('%L', …)) so that the value can be quoted for the SQL inside",
      );
    }
    return fillPlaceholders(body, (name) => escape(valueOf(name)));
  }
  const text = body.replaceAll("''", "'");
  let inner: SqlSegment[] | undefined;
  try {
    inner = scanSql(text);
  } catch {
    inner = undefined;
  }
  const holdsSql = executed || inner === undefined || inner.some((segment) => segment.context !== 'code');
  if (!holdsSql) return fillPlaceholders(body, (name) => escape(valueOf(name)));
  if (inner === undefined) {
    throw new StatementTemplateError(
      `${firstPlaceholder(body)} stands in a '…' string whose text, read as SQL, has an unterminated quote or comment; ` +
        'its escaping would be wrong if the string is executed: balance the quotes inside it, or build the statement with ' +
        "format('%I', …) / format('%L', …)",
    );
  }
  return escape(renderSegments(inner, valueOf));
}

function renderSegments(segments: readonly SqlSegment[], valueOf: ValueOf): string {
  return segments
    .map((segment, i) => {
      const { context, open, body, close } = segment;
      switch (context) {
        case 'comment':
          return body;
        case 'code':
          return fillPlaceholders(body, (name) => renderBare(name, valueOf(name)));
        case 'dollar': {
          const rendered = renderSql(body, valueOf);
          if (rendered.includes(close)) throw new StatementTemplateError(`a value would end the dollar-quoted string ${close}`);
          return open + rendered + close;
        }
        default:
          if (isSingleQuoted(context)) return open + renderQuotedString(context, body, isExecuted(segments, i), valueOf) + close;
          return open + fillPlaceholders(body, (name) => ESCAPE_INSIDE[context](valueOf(name))) + close;
      }
    })
    .join('');
}

// Comments are copied untouched: rendering a placeholder there gains nothing and would put a password into the
// server log. A dollar-quoted body (DO, CREATE FUNCTION) is itself SQL-like and is rendered recursively, and so is
// a '…' string that holds SQL (see renderQuotedString).
function renderSql(sql: string, valueOf: ValueOf): string {
  return renderSegments(scanSql(sql), valueOf);
}

/**
 * Fills {{name}} (alias {{username}}), {{password}} and {{expiration}}, each escaped for where it stands: inside
 * "…" as identifier text, inside '…' as literal text, bare as a quoted identifier (name) or literal (others); inside
 * a '…' string that is itself SQL (EXECUTE's argument, or text with quotes of its own), for the quotes it stands in
 * there and then again for the string around it.
 * Each string is kept whole (it may hold several statements; the simple query protocol runs them).
 * Throws a StatementTemplateError for an unknown placeholder, a missing value, unterminated quoting, or nesting
 * whose escaping cannot be made safe.
 */
export function renderStatements(statements: readonly string[], values: StatementValues): string[] {
  return statements.map((statement) => renderSql(statement, (name) => placeholderValue(name, values)));
}

/**
 * The placeholders the statements use outside comments (aliases folded); throws what rendering would throw for the
 * template itself (unknown placeholder, bad quoting or nesting).
 */
export function placeholdersIn(statements: readonly string[]): Set<StatementPlaceholder> {
  const used = new Set<StatementPlaceholder>();
  for (const statement of statements) {
    renderSql(statement, (name) => {
      used.add(name);
      return 'x';
    });
  }
  return used;
}

/**
 * Checks creation statements before any credential depends on them: they must name the role they create.
 * Returns warnings (no {{password}}: the role cannot log in with the issued password).
 */
export function checkCreationStatements(statements: readonly string[]): string[] {
  if (statements.every((s) => s.trim() === '')) throw new StatementTemplateError('creationStatements is empty');
  const used = placeholdersIn(statements);
  if (!used.has('name')) throw new StatementTemplateError('creationStatements must use {{name}}');
  return used.has('password') ? [] : ['creationStatements do not use {{password}}: the issued password will not log in'];
}

// ---------------------------------------------------------------------------------------------------------------
// Built-in revocation.

function ifRoleExists(username: string, body: string): string {
  return `DO ${dollarQuote(
    `BEGIN IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = ${quoteLiteral(username)}) THEN ${body} END IF; END`,
  )};`;
}

/**
 * Makes a non-superuser admin a member of the role, which REASSIGN OWNED and DROP OWNED require ("permission
 * denied to reassign objects" otherwise, measured on PostgreSQL 15 with a CREATEROLE admin). CREATEROLE may grant
 * that membership; DROP ROLE removes it again. Skipped for superusers, existing members and a role already gone.
 */
export function buildAdminMembership(username: string): string {
  const role = quoteLiteral(username);
  return `DO ${dollarQuote(
    `BEGIN IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = ${role}) ` +
      `AND NOT (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) ` +
      `AND NOT pg_catalog.pg_has_role(current_user, ${role}, 'MEMBER') ` +
      `THEN EXECUTE pg_catalog.format('GRANT %I TO %I', ${role}, current_user); END IF; END`,
  )};`;
}

/**
 * REASSIGN OWNED + DROP OWNED for the database the statement runs in. Both are per-database: the caller runs this
 * in every database where the role owns objects or holds privileges (databasesWithDependenciesQuery), else
 * DROP ROLE fails with 2BP01. Skipped when the role no longer exists.
 */
export function buildOwnedObjectsCleanup(username: string, adminUser: string): string {
  const role = quoteIdentifier(username);
  return ifRoleExists(username, `REASSIGN OWNED BY ${role} TO ${quoteIdentifier(adminUser)}; DROP OWNED BY ${role};`);
}

/** The steps of the built-in revocation, each a statement; RoleAdmin.revokeRole runs them in this order. */
export interface RevocationSteps {
  /** Forbids new logins (VALID UNTIL and NOLOGIN leave open sessions alone). */
  noLogin: string;
  /** A non-superuser admin joins the role: pg_terminate_backend and REASSIGN/DROP OWNED need it. */
  adminMembership: string;
  /** Ends the role's open sessions. */
  terminateSessions: string;
  /** How many sessions of the role are still open (column sessions); must reach 0 before the role is dropped. */
  openSessions: string;
  /** REASSIGN OWNED + DROP OWNED, for each database where the role owns objects or holds privileges. */
  ownedObjectsCleanup: string;
  dropRole: string;
}

/**
 * The built-in safe revocation: forbid new logins, make the admin a member of the role, end open sessions, hand
 * owned objects to the admin and drop privileges (per database), drop the role. Membership comes before
 * terminating: a CREATEROLE admin may end only the sessions of roles it is a member of (PostgreSQL 15 refuses
 * with 42501 otherwise), unless it has pg_signal_backend. Every step is idempotent and skips a role already gone,
 * so a revocation that failed part-way is simply run again. A role dropped concurrently between a step's check and
 * its ALTER still fails with 42704, which the caller treats as gone.
 */
export function buildRevocation(username: string, adminUser: string): RevocationSteps {
  const role = quoteLiteral(username);
  return {
    noLogin: ifRoleExists(username, `ALTER ROLE ${quoteIdentifier(username)} NOLOGIN;`),
    adminMembership: buildAdminMembership(username),
    terminateSessions: `SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity WHERE usename = ${role} AND pid <> pg_catalog.pg_backend_pid();`,
    openSessions: `SELECT pg_catalog.count(*)::int AS sessions FROM pg_catalog.pg_stat_activity WHERE usename = ${role} AND pid <> pg_catalog.pg_backend_pid();`,
    ownedObjectsCleanup: buildOwnedObjectsCleanup(username, adminUser),
    dropRole: `DROP ROLE IF EXISTS ${quoteIdentifier(username)};`,
  };
}

/** Databases (other than shared catalogs) where the role owns objects or holds privileges, one datname a row. */
export function databasesWithDependenciesQuery(username: string): string {
  return (
    'SELECT DISTINCT d.datname FROM pg_catalog.pg_shdepend s JOIN pg_catalog.pg_database d ON d.oid = s.dbid ' +
    `WHERE s.refclassid = 'pg_catalog.pg_authid'::pg_catalog.regclass AND s.refobjid = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = ${quoteLiteral(username)}) ` +
    'ORDER BY d.datname;'
  );
}

// ---------------------------------------------------------------------------------------------------------------
// Ownership marker: which installation created a role, for which DatabaseCredential. The orphan sweep and every
// revocation read it, and touch only a role whose marker is this installation's and names the role itself.

/** Which DatabaseCredential of which installation owns a role. */
export interface RoleMarker {
  /** The installation (CLUSTER_ID, by default the kube-system namespace UID). */
  installation: string;
  namespace: string;
  name: string;
  uid: string;
  /** The role's own name: a marker copied onto another role does not hold there. */
  username: string;
}

/** A marker written before installations were told apart (issue 8): namespace/name/uid only. */
export interface LegacyRoleMarker {
  legacy: true;
  namespace: string;
  name: string;
  uid: string;
}

export type ParsedMarker = RoleMarker | LegacyRoleMarker;

/** What every marker starts with, of either version. */
export const MARKER_PREFIX = 'dbcred:';
const MARKER_V2_PREFIX = 'dbcred:v2:';

/** COMMENT ON ROLE "u" IS 'dbcred:v2:{"installation":…,"namespace":…,"name":…,"uid":…,"username":"u"}'. */
export function commentOnRole(marker: RoleMarker): string {
  const { installation, namespace, name, uid, username } = marker;
  const json = JSON.stringify({ installation, namespace, name, uid, username });
  return `COMMENT ON ROLE ${quoteIdentifier(username)} IS ${quoteLiteral(MARKER_V2_PREFIX + json)};`;
}

const isString = (v: unknown): v is string => typeof v === 'string' && v !== '';

/** The marker in a role comment (either version), or undefined for any comment we did not write. */
export function parseRoleComment(comment: string | null | undefined): ParsedMarker | undefined {
  if (comment === null || comment === undefined || !comment.startsWith(MARKER_PREFIX)) return undefined;
  const v2 = comment.startsWith(MARKER_V2_PREFIX);
  let parsed: unknown;
  try {
    parsed = JSON.parse(comment.slice((v2 ? MARKER_V2_PREFIX : MARKER_PREFIX).length));
  } catch {
    return undefined;
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return undefined;
  const { installation, namespace, name, uid, username } = parsed as Record<string, unknown>;
  if (!isString(namespace) || !isString(name) || !isString(uid)) return undefined;
  if (!v2) return { legacy: true, namespace, name, uid };
  if (!isString(installation) || !isString(username)) return undefined;
  return { installation, namespace, name, uid, username };
}

export function isLegacyMarker(marker: ParsedMarker): marker is LegacyRoleMarker {
  return 'legacy' in marker;
}

/** Who may revoke a role: this installation's credential with this uid. */
export interface RoleOwner {
  installation: string;
  uid: string;
}

/**
 * Whether the comment on role `username` proves that `owner` created it: a v2 marker of this installation, for this
 * credential uid, naming this very role. A legacy marker (no installation) proves it by the credential uid alone:
 * the credential holds the role in its status, and a UID is unique to one cluster.
 */
export function markerProvesOwner(comment: string | null | undefined, username: string, owner: RoleOwner): boolean {
  const marker = parseRoleComment(comment);
  if (!marker || marker.uid !== owner.uid) return false;
  if (isLegacyMarker(marker)) return true;
  return marker.installation === owner.installation && marker.username === username;
}

/** Every role carrying a marker: columns rolname, comment. Input of the orphan sweep. */
export const markedRolesQuery =
  "SELECT r.rolname, pg_catalog.shobj_description(r.oid, 'pg_authid') AS comment FROM pg_catalog.pg_roles r " +
  `WHERE pg_catalog.shobj_description(r.oid, 'pg_authid') LIKE '${MARKER_PREFIX}%' ORDER BY r.rolname;`;
