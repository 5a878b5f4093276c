// What an on-call engineer needs to know about the credentials as a whole, read from the informer cache at scrape
// time (no API request, no state of our own): how many are in each state, how many PostgreSQL roles are past the
// time they were due for revocation, how many leases are well past their renewal time. Pure, so the alert rules'
// inputs are unit-tested; src/metrics.ts turns the result into gauges.
import { isTrue } from './api/conditions.js';
import type { DatabaseCredential, HeldRole } from './api/types.js';

export type CredentialState = 'ready' | 'not_ready' | 'expired' | 'deleting';
export const CREDENTIAL_STATES: readonly CredentialState[] = ['ready', 'not_ready', 'expired', 'deleting'];

/** A revocation counts as overdue this long after it came due: a healthy operator revokes within seconds. */
export const REVOCATION_SLACK_MS = 60_000;
/**
 * A renewal counts as overdue this long after renewAt: a quarter of the time left between renewAt and expiresAt,
 * at least 30 s. With the default renewalPercent (67) and a 1 h ttl that is ~5 min, leaving ~15 min of lease.
 */
export const RENEWAL_SLACK_FRACTION = 0.25;
export const RENEWAL_SLACK_MIN_MS = 30_000;

export interface CredentialHealth {
  states: Record<CredentialState, number>;
  /** PostgreSQL roles still held past the time they were due for revocation (plus REVOCATION_SLACK_MS). */
  revocationsOverdue: number;
  /** credentials with rotation whose lease was not renewed well after renewAt (see RENEWAL_SLACK_*). */
  renewalsOverdue: number;
}

export function stateOf(cred: DatabaseCredential): CredentialState {
  if (cred.metadata.deletionTimestamp) return 'deleting';
  const conditions = cred.status?.conditions;
  if (isTrue(conditions, 'Expired')) return 'expired';
  return isTrue(conditions, 'Ready') ? 'ready' : 'not_ready';
}

function time(t: string | undefined): number | undefined {
  if (!t) return undefined;
  const ms = Date.parse(t);
  return Number.isNaN(ms) ? undefined : ms;
}

/**
 * When a held role is due for revocation, or undefined while it may live: the credential's deletion (every role
 * goes), a retiring role's revokeAfter (end of the grace period), any role's lease end (expiresAt).
 */
export function revocationDue(cred: DatabaseCredential, role: HeldRole): number | undefined {
  const due = [time(cred.metadata.deletionTimestamp), role.state === 'retiring' ? time(role.revokeAfter) : undefined, time(role.expiresAt)];
  const known = due.filter((t): t is number => t !== undefined);
  return known.length ? Math.min(...known) : undefined;
}

/** Whether a credential with rotation is well past its renewal time (status.renewAt is set only with rotation). */
export function renewalOverdue(cred: DatabaseCredential, now: number): boolean {
  if (cred.metadata.deletionTimestamp || isTrue(cred.status?.conditions, 'Expired')) return false;
  const renewAt = time(cred.status?.renewAt);
  const expiresAt = time(cred.status?.expiresAt);
  if (renewAt === undefined || expiresAt === undefined) return false;
  const slack = Math.max(RENEWAL_SLACK_MIN_MS, (expiresAt - renewAt) * RENEWAL_SLACK_FRACTION);
  return now > renewAt + slack;
}

export function credentialHealth(creds: Iterable<DatabaseCredential>, now: number): CredentialHealth {
  const states: Record<CredentialState, number> = { ready: 0, not_ready: 0, expired: 0, deleting: 0 };
  let revocationsOverdue = 0;
  let renewalsOverdue = 0;
  for (const cred of creds) {
    states[stateOf(cred)]++;
    for (const role of cred.status?.roles ?? []) {
      const due = revocationDue(cred, role);
      if (due !== undefined && now - due > REVOCATION_SLACK_MS) revocationsOverdue++;
    }
    if (renewalOverdue(cred, now)) renewalsOverdue++;
  }
  return { states, revocationsOverdue, renewalsOverdue };
}
