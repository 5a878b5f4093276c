// DatabaseCredential: a working login delivered as a Secret, for as long as it is wanted and no longer.
//
// This file gathers and carries out; credentialPolicy.ts decides. Every PostgreSQL role the credential may hold is
// listed in status.roles before it exists (state pending), so an operator killed between any two steps finds it
// on restart and promotes it (the Secret has it) or revokes it. Deadlines (renewAt, expiresAt, revokeAfter) live
// in status too: the next wake-up is always recomputed from them.
import type * as k8s from '@kubernetes/client-node';
import { createHash } from 'node:crypto';
import { getCondition, isTrue } from '../api/conditions.js';
import { formatDuration, parseDuration, toRFC3339 } from '../api/duration.js';
import {
  ABANDON_ROLES_ANNOTATION,
  CREDENTIAL_FINALIZER,
  RESTARTED_AT_ANNOTATION,
  ROTATE_ANNOTATION,
  type DatabaseCredential,
  type DatabaseCredentialStatus,
  type DatabaseRole,
  type HeldRole,
} from '../api/types.js';
import { throwIfAborted, type Result } from '../controller/controller.js';
import { countCredentialEvent, observeIssue } from '../metrics.js';
import { apiErrorMessage, isConflict, isNotFound } from '../k8s/client.js';
import { poolConfig, type ConnectionSettings } from '../postgres/pool.js';
import { RoleAdmin, RoleAdminError, RoleExistsError, RoleNotOursError, type RoleOwnerProof } from '../postgres/roleAdmin.js';
import { tenantView } from './tenantMessages.js';
import { scramSha256Verifier } from '../postgres/scram.js';
import { renderUsername } from '../postgres/usernameTemplate.js';
import { generatePassword } from '../secrets/password.js';
import { SecretConflictError, decodeKey, isOwnedBy, readSecretMeta, writeOwnedSecret } from '../secrets/ownedSecret.js';
import { SECRET_TYPE, SecretTemplateError, buildSecretData, validateSecretMetadata } from '../secrets/secretData.js';
import { NotReady, keyOf, readyFalse, resolveConfig, withCondition, writeStatus, type OperatorContext, type ResolvedConfig } from './context.js';
import {
  activeRole,
  decide,
  nextWake,
  renewTime,
  renewed,
  retireAll,
  rotateRequestHash,
  runIssue,
  runRevocations,
  settle,
  summarize,
  without,
  type Decision,
  type Effects,
  type LeasePolicy,
  type Target,
} from './credentialPolicy.js';
import { PENDING_KEY, ROTATED_AT_ANNOTATION, StaticPasswordChanged, allowsNamespace, configForRole, recordDelivery } from './databaserole.js';

const DEFAULT_TTL = '1h';
const DEFAULT_MAX_TTL = '24h';
const DEFAULT_RENEWAL_PERCENT = 67;
const DEFAULT_GRACE = '5m';

interface ResolvedTarget {
  role: DatabaseRole;
  roleKey: string;
  resolved: ResolvedConfig;
  lease: LeasePolicy;
  ttlCapped: boolean;
  specHash: string;
  server: string;
}

/** Thrown to stop a reconcile after a status write that lost an optimistic-lock race: just run again. */
class Conflict extends Error {}

/** host:port/database: which server a role lives on. */
export function serverOf(s: Pick<ConnectionSettings, 'host' | 'port' | 'database'>): string {
  return `${s.host}:${s.port}/${s.database}`;
}

/** One line naming each role whose revocation failed and why (messages are already free of secrets). */
function describeFailures(failed: ReadonlyArray<{ role: HeldRole; error: string }>): string {
  return failed.map((f) => `${f.role.username}: ${f.error}`).join('; ');
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** How often a credential whose generated username is taken tries again. */
const ROLE_EXISTS_RETRY_MS = 60_000;

/** How often a Ready credential's role is checked to still exist (besides at every renewal). */
const VERIFY_INTERVAL_MS = 5 * 60_000;

export class DatabaseCredentialReconciler {
  private readonly verifiedAt = new Map<string, number>();

  constructor(private readonly ctx: OperatorContext) {}

  async reconcile(key: string): Promise<Result> {
    let cred = this.ctx.informers.credentials.get(key);
    if (!cred) {
      this.verifiedAt.delete(key);
      return {};
    }
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

  /**
   * Revokes every role the credential holds, then lets go. A failed revocation keeps the finalizer and says why —
   * unless the admin marked the role's DatabaseConfig with dbcred.dev/abandon-roles=true (its server is gone for
   * good): then the roles are let go, and every abandoned username is named in a Warning Event and the log.
   */
  private async finalize(cred: DatabaseCredential): Promise<Result> {
    const finalizers = cred.metadata.finalizers ?? [];
    if (!finalizers.includes(CREDENTIAL_FINALIZER)) return {};
    const credKey = keyOf(cred.metadata.namespace, cred.metadata.name);
    const status = cred.status ?? {};
    const { status: after, failed } = await runRevocations(status, status.roles ?? [], false, { revokeRole: (r) => this.revoke(cred, r) });
    const abandoned = failed.filter((f) => this.mayAbandon(f.role.config));
    const stuck = failed.filter((f) => !abandoned.includes(f));
    if (stuck.length) {
      const message = describeFailures(stuck);
      await this.commit(cred, this.readyFalse(cred, after, 'RevocationFailed', `revocation failed (retrying with backoff): ${message}`));
      throw new Error(`revocation failed: ${message}`);
    }
    if (abandoned.length) {
      const names = abandoned.map((f) => f.role.username);
      this.ctx.events.record(cred, 'Warning', 'RolesAbandoned', `not revoked, abandoned on the admin's request (${ABANDON_ROLES_ANNOTATION} on their DatabaseConfig): ${names.join(', ')}`);
      this.ctx.logger.warn('roles abandoned without revocation', { credential: credKey, usernames: names, configs: [...new Set(abandoned.map((f) => f.role.config))] });
      countCredentialEvent('abandoned', names.length);
    }
    await this.ctx.client.patchMetadata('credential', cred.metadata.namespace, cred.metadata.name, {
      finalizers: finalizers.filter((f) => f !== CREDENTIAL_FINALIZER),
      resourceVersion: cred.metadata.resourceVersion,
    });
    this.ctx.logger.info('credential deleted; roles revoked', { credential: credKey });
    return {};
  }

  private mayAbandon(configKey: string): boolean {
    return this.ctx.informers.configs.get(configKey)?.metadata.annotations?.[ABANDON_ROLES_ANNOTATION] === 'true';
  }

  /**
   * Revokes one role through the config that made it, on the server it was made on — only if its marker proves
   * that this installation made it for this credential (RoleAdmin.revokeRole's guard). A role the guard refuses is
   * not ours to touch: it is forgotten (dropped from status) with a Warning Event, never retried.
   */
  private async revoke(cred: DatabaseCredential, held: HeldRole): Promise<void> {
    throwIfAborted();
    const owner = this.ownerProof(cred, held);
    try {
      const admin = await this.adminFor(held);
      // A pending role may still be being created by a transaction a killed operator left running: let it finish.
      if (held.state === 'pending') await admin.waitForInFlightCreations();
      const role = this.ctx.informers.roles.get(held.role);
      await admin.revokeRole(held.username, owner, role?.spec.revocationStatements);
    } catch (err) {
      if (err instanceof RoleNotOursError) {
        countCredentialEvent('revocation_refused');
        this.ctx.events.record(cred, 'Warning', 'RevocationRefused', `role ${held.username} was not revoked and is no longer tracked: it is not a role the operator created for this credential`);
        this.ctx.logger.warn('revocation refused; role forgotten without touching it', { credential: keyOf(cred.metadata.namespace, cred.metadata.name), username: held.username, config: held.config, why: err.message });
        return;
      }
      countCredentialEvent('revocation_failed');
      throw err;
    }
    countCredentialEvent('revoked');
    this.ctx.logger.info('role revoked', { username: held.username, was: held.state, config: held.config });
  }

  /** What a role's marker must say for this credential to revoke or renew it (RoleAdmin's guard). */
  private ownerProof(cred: DatabaseCredential, held: HeldRole): RoleOwnerProof {
    // Every role this version creates carries the full marker; an old-format one counts only for a role held as issued.
    return { installation: this.ctx.installation, uid: cred.metadata.uid ?? '', acceptLegacy: held.state !== 'pending' };
  }

  /**
   * The admin for the server that holds a role. If the config now points at another server, the role is revoked
   * where it was created, with the config's root credentials. When the config or its root Secret is already gone,
   * the pool this process made for it still knows the way.
   */
  private async adminFor(held: HeldRole): Promise<RoleAdmin> {
    const config = this.ctx.informers.configs.get(held.config);
    try {
      if (!config) throw new NotReady('ConfigNotFound', `DatabaseConfig ${held.config} not found; cannot reach the role's server`);
      const resolved = await resolveConfig(this.ctx, config);
      if (!held.server || held.server === serverOf(resolved.settings)) return resolved.admin;
      return this.adminOn(`${held.config}@${held.server}`, { ...resolved.settings, ...parseServer(held.server) });
    } catch (err) {
      const existing = this.ctx.pools.existing(held.config);
      if (!(err instanceof NotReady) || !existing) throw err;
      if (held.server && held.server !== serverOf(existing.settings)) throw err;
      return new RoleAdmin(existing.pool, (database) => poolConfig({ ...existing.settings, database }));
    }
  }

  private adminOn(poolKey: string, settings: ConnectionSettings): RoleAdmin {
    const pool = this.ctx.pools.get(poolKey, settings);
    return new RoleAdmin(pool, (database) => poolConfig({ ...settings, database }));
  }

  // ---- the live object ----

  private async reconcileLive(cred: DatabaseCredential): Promise<Result> {
    const now = this.ctx.clock.now();
    const { namespace, name } = cred.metadata;
    const secretName = cred.spec.secretName ?? name;
    const rotationEnabled = cred.spec.rotation?.enabled !== false;
    const graceMs = this.graceMs(cred);

    // The copy of the Secret we last read or wrote, if the cache shows it unchanged since; else a live read. Where
    // it disagrees with status, read it live too: acting on a stale copy would rotate (or revoke) a login that is
    // in fact current.
    const expectUser = activeRole(cred.status ?? {})?.username;
    const hasPending = cred.status?.roles?.some((r) => r.state === 'pending');
    let secret = await this.ctx.secretContents.read(namespace, secretName, (s) => !hasPending && decodeKey(s, 'username') === expectUser);
    const secretOwned = secret !== undefined && isOwnedBy(secret, cred);
    const secretUser = secretOwned ? decodeKey(secret, 'username') : undefined;

    // 1. Settle what a crash or an earlier rotation left behind.
    let status = await this.settleRoles(cred, secretUser, now, graceMs, rotationEnabled);
    cred = await this.commit(cred, status);

    if (secret && !secretOwned) {
      return this.notReady(cred, status, 'SecretConflict', `Secret ${namespace}/${secretName} exists and is not owned by this DatabaseCredential; refusing to take it over`);
    }

    // 2. What the credential may be issued against, checked in full before any SQL runs.
    let target: ResolvedTarget | undefined;
    let policyTarget: Target;
    try {
      target = await this.resolveTarget(cred);
      policyTarget = { ok: true, static: !!target.role.spec.static, roleKey: target.roleKey, configKey: target.resolved.key, server: target.server, specHash: target.specHash, lease: target.lease };
    } catch (err) {
      if (!(err instanceof NotReady)) throw err;
      policyTarget = { ok: false, reason: err.reason, message: err.message };
      if (err.reason === 'NamespaceNotAllowed' && secret && secretOwned) {
        const withdrawn = await this.withdrawStaticPassword(cred, status, secret);
        if (withdrawn) [status, secret] = [withdrawn, undefined];
      }
    }
    const expired = getCondition(cred.status?.conditions, 'Expired');
    const observe = (activeRoleGone = false) =>
      decide({
        now,
        status,
        secretUser,
        rotationEnabled,
        graceMs,
        target: policyTarget,
        rotateRequest: rotateRequestHash(cred.metadata.annotations?.[ROTATE_ANNOTATION]),
        activeRoleGone,
        expiredForGeneration: expired?.status === 'True' && expired.observedGeneration === cred.metadata.generation,
      });

    // Now and then (and on every renewal) make sure the active login still exists: a role dropped outside the
    // operator must not stay behind Ready=True. In memory: only an optimisation of how often to ask.
    const active = activeRole(status);
    let activeGone = false;
    const credKey = keyOf(cred.metadata.namespace, cred.metadata.name);
    // First sight counts as checked: a restarted operator does not query every role at once (renewals check).
    if (!this.verifiedAt.has(credKey)) this.verifiedAt.set(credKey, now.getTime());
    if (active && target && (!active.server || active.server === target.server) && now.getTime() - (this.verifiedAt.get(credKey) ?? 0) >= VERIFY_INTERVAL_MS) {
      activeGone = !(await target.resolved.admin.roleExists(active.username));
      this.verifiedAt.set(credKey, now.getTime());
    }
    // Dropped outside the operator: the Secret no longer logs in. Say so, and replace it now.
    const dropActive = async (username: string, why = 'no longer exists in PostgreSQL') => {
      status = without(status, [username], rotationEnabled);
      status = readyFalse(this.ctx, cred, status, 'RoleDropped', `role ${username} ${why}; issuing a new login`);
      cred = await this.commit(cred, status);
    };
    if (activeGone && active) await dropActive(active.username);
    let decision: Decision = observe(activeGone);
    if (decision.action === 'renew' && target) {
      const outcome = await this.renew(cred, status, decision.role, decision.until, target, now, rotationEnabled);
      if (outcome.gone) {
        await dropActive(decision.role.username, outcome.notOurs ? 'is not a role the operator created for this credential' : undefined);
        decision = observe(true);
      } else {
        status = outcome.status;
        decision = { action: 'ready', role: decision.role };
      }
    }
    return this.carryOut(cred, status, decision, target, secret, secretOwned, now, rotationEnabled, graceMs);
  }

  private async carryOut(
    cred: DatabaseCredential,
    status: DatabaseCredentialStatus,
    decision: Decision,
    target: ResolvedTarget | undefined,
    secret: k8s.V1Secret | undefined,
    secretOwned: boolean,
    now: Date,
    rotationEnabled: boolean,
    graceMs: number,
  ): Promise<Result> {
    const wake = (s: DatabaseCredentialStatus): Result => {
      const ms = nextWake(s, now, rotationEnabled);
      return ms === undefined ? {} : { requeueAfter: ms };
    };
    switch (decision.action) {
      case 'stay-expired':
        if (secret && secretOwned) await this.ctx.client.deleteSecret(cred.metadata.namespace, secret.metadata?.name ?? '', secret.metadata?.uid);
        return wake(status);
      case 'expire':
        return this.expire(cred, status, decision.role, secretOwned ? secret : undefined);
      case 'lapse': {
        // Rotation is on but nothing can be issued, and the lease is over: the login is dead; revoke it (TTLs are
        // enforced) and wait for the role or config to come back, then issue at once. Never Expired.
        const { status: after, failed } = await runRevocations(status, [decision.role], rotationEnabled, { revokeRole: (r) => this.revoke(cred, r) });
        const next = this.readyFalse(cred, after, decision.reason, `${decision.message}; the lease of ${decision.role.username} ended and a new login is issued as soon as this is fixed`);
        await this.commit(cred, next);
        if (failed.length) throw new Error(`revocation failed: ${describeFailures(failed)}`);
        return wake(next);
      }
      case 'blocked':
        // Wait for a change of the role or config (their events requeue us), or the lease end; not renewAt,
        // which has nothing to act on while blocked.
        return this.notReady(cred, status, decision.reason, decision.message);
      case 'static':
        return this.reconcileStatic(cred, status, target!, secretOwned ? secret : undefined, now, graceMs);
      case 'issue':
        return this.issue(cred, status, target!, decision.previous, secretOwned ? secret : undefined, decision.why, now, rotationEnabled, graceMs);
      case 'renew':
      case 'ready': {
        const active = decision.role;
        // Steady state: keep the Secret's extra keys in line with the template; finish a restart a crash or an
        // API error interrupted; report Ready.
        if (secret && secretOwned && target) await this.refreshSecret(cred, secret, target, active);
        // Top-level fields follow the active role (e.g. renewAt appears when rotation is switched on).
        let next = summarize(status, rotationEnabled);
        if (active.issuedAt && next.restartedFor !== active.issuedAt) {
          if (next.restartedFor === undefined) next = { ...next, restartedFor: active.issuedAt };
          else if (await this.ensureRestarted(cred, active.issuedAt)) next = { ...next, restartedFor: active.issuedAt };
        }
        next = withCondition(this.ctx, cred, next, { type: 'Ready', status: 'True', reason: 'Issued', message: `credential ${active.username} is valid until ${next.expiresAt}` });
        await this.commit(cred, next);
        if (next.restartedFor !== active.issuedAt) throw new Error('rollout restart failed; retrying');
        return wake(next);
      }
    }
  }

  /** Promotes or revokes what settle() says; a failed revocation is reported but never blocks the active login. */
  private async settleRoles(cred: DatabaseCredential, secretUser: string | undefined, now: Date, graceMs: number, rotationEnabled: boolean): Promise<DatabaseCredentialStatus> {
    const base = cred.status ?? {};
    const settled = settle(base, secretUser, now, graceMs, rotationEnabled);
    if (!settled.revoke.length) return settled.status;
    // Revoking a pending role is only safe on the newest status: a cached copy from before our own last write
    // could list as pending a role that is already active. Confirm with a live read, else run again.
    if (settled.revoke.some((r) => r.state === 'pending')) {
      const live = await this.ctx.client.getResource<DatabaseCredential>('credential', cred.metadata.namespace, cred.metadata.name);
      if (live?.metadata.resourceVersion !== cred.metadata.resourceVersion) throw new Conflict('cached credential is stale');
    }
    const { status, failed } = await runRevocations(settled.status, settled.revoke, rotationEnabled, { revokeRole: (r) => this.revoke(cred, r) });
    if (failed.length) {
      const message = describeFailures(failed);
      this.ctx.events.record(cred, 'Warning', 'RevocationFailed', `revocation failed (retrying with backoff): ${message}`);
      this.ctx.logger.warn('revocation failed', { credential: keyOf(cred.metadata.namespace, cred.metadata.name), error: message });
      // Retried at the next wake-up (revokeAfter has passed, so nextWake is at most a second away).
    }
    return status;
  }

  /**
   * A credential of a static role delivers the one managed user with its current password. The role rotates the
   * password; each rotation reaches this Secret (the role's password Secret is watched) and restarts the targets.
   * Dynamic roles the credential held before its roleRef changed retire with the grace period and are revoked.
   */
  private async reconcileStatic(cred: DatabaseCredential, status: DatabaseCredentialStatus, target: ResolvedTarget, secret: k8s.V1Secret | undefined, now: Date, graceMs: number): Promise<Result> {
    const { role } = target;
    const username = role.spec.static?.username ?? '';
    const pwSecret = role.status?.passwordSecretName
      ? await this.ctx.secretContents.read(role.metadata.namespace, role.status.passwordSecretName)
      : undefined;
    const password = decodeKey(pwSecret, 'password');
    // The time comes from the Secret that holds the password, so the two always match.
    const rotatedAt = pwSecret?.metadata?.annotations?.[ROTATED_AT_ANNOTATION];
    if (!password || !rotatedAt || decodeKey(pwSecret, PENDING_KEY) !== undefined) {
      return this.notReady(cred, status, 'StaticPasswordNotReady', `DatabaseRole ${target.roleKey} has not finished setting the password of "${username}"`);
    }
    const next = role.status?.nextRotationTime;
    const secretName = cred.spec.secretName ?? cred.metadata.name;
    const data = this.secretData(cred, target.resolved, username, password, new Date(next ?? now));
    // expires-at is when the password changes next; without a rotation period it does not expire.
    if (!next) delete data['expires-at'];
    const rotated = secret !== undefined && decodeKey(secret, 'password') !== password;
    // On record before this namespace has it: if the role stops allowing the namespace, the role rotates it.
    try {
      await recordDelivery(this.ctx, role, role.status?.passwordSecretName ?? '', cred.metadata.namespace, password);
    } catch (err) {
      if (err instanceof StaticPasswordChanged) throw new Conflict(err.message);
      throw err;
    }
    // The dynamic logins this credential held stay valid through the grace period, then are revoked.
    status = retireAll(status, now, graceMs);
    cred = await this.commit(cred, status);
    await this.writeSecret(cred, secretName, data, secret);
    await this.deleteOldSecret(cred, status.secretName, secretName);
    status = { ...status, username, issuedAt: rotatedAt, expiresAt: next, renewAt: undefined, secretName, binding: { name: secretName }, issuedForHash: undefined };
    // The first delivery needs no restart; afterwards each new rotatedAt restarts the targets once.
    if (!secret || status.restartedFor === undefined) status.restartedFor = rotatedAt;
    if (rotated) this.ctx.events.record(cred, 'Normal', 'Rotated', `the password of static user "${username}" was rotated at ${rotatedAt}`);
    const restarted = status.restartedFor === rotatedAt || (await this.ensureRestarted(cred, rotatedAt));
    if (restarted) status.restartedFor = rotatedAt;
    status = withCondition(this.ctx, cred, status, { type: 'Ready', status: 'True', reason: 'Issued', message: `static user ${username}; password set at ${rotatedAt}` });
    await this.commit(cred, status);
    if (!restarted) throw new Error('rollout restart failed; retrying');
    const ms = nextWake(status, now, false);
    return ms === undefined ? {} : { requeueAfter: ms };
  }

  /**
   * The credential's namespace may no longer use its role. A static role's password is shared with every allowed
   * namespace, so this one may not keep it: its Secret is deleted (the role rotates the password, because this
   * namespace was handed it). A dynamic login is the credential's own and keeps its lease as before.
   */
  private async withdrawStaticPassword(cred: DatabaseCredential, status: DatabaseCredentialStatus, secret: k8s.V1Secret): Promise<DatabaseCredentialStatus | undefined> {
    const ref = cred.spec.roleRef;
    const role = this.ctx.informers.roles.get(keyOf(ref.namespace ?? cred.metadata.namespace, ref.name));
    const secretUser = decodeKey(secret, 'username');
    if (!role?.spec.static || (status.roles ?? []).some((r) => r.username === secretUser)) return undefined;
    await this.ctx.client.deleteSecret(cred.metadata.namespace, secret.metadata?.name ?? '', secret.metadata?.uid);
    this.ctx.events.record(cred, 'Warning', 'SecretDeleted', `the namespace may no longer use DatabaseRole ${keyOf(role.metadata.namespace, role.metadata.name)}; Secret ${secret.metadata?.name} with its shared password was deleted`);
    return { ...status, username: undefined, issuedAt: undefined, expiresAt: undefined, secretName: undefined, binding: undefined, restartedFor: undefined };
  }

  /**
   * Everything the credential needs from its role and config, validated in full (TTLs, the Secret template and
   * its labels and annotations) so that a user error is reported before any SQL runs.
   */
  private async resolveTarget(cred: DatabaseCredential): Promise<ResolvedTarget> {
    const ref = cred.spec.roleRef;
    const roleNamespace = ref.namespace ?? cred.metadata.namespace;
    const roleKey = keyOf(roleNamespace, ref.name);
    if (!this.ctx.informers.roles.covers(roleNamespace)) {
      throw new NotReady('NamespaceNotWatched', `DatabaseRole ${roleKey} is in namespace "${roleNamespace}", which this operator does not watch (WATCH_NAMESPACES)`);
    }
    const role = this.ctx.informers.roles.get(roleKey);
    if (!role) throw new NotReady('RoleNotFound', `DatabaseRole ${roleKey} not found`);
    if (!allowsNamespace(role, cred.metadata.namespace)) {
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
      throw new NotReady('InvalidTTL', errorText(err));
    }
    if (ttlMs <= 0) throw new NotReady('InvalidTTL', 'ttl must be positive');
    // The Secret as it would be written, with sample values: a template or metadata error is found now.
    try {
      const tpl = cred.spec.secretTemplate;
      validateSecretMetadata(tpl?.labels, tpl?.annotations);
      this.secretData(cred, resolved, 'sample', 'sample-password', new Date(0));
    } catch (err) {
      if (err instanceof SecretTemplateError) throw new NotReady('InvalidSecretTemplate', err.message);
      throw err;
    }
    const lease = { ttlMs: Math.min(ttlMs, maxTTLMs), maxTTLMs, renewalPercent: cred.spec.rotation?.renewalPercent ?? DEFAULT_RENEWAL_PERCENT };
    return { role, roleKey, resolved, lease, ttlCapped: ttlMs > maxTTLMs, specHash: this.specHash(cred, roleKey), server: serverOf(resolved.settings) };
  }

  private specHash(cred: DatabaseCredential, roleKey: string): string {
    const basis = JSON.stringify({ role: roleKey, secretName: cred.spec.secretName ?? cred.metadata.name });
    return createHash('sha256').update(basis).digest('hex').slice(0, 16);
  }

  /** Extends the active lease; a role that no longer exists comes back as gone (the caller replaces it). */
  private async renew(cred: DatabaseCredential, status: DatabaseCredentialStatus, active: HeldRole, until: Date, target: ResolvedTarget, now: Date, rotationEnabled: boolean): Promise<{ gone: boolean; notOurs?: boolean; status: DatabaseCredentialStatus }> {
    try {
      await target.resolved.admin.renewRole(active.username, this.ownerProof(cred, active), until, target.role.spec.renewStatements);
    } catch (err) {
      if (err instanceof RoleAdminError && err.kind === 'gone') return { gone: true, status };
      if (err instanceof RoleNotOursError) {
        // Listed as active, but not a role this credential created (a status edited or restored by hand): never
        // extend it (a VALID UNTIL on someone else's user is a revocation with a delay). Forget it; issue a new one.
        this.ctx.events.record(cred, 'Warning', 'RenewalRefused', `role ${active.username} was not renewed and is no longer tracked: it is not a role the operator created for this credential; issuing a new login`);
        this.ctx.logger.warn('renewal refused; role forgotten without touching it', { credential: keyOf(cred.metadata.namespace, cred.metadata.name), username: active.username, why: err.message });
        return { gone: true, notOurs: true, status };
      }
      throw err;
    }
    const next = renewed(status, active.username, now, until, target.lease, rotationEnabled);
    countCredentialEvent('renewed');
    this.ctx.logger.info('credential renewed', { credential: keyOf(cred.metadata.namespace, cred.metadata.name), username: active.username, expiresAt: next.expiresAt });
    return { gone: false, status: next };
  }

  /** A new role, then the Secret, then status; the previous role (if any) retires after the grace period. */
  private async issue(
    cred: DatabaseCredential,
    status: DatabaseCredentialStatus,
    target: ResolvedTarget,
    previous: HeldRole | undefined,
    secret: k8s.V1Secret | undefined,
    why: string,
    now: Date,
    rotationEnabled: boolean,
    graceMs: number,
  ): Promise<Result> {
    const { namespace, name } = cred.metadata;
    const credKey = keyOf(namespace, name);
    const { resolved, role } = target;
    const username = renderUsername(resolved.template, { role: role.metadata.name, credential: name, namespace, config: resolved.config.metadata.name }, { now });
    if (status.roles?.some((r) => r.username === username)) {
      // A template without {{random}} or {{unix_time}} can repeat a name within one second: try again shortly.
      return { requeueAfter: 1_000 };
    }
    const password = generatePassword(resolved.passwordLength);
    const passwordForSQL = resolved.scram ? await scramSha256Verifier(password) : password;
    const expiresAt = new Date(now.getTime() + target.lease.ttlMs);
    // The role's own issuedAt keeps milliseconds: it is also the restart stamp, unique even for two rotations
    // within one second.
    const stamp = now.toISOString();
    const held: HeldRole = {
      username,
      state: 'pending',
      config: resolved.key,
      role: target.roleKey,
      issuedAt: stamp,
      expiresAt: toRFC3339(expiresAt),
      renewAt: toRFC3339(renewTime(now, expiresAt, target.lease.renewalPercent)),
      specHash: target.specHash,
      rotateRequest: rotateRequestHash(cred.metadata.annotations?.[ROTATE_ANNOTATION]),
      server: target.server,
    };
    const secretName = cred.spec.secretName ?? name;
    const data = this.secretData(cred, resolved, username, password, this.loginDeadline(rotationEnabled, now, expiresAt, target.lease));

    const fx: Effects = {
      commit: async (s) => {
        // The last commit of an issue also carries the conditions and the Secret's name: one write, not two.
        const full = activeRole(s)?.username === username ? this.issuedStatus(cred, s, secretName) : s;
        cred = await this.commit(cred, full);
        return full;
      },
      createRole: () => {
        throwIfAborted();
        return resolved.admin.issueRole({
          username,
          passwordForSQL,
          expiration: expiresAt,
          creationStatements: role.spec.creationStatements ?? [],
          rollbackStatements: role.spec.rollbackStatements,
          marker: { installation: this.ctx.installation, namespace, name, uid: cred.metadata.uid ?? '', username },
        });
      },
      writeSecret: async () => {
        throwIfAborted();
        await this.writeSecret(cred, secretName, data, secret);
        await this.deleteOldSecret(cred, status.secretName, secretName);
      },
      revokeRole: (r) => this.revoke(cred, r),
    };
    try {
      status = await runIssue(status, held, now, graceMs, rotationEnabled, fx);
    } catch (err) {
      if (!(err instanceof RoleAdminError)) throw err;
      if (err instanceof RoleExistsError) {
        // A role of the generated name exists already (a template without {{random}}, or someone's user): the
        // operator never adopts it, so never revokes it either. Retrying soon would meet the same role; look
        // again every minute (PostgreSQL sends no event when it is dropped).
        const result = await this.notReady(cred, cred.status ?? status, 'RoleExists', err.message);
        return { requeueAfter: Math.min(result.requeueAfter ?? ROLE_EXISTS_RETRY_MS, ROLE_EXISTS_RETRY_MS) };
      }
      await this.notReady(cred, cred.status ?? status, 'IssueFailed', err.message);
      throw err;
    }

    countCredentialEvent(previous ? 'rotated' : 'issued');
    observeIssue(previous ? 'rotated' : 'issued', (this.ctx.clock.now().getTime() - now.getTime()) / 1000);
    this.ctx.logger.info(previous ? 'credential rotated' : 'credential issued', { credential: credKey, username, expiresAt: status.expiresAt, why });
    if (target.ttlCapped && !previous) {
      this.ctx.events.record(cred, 'Warning', 'TTLCapped', `requested ttl exceeds the role's maxTTL; capped to ${formatDuration(target.lease.ttlMs)}`);
    }
    if (previous) {
      this.ctx.events.record(cred, 'Normal', 'Rotated', `issued ${username} (${why}); ${previous.username} is revoked after ${formatDuration(graceMs)}`);
      await this.extendForGrace(cred, resolved.admin, previous, new Date(now.getTime() + graceMs), role);
    } else {
      this.ctx.events.record(cred, 'Normal', 'Issued', `issued ${username} (${why}), valid until ${status.expiresAt}`);
    }
    // Workloads that read an earlier login of this credential restart; a first issue needs none (promote()).
    if (status.restartedFor !== stamp) {
      if (!(await this.ensureRestarted(cred, stamp))) throw new Error('rollout restart failed; retrying');
      status = { ...status, restartedFor: stamp };
      await this.commit(cred, status);
    }
    const ms = nextWake(status, now, rotationEnabled);
    return ms === undefined ? {} : { requeueAfter: ms };
  }

  private issuedStatus(cred: DatabaseCredential, s: DatabaseCredentialStatus, secretName: string): DatabaseCredentialStatus {
    let next: DatabaseCredentialStatus = { ...s, secretName, binding: { name: secretName } };
    next = withCondition(this.ctx, cred, next, { type: 'Ready', status: 'True', reason: 'Issued', message: `credential ${next.username} is valid until ${next.expiresAt}` });
    return withCondition(this.ctx, cred, next, { type: 'Expired', status: 'False', reason: 'Valid', message: 'the credential has not expired' });
  }

  /**
   * The Secret's expires-at: the latest time this login can work. Without rotation, the end of its lease; with
   * rotation, issuedAt + maxTTL (renewals never pass it and a new login replaces it before). So renewals leave the
   * Secret unchanged.
   */
  private loginDeadline(rotationEnabled: boolean, issuedAt: Date, leaseEnd: Date, lease: LeasePolicy): Date {
    return rotationEnabled ? new Date(issuedAt.getTime() + lease.maxTTLMs) : leaseEnd;
  }

  private graceMs(cred: DatabaseCredential): number {
    try {
      return parseDuration(cred.spec.rotation?.gracePeriod ?? DEFAULT_GRACE);
    } catch {
      return parseDuration(DEFAULT_GRACE);
    }
  }

  /** A retiring role must stay valid through its grace period even if its lease would end sooner. */
  private async extendForGrace(cred: DatabaseCredential, admin: RoleAdmin, previous: HeldRole, until: Date, role: DatabaseRole): Promise<void> {
    if (previous.expiresAt && new Date(previous.expiresAt) >= until) return;
    await admin.renewRole(previous.username, this.ownerProof(cred, previous), until, role.spec.renewStatements).catch((err: unknown) =>
      this.ctx.logger.warn('could not extend retiring role through its grace period', { username: previous.username, error: errorText(err) }),
    );
  }

  /**
   * Restarts the rollout targets for the login issued at stamp. The pod-template annotation's value is stamp
   * itself, so repeating the patch (after an operator restart) changes nothing and starts no second rollout.
   * Returns true when every target was restarted or does not exist (Warning Event); false when a patch failed
   * and must be retried — the caller records restartedFor only on true.
   */
  private async ensureRestarted(cred: DatabaseCredential, stamp: string): Promise<boolean> {
    let done = true;
    for (const t of cred.spec.rolloutRestartTargets ?? []) {
      try {
        await this.ctx.client.annotatePodTemplate(t.kind, cred.metadata.namespace, t.name, { [RESTARTED_AT_ANNOTATION]: stamp });
        this.ctx.logger.info('rollout restarted', { credential: keyOf(cred.metadata.namespace, cred.metadata.name), target: `${t.kind}/${t.name}` });
      } catch (err) {
        const missing = isNotFound(err);
        if (!missing) done = false;
        this.ctx.events.record(cred, 'Warning', missing ? 'RolloutTargetNotFound' : 'RolloutRestartFailed', `${t.kind} ${t.name}: ${apiErrorMessage(err)}`);
      }
    }
    return done;
  }

  /** After secretName changed: the Secret under the old name goes (only if it is ours). */
  private async deleteOldSecret(cred: DatabaseCredential, oldName: string | undefined, newName: string): Promise<void> {
    if (!oldName || oldName === newName) return;
    const old = await readSecretMeta(this.ctx.client, this.ctx.informers.ownedSecrets, cred.metadata.namespace, oldName);
    if (old && isOwnedBy(old, cred)) await this.ctx.client.deleteSecret(cred.metadata.namespace, oldName, old.metadata?.uid);
  }

  private async expire(cred: DatabaseCredential, status: DatabaseCredentialStatus, active: HeldRole, secret: k8s.V1Secret | undefined): Promise<Result> {
    const { status: after, failed } = await runRevocations(status, [active], false, { revokeRole: (r) => this.revoke(cred, r) });
    if (failed.length) {
      const message = describeFailures(failed);
      await this.commit(cred, this.readyFalse(cred, status, 'RevocationFailed', `revocation failed (retrying with backoff): ${message}`));
      throw new Error(`revocation failed: ${message}`);
    }
    if (secret?.metadata?.name) await this.ctx.client.deleteSecret(cred.metadata.namespace, secret.metadata.name, secret.metadata.uid);
    let next = summarize(after, false);
    next = withCondition(this.ctx, cred, next, { type: 'Expired', status: 'True', reason: 'TTLExpired', message: `the lease ended at ${active.expiresAt}; role revoked and Secret deleted` });
    next = withCondition(this.ctx, cred, next, { type: 'Ready', status: 'False', reason: 'Expired', message: 'the credential expired (rotation disabled); change the spec to issue a new one' });
    await this.commit(cred, next);
    countCredentialEvent('expired');
    this.ctx.events.record(cred, 'Normal', 'Expired', `role ${active.username} revoked at the end of its lease`);
    this.ctx.logger.info('credential expired', { credential: keyOf(cred.metadata.namespace, cred.metadata.name), username: active.username });
    const ms = nextWake(next, this.ctx.clock.now(), false);
    return ms === undefined ? {} : { requeueAfter: ms };
  }

  // ---- the Secret ----

  private secretData(cred: DatabaseCredential, resolved: ResolvedConfig, username: string, password: string, expiresAt: Date): Record<string, string> {
    const s = resolved.settings;
    return buildSecretData({
      host: s.host,
      port: s.port,
      database: s.database,
      sslmode: s.sslmode as Parameters<typeof buildSecretData>[0]['sslmode'],
      ca: s.ca,
      username,
      password,
      expiresAt,
      template: cred.spec.secretTemplate?.data,
    });
  }

  /** Writes the credential's Secret (create, or replace ours); a Secret someone else owns is a NotReady. */
  private async writeSecret(cred: DatabaseCredential, name: string, data: Record<string, string>, existing: k8s.V1Secret | undefined): Promise<void> {
    const tpl = cred.spec.secretTemplate;
    try {
      // Remembered at the version written: the next reconcile reads nothing once the cache shows that version.
      this.ctx.secretContents.remember(await writeOwnedSecret(this.ctx.client, cred, { name, type: SECRET_TYPE, data, labels: tpl?.labels, annotations: tpl?.annotations }, existing));
    } catch (err) {
      if (err instanceof SecretConflictError) throw new NotReady('SecretConflict', err.message);
      throw err;
    }
  }

  /** Template keys, labels or annotations changed: rewrite the Secret with the password it already holds. */
  private async refreshSecret(cred: DatabaseCredential, secret: k8s.V1Secret, target: ResolvedTarget, active: HeldRole): Promise<void> {
    const password = decodeKey(secret, 'password');
    if (password === undefined || !active.expiresAt) return;
    const data = this.secretData(cred, target.resolved, active.username, password, new Date(decodeKey(secret, 'expires-at') ?? active.expiresAt));
    await this.writeSecret(cred, secret.metadata?.name ?? '', data, secret);
  }

  // ---- status ----

  private async commit(cred: DatabaseCredential, status: DatabaseCredentialStatus): Promise<DatabaseCredential> {
    throwIfAborted();
    try {
      return await writeStatus(this.ctx, 'credential', cred, status);
    } catch (err) {
      if (isConflict(err)) throw new Conflict('status changed meanwhile');
      throw err;
    }
  }

  /**
   * Ready=False, in the tenant's terms when the credential is in another namespace than its role (tenantView).
   * Withheld details go, when the reason is new, to a Warning Event on the DatabaseRole and to the log.
   */
  private readyFalse(cred: DatabaseCredential, status: DatabaseCredentialStatus, reason: string, message: string): DatabaseCredentialStatus {
    const roleNamespace = cred.spec.roleRef.namespace ?? cred.metadata.namespace;
    const view = tenantView(cred.metadata.namespace, roleNamespace, cred.spec.roleRef.name, reason, message);
    if (view.redacted && getCondition(cred.status?.conditions, 'Ready')?.reason !== reason) {
      const credKey = keyOf(cred.metadata.namespace, cred.metadata.name);
      const role = this.ctx.informers.roles.get(keyOf(roleNamespace, cred.spec.roleRef.name));
      if (role) this.ctx.events.record(role, 'Warning', reason, `DatabaseCredential ${credKey}: ${message}`);
      this.ctx.logger.warn('credential not ready', { credential: credKey, reason, message });
    }
    return readyFalse(this.ctx, cred, status, reason, view.message);
  }

  /** Ready=False with a reason; wakes for the lease end or a grace period that ends meanwhile, if any. */
  private async notReady(cred: DatabaseCredential, status: DatabaseCredentialStatus, reason: string, message: string): Promise<Result> {
    await this.commit(cred, this.readyFalse(cred, status, reason, message));
    const ms = nextWake(status, this.ctx.clock.now(), false);
    return ms === undefined ? {} : { requeueAfter: ms };
  }
}

function parseServer(server: string): { host: string; port: number; database: string } {
  const slash = server.indexOf('/');
  const hostPort = server.slice(0, slash);
  const colon = hostPort.lastIndexOf(':');
  return { host: hostPort.slice(0, colon).replace(/^\[|\]$/g, ''), port: Number(hostPort.slice(colon + 1)), database: server.slice(slash + 1) };
}
