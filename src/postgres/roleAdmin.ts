// The narrow interface to PostgreSQL: issue, renew, revoke and find roles. Statement text comes from the pure
// builders in statements.ts; this file only decides transactions, locking, retries and error outcomes.
import pg from 'pg';
import { classifyPgError, safeErrorMessage, sqlState, type PgErrorKind } from './errors.js';
import { checkout, type ClientSource } from './pool.js';
import { LOG_SETTINGS_QUERY, LOG_SETTING_NAMES, loudSettings, type LoudSetting } from './quietLogs.js';
import {
  buildRevocation,
  commentOnRole,
  databasesWithDependenciesQuery,
  defaultRenewStatements,
  defaultRotationStatements,
  isLegacyMarker,
  markerProvesOwner,
  parseRoleComment,
  quoteLiteral,
  renderStatements,
  type ParsedMarker,
  type RoleMarker,
  type RoleOwner,
  type StatementValues,
} from './statements.js';

/** Serialises role DDL per database: concurrent GRANTs otherwise fail with "tuple concurrently updated". */
const DDL_LOCK_KEY = 0x64626372; // "dbcr"
const TRANSIENT_RETRIES = 3;
/** How long revocation waits for terminated sessions to go away before it reports that one survived. */
const SESSION_EXIT_WAIT_MS = 5_000;

export class RoleAdminError extends Error {
  constructor(
    message: string,
    readonly kind: PgErrorKind,
  ) {
    super(message);
  }
}

/** Creation found the role already there: the operator never adopts a role it did not create. */
export class RoleExistsError extends RoleAdminError {
  constructor(message: string) {
    super(message, 'exists');
  }
}

/**
 * Revocation or renewal refused to touch a role: it is the admin the operator connects as, a superuser or a
 * CREATEROLE role (any config's admin is one), a role PostgreSQL defines, or its marker does not prove that this
 * installation's credential created it. Nothing was changed.
 */
export class RoleNotOursError extends RoleAdminError {
  constructor(message: string) {
    super(message, 'privilege');
  }
}

/** One kind of statement in a dry run, with the values it gets when it runs for real. */
export interface DryRunStep {
  /** The spec field the statements come from, e.g. revocationStatements. */
  field: string;
  statements: readonly string[];
  values: StatementValues;
}

/** A dry run failed in the statements of this field. */
export class DryRunError extends RoleAdminError {
  constructor(
    message: string,
    kind: PgErrorKind,
    readonly field: string,
  ) {
    super(message, kind);
  }
}

export interface IssueRequest {
  username: string;
  /** What goes into {{password}}: the plaintext, or a SCRAM verifier in scram mode. */
  passwordForSQL: string;
  expiration: Date;
  creationStatements: string[];
  rollbackStatements?: string[];
  /** Written in the creation's transaction; its username must be the role's. */
  marker: RoleMarker;
}

/**
 * How the admin can end the sessions of the roles it creates, which revocation does: as a superuser, through
 * pg_signal_backend, or by making itself a member of the role first (CREATEROLE; the admin must inherit the
 * privileges of roles it joins). undefined: it cannot, so revoking a role that has open sessions fails.
 */
export type SessionTermination = 'superuser' | 'pg_signal_backend' | 'role-membership';

export interface ServerInfo {
  version: string;
  currentUser: string;
  canCreateRoles: boolean;
  sessionTermination: SessionTermination | undefined;
  /** Settings that still put statement text (verifiers; the plaintext in password mode) into logs or statistics. */
  loudSettings: LoudSetting[];
}

/** A PostgreSQL role's attributes that matter when the operator is asked to take over its password. */
export interface RoleAttributes {
  name: string;
  superuser: boolean;
  createRole: boolean;
  replication: boolean;
  bypassRLS: boolean;
  /** A role PostgreSQL itself defines (pg_monitor, pg_signal_backend, ...; OID below FirstNormalObjectId). */
  predefined: boolean;
  /** The roles it is a direct member of. */
  memberOf: string[];
}

/** What a static role's checks need to know about its user, read in one query. */
export interface StaticUserFacts {
  user: RoleAttributes & { comment: string | null };
  /** Every role the user is a member of, directly or through other roles (SET ROLE reaches them all). */
  reachable: RoleAttributes[];
  /** current_user and session_user of the connection. */
  connectedAs: string[];
}

/** $1: the user. One row for it and one for every role it reaches through pg_auth_members (none when it does not exist). */
const STATIC_USER_FACTS_QUERY = `
WITH RECURSIVE reach(oid) AS (
  SELECT m.roleid FROM pg_catalog.pg_auth_members m JOIN pg_catalog.pg_roles t ON t.oid = m.member WHERE t.rolname = $1
  UNION
  SELECT m.roleid FROM pg_catalog.pg_auth_members m JOIN reach ON m.member = reach.oid
)
SELECT r.rolname AS name, r.rolsuper AS superuser, r.rolcreaterole AS create_role, r.rolreplication AS replication,
       r.rolbypassrls AS bypass_rls, r.oid < 16384 AS predefined, r.rolname = $1 AS is_user,
       pg_catalog.shobj_description(r.oid, 'pg_authid') AS comment,
       ARRAY(SELECT g.rolname FROM pg_catalog.pg_auth_members m JOIN pg_catalog.pg_roles g ON g.oid = m.roleid
              WHERE m.member = r.oid ORDER BY 1)::text[] AS member_of,
       current_user::text AS current_user_name, session_user::text AS session_user_name
  FROM pg_catalog.pg_roles r
 WHERE r.rolname = $1 OR r.oid IN (SELECT oid FROM reach)`;

interface StaticUserFactsRow {
  name: string;
  superuser: boolean;
  create_role: boolean;
  replication: boolean;
  bypass_rls: boolean;
  predefined: boolean;
  is_user: boolean;
  comment: string | null;
  member_of: string[];
  current_user_name: string;
  session_user_name: string;
}

function staticUserFacts(rows: readonly StaticUserFactsRow[]): StaticUserFacts | undefined {
  const attributes = (r: StaticUserFactsRow): RoleAttributes => ({
    name: r.name,
    superuser: r.superuser,
    createRole: r.create_role,
    replication: r.replication,
    bypassRLS: r.bypass_rls,
    predefined: r.predefined,
    memberOf: r.member_of,
  });
  const user = rows.find((r) => r.is_user);
  if (!user) return undefined;
  return {
    user: { ...attributes(user), comment: user.comment },
    reachable: rows.filter((r) => !r.is_user).map(attributes),
    connectedAs: [...new Set([user.current_user_name, user.session_user_name])],
  };
}

/** Checks the user just before its password changes (same transaction); throws to refuse, and nothing changes. */
export type PasswordGuard = (facts: StaticUserFacts | undefined) => void;

export interface MarkedRole {
  username: string;
  marker: ParsedMarker;
  /** The comment as it stands, for a re-mark that changes it only if nobody else did. */
  comment: string;
}

/** Who asks for a revocation or renewal: the installation and credential the role's marker must name. */
export interface RoleOwnerProof extends RoleOwner {
  /**
   * Whether a marker of the format before installations (namespace/name/uid, no installation) is proof enough.
   * Only for a role the credential has held as issued: every role this version creates carries the full marker.
   */
  acceptLegacy: boolean;
}

/** SQLSTATEs of the checks around the creation statements (class DB: ours, never PostgreSQL's). */
const ROLE_EXISTED = 'DB001';
const ROLE_NOT_CREATED = 'DB002';
const ADMIN_CREATED = 'DB003';

/** RAISE EXCEPTION with the role's name for %, and one of our SQLSTATEs. */
function raise(message: string, role: string, code: string): string {
  return `RAISE EXCEPTION ${quoteLiteral(message)}, ${role} USING ERRCODE = '${code}';`;
}

const roleWhere = (role: string) => `FROM pg_catalog.pg_roles WHERE rolname = ${role}`;

/** Before the creation statements: the role must not exist yet (an idempotent template would otherwise adopt it). */
function refuseExistingRole(username: string): string {
  const role = quoteLiteral(username);
  return (
    `DO $dbcred$ BEGIN IF EXISTS (SELECT 1 ${roleWhere(role)}) THEN ` +
    `${raise('role % exists already; the operator creates only new roles', role, ROLE_EXISTED)} END IF; END $dbcred$`
  );
}

/**
 * After them: they created the role, and gave it no power over roles: a superuser or a CREATEROLE role could be the
 * admin of a DatabaseConfig, so revocation never touches one, so the operator never issues one.
 */
function checkCreatedRole(username: string): string {
  const role = quoteLiteral(username);
  return (
    `DO $dbcred$ BEGIN ` +
    `IF NOT EXISTS (SELECT 1 ${roleWhere(role)}) THEN ` +
    `${raise('creationStatements did not create role %', role, ROLE_NOT_CREATED)} END IF; ` +
    `IF (SELECT rolsuper ${roleWhere(role)}) THEN ` +
    `${raise('creationStatements made role % a superuser; the operator never issues superusers', role, ADMIN_CREATED)} END IF; ` +
    `IF (SELECT rolcreaterole ${roleWhere(role)}) THEN ` +
    `${raise('creationStatements gave role % CREATEROLE; the operator never issues roles that administer roles', role, ADMIN_CREATED)} ` +
    `END IF; END $dbcred$`
  );
}

/** $1: the role. What revocation and renewal must know before they touch the role. */
const GUARD_QUERY = `
SELECT r.rolsuper AS superuser, r.rolcreaterole AS create_role, r.oid < 16384 AS predefined,
       r.rolname IN (current_user, session_user) AS connected,
       pg_catalog.shobj_description(r.oid, 'pg_authid') AS comment
  FROM pg_catalog.pg_roles r WHERE r.rolname = $1`;

interface GuardRow {
  superuser: boolean;
  create_role: boolean;
  predefined: boolean;
  connected: boolean;
  comment: string | null;
}

/** Why a role must not be revoked (or renewed) for this owner, or undefined when it may. */
function guardRefusal(username: string, row: GuardRow, owner: RoleOwnerProof): string | undefined {
  if (row.connected) return `role "${username}" is the user the operator connects as`;
  if (row.superuser) return `role "${username}" is a superuser`;
  // Every DatabaseConfig's admin is a superuser or has CREATEROLE, this installation's or another's.
  if (row.create_role) return `role "${username}" has CREATEROLE (it may be the admin of a DatabaseConfig)`;
  if (row.predefined) return `role "${username}" is defined by PostgreSQL`;
  const marker = parseRoleComment(row.comment);
  if (marker && isLegacyMarker(marker) && !owner.acceptLegacy) {
    return `role "${username}" carries an old-format marker, which does not prove that this credential created it`;
  }
  if (!markerProvesOwner(row.comment, username, owner)) {
    return `role "${username}" carries no marker of this installation for this credential: the operator did not create it`;
  }
  return undefined;
}

function wrap(err: unknown, what: string, knownSecrets: readonly string[] = []): RoleAdminError {
  return new RoleAdminError(`${what}: ${safeErrorMessage(err, knownSecrets)}`, classifyPgError(err));
}

async function withRetry<T>(fn: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (attempt >= TRANSIENT_RETRIES || classifyPgError(err) !== 'transient') throw err;
      await new Promise((r) => setTimeout(r, 50 * attempt * attempt));
    }
  }
}

async function inTransaction<T>(source: ClientSource, fn: (client: pg.PoolClient) => Promise<T>, opts: { ddlLock?: boolean } = {}): Promise<T> {
  return checkout(source, async (client) => {
    try {
      await client.query('BEGIN');
      if (opts.ddlLock !== false) await client.query('SELECT pg_advisory_xact_lock($1)', [DDL_LOCK_KEY]);
      const result = await fn(client);
      await client.query('COMMIT');
      return result;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    }
  });
}

/** One statement on a pooled client, outside any explicit transaction. */
async function query<R extends pg.QueryResultRow>(source: ClientSource, text: string, values?: unknown[]): Promise<pg.QueryResult<R>> {
  return checkout(source, (client) => client.query<R>(text, values));
}

export class RoleAdmin {
  constructor(
    private readonly pool: ClientSource,
    /** Connection settings for one-off clients to other databases (REASSIGN/DROP OWNED are per database). */
    private readonly connect: (database: string) => pg.ClientConfig,
  ) {}

  async serverInfo(): Promise<ServerInfo> {
    try {
      const res = await query<{ version: string; current_user: string; rolsuper: boolean; rolcreaterole: boolean; rolinherit: boolean; signal_backend: boolean }>(
        this.pool,
        `SELECT current_setting('server_version') AS version, current_user, r.rolsuper, r.rolcreaterole, r.rolinherit,
                pg_has_role(current_user, 'pg_signal_backend', 'USAGE') AS signal_backend
           FROM pg_roles r WHERE r.rolname = current_user`,
      );
      const row = res.rows[0];
      if (!row) throw new RoleAdminError('current user not found in pg_roles', 'unknown');
      // A member's privileges count only when inherited: pg_terminate_backend checks has_privs_of_role.
      const sessionTermination: SessionTermination | undefined = row.rolsuper
        ? 'superuser'
        : row.signal_backend
          ? 'pg_signal_backend'
          : row.rolcreaterole && row.rolinherit
            ? 'role-membership'
            : undefined;
      // Read in one of our own sessions, which has set every setting this user may set (quietLogs.ts).
      const settings = await query<{ name: string; setting: string }>(this.pool, LOG_SETTINGS_QUERY, [LOG_SETTING_NAMES]);
      return {
        version: row.version,
        currentUser: row.current_user,
        canCreateRoles: row.rolsuper || row.rolcreaterole,
        sessionTermination,
        loudSettings: loudSettings(new Map(settings.rows.map((r) => [r.name, r.setting]))),
      };
    } catch (err) {
      if (err instanceof RoleAdminError) throw err;
      throw wrap(err, 'connecting');
    }
  }

  /**
   * Creates the role in one transaction together with its ownership marker, sent as one batch: one round trip,
   * so the per-database DDL lock is held only while the server runs it, never while it waits on us.
   */
  async issueRole(req: IssueRequest): Promise<void> {
    const sql = renderStatements(req.creationStatements, {
      name: req.username,
      password: req.passwordForSQL,
      expiration: req.expiration,
    });
    // Statements are joined with a newline before each ';' so that a trailing -- comment cannot swallow it.
    const batch = [
      'BEGIN',
      `SELECT pg_advisory_xact_lock(${DDL_LOCK_KEY})`,
      refuseExistingRole(req.username),
      ...sql,
      checkCreatedRole(req.username),
      commentOnRole(req.marker),
      'COMMIT',
    ].join('\n;\n');
    try {
      await withRetry(() =>
        checkout(this.pool, async (client) => {
          try {
            await client.query(batch);
          } catch (err) {
            await client.query('ROLLBACK').catch(() => undefined);
            throw err;
          }
        }),
      );
    } catch (err) {
      if (req.rollbackStatements?.length) {
        // Creation ran in one transaction, so it left nothing; rollback statements are for what a role's SQL
        // does outside it (e.g. dblink). Best effort: the creation error is the one to report.
        await this.runStatements(req.rollbackStatements, req.username, req.expiration).catch(() => undefined);
      }
      const state = sqlState(err);
      if (state === ROLE_EXISTED) throw new RoleExistsError(`creating role: ${safeErrorMessage(err, [req.passwordForSQL])}`);
      if (state === ROLE_NOT_CREATED || state === ADMIN_CREATED) {
        throw new RoleAdminError(`creating role: ${safeErrorMessage(err, [req.passwordForSQL])}`, 'invalid-statement');
      }
      throw wrap(err, 'creating role', [req.passwordForSQL]);
    }
  }

  /**
   * Runs each group of steps in its own transaction, in order, and rolls it back: proves that every statement
   * parses and runs, against the role that the group's earlier steps created, and changes nothing. Takes the DDL
   * lock like a real issue (a concurrent GRANT would otherwise fail with "tuple concurrently updated"). A failure
   * names the step's field.
   */
  async dryRun(transactions: readonly (readonly DryRunStep[])[]): Promise<void> {
    const secrets = transactions.flat().flatMap((step) => (step.values.password ? [step.values.password] : []));
    for (const steps of transactions) {
      let field = steps[0]?.field ?? 'statements';
      let connected = false;
      try {
        await checkout(this.pool, async (client) => {
          connected = true;
          try {
            await client.query('BEGIN');
            await client.query('SELECT pg_advisory_xact_lock($1)', [DDL_LOCK_KEY]);
            for (const step of steps) {
              field = step.field;
              for (const statement of renderStatements(step.statements, step.values)) await client.query(statement);
            }
          } finally {
            await client.query('ROLLBACK').catch(() => undefined);
          }
        });
      } catch (err) {
        if (!connected) throw wrap(err, 'connecting');
        throw new DryRunError(`${field} failed in a rolled-back dry run: ${safeErrorMessage(err, secrets)}`, classifyPgError(err), field);
      }
    }
  }

  /**
   * Extends a role's VALID UNTIL (or runs the role's renewStatements) — after the same guard as revocation: a
   * VALID UNTIL on the admin would be a revocation with a delay. A role the guard refuses: RoleNotOursError.
   */
  async renewRole(username: string, owner: RoleOwnerProof, expiration: Date, renewStatements?: string[]): Promise<void> {
    try {
      if (!(await this.guard(username, owner, 'renewed'))) throw new RoleAdminError(`role "${username}" does not exist`, 'gone');
      await this.runStatements(renewStatements?.length ? renewStatements : defaultRenewStatements, username, expiration);
    } catch (err) {
      if (err instanceof RoleAdminError) throw err;
      throw wrap(err, 'renewing role');
    }
  }

  /** The guard of revocation and renewal: false when the role does not exist; throws RoleNotOursError to refuse. */
  private async guard(username: string, owner: RoleOwnerProof, what: 'revoked' | 'renewed'): Promise<boolean> {
    const row = (await query<GuardRow>(this.pool, GUARD_QUERY, [username])).rows[0];
    if (!row) return false;
    const refusal = guardRefusal(username, row, owner);
    if (refusal !== undefined) throw new RoleNotOursError(`not ${what}: ${refusal}`);
    return true;
  }

  /**
   * Sets a role's password in place (static roles, root rotation); passwordForSQL may be a SCRAM verifier. A guard
   * (static roles) sees the user's facts read in the same transaction, just before the statements, and may throw
   * to refuse: its error comes back as it is, and nothing changed.
   */
  async setPassword(username: string, passwordForSQL: string, rotationStatements?: string[], guard?: PasswordGuard): Promise<void> {
    const statements = rotationStatements?.length ? rotationStatements : defaultRotationStatements;
    const sql = renderStatements(statements, { name: username, password: passwordForSQL });
    let refused: unknown;
    try {
      // No DDL lock: a password change does not collide with GRANTs, and root rotation must not wait behind issues.
      await inTransaction(this.pool, async (client) => {
        if (guard) {
          const facts = staticUserFacts((await client.query<StaticUserFactsRow>(STATIC_USER_FACTS_QUERY, [username])).rows);
          try {
            guard(facts);
          } catch (err) {
            refused = err;
            throw err;
          }
        }
        for (const statement of sql) await client.query(statement);
      }, { ddlLock: false });
    } catch (err) {
      if (refused !== undefined) throw refused;
      throw wrap(err, 'setting password', [passwordForSQL]);
    }
  }

  /** The user's attributes, comment and memberships; undefined when it does not exist. */
  async staticUserFacts(username: string): Promise<StaticUserFacts | undefined> {
    try {
      return staticUserFacts((await query<StaticUserFactsRow>(this.pool, STATIC_USER_FACTS_QUERY, [username])).rows);
    } catch (err) {
      throw wrap(err, 'looking up role');
    }
  }

  async roleExists(username: string): Promise<boolean> {
    try {
      const res = await query(this.pool, 'SELECT 1 FROM pg_roles WHERE rolname = $1', [username]);
      return res.rowCount === 1;
    } catch (err) {
      throw wrap(err, 'looking up role');
    }
  }

  /**
   * Revokes a role so that it can log in nowhere and owns nothing. First the guard: the role must not be the user
   * the operator connects as, a superuser, a CREATEROLE role or one PostgreSQL defines, and its marker must prove
   * that `owner` created it; otherwise a RoleNotOursError, and nothing changed. Then, with the role's own statements,
   * those; otherwise the steps of buildRevocation: NOLOGIN, the admin joins the role (a CREATEROLE admin may end
   * only sessions of roles it is a member of), terminate its sessions and wait until none is left, REASSIGN OWNED +
   * DROP OWNED in every database it has objects or privileges in, DROP ROLE. Each step is idempotent, so a
   * revocation that failed part-way is retried from the start. A role that is already gone is success; a session
   * that survives is a failure, never a success.
   */
  async revokeRole(username: string, owner: RoleOwnerProof, revocationStatements?: string[]): Promise<void> {
    try {
      if (!(await this.guard(username, owner, 'revoked'))) return;
      if (revocationStatements?.length) {
        await this.runStatements(revocationStatements, username, new Date());
        return;
      }
      const admin = (await query<{ u: string; db: string }>(this.pool, 'SELECT current_user AS u, current_database() AS db')).rows[0];
      if (!admin) throw new RoleAdminError('cannot read current user', 'unknown');
      const steps = buildRevocation(username, admin.u);
      await query(this.pool, steps.noLogin);
      await query(this.pool, steps.adminMembership);
      await query(this.pool, steps.terminateSessions);
      await this.waitForSessionsToEnd(username, steps.openSessions);
      for (const db of await this.databasesWithDependencies(username, admin.db)) {
        await this.inDatabase(db, admin.db, (q) => q(steps.ownedObjectsCleanup));
      }
      await withRetry(() => inTransaction(this.pool, (client) => client.query(steps.dropRole)));
    } catch (err) {
      if (err instanceof RoleAdminError) throw err;
      if (classifyPgError(err) === 'gone') return;
      throw wrap(err, 'revoking role');
    }
  }

  /**
   * Waits until every role creation that is in flight on this server has committed or rolled back. An operator
   * killed mid-issue leaves its batch running on the server (PostgreSQL notices a dead client only when it next
   * talks to it), and that batch may still commit the role. Creation holds the DDL lock from its first statement,
   * so taking the lock once is a barrier: after it, whether a pending role exists is final.
   */
  async waitForInFlightCreations(): Promise<void> {
    try {
      await inTransaction(this.pool, async () => undefined);
    } catch (err) {
      throw wrap(err, 'waiting for in-flight role creations');
    }
  }

  /**
   * pg_terminate_backend only signals: a session ends once its backend notices. Revocation goes on only when
   * none is left, so that "revoked" never stands next to a session that still works.
   */
  private async waitForSessionsToEnd(username: string, openSessions: string): Promise<void> {
    const deadline = Date.now() + SESSION_EXIT_WAIT_MS;
    for (;;) {
      const left = (await query<{ sessions: number }>(this.pool, openSessions)).rows[0]?.sessions ?? 0;
      if (left === 0) return;
      if (Date.now() >= deadline) {
        throw new RoleAdminError(`${left} session(s) of role "${username}" still open after pg_terminate_backend`, 'transient');
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Roles this operator created (marked with COMMENT ON ROLE), for the orphan sweep. */
  async listMarkedRoles(): Promise<MarkedRole[]> {
    try {
      const res = await query<{ rolname: string; description: string }>(
        this.pool,
        `SELECT r.rolname, d.description FROM pg_roles r
           JOIN pg_shdescription d ON d.objoid = r.oid AND d.classoid = 'pg_authid'::regclass`,
      );
      const out: MarkedRole[] = [];
      for (const row of res.rows) {
        const marker = parseRoleComment(row.description);
        if (marker) out.push({ username: row.rolname, marker, comment: row.description });
      }
      return out;
    } catch (err) {
      throw wrap(err, 'listing roles');
    }
  }

  /**
   * Replaces a role's marker (an old-format one, by the installation whose credential holds the role), only if the
   * comment is still `expected`. Returns whether it did.
   */
  async remarkRole(marker: RoleMarker, expected: string): Promise<boolean> {
    try {
      return await inTransaction(this.pool, async (client) => {
        const res = await client.query<{ comment: string | null }>(
          "SELECT pg_catalog.shobj_description(oid, 'pg_authid') AS comment FROM pg_catalog.pg_roles WHERE rolname = $1",
          [marker.username],
        );
        if (res.rows[0]?.comment !== expected) return false;
        await client.query(commentOnRole(marker));
        return true;
      }, { ddlLock: false });
    } catch (err) {
      throw wrap(err, 'marking role');
    }
  }

  /** The current database plus every other one where the role owns objects or holds privileges. */
  private async databasesWithDependencies(username: string, current: string): Promise<string[]> {
    const res = await query<{ datname: string }>(this.pool, databasesWithDependenciesQuery(username));
    return [current, ...res.rows.map((r) => r.datname).filter((d) => d !== current)];
  }

  private async inDatabase(db: string, current: string, fn: (q: (sql: string) => Promise<unknown>) => Promise<unknown>): Promise<void> {
    if (db === current) {
      await withRetry(() => inTransaction(this.pool, (client) => fn((sql) => client.query(sql))));
      return;
    }
    const client = new pg.Client(this.connect(db));
    client.on('error', () => undefined);
    await client.connect();
    try {
      await fn((sql) => client.query(sql));
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  private async runStatements(statements: readonly string[], username: string, expiration: Date): Promise<void> {
    const sql = renderStatements(statements, { name: username, expiration });
    await withRetry(() =>
      inTransaction(this.pool, async (client) => {
        for (const statement of sql) await client.query(statement);
      }),
    );
  }
}
