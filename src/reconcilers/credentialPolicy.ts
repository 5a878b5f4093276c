// The DatabaseCredential lifecycle as pure functions, after cert-manager's policy chains: everything a decision
// needs is gathered into an Observation (persisted status, spec, what the Secret and PostgreSQL say, now), and
// these functions return the next status.roles and the one action to take. The reconciler only gathers, asks and
// carries out (databasecredential.ts); runIssue/runSettle below are the two multi-step workflows, written against
// an Effects seam so that unit tests drive them with crashes at every step.
//
// Invariants (property-tested in test/unit/credentialPolicy.test.ts):
//   - at most one role is active, and no username is listed twice;
//   - every role that may exist in PostgreSQL is listed (intent is committed before CREATE ROLE, an entry leaves
//     the list only after its revocation succeeded);
//   - a retiring role's revokeAfter is never earlier than the end of its grace period.
import { createHash } from 'node:crypto';
import { toRFC3339 } from '../api/duration.js';
import type { DatabaseCredentialStatus, HeldRole } from '../api/types.js';

/** How long a credential's logins live, from the credential and its role. */
export interface LeasePolicy {
  ttlMs: number;
  maxTTLMs: number;
  renewalPercent: number;
}

/** What the credential may be issued against now, or why not. */
export type Target =
  | {
      ok: true;
      static: boolean;
      roleKey: string;
      configKey: string;
      /** host:port/database of the config's server now: a role on another server must be replaced */
      server: string;
      specHash: string;
      lease: LeasePolicy;
    }
  | { ok: false; reason: string; message: string };

export interface Observation {
  now: Date;
  status: DatabaseCredentialStatus;
  /** the username in the credential's Secret; undefined when there is no such Secret */
  secretUser: string | undefined;
  rotationEnabled: boolean;
  graceMs: number;
  target: Target;
  /** hashed value of the dbcred.dev/rotate annotation (see rotateRequestHash), undefined when absent */
  rotateRequest: string | undefined;
  /** PostgreSQL said the active role does not exist (renewal failed with "role does not exist") */
  activeRoleGone?: boolean;
  /** the Expired condition is True for the current generation (rotation disabled, lease over) */
  expiredForGeneration: boolean;
}

export type Decision =
  /** rotation disabled and the lease is over: revoke, delete the Secret, Expired=True */
  | { action: 'expire'; role: HeldRole }
  /** rotation on, nothing to issue against, and the lease is over: revoke the dead login, Ready=False, wait */
  | { action: 'lapse'; role: HeldRole; reason: string; message: string }
  /** nothing can be done until something changes: Ready=False; wake at wakeAt (if any) */
  | { action: 'blocked'; reason: string; message: string; wakeAt?: Date }
  /** the credential stays expired until its spec changes */
  | { action: 'stay-expired' }
  /** the target is a static role */
  | { action: 'static' }
  /** a new role, then the Secret; the active one (if any) retires */
  | { action: 'issue'; why: string; previous?: HeldRole }
  /** extend the active role's lease to until */
  | { action: 'renew'; role: HeldRole; until: Date }
  /** nothing to do: Ready */
  | { action: 'ready'; role: HeldRole };

/** A stable, short form of the rotate annotation: any value length fits status and compares exactly. */
export function rotateRequestHash(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  return `sha256:${createHash('sha256').update(value).digest('hex').slice(0, 32)}`;
}

export function activeRole(status: DatabaseCredentialStatus): HeldRole | undefined {
  return status.roles?.find((r) => r.state === 'active');
}

const STATE_RANK: Record<HeldRole['state'], number> = { active: 3, pending: 2, retiring: 1 };

/**
 * One entry per username and at most one active: repairs what an older operator version may have persisted
 * (a username listed twice, two actives). Nothing is dropped that may exist: a duplicate keeps its strongest
 * state, and an extra active becomes retiring with a full grace period.
 */
export function normalize(roles: readonly HeldRole[], now: Date, graceMs: number): HeldRole[] {
  const byName = new Map<string, HeldRole>();
  for (const r of roles) {
    const seen = byName.get(r.username);
    if (!seen || STATE_RANK[r.state] > STATE_RANK[seen.state]) byName.set(r.username, { ...r });
  }
  const out = [...byName.values()];
  const actives = out.filter((r) => r.state === 'active');
  if (actives.length > 1) {
    const newest = actives.reduce((a, b) => ((a.issuedAt ?? '') >= (b.issuedAt ?? '') ? a : b));
    for (const r of actives) if (r !== newest) Object.assign(r, retire(r, now, graceMs));
  }
  return out;
}

function retire(role: HeldRole, now: Date, graceMs: number): HeldRole {
  const due = toRFC3339(new Date(now.getTime() + graceMs));
  // Already retiring: keep the later deadline (a grace period once granted is never shortened).
  const revokeAfter = role.revokeAfter && role.revokeAfter > due ? role.revokeAfter : due;
  return { ...role, state: 'retiring', revokeAfter };
}

/**
 * The role whose login is now in the Secret becomes active; the previous active one retires with a full grace
 * period. Used both at the end of an issue and when a crash interrupted one after the Secret was written.
 * Top-level status fields follow the active role.
 */
export function promote(status: DatabaseCredentialStatus, username: string, now: Date, graceMs: number, rotationEnabled: boolean): DatabaseCredentialStatus {
  const roles = normalize(status.roles ?? [], now, graceMs);
  const previous = roles.find((r) => r.state === 'active' && r.username !== username);
  const next = roles.map((r) => {
    if (r.username === username) return { ...r, state: 'active' as const, revokeAfter: undefined };
    if (r.state === 'active') return retire(r, now, graceMs);
    return r;
  });
  const promoted = next.find((r) => r.username === username);
  if (!promoted) return status; // not listed: nothing may be promoted that is not listed
  // A first issue needs no restart (pods starting now read the new Secret). Once a login was delivered, a new
  // one restarts the targets: restartedFor stays behind the new issuedAt until the restart is done.
  const delivered = previous !== undefined || (status.username !== undefined && status.username !== username);
  const restartedFor = delivered ? status.restartedFor : promoted.issuedAt;
  return summarize({ ...status, roles: next, restartedFor }, rotationEnabled);
}

/** Top-level status fields (username, issuedAt, expiresAt, renewAt, …) from the active role. */
export function summarize(status: DatabaseCredentialStatus, rotationEnabled: boolean): DatabaseCredentialStatus {
  const active = activeRole(status);
  if (!active) return { ...status, renewAt: undefined };
  return {
    ...status,
    username: active.username,
    issuedAt: active.issuedAt ? toRFC3339(new Date(active.issuedAt)) : status.issuedAt,
    expiresAt: active.expiresAt,
    renewAt: rotationEnabled ? active.renewAt ?? status.renewAt : undefined,
    issuedForHash: active.specHash ?? status.issuedForHash,
    rotateRequest: active.rotateRequest ?? status.rotateRequest,
  };
}

/** The status with an intent to create this role recorded (state pending). */
export function withIntent(status: DatabaseCredentialStatus, held: HeldRole): DatabaseCredentialStatus {
  return { ...status, roles: [...(status.roles ?? []).filter((r) => r.username !== held.username), { ...held, state: 'pending' }] };
}

/** The status without these roles (they were revoked, or are known not to exist). */
export function without(status: DatabaseCredentialStatus, usernames: readonly string[], rotationEnabled: boolean): DatabaseCredentialStatus {
  const gone = new Set(usernames);
  return summarize({ ...status, roles: (status.roles ?? []).filter((r) => !gone.has(r.username)) }, rotationEnabled);
}

/** The active role retires now with a full grace period (its credential switched to a static role). */
export function retireAll(status: DatabaseCredentialStatus, now: Date, graceMs: number): DatabaseCredentialStatus {
  return { ...status, roles: normalize(status.roles ?? [], now, graceMs).map((r) => (r.state === 'active' ? retire(r, now, graceMs) : r)) };
}

/** The status after the active role's lease was extended to expiresAt. */
export function renewed(status: DatabaseCredentialStatus, username: string, now: Date, expiresAt: Date, lease: LeasePolicy, rotationEnabled: boolean): DatabaseCredentialStatus {
  const renewAt = toRFC3339(renewTime(now, expiresAt, lease.renewalPercent));
  const roles = (status.roles ?? []).map((r) => (r.username === username ? { ...r, expiresAt: toRFC3339(expiresAt), renewAt } : r));
  return summarize({ ...status, roles }, rotationEnabled);
}

export function renewTime(leaseStart: Date, expiresAt: Date, renewalPercent: number): Date {
  return new Date(leaseStart.getTime() + ((expiresAt.getTime() - leaseStart.getTime()) * renewalPercent) / 100);
}

/**
 * What a crash or an earlier rotation left behind: a pending role whose login is in the Secret is promoted (the
 * crash came after the Secret write); any other pending role, and every retiring role past its grace period, is
 * to be revoked. The returned status still lists the roles to revoke: they leave it only once revoked.
 */
export function settle(status: DatabaseCredentialStatus, secretUser: string | undefined, now: Date, graceMs: number, rotationEnabled: boolean): { status: DatabaseCredentialStatus; revoke: HeldRole[] } {
  // A status without roles stays without the key: writing `roles: []` would be a status write for nothing.
  let next: DatabaseCredentialStatus = status.roles ? { ...status, roles: normalize(status.roles, now, graceMs) } : { ...status };
  const pendingInSecret = next.roles?.find((r) => r.state === 'pending' && r.username === secretUser);
  if (pendingInSecret) next = promote(next, pendingInSecret.username, now, graceMs, rotationEnabled);
  const revoke = (next.roles ?? []).filter(
    (r) => r.state === 'pending' || (r.state === 'retiring' && (!r.revokeAfter || now >= new Date(r.revokeAfter))),
  );
  return { status: next, revoke };
}

/**
 * The one thing to do next for a live (not deleting) credential whose roles are settled. Ordered like
 * cert-manager's chains: the first rule that applies wins.
 */
export function decide(o: Observation): Decision {
  const active = activeRole(o.status);
  const leaseOver = active?.expiresAt !== undefined && o.now >= new Date(active.expiresAt);
  if (o.expiredForGeneration && !active && !o.rotationEnabled) return { action: 'stay-expired' };
  if (active && !o.rotationEnabled && leaseOver && !o.activeRoleGone) return { action: 'expire', role: active };
  if (!o.target.ok) {
    if (active && leaseOver) return { action: 'lapse', role: active, reason: o.target.reason, message: o.target.message };
    const wakeAt = active?.expiresAt ? new Date(active.expiresAt) : undefined;
    return { action: 'blocked', reason: o.target.reason, message: o.target.message, wakeAt };
  }
  const target = o.target;
  if (target.static) return { action: 'static' };
  if (!active) return { action: 'issue', why: o.activeRoleGone ? 'the role was dropped outside the operator' : o.status.username ? 'no active login' : 'first issue' };
  const previous = active;
  if (o.activeRoleGone) return { action: 'issue', why: 'the role was dropped outside the operator', previous };
  if (o.secretUser !== active.username) return { action: 'issue', why: 'the Secret was removed or changed', previous };
  if ((active.specHash ?? o.status.issuedForHash) !== target.specHash) return { action: 'issue', why: 'the spec changed', previous };
  if (active.server !== undefined && active.server !== target.server) return { action: 'issue', why: 'the config points at another server', previous };
  const handled = active.rotateRequest ?? o.status.rotateRequest;
  if (o.rotateRequest !== undefined && o.rotateRequest !== handled && !legacyRotateMatch(handled, o)) {
    return { action: 'issue', why: 'annotation dbcred.dev/rotate changed', previous };
  }
  const renewAt = active.renewAt ?? o.status.renewAt;
  if (o.rotationEnabled && (leaseOver || (renewAt !== undefined && o.now >= new Date(renewAt)))) {
    const until = new Date(o.now.getTime() + target.lease.ttlMs);
    const issuedAt = new Date(active.issuedAt ?? o.now);
    if (leaseOver || until.getTime() > issuedAt.getTime() + target.lease.maxTTLMs) return { action: 'issue', why: leaseOver ? 'the lease ended' : 'maxTTL reached', previous };
    return { action: 'renew', role: active, until };
  }
  return { action: 'ready', role: active };
}

/** Statuses written before rotateRequest was hashed hold the raw annotation value. */
function legacyRotateMatch(handled: string | undefined, o: Observation): boolean {
  return handled !== undefined && !handled.startsWith('sha256:') && rotateRequestHash(handled) === o.rotateRequest;
}

const MIN_REQUEUE_MS = 1_000;

/**
 * When to look again, from persisted deadlines: renewal (or the lease end), the end of every grace period. Never
 * sooner than a second: a deadline that has passed but could not be acted on must not become a hot loop.
 */
export function nextWake(status: DatabaseCredentialStatus, now: Date, rotationEnabled: boolean): number | undefined {
  const deadlines: number[] = [];
  const active = activeRole(status);
  const renewAt = active?.renewAt ?? status.renewAt;
  if (active) {
    if (rotationEnabled && renewAt) deadlines.push(new Date(renewAt).getTime());
    if (active.expiresAt) deadlines.push(new Date(active.expiresAt).getTime());
  }
  for (const r of status.roles ?? []) if (r.state === 'retiring' && r.revokeAfter) deadlines.push(new Date(r.revokeAfter).getTime());
  if (!deadlines.length) return undefined;
  return Math.max(MIN_REQUEUE_MS, Math.min(...deadlines) - now.getTime() + 10);
}

// ---- workflows over an effects seam ----

/** What the workflows need from the world; the reconciler implements it with the API server and PostgreSQL. */
export interface Effects {
  /** Persists status (optimistic lock); returns what was written. */
  commit(status: DatabaseCredentialStatus): Promise<DatabaseCredentialStatus>;
  /** CREATE ROLE … in one transaction, with the ownership marker. */
  createRole(role: HeldRole): Promise<void>;
  /** Makes the Secret hold this role's login. */
  writeSecret(role: HeldRole): Promise<void>;
  /** Revokes a role; a role that does not exist is success. A pending role first waits for in-flight creations. */
  revokeRole(role: HeldRole): Promise<void>;
}

/**
 * Issue: intent first (so a crash after CREATE ROLE leaves a listed role), then the role, then the Secret, then
 * the promotion. A failed creation may still have committed (a lost COMMIT acknowledgement): the role is revoked
 * before its intent is dropped, and if that fails too the intent stays for the next settle.
 */
export async function runIssue(status: DatabaseCredentialStatus, role: HeldRole, now: Date, graceMs: number, rotationEnabled: boolean, fx: Effects): Promise<DatabaseCredentialStatus> {
  let s = await fx.commit(withIntent(status, role));
  try {
    await fx.createRole(role);
  } catch (err) {
    try {
      await fx.revokeRole(role);
      s = await fx.commit(without(s, [role.username], rotationEnabled));
    } catch {
      // the intent stays listed; the next settle revokes it
    }
    throw err;
  }
  await fx.writeSecret(role);
  return fx.commit(promote(s, role.username, now, graceMs, rotationEnabled));
}

/**
 * Revokes the roles settle() picked, each on its own: one failure never stops the others, nor (for the caller)
 * the active role's renewal. Returns the status without the revoked roles, and the failures.
 */
export async function runRevocations(
  status: DatabaseCredentialStatus,
  roles: readonly HeldRole[],
  rotationEnabled: boolean,
  fx: Pick<Effects, 'revokeRole'>,
): Promise<{ status: DatabaseCredentialStatus; failed: Array<{ role: HeldRole; error: string }> }> {
  const revoked: string[] = [];
  const failed: Array<{ role: HeldRole; error: string }> = [];
  for (const role of roles) {
    try {
      await fx.revokeRole(role);
      revoked.push(role.username);
    } catch (err) {
      failed.push({ role, error: err instanceof Error ? err.message : String(err) });
    }
  }
  return { status: revoked.length ? without(status, revoked, rotationEnabled) : status, failed };
}
