// DatabaseCredential: a working login delivered as a Secret, for as long as it is wanted and no longer.
//
// Every PostgreSQL role the credential may hold is listed in status.roles before it exists (state pending), so an
// operator killed between any two steps finds it on restart and adopts it (the Secret has it) or revokes it.
// Deadlines (renewAt, expiresAt, revokeAfter) live in status too: the next wake-up is always recomputed from them.
import type * as k8s from '@kubernetes/client-node';
import { createHash } from 'node:crypto';
import { getCondition, isTrue } from '../api/conditions.js';
import { formatDuration, parseDuration, toRFC3339 } from '../api/duration.js';
import {
  CREDENTIAL_FINALIZER,
  RESTARTED_AT_ANNOTATION,
  ROTATE_ANNOTATION,
  type DatabaseCredential,
  type DatabaseCredentialStatus,
  type DatabaseRole,
  type HeldRole,
} from '../api/types.js';
import type { Result } from '../controller/controller.js';
import { countCredentialEvent } from '../metrics.js';
import { apiErrorMessage, isConflict, isNotFound } from '../k8s/client.js';
import { poolConfig } from '../postgres/pool.js';
import { RoleAdmin, RoleAdminError } from '../postgres/roleAdmin.js';
import { scramSha256Verifier } from '../postgres/scram.js';
import { renderUsername } from '../postgres/usernameTemplate.js';
import { generatePassword } from '../secrets/password.js';
import { SecretConflictError, decodeKey, isOwnedBy, readSecret, writeOwnedSecret } from '../secrets/ownedSecret.js';
import { SECRET_TYPE, SecretTemplateError, buildSecretData } from '../secrets/secretData.js';
import { NotReady, globMatch, keyOf, readyFalse, resolveConfig, withCondition, writeStatus, type OperatorContext, type ResolvedConfig } from './context.js';
import { PENDING_KEY, ROTATED_AT_ANNOTATION, configForRole } from './databaserole.js';

const DEFAULT_TTL = '1h';
const DEFAULT_MAX_TTL = '24h';
const DEFAULT_RENEWAL_PERCENT = 67;
const DEFAULT_GRACE = '5m';

interface RoleTarget {
  role: DatabaseRole;
  roleKey: string;
  resolved: ResolvedConfig;
  ttlMs: number;
  maxTTLMs: number;
  ttlCapped: boolean;
}

/** Thrown to stop a reconcile after a status write that lost an optimistic-lock race: just run again. */
class Conflict extends Error {}

export class DatabaseCredentialReconciler {
  constructor(private readonly ctx: OperatorContext) {}

  async reconcile(key: string): Promise<Result> {
    let cred = this.ctx.informers.credentials.get(key);
    if (!cred) return {};
    try {
      if (cred.metadata.deletionTimestamp) return await this.finalize(cred);
      cred = await this.ensureFinalizer(cred);
      return await this.reconcileLive(cred);
    } catch (err) {
      if (err instanceof Conflict || isConflict(err)) return { requeue: true };
      if (isNotFound(err)) return {}; // deleted while we worked: the next event says what is left to do
      throw err;
    }
  }

  // ---- deletion ----

  private async ensureFinalizer(cred: DatabaseCredential): Promise<DatabaseCredential> {
    const finalizers = cred.metadata.finalizers ?? [];
    if (finalizers.includes(CREDENTIAL_FINALIZER)) return cred;
    return this.ctx.client.patchMetadata<DatabaseCredential>('credential', cred.metadata.namespace, cred.metadata.name, {
      finalizers: [...finalizers, CREDENTIAL_FINALIZER],
      resourceVersion: cred.metadata.resourceVersion,
    });
  }

  /** Revokes every role the credential holds, then lets go. A failed revocation keeps the finalizer and says why. */
  private async finalize(cred: DatabaseCredential): Promise<Result> {
    const finalizers = cred.metadata.finalizers ?? [];
    if (!finalizers.includes(CREDENTIAL_FINALIZER)) return {};
    const remaining = await this.revokeAll(cred, cred.status?.roles ?? []);
    if (remaining.failed.length) {
      await this.reportRevocationFailure(cred, { ...(cred.status ?? {}), roles: remaining.failed }, remaining.errors);
      throw new Error(`revocation failed: ${remaining.errors.join('; ')}`);
    }
    await this.ctx.client.patchMetadata('credential', cred.metadata.namespace, cred.metadata.name, {
      finalizers: finalizers.filter((f) => f !== CREDENTIAL_FINALIZER),
      resourceVersion: cred.metadata.resourceVersion,
    });
    this.ctx.logger.info('credential deleted; roles revoked', { credential: keyOf(cred.metadata.namespace, cred.metadata.name) });
    return {};
  }

  private async revokeAll(cred: DatabaseCredential, roles: HeldRole[]): Promise<{ failed: HeldRole[]; errors: string[] }> {
    const failed: HeldRole[] = [];
    const errors: string[] = [];
    for (const held of roles) {
      try {
        await this.revoke(held);
        this.ctx.logger.info('role revoked', { credential: keyOf(cred.metadata.namespace, cred.metadata.name), username: held.username });
      } catch (err) {
        failed.push(held);
        errors.push(`${held.username}: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    return { failed, errors };
  }

  private async reportRevocationFailure(cred: DatabaseCredential, status: DatabaseCredentialStatus, errors: string[]): Promise<void> {
    const message = `revocation failed (retrying with backoff): ${errors.join('; ')}`;
    await writeStatus(this.ctx, 'credential', cred, readyFalse(this.ctx, cred, status, 'RevocationFailed', message));
  }

  /** Revokes one role through the config that made it; works when the DatabaseRole is gone (built-in statements). */
  private async revoke(held: HeldRole): Promise<void> {
    try {
      const admin = await this.adminFor(held.config);
      // A pending role may still be being created by a transaction a killed operator left running: let it finish.
      if (held.state === 'pending') await admin.waitForInFlightCreations();
      const role = this.ctx.informers.roles.get(held.role);
      await admin.revokeRole(held.username, role?.spec.revocationStatements);
    } catch (err) {
      countCredentialEvent('revocation_failed');
      throw err;
    }
    countCredentialEvent('revoked');
  }

  /**
   * The admin for the server that holds a role. When the config or its root Secret is already gone (a namespace
   * being deleted with everything in it), the pool this process made for it still knows the way.
   */
  private async adminFor(configKey: string): Promise<RoleAdmin> {
    const config = this.ctx.informers.configs.get(configKey);
    try {
      if (!config) throw new NotReady('ConfigNotFound', `DatabaseConfig ${configKey} not found; cannot reach the role's server`);
      return (await resolveConfig(this.ctx, config)).admin;
    } catch (err) {
      const existing = this.ctx.pools.existing(configKey);
      if (!(err instanceof NotReady) || !existing) throw err;
      return new RoleAdmin(existing.pool, (database) => poolConfig({ ...existing.settings, database }));
    }
  }

  // ---- the live object ----

  private async reconcileLive(cred: DatabaseCredential): Promise<Result> {
    const now = this.ctx.clock.now();
    const { namespace, name } = cred.metadata;
    const secretName = cred.spec.secretName ?? name;
    // Expired and holding nothing: only make sure our Secret stays gone (the cache knows every Secret we own).
    const expiredNow = getCondition(cred.status?.conditions, 'Expired');
    if (expiredNow?.status === 'True' && expiredNow.observedGeneration === cred.metadata.generation && !cred.status?.roles?.length) {
      const leftover = this.ctx.informers.ownedSecrets.get(keyOf(namespace, secretName));
      if (leftover && isOwnedBy(leftover, cred)) await this.ctx.client.deleteSecret(namespace, secretName, leftover.metadata?.uid);
      return {};
    }
    // The cache may lag behind our own last write. Where it disagrees with status, read the Secret live: acting
    // on a stale copy would rotate (or revoke) a login that is in fact current.
    let secret = this.ctx.informers.ownedSecrets.get(keyOf(namespace, secretName));
    if (!secret || decodeKey(secret, 'username') !== cred.status?.username) secret = await this.ctx.client.getSecret(namespace, secretName);
    if (secret && !isOwnedBy(secret, cred)) {
      return this.notReady(cred, cred.status ?? {}, 'SecretConflict', `Secret ${namespace}/${secretName} exists and is not owned by this DatabaseCredential; refusing to take it over`);
    }
    const secretUser = decodeKey(secret, 'username');
    let status: DatabaseCredentialStatus = { ...(cred.status ?? {}), roles: [...(cred.status?.roles ?? [])] };

    // 1. Settle what a crash or an earlier rotation left behind.
    const settled = await this.settle(cred, status, secretUser, now);
    status = settled.status;
    if (settled.changed) cred = await this.commit(cred, status);

    // 2. An expired credential stays expired until its spec changes (GitOps keeps the object).
    const expired = getCondition(cred.status?.conditions, 'Expired');
    if (expired?.status === 'True' && expired.observedGeneration === cred.metadata.generation) {
      if (secret) await this.ctx.client.deleteSecret(namespace, secretName, secret.metadata?.uid);
      return this.nextWake(status, now);
    }

    const active = status.roles?.find((r) => r.state === 'active');
    const rotationEnabled = cred.spec.rotation?.enabled !== false;

    // 3. Without rotation, the lease ends at expiresAt: revoke, delete the Secret, mark Expired.
    if (active && !rotationEnabled && active.expiresAt && now >= new Date(active.expiresAt)) {
      return this.expire(cred, status, active, secret);
    }

    // 4. What the credential needs from its role and config.
    let target: RoleTarget;
    try {
      target = await this.resolveTarget(cred);
    } catch (err) {
      if (!(err instanceof NotReady)) throw err;
      if (active && active.expiresAt && now >= new Date(active.expiresAt)) return this.expire(cred, status, active, secret);
      // A credential already issued keeps working until its deadline; say what is wrong meanwhile.
      const result = await this.notReady(cred, status, err.reason, err.message);
      return active ? this.nextWake(status, now) : result;
    }

    if (target.role.spec.static) return this.reconcileStatic(cred, status, target, secret, now);

    const specHash = this.specHash(cred, target.roleKey);
    const rotateRequest = cred.metadata.annotations?.[ROTATE_ANNOTATION];
    let why: string | undefined;
    if (!active) why = 'issue';
    else if (secretUser !== active.username) why = 'the Secret was removed or changed';
    else if (status.issuedForHash !== specHash) why = 'the spec changed';
    else if (rotateRequest !== undefined && rotateRequest !== status.rotateRequest) why = `annotation ${ROTATE_ANNOTATION} changed`;
    else if (rotationEnabled && status.renewAt && now >= new Date(status.renewAt)) {
      why = await this.renewOrRotate(cred, status, active, target, now);
      if (!why) cred = await this.commit(cred, status);
    }
    if (why) return this.issue(cred, status, target, active, secret, why, specHash, rotateRequest, now);

    // 5. Steady state: keep the Secret's extra keys in line with the template; finish a restart a crash
    //    interrupted; report Ready.
    if (secret && active) await this.refreshSecret(cred, secret, target, active);
    if (active?.issuedAt && status.restartedFor !== active.issuedAt) {
      if (status.restartedFor === undefined) status.restartedFor = active.issuedAt;
      else await this.ensureRestarted(cred, status, active.issuedAt);
    }
    status = withCondition(this.ctx, cred, status, { type: 'Ready', status: 'True', reason: 'Issued', message: `credential ${active?.username} is valid until ${status.expiresAt}` });
    await this.commit(cred, status);
    return this.nextWake(status, now);
  }

  /**
   * A credential of a static role delivers the one managed user with its current password. The role rotates the
   * password; each rotation reaches this Secret (the role's password Secret is watched) and restarts the targets.
   * Nothing is revoked: the user is not ours to drop.
   */
  private async reconcileStatic(cred: DatabaseCredential, status: DatabaseCredentialStatus, target: RoleTarget, secret: k8s.V1Secret | undefined, now: Date): Promise<Result> {
    const { role } = target;
    const username = role.spec.static?.username ?? '';
    const pwSecret = role.status?.passwordSecretName
      ? this.ctx.informers.ownedSecrets.get(keyOf(role.metadata.namespace, role.status.passwordSecretName))
      : undefined;
    const password = decodeKey(pwSecret, 'password');
    // The time comes from the Secret that holds the password, so the two always match.
    const rotatedAt = pwSecret?.metadata?.annotations?.[ROTATED_AT_ANNOTATION];
    if (!password || !rotatedAt || decodeKey(pwSecret, PENDING_KEY) !== undefined) {
      return this.notReady(cred, status, 'StaticPasswordNotReady', `DatabaseRole ${target.roleKey} has not finished setting the password of "${username}"`);
    }
    const next = role.status?.nextRotationTime;
    const secretName = cred.spec.secretName ?? cred.metadata.name;
    let data: Record<string, string>;
    try {
      // expires-at is when the password changes next; without a rotation period it does not expire.
      data = this.secretData(cred, target.resolved, username, password, new Date(next ?? now));
    } catch (err) {
      if (err instanceof SecretTemplateError) return this.notReady(cred, status, 'InvalidSecretTemplate', err.message);
      throw err;
    }
    if (!next) delete data['expires-at'];
    const rotated = secret !== undefined && decodeKey(secret, 'password') !== password;
    await this.writeSecret(cred, secretName, data, secret);
    await this.deleteOldSecret(cred, status.secretName, secretName);
    status = { ...status, username, issuedAt: rotatedAt, expiresAt: next, renewAt: undefined, secretName, binding: { name: secretName }, roles: [] };
    // The first delivery needs no restart; afterwards each new rotatedAt restarts the targets once.
    if (!secret || status.restartedFor === undefined) status.restartedFor = rotatedAt;
    if (rotated) {
      this.ctx.events.record(cred, 'Normal', 'Rotated', `the password of static user "${username}" was rotated at ${rotatedAt}`);
    }
    await this.ensureRestarted(cred, status, rotatedAt);
    status = withCondition(this.ctx, cred, status, { type: 'Ready', status: 'True', reason: 'Issued', message: `static user ${username}; password set at ${rotatedAt}` });
    await this.commit(cred, status);
    return {};
  }

  /** Pending roles are adopted (the Secret has them) or revoked; retiring roles past their grace are revoked. */
  private async settle(cred: DatabaseCredential, status: DatabaseCredentialStatus, secretUser: string | undefined, now: Date): Promise<{ status: DatabaseCredentialStatus; changed: boolean }> {
    // Revoking a pending role is only safe on the newest status: a cached copy from before our own last write
    // could list as pending a role that is already active. Confirm with a live read, else run again.
    if (status.roles?.some((r) => r.state === 'pending' && r.username !== secretUser)) {
      const live = await this.ctx.client.getResource<DatabaseCredential>('credential', cred.metadata.namespace, cred.metadata.name);
      if (live?.metadata.resourceVersion !== cred.metadata.resourceVersion) throw new Conflict('cached credential is stale');
    }
    let changed = false;
    const keep: HeldRole[] = [];
    const errors: string[] = [];
    for (const held of status.roles ?? []) {
      const adopt = held.state === 'pending' && held.username === secretUser;
      const drop = (held.state === 'pending' && !adopt) || (held.state === 'retiring' && held.revokeAfter !== undefined && now >= new Date(held.revokeAfter));
      if (adopt) {
        // Killed after writing the Secret but before status: the role exists and the Secret logs in.
        const prev = status.roles?.find((r) => r.state === 'active');
        if (prev) keep.push({ ...prev, state: 'retiring', revokeAfter: toRFC3339(now) });
        keep.push({ ...held, state: 'active' });
        status.username = held.username;
        status.issuedAt = held.issuedAt ? toRFC3339(new Date(held.issuedAt)) : undefined;
        status.expiresAt = held.expiresAt;
        changed = true;
        continue;
      }
      if (held.state === 'active' && keep.some((r) => r.state === 'active' && r.username !== held.username)) continue;
      if (!drop) {
        keep.push(held);
        continue;
      }
      try {
        await this.revoke(held);
        changed = true;
        this.ctx.logger.info('role revoked', { credential: keyOf(cred.metadata.namespace, cred.metadata.name), username: held.username, was: held.state });
      } catch (err) {
        keep.push(held);
        errors.push(`${held.username}: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    const result = { ...status, roles: keep };
    if (errors.length) {
      await this.reportRevocationFailure(cred, result, errors);
      throw new Error(`revocation failed: ${errors.join('; ')}`);
    }
    return { status: result, changed };
  }

  private async resolveTarget(cred: DatabaseCredential): Promise<RoleTarget> {
    const ref = cred.spec.roleRef;
    const roleNamespace = ref.namespace ?? cred.metadata.namespace;
    const roleKey = keyOf(roleNamespace, ref.name);
    const role = this.ctx.informers.roles.get(roleKey);
    if (!role) throw new NotReady('RoleNotFound', `DatabaseRole ${roleKey} not found`);
    const allowed = role.spec.allowedNamespaces?.length ? role.spec.allowedNamespaces : [roleNamespace];
    if (!allowed.some((p) => globMatch(p, cred.metadata.namespace))) {
      throw new NotReady('NamespaceNotAllowed', `DatabaseRole ${roleKey} does not allow namespace "${cred.metadata.namespace}" (allowedNamespaces)`);
    }
    if (!isTrue(role.status?.conditions, 'Ready') || role.status?.observedGeneration !== role.metadata.generation) {
      const c = getCondition(role.status?.conditions, 'Ready');
      throw new NotReady('RoleNotReady', `DatabaseRole ${roleKey} is not Ready${c && c.status === 'False' ? `: ${c.reason}: ${c.message}` : ''}`);
    }
    const config = configForRole(this.ctx, role);
    const resolved = await resolveConfig(this.ctx, config);
    let ttlMs: number;
    let maxTTLMs: number;
    try {
      maxTTLMs = parseDuration(role.spec.maxTTL ?? DEFAULT_MAX_TTL);
      ttlMs = parseDuration(cred.spec.ttl ?? role.spec.defaultTTL ?? DEFAULT_TTL);
    } catch (err) {
      throw new NotReady('InvalidTTL', err instanceof Error ? err.message : String(err));
    }
    if (ttlMs <= 0) throw new NotReady('InvalidTTL', 'ttl must be positive');
    const ttlCapped = ttlMs > maxTTLMs;
    return { role, roleKey, resolved, ttlMs: Math.min(ttlMs, maxTTLMs), maxTTLMs, ttlCapped };
  }

  private specHash(cred: DatabaseCredential, roleKey: string): string {
    const basis = JSON.stringify({ role: roleKey, secretName: cred.spec.secretName ?? cred.metadata.name });
    return createHash('sha256').update(basis).digest('hex').slice(0, 16);
  }

  /** Extends the lease by a full ttl if maxTTL allows; otherwise returns why a new role is needed. */
  private async renewOrRotate(cred: DatabaseCredential, status: DatabaseCredentialStatus, active: HeldRole, target: RoleTarget, now: Date): Promise<string | undefined> {
    const issuedAt = new Date(active.issuedAt ?? now);
    const newExpiry = new Date(now.getTime() + target.ttlMs);
    if (newExpiry.getTime() > issuedAt.getTime() + target.maxTTLMs) return 'maxTTL reached';
    await target.resolved.admin.renewRole(active.username, newExpiry, target.role.spec.renewStatements);
    active.expiresAt = toRFC3339(newExpiry);
    status.roles = status.roles?.map((r) => (r.username === active.username ? { ...active } : r));
    status.expiresAt = active.expiresAt;
    status.renewAt = toRFC3339(this.renewAt(cred, now, newExpiry));
    countCredentialEvent('renewed');
    this.ctx.logger.info('credential renewed', { credential: keyOf(cred.metadata.namespace, cred.metadata.name), username: active.username, expiresAt: status.expiresAt });
    return undefined;
  }

  private renewAt(cred: DatabaseCredential, leaseStart: Date, expiresAt: Date): Date {
    const pct = cred.spec.rotation?.renewalPercent ?? DEFAULT_RENEWAL_PERCENT;
    return new Date(leaseStart.getTime() + ((expiresAt.getTime() - leaseStart.getTime()) * pct) / 100);
  }

  /** A new role, then the Secret, then status; the previous role (if any) retires after the grace period. */
  private async issue(
    cred: DatabaseCredential,
    status: DatabaseCredentialStatus,
    target: RoleTarget,
    previous: HeldRole | undefined,
    secret: k8s.V1Secret | undefined,
    why: string,
    specHash: string,
    rotateRequest: string | undefined,
    now: Date,
  ): Promise<Result> {
    const { namespace, name } = cred.metadata;
    const credKey = keyOf(namespace, name);
    const { resolved, role } = target;
    const username = renderUsername(resolved.template, {
      role: role.metadata.name,
      credential: name,
      namespace,
      config: resolved.config.metadata.name,
    }, { now });
    const password = generatePassword(resolved.passwordLength);
    const expiresAt = new Date(now.getTime() + target.ttlMs);
    const issuedAt = toRFC3339(now);
    // The role's own issuedAt keeps milliseconds: it is also the restart stamp, unique even for two rotations
    // within one second.
    const stamp = now.toISOString();
    const held: HeldRole = { username, state: 'pending', config: resolved.key, role: target.roleKey, issuedAt: stamp, expiresAt: toRFC3339(expiresAt) };

    // Intent first: if we die after CREATE ROLE, the next reconcile finds this entry and cleans up.
    status.roles = [...(status.roles ?? []), held];
    cred = await this.commit(cred, status);

    try {
      await resolved.admin.issueRole({
        username,
        passwordForSQL: resolved.scram ? await scramSha256Verifier(password) : password,
        expiration: expiresAt,
        creationStatements: role.spec.creationStatements ?? [],
        rollbackStatements: role.spec.rollbackStatements,
        marker: { namespace, name, uid: cred.metadata.uid ?? '' },
      });
    } catch (err) {
      if (!(err instanceof RoleAdminError)) throw err;
      // Creation is one transaction: nothing exists, so the intent can go.
      status.roles = status.roles.filter((r) => r.username !== username);
      await this.notReady(cred, status, 'IssueFailed', err.message);
      throw err;
    }

    const secretName = cred.spec.secretName ?? name;
    let data: Record<string, string>;
    try {
      data = this.secretData(cred, resolved, username, password, this.loginDeadline(cred, now, expiresAt, target));
    } catch (err) {
      if (!(err instanceof SecretTemplateError)) throw err;
      // The role exists but cannot be delivered: revoke it now rather than leave it for the sweep.
      await resolved.admin.revokeRole(username).catch(() => undefined);
      status.roles = status.roles.filter((r) => r.username !== username);
      return this.notReady(cred, status, 'InvalidSecretTemplate', err.message);
    }
    await this.writeSecret(cred, secretName, data, secret);
    await this.deleteOldSecret(cred, status.secretName, secretName);

    const grace = this.graceMs(cred);
    status.roles = status.roles.map((r) => {
      if (r.username === username) return { ...r, state: 'active' };
      if (r.state === 'active') return { ...r, state: 'retiring', revokeAfter: toRFC3339(new Date(now.getTime() + grace)) };
      return r;
    });
    const rotationEnabled = cred.spec.rotation?.enabled !== false;
    Object.assign(status, {
      username,
      issuedAt,
      expiresAt: toRFC3339(expiresAt),
      renewAt: rotationEnabled ? toRFC3339(this.renewAt(cred, now, expiresAt)) : undefined,
      secretName,
      binding: { name: secretName },
      issuedForHash: specHash,
      rotateRequest,
      // A first issue needs no restart (pods starting now read the new Secret); a rotation restarts below.
      restartedFor: previous ? status.restartedFor : stamp,
    });
    status = withCondition(this.ctx, cred, status, { type: 'Ready', status: 'True', reason: 'Issued', message: `credential ${username} is valid until ${status.expiresAt}` });
    status = withCondition(this.ctx, cred, status, { type: 'Expired', status: 'False', reason: 'Valid', message: 'the credential has not expired' });
    cred = await this.commit(cred, status);

    countCredentialEvent(previous ? 'rotated' : 'issued');
    this.ctx.logger.info(previous ? 'credential rotated' : 'credential issued', { credential: credKey, username, expiresAt: status.expiresAt, why });
    if (target.ttlCapped && !previous) {
      this.ctx.events.record(cred, 'Warning', 'TTLCapped', `requested ttl exceeds the role's maxTTL; capped to ${formatDuration(target.ttlMs)}`);
    }
    if (previous) {
      this.ctx.events.record(cred, 'Normal', 'Rotated', `issued ${username} (${why}); ${previous.username} is revoked after ${formatDuration(grace)}`);
      await this.extendForGrace(resolved.admin, previous, new Date(now.getTime() + grace), role);
      await this.ensureRestarted(cred, status, stamp);
      await this.commit(cred, status);
    } else {
      this.ctx.events.record(cred, 'Normal', 'Issued', `issued ${username}, valid until ${status.expiresAt}`);
    }
    return this.nextWake(status, now);
  }

  /**
   * The Secret's expires-at: the latest time this login can work. Without rotation, the end of its lease; with
   * rotation, issuedAt + maxTTL (renewals never pass it and a new login replaces it before). So renewals leave the
   * Secret unchanged.
   */
  private loginDeadline(cred: DatabaseCredential, issuedAt: Date, leaseEnd: Date, target: RoleTarget): Date {
    return cred.spec.rotation?.enabled === false ? leaseEnd : new Date(issuedAt.getTime() + target.maxTTLMs);
  }

  private graceMs(cred: DatabaseCredential): number {
    try {
      return parseDuration(cred.spec.rotation?.gracePeriod ?? DEFAULT_GRACE);
    } catch {
      return parseDuration(DEFAULT_GRACE);
    }
  }

  /** A retiring role must stay valid through its grace period even if its lease would end sooner. */
  private async extendForGrace(admin: RoleAdmin, previous: HeldRole, until: Date, role: DatabaseRole): Promise<void> {
    if (previous.expiresAt && new Date(previous.expiresAt) >= until) return;
    await admin.renewRole(previous.username, until, role.spec.renewStatements).catch((err: unknown) =>
      this.ctx.logger.warn('could not extend retiring role through its grace period', { username: previous.username, error: err instanceof Error ? err.message : String(err) }),
    );
  }

  /**
   * Restarts the rollout targets for the login issued at stamp, once: the pod-template annotation's value is stamp
   * itself, so repeating the patch (after an operator restart) changes nothing and starts no second rollout.
   */
  private async ensureRestarted(cred: DatabaseCredential, status: DatabaseCredentialStatus, stamp: string): Promise<void> {
    if (status.restartedFor === stamp) return;
    for (const t of cred.spec.rolloutRestartTargets ?? []) {
      try {
        await this.ctx.client.annotatePodTemplate(t.kind, cred.metadata.namespace, t.name, { [RESTARTED_AT_ANNOTATION]: stamp });
        this.ctx.logger.info('rollout restarted', { credential: keyOf(cred.metadata.namespace, cred.metadata.name), target: `${t.kind}/${t.name}` });
      } catch (err) {
        const reason = isNotFound(err) ? 'RolloutTargetNotFound' : 'RolloutRestartFailed';
        this.ctx.events.record(cred, 'Warning', reason, `${t.kind} ${t.name}: ${apiErrorMessage(err)}`);
      }
    }
    status.restartedFor = stamp; // the caller commits
  }

  /** After secretName changed: the Secret under the old name goes (only if it is ours). */
  private async deleteOldSecret(cred: DatabaseCredential, oldName: string | undefined, newName: string): Promise<void> {
    if (!oldName || oldName === newName) return;
    const old = await readSecret(this.ctx.client, this.ctx.informers.ownedSecrets, cred.metadata.namespace, oldName);
    if (old && isOwnedBy(old, cred)) await this.ctx.client.deleteSecret(cred.metadata.namespace, oldName, old.metadata?.uid);
  }

  private async expire(cred: DatabaseCredential, status: DatabaseCredentialStatus, active: HeldRole, secret: k8s.V1Secret | undefined): Promise<Result> {
    try {
      await this.revoke(active);
    } catch (err) {
      await this.reportRevocationFailure(cred, status, [`${active.username}: ${err instanceof Error ? err.message : String(err)}`]);
      throw err;
    }
    if (secret?.metadata?.name) await this.ctx.client.deleteSecret(cred.metadata.namespace, secret.metadata.name, secret.metadata.uid);
    status.roles = (status.roles ?? []).filter((r) => r.username !== active.username);
    status.renewAt = undefined;
    status = withCondition(this.ctx, cred, status, { type: 'Expired', status: 'True', reason: 'TTLExpired', message: `the lease ended at ${active.expiresAt}; role revoked and Secret deleted` });
    status = withCondition(this.ctx, cred, status, { type: 'Ready', status: 'False', reason: 'Expired', message: 'the credential expired (rotation disabled); change the spec to issue a new one' });
    await this.commit(cred, status);
    countCredentialEvent('expired');
    this.ctx.events.record(cred, 'Normal', 'Expired', `role ${active.username} revoked at the end of its lease`);
    this.ctx.logger.info('credential expired', { credential: keyOf(cred.metadata.namespace, cred.metadata.name), username: active.username });
    return this.nextWake(status, this.ctx.clock.now());
  }

  // ---- the Secret ----

  private secretData(cred: DatabaseCredential, resolved: ResolvedConfig, username: string, password: string, expiresAt: Date): Record<string, string> {
    const s = resolved.settings;
    return buildSecretData({
      host: s.host,
      port: s.port,
      database: s.database,
      sslmode: s.sslmode as Parameters<typeof buildSecretData>[0]['sslmode'],
      username,
      password,
      expiresAt,
      template: cred.spec.secretTemplate?.data,
    });
  }

  /** Writes the credential's Secret (create, or replace ours); a Secret someone else owns is a NotReady. */
  private async writeSecret(cred: DatabaseCredential, name: string, data: Record<string, string>, existing: k8s.V1Secret | undefined): Promise<boolean> {
    const tpl = cred.spec.secretTemplate;
    try {
      return await writeOwnedSecret(this.ctx.client, cred, { name, type: SECRET_TYPE, data, labels: tpl?.labels, annotations: tpl?.annotations }, existing);
    } catch (err) {
      if (err instanceof SecretConflictError) throw new NotReady('SecretConflict', err.message);
      throw err;
    }
  }

  /** Template keys, labels or annotations changed: rewrite the Secret with the password it already holds. */
  private async refreshSecret(cred: DatabaseCredential, secret: k8s.V1Secret, target: RoleTarget, active: HeldRole): Promise<void> {
    const password = decodeKey(secret, 'password');
    if (password === undefined || !active.expiresAt) return;
    let data: Record<string, string>;
    try {
      data = this.secretData(cred, target.resolved, active.username, password, new Date(decodeKey(secret, 'expires-at') ?? active.expiresAt));
    } catch (err) {
      if (err instanceof SecretTemplateError) throw new NotReady('InvalidSecretTemplate', err.message);
      throw err;
    }
    await this.writeSecret(cred, secret.metadata?.name ?? '', data, secret);
  }

  // ---- status ----

  private async commit(cred: DatabaseCredential, status: DatabaseCredentialStatus): Promise<DatabaseCredential> {
    try {
      return await writeStatus(this.ctx, 'credential', cred, status);
    } catch (err) {
      if (isConflict(err)) throw new Conflict('status changed meanwhile');
      throw err;
    }
  }

  private async notReady(cred: DatabaseCredential, status: DatabaseCredentialStatus, reason: string, message: string): Promise<Result> {
    await this.commit(cred, readyFalse(this.ctx, cred, status, reason, message));
    return {};
  }

  /** The next deadline from status: renewal (or expiry without rotation) and the end of any grace period. */
  private nextWake(status: DatabaseCredentialStatus, now: Date): Result {
    const deadlines: number[] = [];
    const active = status.roles?.find((r) => r.state === 'active');
    if (status.renewAt && active) deadlines.push(new Date(status.renewAt).getTime());
    else if (active?.expiresAt) deadlines.push(new Date(active.expiresAt).getTime());
    for (const r of status.roles ?? []) if (r.state === 'retiring' && r.revokeAfter) deadlines.push(new Date(r.revokeAfter).getTime());
    if (!deadlines.length) return {};
    return { requeueAfter: Math.max(0, Math.min(...deadlines) - now.getTime()) + 10 };
  }
}
