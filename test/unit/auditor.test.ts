// The auditor's rules (test/audit/invariants.ts) over plain data: each invariant is shown violated and named, and
// a healthy world passes.
import assert from 'node:assert/strict';
import type { Condition, DatabaseConfig, DatabaseCredential, HeldRole } from '../../src/api/types.js';
import { evaluate, formatViolations, needsLoginCheck, type Snapshot, type Violation } from '../audit/invariants.js';

const now = new Date('2026-12-01T12:00:00Z');
const quiet = { quietPeriodMs: 30_000 };

function cond(type: string, status: 'True' | 'False', reason: string, observedGeneration = 1): Condition {
  return { type, status, reason, message: `${type} ${reason}`, lastTransitionTime: '2026-12-01T11:00:00Z', observedGeneration };
}

function cred(name: string, opts: { uid?: string; roles?: HeldRole[]; conditions?: Condition[]; rotation?: boolean; generation?: number; deletionTimestamp?: string } = {}): DatabaseCredential {
  return {
    apiVersion: 'dbcred.dev/v1alpha1',
    kind: 'DatabaseCredential',
    metadata: {
      name,
      namespace: 'ns',
      uid: opts.uid ?? `uid-${name}`,
      generation: opts.generation ?? 1,
      ...(opts.deletionTimestamp ? { deletionTimestamp: opts.deletionTimestamp, finalizers: ['dbcred.dev/revoke-roles'] } : {}),
    },
    spec: { roleRef: { name: 'reader' }, ...(opts.rotation === false ? { rotation: { enabled: false } } : {}) },
    status: { secretName: name, roles: opts.roles ?? [], conditions: opts.conditions ?? [] },
  };
}

const held = (username: string, state: HeldRole['state'] = 'active', extra: Partial<HeldRole> = {}): HeldRole => ({ username, state, config: 'ns/pg', role: 'ns/reader', ...extra });

function world(parts: Partial<Snapshot>): Snapshot {
  return { credentials: [], configs: [], roles: [], namespaces: [], markedRoles: [], secretChecks: {}, ...parts };
}

const only = (violations: Violation[], invariant: Violation['invariant']) => violations.filter((v) => v.invariant === invariant);

describe('invariant auditor rules', () => {
  const ready = cond('Ready', 'True', 'Issued');

  it('passes a healthy world: Ready credentials that log in, every marked role listed', () => {
    const a = cred('a', { roles: [held('u-a1', 'retiring', { revokeAfter: '2026-12-01T12:05:00Z' }), held('u-a2')], conditions: [ready] });
    const b = cred('b', { roles: [held('u-b')], conditions: [ready] });
    const v = evaluate(world({
      credentials: [a, b],
      markedRoles: [
        { username: 'u-a1', marker: { namespace: 'ns', name: 'a', uid: 'uid-a' } },
        { username: 'u-a2', marker: { namespace: 'ns', name: 'a', uid: 'uid-a' } },
        { username: 'u-b', marker: { namespace: 'ns', name: 'b', uid: 'uid-b' } },
      ],
      secretChecks: { 'ns/a': { outcome: 'ok' }, 'ns/b': { outcome: 'ok' } },
    }), now, quiet);
    assert.deepEqual(v, []);
  });

  it('a Ready credential whose Secret fails to log in, is missing, or lacks keys is a violation naming it', () => {
    const v = evaluate(world({
      credentials: [cred('dead', { conditions: [ready] }), cred('gone', { conditions: [ready] }), cred('half', { conditions: [ready] }), cred('unchecked', { conditions: [ready] })],
      secretChecks: {
        'ns/dead': { outcome: 'login-failed', secretName: 'dead', username: 'u-dead', code: '28P01' },
        'ns/gone': { outcome: 'missing', secretName: 'gone' },
        'ns/half': { outcome: 'incomplete', secretName: 'half', missingKeys: ['password'] },
      },
    }), now, quiet);
    const r = only(v, 'ready-secret-logs-in');
    assert.equal(r.length, 4);
    assert.deepEqual(r[0]?.objects, ['ns/dead', 'ns/dead', 'role "u-dead"']);
    assert.match(r[0]?.message ?? '', /28P01/);
    assert.match(r[1]?.message ?? '', /does not exist/);
    assert.match(r[2]?.message ?? '', /lacks password/);
    assert.match(r[3]?.message ?? '', /not checked/);
  });

  it('only the current generation\'s Ready=True, on a credential not being deleted, promises a login', () => {
    assert.equal(needsLoginCheck(cred('cur', { conditions: [ready] })), true);
    assert.equal(needsLoginCheck(cred('old', { conditions: [ready], generation: 2 })), false);
    assert.equal(needsLoginCheck(cred('notready', { conditions: [cond('Ready', 'False', 'IssueFailed')] })), false);
    assert.equal(needsLoginCheck(cred('deleting', { conditions: [ready], deletionTimestamp: now.toISOString() })), false);
    const v = evaluate(world({ credentials: [cred('old', { conditions: [ready], generation: 2 })] }), now, quiet);
    assert.deepEqual(v, []);
  });

  it('a marked role whose credential is gone, was recreated, or does not list it is a leaked role', () => {
    const v = evaluate(world({
      credentials: [cred('recreated', { uid: 'uid-new' }), cred('forgot', { roles: [held('u-kept')] })],
      markedRoles: [
        { username: 'u-orphan', marker: { namespace: 'ns', name: 'deleted', uid: 'uid-x' } },
        { username: 'u-old', marker: { namespace: 'ns', name: 'recreated', uid: 'uid-old' } },
        { username: 'u-lost', marker: { namespace: 'ns', name: 'forgot', uid: 'uid-forgot' } },
        { username: 'u-kept', marker: { namespace: 'ns', name: 'forgot', uid: 'uid-forgot' } },
      ],
    }), now, quiet);
    const r = only(v, 'marked-role-listed');
    assert.deepEqual(r.map((x) => x.objects), [
      ['role "u-orphan"', 'ns/deleted'],
      ['role "u-old"', 'ns/recreated'],
      ['role "u-lost"', 'ns/forgot'],
    ]);
    assert.ok(r.every((x) => x.message.startsWith('leaked role')));
    assert.equal(v.length, 3);
  });

  it('a username twice in one credential, or in two credentials, is a violation', () => {
    const v = evaluate(world({
      credentials: [
        cred('twice', { roles: [held('u-dup'), held('u-dup', 'retiring', { revokeAfter: now.toISOString() })] }),
        cred('x', { roles: [held('u-shared')] }),
        cred('y', { roles: [held('u-shared', 'retiring', { revokeAfter: now.toISOString() })] }),
      ],
    }), now, quiet);
    const r = only(v, 'username-unique');
    assert.equal(r.length, 2);
    assert.deepEqual(r[0]?.objects, ['ns/twice', 'role "u-dup"']);
    assert.deepEqual(r[1]?.objects, ['ns/x', 'ns/y', 'role "u-shared"']);
  });

  it('Expired=True is a violation only with rotation enabled', () => {
    const expired = [cond('Ready', 'False', 'Expired'), cond('Expired', 'True', 'TTLExpired')];
    const v = evaluate(world({ credentials: [cred('rotating', { conditions: expired }), cred('fixed', { conditions: expired, rotation: false })] }), now, quiet);
    assert.deepEqual(v.map((x) => [x.invariant, x.objects]), [['rotating-never-expires', ['ns/rotating']]]);
  });

  it('two active roles, or a retiring role without revokeAfter, is a violation', () => {
    const v = evaluate(world({ credentials: [cred('two', { roles: [held('u1'), held('u2'), held('u3', 'retiring')] })] }), now, quiet);
    assert.deepEqual(v.map((x) => [x.invariant, x.objects]), [
      ['one-active-role', ['ns/two', 'role "u1"', 'role "u2"']],
      ['retiring-has-deadline', ['ns/two', 'role "u3"']],
    ]);
  });

  it('an object or namespace being deleted for longer than the quiet period is stuck; a recent deletion is not', () => {
    const longAgo = new Date(now.getTime() - 60_000).toISOString();
    const recent = new Date(now.getTime() - 5_000).toISOString();
    const config: DatabaseConfig = {
      apiVersion: 'dbcred.dev/v1alpha1',
      kind: 'DatabaseConfig',
      metadata: { name: 'pg', namespace: 'ns', deletionTimestamp: longAgo, finalizers: ['dbcred.dev/credentials-revoked'] },
      spec: { plugin: 'postgresql', connectionURL: 'postgresql://h/db', rootCredentialsSecretRef: { name: 'root' } },
    };
    const v = evaluate(world({
      credentials: [cred('stuck', { deletionTimestamp: longAgo, roles: [held('u-s')] }), cred('leaving', { deletionTimestamp: recent })],
      configs: [config],
      namespaces: [{ name: 'ns', deletionTimestamp: longAgo }, { name: 'fresh', deletionTimestamp: recent }, { name: 'live' }],
    }), now, quiet);
    const r = only(v, 'no-stuck-deletion');
    assert.deepEqual(r.map((x) => x.objects), [['ns/stuck'], ['ns/pg'], ['ns']]);
    assert.match(r[0]?.message ?? '', /dbcred\.dev\/revoke-roles.*"u-s"/);
    assert.match(formatViolations(r), /\[no-stuck-deletion\] namespace ns is Terminating/);
  });
});
