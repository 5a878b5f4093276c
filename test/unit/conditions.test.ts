import assert from 'node:assert/strict';
import {
  assertReason,
  conditionsEqual,
  formatConditionTime,
  getCondition,
  isTrue,
  removeCondition,
  setCondition,
  statusChanged,
} from '../../src/api/conditions.js';
import type { Condition, DatabaseCredentialStatus } from '../../src/api/types.js';

const t0 = new Date('2025-03-01T10:00:00.123Z');
const t1 = new Date('2025-03-01T11:30:00.000Z');
const t2 = new Date('2025-03-01T12:00:00.000Z');

describe('conditions', () => {
  it('a new condition gets the current time (whole seconds, UTC) and the observed generation', () => {
    const conditions = setCondition(undefined, { type: 'Ready', status: 'True', reason: 'Issued', message: 'ok' }, 3, t0);
    assert.deepEqual(conditions, [
      {
        type: 'Ready',
        status: 'True',
        reason: 'Issued',
        message: 'ok',
        lastTransitionTime: '2025-03-01T10:00:00Z',
        observedGeneration: 3,
      },
    ]);
  });

  it('keeps lastTransitionTime when only reason or message change, and moves it when status flips', () => {
    let conditions = setCondition([], { type: 'Ready', status: 'False', reason: 'Pending', message: 'a' }, 1, t0);
    conditions = setCondition(conditions, { type: 'Ready', status: 'False', reason: 'RoleNotFound', message: 'b' }, 2, t1);
    assert.deepEqual(getCondition(conditions, 'Ready'), {
      type: 'Ready',
      status: 'False',
      reason: 'RoleNotFound',
      message: 'b',
      lastTransitionTime: '2025-03-01T10:00:00Z',
      observedGeneration: 2,
    });
    conditions = setCondition(conditions, { type: 'Ready', status: 'True', reason: 'Issued', message: '' }, 2, t2);
    assert.equal(getCondition(conditions, 'Ready')?.lastTransitionTime, '2025-03-01T12:00:00Z');
    assert.equal(conditions.length, 1);
  });

  it('returns a new list, replacing in place and appending, without touching the input', () => {
    const before: Condition[] = [
      { type: 'Ready', status: 'True', reason: 'Issued', message: '', lastTransitionTime: '2025-01-01T00:00:00Z' },
      { type: 'Expired', status: 'False', reason: 'Valid', message: '', lastTransitionTime: '2025-01-01T00:00:00Z' },
    ];
    const snapshot = structuredClone(before);
    const after = setCondition(before, { type: 'Ready', status: 'False', reason: 'SecretConflict', message: 'x' }, 4, t1);
    assert.deepEqual(before, snapshot);
    assert.notEqual(after, before);
    assert.deepEqual(after.map((c) => c.type), ['Ready', 'Expired']);
    const added = setCondition(after, { type: 'Renewed', status: 'True', reason: 'LeaseExtended', message: '' }, 4, t1);
    assert.deepEqual(added.map((c) => c.type), ['Ready', 'Expired', 'Renewed']);
  });

  it('omits observedGeneration only when none is known', () => {
    const [c] = setCondition(undefined, { type: 'Ready', status: 'Unknown', reason: 'Pending', message: '' }, undefined, t0);
    assert.equal(c !== undefined && 'observedGeneration' in c, false);
  });

  it('refuses reasons that are not CamelCase', () => {
    for (const reason of ['SecretConflict', 'Ready', 'TLS1Failed']) assert.doesNotThrow(() => assertReason(reason));
    for (const reason of ['', 'secretConflict', 'Secret Conflict', 'secret_conflict', 'Secret-Conflict', 'A'.repeat(1025)]) {
      assert.throws(() => assertReason(reason), TypeError, reason);
    }
    assert.throws(() => setCondition([], { type: 'Ready', status: 'False', reason: 'not found', message: '' }, 1, t0), TypeError);
  });

  it('caps messages at the metav1.Condition limit', () => {
    const [c] = setCondition([], { type: 'Ready', status: 'False', reason: 'Failed', message: 'x'.repeat(40000) }, 1, t0);
    assert.equal(c?.message.length, 32768);
  });

  it('getCondition and isTrue', () => {
    const conditions = setCondition([], { type: 'Ready', status: 'True', reason: 'Issued', message: '' }, 1, t0);
    assert.equal(isTrue(conditions, 'Ready'), true);
    assert.equal(isTrue(conditions, 'Expired'), false);
    assert.equal(isTrue(undefined, 'Ready'), false);
    assert.equal(getCondition(conditions, 'Expired'), undefined);
    assert.deepEqual(removeCondition(conditions, 'Ready'), []);
  });

  it('formatConditionTime drops sub-second precision', () => {
    assert.equal(formatConditionTime(t0), '2025-03-01T10:00:00Z');
  });

  describe('statusChanged', () => {
    const ready = (time: string): Condition => ({
      type: 'Ready',
      status: 'True',
      reason: 'Issued',
      message: 'credential issued',
      lastTransitionTime: time,
      observedGeneration: 2,
    });
    const expired: Condition = {
      type: 'Expired',
      status: 'False',
      reason: 'Valid',
      message: '',
      lastTransitionTime: '2025-01-01T00:00:00Z',
      observedGeneration: 2,
    };

    it('a reconcile that reaches the same conclusion later needs no status write', () => {
      const status: DatabaseCredentialStatus = {
        observedGeneration: 2,
        username: 'v-role-app-x',
        conditions: setCondition([], { type: 'Ready', status: 'True', reason: 'Issued', message: 'ok' }, 2, t0),
      };
      const next: DatabaseCredentialStatus = {
        ...status,
        conditions: setCondition(status.conditions, { type: 'Ready', status: 'True', reason: 'Issued', message: 'ok' }, 2, t2),
      };
      assert.equal(statusChanged(status, next), false);
      const bumped = { ...next, conditions: setCondition(next.conditions, { type: 'Ready', status: 'True', reason: 'Issued', message: 'ok' }, 3, t2) };
      assert.equal(statusChanged(status, bumped), true, 'a new observedGeneration is a change');
    });

    it('ignores key order, condition order and undefined properties', () => {
      const a: DatabaseCredentialStatus = { username: 'u', secretName: 's', conditions: [ready('2025-01-01T00:00:00Z'), expired] };
      const reordered = JSON.parse(
        '{"conditions":[{"observedGeneration":2,"lastTransitionTime":"2025-01-01T00:00:00Z","message":"","reason":"Valid","status":"False","type":"Expired"},' +
          '{"message":"credential issued","type":"Ready","status":"True","reason":"Issued","lastTransitionTime":"2025-01-01T00:00:00Z","observedGeneration":2}],' +
          '"secretName":"s","username":"u"}',
      ) as DatabaseCredentialStatus;
      assert.equal(statusChanged(a, reordered), false);
      assert.equal(statusChanged(a, { ...reordered, renewAt: undefined }), false);
      assert.equal(statusChanged(undefined, {}), false);
      assert.equal(statusChanged(undefined, { conditions: undefined }), false);
    });

    it('sees changed values, added and removed fields, and changed nested arrays', () => {
      const a: DatabaseCredentialStatus = { username: 'u', conditions: [ready('2025-01-01T00:00:00Z')], roles: [{ username: 'u', state: 'active', config: 'ns/c', role: 'ns/r' }] };
      assert.equal(statusChanged(a, { ...a, username: 'v' }), true);
      assert.equal(statusChanged(a, { ...a, expiresAt: '2025-01-01T01:00:00Z' }), true);
      assert.equal(statusChanged(a, { conditions: a.conditions, roles: a.roles }), true);
      assert.equal(statusChanged(a, { ...a, roles: [{ username: 'u', state: 'retiring', config: 'ns/c', role: 'ns/r' }] }), true);
      assert.equal(statusChanged(a, { ...a, roles: [...(a.roles ?? []), { username: 'w', state: 'pending', config: 'ns/c', role: 'ns/r' }] }), true);
      assert.equal(statusChanged(a, { ...a, conditions: [ready('2025-01-01T00:00:01Z')] }), true);
      assert.equal(statusChanged(a, { ...a, conditions: [] }), true);
      assert.equal(statusChanged(undefined, a), true);
    });
  });

  it('conditionsEqual compares by type', () => {
    const a = setCondition([], { type: 'Ready', status: 'True', reason: 'Issued', message: '' }, 1, t0);
    const b = setCondition(a, { type: 'Expired', status: 'False', reason: 'Valid', message: '' }, 1, t0);
    const reversed = [...b].reverse();
    assert.equal(conditionsEqual(b, reversed), true);
    assert.equal(conditionsEqual(a, b), false);
    assert.equal(conditionsEqual(undefined, []), true);
    assert.equal(conditionsEqual(b, setCondition(b, { type: 'Expired', status: 'False', reason: 'Valid', message: 'x' }, 1, t0)), false);
  });
});
