// DatabaseRole: is this role usable? Its config exists, is Ready and allows it, every placeholder makes sense for
// the kind of statement it is in, and every statement (creation, renew, revocation, rollback; a static role's
// rotation) runs, in a transaction that is rolled back, before any credential depends on them.
import { isTrue, getCondition } from '../api/conditions.js';
import type { DatabaseConfig, DatabaseRole, DatabaseRoleSpec, DatabaseRoleStatus } from '../api/types.js';
import type { Result } from '../controller/controller.js';
import { isConflict } from '../k8s/client.js';
import { DryRunError, RoleAdminError, type DryRunStep } from '../postgres/roleAdmin.js';
import { defaultRenewStatements, defaultRotationStatements, placeholdersIn, type StatementPlaceholder } from '../postgres/statements.js';
import { generatePassword } from '../secrets/password.js';
import { NotReady, globMatch, keyOf, readyFalse, resolveConfig, splitKey, withCondition, writeStatus, type OperatorContext, type ResolvedConfig } from './context.js';
import type * as k8s from '@kubernetes/client-node';
import { parseDuration, toRFC3339 } from '../api/duration.js';
import { ROTATE_ANNOTATION } from '../api/types.js';
import { scramSha256Verifier } from '../postgres/scram.js';
import { decodeKey, isOwnedBy, writeOwnedSecret } from '../secrets/ownedSecret.js';
import { parseConnectionURL } from '../secrets/secretData.js';
import { allowanceOf, claimRefusal, staticUserRefusal, type StaticClaim } from './staticPolicy.js';
import type { StaticUserFacts } from '../postgres/roleAdmin.js';

/** Key of a password recorded but perhaps not yet applied in PostgreSQL (static and root rotation). */
export const PENDING_KEY = 'password.pending';
/** On a static role's password Secret: when the password in it was set in PostgreSQL. */
export const ROTATED_AT_ANNOTATION = 'dbcred.dev/rotated-at';

/**
 * On a static role's password Secret: the namespaces whose credentials were handed the password in it (sorted,
 * comma-separated). A credential records its namespace here before it writes the password anywhere; a namespace
 * listed that the role no longer allows has seen a password it may not keep, so the role rotates it. Each rotation
 * starts the list afresh.
 */
export const DELIVERED_TO_ANNOTATION = 'dbcred.dev/delivered-to';

export function deliveredTo(secret: k8s.V1Secret | undefined): string[] {
  const value = secret?.metadata?.annotations?.[DELIVERED_TO_ANNOTATION];
  return value ? value.split(',').filter((ns) => ns !== '') : [];
}

/** Whether credentials in this namespace may use the role: allowedNamespaces, by default the role's own namespace. */
export function allowsNamespace(role: DatabaseRole, namespace: string): boolean {
  const allowed = role.spec.allowedNamespaces?.length ? role.spec.allowedNamespaces : [role.metadata.namespace];
  return allowed.some((p) => globMatch(p, namespace));
}

/**
 * Records on the role's password Secret that namespace is handed password, before it is (see
 * DELIVERED_TO_ANNOTATION). Written at the resourceVersion read, with the password checked: a rotation meanwhile
 * fails it with a conflict, and the caller runs again with the new password.
 */
export async function recordDelivery(ctx: OperatorContext, role: DatabaseRole, secretName: string, namespace: string, password: string): Promise<void> {
  const cached = await ctx.secretContents.read(role.metadata.namespace, secretName);
  if (deliveredTo(cached).includes(namespace) && decodeKey(cached, 'password') === password) return;
  const live = await ctx.client.getSecret(role.metadata.namespace, secretName);
  if (!live || !isOwnedBy(live, role) || decodeKey(live, 'password') !== password || decodeKey(live, PENDING_KEY) !== undefined) {
    throw new StaticPasswordChanged(`the password of DatabaseRole ${keyOf(role.metadata.namespace, role.metadata.name)} changed meanwhile`);
  }
  const listed = deliveredTo(live);
  if (listed.includes(namespace)) return;
  const annotations = { ...(live.metadata?.annotations ?? {}), [DELIVERED_TO_ANNOTATION]: [...listed, namespace].sort().join(',') };
  ctx.secretContents.remember(await ctx.client.replaceSecret(role.metadata.namespace, { ...live, metadata: { ...live.metadata, annotations } }));
}

/** The static password moved on while a credential was about to deliver it: run again. */
export class StaticPasswordChanged extends Error {}

/** host:port of a config's server, lowercased: PostgreSQL users are per server, whatever the database. */
function serverOfConfig(config: DatabaseConfig): string | undefined {
  try {
    const url = parseConnectionURL(config.spec.connectionURL);
    return `${url.host.toLowerCase()}:${url.port}`;
  } catch {
    return undefined;
  }
}

/** The Secret that keeps a static role's current password, beside the role. */
export function staticSecretName(role: DatabaseRole): string {
  return `${role.metadata.name}-static-password`.slice(0, 253);
}

/** The config a role points at, checked for existence, readiness and allowedRoles. */
export function configForRole(ctx: OperatorContext, role: DatabaseRole): DatabaseConfig {
  const configKey = keyOf(role.metadata.namespace, role.spec.configRef.name);
  const config = ctx.informers.configs.get(configKey);
  if (!config) throw new NotReady('ConfigNotFound', `DatabaseConfig ${configKey} not found`);
  const allowed = config.spec.allowedRoles ?? [];
  if (!allowed.some((p) => globMatch(p, role.metadata.name))) {
    throw new NotReady('RoleNotAllowed', `DatabaseConfig ${configKey} does not list "${role.metadata.name}" in allowedRoles`);
  }
  if (!isTrue(config.status?.conditions, 'Ready')) {
    const c = getCondition(config.status?.conditions, 'Ready');
    throw new NotReady('ConfigNotReady', `DatabaseConfig ${configKey} is not Ready${c ? `: ${c.reason}: ${c.message}` : ''}`);
  }
  return config;
}

/** The spec fields that hold SQL, each with what it is given when it runs and what it must use. */
export type StatementField = 'creationStatements' | 'renewStatements' | 'revocationStatements' | 'rollbackStatements' | 'static.rotationStatements';

interface PlaceholderRule {
  /** The values the operator has when it runs these statements. */
  available: readonly StatementPlaceholder[];
  /** Placeholders without which the statements cannot do their job, and why. */
  required: readonly StatementPlaceholder[];
  why: string;
}

export const PLACEHOLDER_RULES: Readonly<Record<StatementField, PlaceholderRule>> = {
  creationStatements: { available: ['name', 'password', 'expiration'], required: ['name'], why: 'every credential needs its own role' },
  renewStatements: { available: ['name', 'expiration'], required: ['name'], why: 'a renewal extends the lease of one role; it sets no password' },
  revocationStatements: { available: ['name', 'expiration'], required: ['name'], why: 'a revocation removes one role; it knows no password' },
  rollbackStatements: { available: ['name', 'expiration'], required: [], why: 'a rollback undoes a failed creation; it knows no password' },
  'static.rotationStatements': { available: ['name', 'password'], required: ['name', 'password'], why: 'a rotation sets the new password of the static user' },
};

/** The statements of a role, by field; empty or absent fields are left out. */
export function statementsOf(spec: DatabaseRoleSpec): Array<[StatementField, string[]]> {
  const fields: Array<[StatementField, string[] | undefined]> = [
    ['creationStatements', spec.creationStatements],
    ['renewStatements', spec.renewStatements],
    ['revocationStatements', spec.revocationStatements],
    ['rollbackStatements', spec.rollbackStatements],
    ['static.rotationStatements', spec.static?.rotationStatements],
  ];
  return fields.flatMap(([field, statements]) => (statements?.length ? [[field, statements] as [StatementField, string[]]] : []));
}

const list = (names: readonly string[]) => names.map((n) => `{{${n}}}`).join(', ');

/**
 * Refuses statements whose placeholders make no sense for their kind, before any SQL runs: an unknown one or
 * unterminated quoting (InvalidStatements), one whose value does not exist when the statements run, such as
 * {{password}} in renewStatements (PlaceholderNotAllowed), or a missing one without which they cannot work,
 * such as {{name}} in creationStatements (InvalidStatements). Placeholders inside SQL comments do not count.
 */
export function checkPlaceholders(spec: DatabaseRoleSpec): void {
  for (const [field, statements] of statementsOf(spec)) {
    const rule = PLACEHOLDER_RULES[field];
    let used: Set<StatementPlaceholder>;
    try {
      used = placeholdersIn(statements);
    } catch (err) {
      throw new NotReady('InvalidStatements', `${field}: ${err instanceof Error ? err.message : String(err)}`);
    }
    for (const name of used) {
      if (!rule.available.includes(name)) {
        throw new NotReady('PlaceholderNotAllowed', `${field} cannot use {{${name}}}: ${rule.why} (available there: ${list(rule.available)})`);
      }
    }
    const missing = rule.required.filter((name) => !used.has(name));
    if (missing.length) throw new NotReady('InvalidStatements', `${field} must use ${list(missing)}: ${rule.why}`);
  }
}

/** Ready=False reason of a failed dry run, by the field whose statements failed. */
export const DRY_RUN_REASONS: Readonly<Record<StatementField, string>> = {
  creationStatements: 'StatementsFailed',
  renewStatements: 'RenewStatementsFailed',
  revocationStatements: 'RevocationStatementsFailed',
  rollbackStatements: 'RollbackStatementsFailed',
  'static.rotationStatements': 'RotationStatementsFailed',
};

/**
 * What a dry run executes, each inner list one rolled-back transaction, in the order the operator runs the
 * statements for real: a dynamic role is created from a sample name, renewed (the role's statements or the
 * built-in ones) and revoked with the role's own revocationStatements (the built-in revocation terminates
 * sessions and works in other databases, so it cannot run in a transaction); rollbackStatements run in a second
 * transaction after the creation statements. A static role's rotationStatements set a sample password on its
 * user, rolled back.
 */
export function dryRunPlan(spec: DatabaseRoleSpec, sample: { name: string; password: string; now: Date }): DryRunStep[][] {
  const { name, password, now } = sample;
  const later = (ms: number) => new Date(now.getTime() + ms);
  if (spec.static) {
    return [[{ field: 'static.rotationStatements', statements: spec.static.rotationStatements?.length ? spec.static.rotationStatements : defaultRotationStatements, values: { name: spec.static.username, password } }]];
  }
  const create: DryRunStep = { field: 'creationStatements', statements: spec.creationStatements ?? [], values: { name, password, expiration: later(3600_000) } };
  const lifecycle: DryRunStep[] = [
    create,
    { field: 'renewStatements', statements: spec.renewStatements?.length ? spec.renewStatements : defaultRenewStatements, values: { name, expiration: later(7200_000) } },
  ];
  if (spec.revocationStatements?.length) lifecycle.push({ field: 'revocationStatements', statements: spec.revocationStatements, values: { name, expiration: now } });
  const plan = [lifecycle];
  if (spec.rollbackStatements?.length) plan.push([create, { field: 'rollbackStatements', statements: spec.rollbackStatements, values: { name, expiration: later(3600_000) } }]);
  return plan;
}

export class DatabaseRoleReconciler {
  /** generation/config-resourceVersion of the last successful dry run, so it is not repeated every resync. */
  private readonly checked = new Map<string, string>();

  constructor(private readonly ctx: OperatorContext) {}

  async reconcile(key: string): Promise<Result> {
    const role = this.ctx.informers.roles.get(key);
    if (!role || role.metadata.deletionTimestamp) {
      this.checked.delete(key);
      return {};
    }
    const { namespace, name } = splitKey(key);
    let status: DatabaseRoleStatus = { ...(role.status ?? {}), activeCredentials: this.countActive(namespace, name) };
    let requeueAfter: number | undefined;
    try {
      checkPlaceholders(role.spec);
      const config = configForRole(this.ctx, role);
      const resolved = await resolveConfig(this.ctx, config);
      if (role.spec.static) {
        const next = await this.reconcileStatic(role, resolved, status, () => this.dryRunOnce(key, role, config, resolved));
        status = next.status;
        requeueAfter = next.requeueAfter;
      } else {
        await this.dryRunOnce(key, role, config, resolved);
      }
      const message = role.spec.static
        ? `static role for PostgreSQL user "${role.spec.static.username}", password rotated at ${status.lastRotationTime}`
        : 'statements checked in a rolled-back transaction';
      status = withCondition(this.ctx, role, status, { type: 'Ready', status: 'True', reason: 'Checked', message });
    } catch (err) {
      let reason: string;
      if (err instanceof NotReady) {
        reason = err.reason;
        // The user may be fixed in PostgreSQL, where no event tells us: look again now and then.
        if (reason.startsWith('StaticUser')) requeueAfter = 60_000;
      } else if (err instanceof RoleAdminError) {
        const field = err instanceof DryRunError ? (err.field as StatementField) : 'creationStatements';
        reason = err.kind === 'transient' ? 'ConfigUnreachable' : (DRY_RUN_REASONS[field] ?? 'StatementsFailed');
        requeueAfter = 30_000;
      } else throw err;
      this.checked.delete(key);
      status = readyFalse(this.ctx, role, status, reason, (err as Error).message);
    }
    try {
      await writeStatus<DatabaseRole>(this.ctx, 'role', role, status);
    } catch (err) {
      if (isConflict(err)) return { requeue: true }; // our cached copy was stale; the next run sees the new one
      throw err;
    }
    return requeueAfter ? { requeueAfter } : {};
  }

  /**
   * Dry-runs every statement of the role (dryRunPlan) once per role generation and config version, so a resync
   * does not repeat it.
   */
  private async dryRunOnce(key: string, role: DatabaseRole, config: DatabaseConfig, resolved: ResolvedConfig): Promise<void> {
    const stamp = `${role.metadata.generation}/${config.metadata.resourceVersion}`;
    if (this.checked.get(key) === stamp) return;
    const sample = { name: `dbcred_dryrun_${Date.now().toString(36)}`, password: generatePassword(resolved.passwordLength), now: this.ctx.clock.now() };
    await resolved.admin.dryRun(dryRunPlan(role.spec, sample));
    this.checked.set(key, stamp);
  }

  /**
   * A static role owns one existing PostgreSQL user's password: rotated on first sight (its current password is
   * unknown to us), every rotationPeriod, and when the dbcred.dev/rotate annotation changes. The new password is
   * recorded in the role's Secret (key password.pending) before PostgreSQL changes, so a crash at any point leaves
   * a Secret that holds the working password; the user is never dropped.
   */
  private async reconcileStatic(role: DatabaseRole, resolved: ResolvedConfig, status: DatabaseRoleStatus, dryRun: () => Promise<void>): Promise<{ status: DatabaseRoleStatus; requeueAfter?: number }> {
    const spec = role.spec.static!;
    const now = this.ctx.clock.now();
    const secretName = staticSecretName(role);
    // A live read: the Secret, not the (possibly lagging) cache or status, says when the password last changed.
    const existing = await this.ctx.client.getSecret(role.metadata.namespace, secretName);
    if (existing && !isOwnedBy(existing, role)) {
      throw new NotReady('SecretConflict', `Secret ${role.metadata.namespace}/${secretName} exists and is not owned by this DatabaseRole`);
    }
    // Before anything runs against the user (the dry run included), and again inside the rotation's transaction.
    const refuse = (facts: StaticUserFacts | undefined): void => {
      const refusal = staticUserRefusal(spec.username, facts, [resolved.settings.user], allowanceOf(resolved.config.spec)) ?? this.claimRefusal(role, resolved.config);
      if (refusal) throw new NotReady(refusal.reason, refusal.message);
    };
    refuse(await resolved.admin.staticUserFacts(spec.username));
    await dryRun(); // against the user, which exists: a failure is the statements' fault
    let periodMs: number | undefined;
    try {
      periodMs = spec.rotationPeriod ? parseDuration(spec.rotationPeriod) : undefined;
    } catch (err) {
      throw new NotReady('InvalidRotationPeriod', err instanceof Error ? err.message : String(err));
    }
    const current = decodeKey(existing, 'password');
    const pending = decodeKey(existing, PENDING_KEY);
    const rotateRequest = role.metadata.annotations?.[ROTATE_ANNOTATION];
    const rotatedAt = existing?.metadata?.annotations?.[ROTATED_AT_ANNOTATION];
    const last = rotatedAt ? new Date(rotatedAt) : undefined;
    // Namespaces that were handed this password and are no longer allowed: their copy must stop working.
    const lostAccess = deliveredTo(existing).filter((ns) => !allowsNamespace(role, ns));
    // spec.static.username changed: the Secret (and every credential's copy) still names the previous user, whose
    // password this role no longer manages. Set the new user's password now rather than at the next period.
    const userChanged = existing !== undefined && decodeKey(existing, 'username') !== spec.username;
    const due =
      !current || !last || pending !== undefined || lostAccess.length > 0 || userChanged ||
      (periodMs !== undefined && now.getTime() >= last.getTime() + periodMs) ||
      (rotateRequest !== undefined && rotateRequest !== status.rotateRequest);
    const write = (data: Record<string, string>, from: k8s.V1Secret | undefined, at: string | undefined) =>
      writeOwnedSecret(this.ctx.client, role, { name: secretName, type: 'Opaque', data, annotations: at ? { [ROTATED_AT_ANNOTATION]: at } : undefined }, from);

    let next = { ...status, passwordSecretName: secretName, lastRotationTime: rotatedAt };
    if (due) {
      const password = pending ?? generatePassword(resolved.passwordLength);
      // 1. Record the new password next to the current one before PostgreSQL changes.
      if (pending === undefined) {
        await write({ username: spec.username, ...(current !== undefined ? { password: current } : {}), [PENDING_KEY]: password }, existing, rotatedAt);
      }
      // 2. Change it in PostgreSQL (a verifier in scram mode). Repeating this after a crash is harmless.
      await resolved.admin.setPassword(spec.username, resolved.scram ? await scramSha256Verifier(password) : password, spec.rotationStatements, refuse);
      // 3. Promote it.
      const fresh = await this.ctx.client.getSecret(role.metadata.namespace, secretName);
      await write({ username: spec.username, password }, fresh, toRFC3339(now));
      next = { ...next, lastRotationTime: toRFC3339(now), rotateRequest };
      const why = lostAccess.length
        ? ` (namespaces no longer allowed had it: ${lostAccess.join(', ')})`
        : userChanged
          ? ` (static.username changed from "${decodeKey(existing, 'username') ?? ''}")`
          : '';
      this.ctx.events.record(role, 'Normal', 'PasswordRotated', `rotated the password of PostgreSQL user "${spec.username}"${why}`);
      this.ctx.logger.info('static password rotated', { role: keyOf(role.metadata.namespace, role.metadata.name), username: spec.username, lostAccess });
    }
    const lastRotation = new Date(next.lastRotationTime ?? now);
    next.nextRotationTime = periodMs !== undefined ? toRFC3339(new Date(lastRotation.getTime() + periodMs)) : undefined;
    const requeueAfter = periodMs !== undefined ? Math.max(0, lastRotation.getTime() + periodMs - now.getTime()) + 10 : undefined;
    return { status: next, requeueAfter };
  }

  /**
   * The other static roles that name the same user on the same server (host:port) and could manage it (their
   * config exists and allows them): the oldest wins, the others are refused. Roles being deleted do not count.
   */
  private claimRefusal(role: DatabaseRole, config: DatabaseConfig): ReturnType<typeof claimRefusal> {
    const username = role.spec.static?.username;
    const server = serverOfConfig(config);
    if (username === undefined || server === undefined) return undefined;
    const claims: StaticClaim[] = [];
    for (const other of this.ctx.informers.roles.list()) {
      if (other.metadata.uid === role.metadata.uid || other.metadata.deletionTimestamp || other.spec.static?.username !== username) continue;
      const otherConfig = this.ctx.informers.configs.get(keyOf(other.metadata.namespace, other.spec.configRef.name));
      if (!otherConfig || serverOfConfig(otherConfig) !== server) continue;
      if (!(otherConfig.spec.allowedRoles ?? []).some((p) => globMatch(p, other.metadata.name))) continue;
      claims.push({ namespace: other.metadata.namespace, name: other.metadata.name, creationTimestamp: other.metadata.creationTimestamp });
    }
    const refusal = claimRefusal({ namespace: role.metadata.namespace, name: role.metadata.name, creationTimestamp: role.metadata.creationTimestamp }, username, claims);
    if (refusal) this.ctx.logger.debug('static user claimed by an older role', { role: keyOf(role.metadata.namespace, role.metadata.name), username, claimants: claims.map((c) => keyOf(c.namespace, c.name)) });
    return refusal;
  }

  private countActive(namespace: string, name: string): number {
    let n = 0;
    for (const cred of this.ctx.informers.credentials.list()) {
      const ref = cred.spec.roleRef;
      if (ref.name === name && (ref.namespace ?? cred.metadata.namespace) === namespace && isTrue(cred.status?.conditions, 'Ready')) n++;
    }
    return n;
  }
}
