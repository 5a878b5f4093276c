import assert from 'node:assert/strict';
import { credentialHealth, renewalOverdue, revocationDue, stateOf } from '../../src/credentialHealth.js';
import type { DatabaseCredential, HeldRole } from '../../src/api/types.js';

const now = Date.parse('2026-12-03T12:00:00Z');
const iso = (offsetMs: number) => new Date(now + offsetMs).toISOString();

function cred(over: { deleting?: boolean; ready?: boolean; expired?: boolean; renewAt?: string; expiresAt?: string; roles?: HeldRole[] } = {}): DatabaseCredential {
  const conditions = [
    { type: 'Ready', status: over.ready ? 'True' : 'False', reason: 'x', message: '', lastTransitionTime: iso(0) },
    ...(over.expired ? [{ type: 'Expired', status: 'True', reason: 'x', message: '', lastTransitionTime: iso(0) }] : []),
  ];
  return {
    apiVersion: 'dbcred.dev/v1alpha1',
    kind: 'DatabaseCredential',
    metadata: { name: 'c', namespace: 'n', ...(over.deleting ? { deletionTimestamp: iso(-120_000) } : {}) },
    spec: { roleRef: { name: 'r' } },
    status: { conditions, renewAt: over.renewAt, expiresAt: over.expiresAt, roles: over.roles },
  } as DatabaseCredential;
}

const role = (over: Partial<HeldRole>): HeldRole => ({ username: 'u', state: 'active', config: 'n/c', role: 'n/r', ...over });

describe('credentialHealth', () => {
  it('states: deleting before expired before ready/not ready', () => {
    assert.equal(stateOf(cred({ ready: true })), 'ready');
    assert.equal(stateOf(cred({ ready: false })), 'not_ready');
    assert.equal(stateOf(cred({ expired: true })), 'expired');
    assert.equal(stateOf(cred({ ready: true, deleting: true })), 'deleting');
    const noStatus = { ...cred(), status: undefined };
    assert.equal(stateOf(noStatus), 'not_ready', 'a credential the operator has not touched yet is not ready');
  });

  it('a role is due for revocation at the earliest of deletion, end of grace (retiring) and lease end', () => {
    assert.equal(revocationDue(cred(), role({ expiresAt: iso(3_600_000) })), now + 3_600_000);
    assert.equal(revocationDue(cred({ deleting: true }), role({ expiresAt: iso(3_600_000) })), now - 120_000);
    assert.equal(revocationDue(cred(), role({ state: 'retiring', revokeAfter: iso(-5_000), expiresAt: iso(60_000) })), now - 5_000);
    assert.equal(revocationDue(cred(), role({ state: 'active', revokeAfter: iso(-5_000) })), undefined, 'revokeAfter counts for retiring roles only');
    assert.equal(revocationDue(cred(), role({ expiresAt: 'not a time' })), undefined);
  });

  it('counts roles overdue by more than a minute, not those just due', () => {
    const h = credentialHealth(
      [
        cred({ deleting: true, roles: [role({ username: 'a' }), role({ username: 'b', state: 'pending' })] }), // due 2 min ago: 2
        cred({ ready: true, roles: [role({ state: 'retiring', revokeAfter: iso(-30_000) })] }), // 30 s: not yet
        cred({ ready: true, roles: [role({ state: 'retiring', revokeAfter: iso(-61_000) })] }), // 61 s: 1
        cred({ ready: true, roles: [role({ expiresAt: iso(-3_600_000) })] }), // lease ended an hour ago: 1
        cred({ ready: true, roles: [role({ expiresAt: iso(3_600_000) })] }),
      ],
      now,
    );
    assert.equal(h.revocationsOverdue, 4);
    assert.deepEqual(h.states, { ready: 4, not_ready: 0, expired: 0, deleting: 1 });
  });

  it('a renewal is overdue a quarter of the remaining lease (at least 30 s) after renewAt', () => {
    // 1 h ttl at 67%: renewAt 40 min in, 20 min left; slack 5 min.
    const c = (renewAgoMs: number) => cred({ ready: true, renewAt: iso(-renewAgoMs), expiresAt: iso(20 * 60_000 - renewAgoMs) });
    assert.equal(renewalOverdue(c(4 * 60_000), now), false);
    assert.equal(renewalOverdue(c(5 * 60_000 + 1_000), now), true);
    // A 60 s ttl: renewAt 40 s in, 20 s left; the slack is the 30 s minimum, so past expiry it counts.
    const short = (renewAgoMs: number) => cred({ ready: true, renewAt: iso(-renewAgoMs), expiresAt: iso(20_000 - renewAgoMs) });
    assert.equal(renewalOverdue(short(25_000), now), false);
    assert.equal(renewalOverdue(short(31_000), now), true);
    assert.equal(renewalOverdue(cred({ ready: true, expiresAt: iso(-1) }), now), false, 'no renewAt: rotation off, expiry is the plan');
    assert.equal(renewalOverdue({ ...c(10 * 60_000), metadata: { ...c(0).metadata, deletionTimestamp: iso(0) } }, now), false, 'deleting');
    assert.equal(renewalOverdue(cred({ expired: true, renewAt: iso(-3_600_000), expiresAt: iso(-60_000) }), now), false, 'expired');
    assert.equal(credentialHealth([c(10 * 60_000), c(0)], now).renewalsOverdue, 1);
  });
});
