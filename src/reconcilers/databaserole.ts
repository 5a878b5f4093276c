// DatabaseRole: is this role usable? Its config exists, is Ready and allows it, its placeholders are known, and
// its creation statements run (in a transaction that is rolled back) before any credential depends on them.
import { isTrue, getCondition } from '../api/conditions.js';
import type { DatabaseConfig, DatabaseRole, DatabaseRoleStatus } from '../api/types.js';
import type { Result } from '../controller/controller.js';
import { isConflict } from '../k8s/client.js';
import { RoleAdminError } from '../postgres/roleAdmin.js';
import { placeholdersIn } from '../postgres/statements.js';
import { generatePassword } from '../secrets/password.js';
import { NotReady, globMatch, keyOf, readyFalse, resolveConfig, splitKey, withCondition, writeStatus, type OperatorContext, type ResolvedConfig } from './context.js';
import type * as k8s from '@kubernetes/client-node';
import { parseDuration, toRFC3339 } from '../api/duration.js';
import { ROTATE_ANNOTATION } from '../api/types.js';
import { scramSha256Verifier } from '../postgres/scram.js';
import { decodeKey, isOwnedBy, writeOwnedSecret } from '../secrets/ownedSecret.js';

/** Key of a password recorded but perhaps not yet applied in PostgreSQL (static and root rotation). */
export const PENDING_KEY = 'password.pending';
/** On a static role's password Secret: when the password in it was set in PostgreSQL. */
export const ROTATED_AT_ANNOTATION = 'dbcred.dev/rotated-at';

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

function checkPlaceholders(role: DatabaseRole): void {
  const spec = role.spec;
  const groups: Array<[string, string[] | undefined]> = [
    ['creationStatements', spec.creationStatements],
    ['revocationStatements', spec.revocationStatements],
    ['rollbackStatements', spec.rollbackStatements],
    ['renewStatements', spec.renewStatements],
  ];
  for (const [field, statements] of groups) {
    if (!statements?.length) continue;
    let used: Set<string>;
    try {
      used = placeholdersIn(statements);
    } catch (err) {
      throw new NotReady('InvalidStatements', `${field}: ${err instanceof Error ? err.message : String(err)}`);
    }
    if (field === 'creationStatements' && !used.has('name') && !used.has('username')) {
      throw new NotReady('InvalidStatements', 'creationStatements must use {{name}}: every credential needs its own role');
    }
  }
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
      checkPlaceholders(role);
      const config = configForRole(this.ctx, role);
      const stamp = `${role.metadata.generation}/${config.metadata.resourceVersion}`;
      const creation = role.spec.creationStatements ?? [];
      if (creation.length && this.checked.get(key) !== stamp) {
        const resolved = await resolveConfig(this.ctx, config);
        await resolved.admin.dryRun(creation, {
          name: `dbcred_dryrun_${Date.now().toString(36)}`,
          password: generatePassword(resolved.passwordLength),
          expiration: new Date(this.ctx.clock.now().getTime() + 3600_000),
        });
        this.checked.set(key, stamp);
      }
      if (role.spec.static) {
        const next = await this.reconcileStatic(role, await resolveConfig(this.ctx, config), status);
        status = next.status;
        requeueAfter = next.requeueAfter;
      }
      const message = role.spec.static
        ? `static role for PostgreSQL user "${role.spec.static.username}", password rotated at ${status.lastRotationTime}`
        : 'creation statements checked in a rolled-back transaction';
      status = withCondition(this.ctx, role, status, { type: 'Ready', status: 'True', reason: 'Checked', message });
    } catch (err) {
      let reason: string;
      if (err instanceof NotReady) reason = err.reason;
      else if (err instanceof RoleAdminError) {
        reason = err.kind === 'transient' ? 'ConfigUnreachable' : 'StatementsFailed';
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
   * A static role owns one existing PostgreSQL user's password: rotated on first sight (its current password is
   * unknown to us), every rotationPeriod, and when the dbcred.dev/rotate annotation changes. The new password is
   * recorded in the role's Secret (key password.pending) before PostgreSQL changes, so a crash at any point leaves
   * a Secret that holds the working password; the user is never dropped.
   */
  private async reconcileStatic(role: DatabaseRole, resolved: ResolvedConfig, status: DatabaseRoleStatus): Promise<{ status: DatabaseRoleStatus; requeueAfter?: number }> {
    const spec = role.spec.static!;
    const now = this.ctx.clock.now();
    const secretName = staticSecretName(role);
    // A live read: the Secret, not the (possibly lagging) cache or status, says when the password last changed.
    const existing = await this.ctx.client.getSecret(role.metadata.namespace, secretName);
    if (existing && !isOwnedBy(existing, role)) {
      throw new NotReady('SecretConflict', `Secret ${role.metadata.namespace}/${secretName} exists and is not owned by this DatabaseRole`);
    }
    if (!(await resolved.admin.roleExists(spec.username))) {
      throw new NotReady('StaticUserNotFound', `PostgreSQL user "${spec.username}" does not exist (a static role manages an existing user)`);
    }
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
    const due =
      !current || !last || pending !== undefined ||
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
      await resolved.admin.setPassword(spec.username, resolved.scram ? await scramSha256Verifier(password) : password, spec.rotationStatements);
      // 3. Promote it.
      const fresh = await this.ctx.client.getSecret(role.metadata.namespace, secretName);
      await write({ username: spec.username, password }, fresh, toRFC3339(now));
      next = { ...next, lastRotationTime: toRFC3339(now), rotateRequest };
      this.ctx.events.record(role, 'Normal', 'PasswordRotated', `rotated the password of PostgreSQL user "${spec.username}"`);
      this.ctx.logger.info('static password rotated', { role: keyOf(role.metadata.namespace, role.metadata.name), username: spec.username });
    }
    const lastRotation = new Date(next.lastRotationTime ?? now);
    next.nextRotationTime = periodMs !== undefined ? toRFC3339(new Date(lastRotation.getTime() + periodMs)) : undefined;
    const requeueAfter = periodMs !== undefined ? Math.max(0, lastRotation.getTime() + periodMs - now.getTime()) + 10 : undefined;
    return { status: next, requeueAfter };
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
