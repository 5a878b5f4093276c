// The credential lifecycle's pure decisions, as tables, and its workflows under generated sequences of events and
// crashes (a fake PostgreSQL, Secret and status store; a fake clock). The reconciler calls exactly these
// functions; what it adds is gathering (API server, caches) and carrying out.
import assert from 'node:assert/strict';
import type { DatabaseCredentialStatus, HeldRole } from '../../src/api/types.js';
import {
  activeRole,
  decide,
  nextWake,
  normalize,
  promote,
  renewTime,
  renewed,
  retireAll,
  rotateRequestHash,
  runIssue,
  runRevocations,
  settle,
  without,
  type Effects,
  type LeasePolicy,
  type Observation,
  type Target,
} from '../../src/reconcilers/credentialPolicy.js';
import { mulberry32 } from '../random.js';

const T0 = Date.parse('2026-01-01T00:00:00Z');
const MIN = 60_000;
const lease: LeasePolicy = { ttlMs: 60 * MIN, maxTTLMs: 180 * MIN, renewalPercent: 67 };
const target: Extract<Target, { ok: true }> = { ok: true, static: false, roleKey: 'p/r', configKey: 'p/c', server: 'h:5432/db', specHash: 'h1', lease };
const iso = (ms: number) => new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z');

function held(username: string, state: HeldRole['state'], extra: Partial<HeldRole> = {}): HeldRole {
  return { username, state, config: 'p/c', role: 'p/r', issuedAt: new Date(T0).toISOString(), expiresAt: iso(T0 + 60 * MIN), renewAt: iso(T0 + 40 * MIN), specHash: 'h1', server: 'h:5432/db', ...extra };
}

function observation(status: DatabaseCredentialStatus, over: Partial<Observation> = {}): Observation {
  return { now: new Date(T0), status, secretUser: activeRole(status)?.username, rotationEnabled: true, graceMs: 5 * MIN, target, rotateRequest: undefined, expiredForGeneration: false, ...over };
}

describe('credential policy: decide', () => {
  const one: DatabaseCredentialStatus = { roles: [held('a', 'active')], username: 'a', restartedFor: new Date(T0).toISOString() };
  const cases: Array<[string, Observation, string, string?]> = [
    ['no role yet: issue', observation({}), 'issue', 'first issue'],
    ['steady: ready', observation(one), 'ready'],
    ['renewAt passed: renew', observation(one, { now: new Date(T0 + 41 * MIN) }), 'renew'],
    ['renewal would pass maxTTL: rotate', observation(one, { now: new Date(T0 + 150 * MIN) }), 'issue', 'the lease ended'],
    ['renewal within lease but past maxTTL: rotate', observation({ roles: [held('a', 'active', { expiresAt: iso(T0 + 170 * MIN), renewAt: iso(T0 + 150 * MIN) })] }, { now: new Date(T0 + 150 * MIN), secretUser: 'a' }), 'issue', 'maxTTL reached'],
    ['Secret lost: rotate', observation(one, { secretUser: undefined }), 'issue', 'the Secret was removed or changed'],
    ['spec changed: rotate', observation(one, { target: { ...target, specHash: 'h2' } }), 'issue', 'the spec changed'],
    ['server changed: rotate', observation(one, { target: { ...target, server: 'other:5432/db' } }), 'issue', 'the config points at another server'],
    ['rotate annotation: rotate', observation(one, { rotateRequest: rotateRequestHash('x') }), 'issue', 'annotation dbcred.dev/rotate changed'],
    ['legacy raw rotate value already handled: ready', observation({ ...one, rotateRequest: 'x' }, { rotateRequest: rotateRequestHash('x') }), 'ready'],
    ['role dropped outside: rotate now', observation(one, { activeRoleGone: true, now: new Date(T0 + 41 * MIN) }), 'issue', 'the role was dropped outside the operator'],
    ['rotation off, lease over: expire', observation(one, { rotationEnabled: false, now: new Date(T0 + 61 * MIN) }), 'expire'],
    ['rotation off, before lease end: ready (no renewal)', observation(one, { rotationEnabled: false, now: new Date(T0 + 50 * MIN) }), 'ready'],
    ['rotation off, expired this generation: stay expired', observation({}, { rotationEnabled: false, expiredForGeneration: true }), 'stay-expired'],
    ['rotation on, a stale Expired=True: issue again', observation({}, { expiredForGeneration: true }), 'issue'],
    ['target blocked before lease end: blocked, wake at lease end', observation(one, { target: { ok: false, reason: 'RoleNotReady', message: 'm' }, now: new Date(T0 + 41 * MIN) }), 'blocked'],
    ['target blocked after lease end, rotation on: lapse, never expire', observation(one, { target: { ok: false, reason: 'RoleNotReady', message: 'm' }, now: new Date(T0 + 61 * MIN) }), 'lapse'],
    ['static target', observation(one, { target: { ...target, static: true } }), 'static'],
  ];
  for (const [name, obs, action, why] of cases) {
    it(name, () => {
      const d = decide(obs);
      assert.equal(d.action, action);
      if (why !== undefined) assert.equal((d as { why?: string }).why, why);
    });
  }

  it('blocked wakes at the lease end', () => {
    const d = decide(observation(one, { target: { ok: false, reason: 'RoleNotReady', message: 'm' } }));
    assert.equal(d.action === 'blocked' && d.wakeAt?.getTime(), T0 + 60 * MIN);
  });
});

describe('credential policy: settle and transitions', () => {
  const now = new Date(T0 + 10 * MIN);
  const grace = 5 * MIN;

  it('an interrupted rotation (Secret written, status not) promotes the new role and retires the old one with full grace, listing each once', () => {
    const status: DatabaseCredentialStatus = { roles: [held('a', 'active'), held('b', 'pending')], username: 'a' };
    const { status: next, revoke } = settle(status, 'b', now, grace, true);
    assert.deepEqual(revoke, []);
    assert.deepEqual(next.roles?.map((r) => [r.username, r.state]), [['a', 'retiring'], ['b', 'active']]);
    assert.equal(next.roles?.[0]?.revokeAfter, iso(now.getTime() + grace));
    assert.equal(next.username, 'b');
  });

  it('a pending role not in the Secret is revoked; the active one stays', () => {
    const { status: next, revoke } = settle({ roles: [held('a', 'active'), held('b', 'pending')] }, 'a', now, grace, true);
    assert.deepEqual(revoke.map((r) => r.username), ['b']);
    assert.deepEqual(next.roles?.map((r) => r.username), ['a', 'b'], 'listed until revoked');
  });

  it('a status without roles stays as it is (no status write for nothing)', () => {
    const { status: next, revoke } = settle({}, undefined, now, grace, true);
    assert.deepEqual(next, {});
    assert.deepEqual(revoke, []);
  });

  it('retiring roles are revoked only after their grace period', () => {
    const status = { roles: [held('a', 'active'), held('old', 'retiring', { revokeAfter: iso(now.getTime() + 1000) })] };
    assert.deepEqual(settle(status, 'a', now, grace, true).revoke, []);
    assert.deepEqual(settle(status, 'a', new Date(now.getTime() + 1000), grace, true).revoke.map((r) => r.username), ['old']);
  });

  it('repairs a status listing one username twice (written by an older version) without losing a role', () => {
    const roles = normalize([held('a', 'active'), held('a', 'retiring', { revokeAfter: iso(T0) }), held('b', 'active', { issuedAt: new Date(T0 + 1).toISOString() })], now, grace);
    assert.deepEqual(roles.map((r) => [r.username, r.state]), [['a', 'retiring'], ['b', 'active']]);
    assert.equal(roles[0]?.revokeAfter, iso(now.getTime() + grace));
  });

  it('a grace period once granted is never shortened', () => {
    const later = iso(now.getTime() + 60 * MIN);
    const s = promote({ roles: [held('a', 'retiring', { revokeAfter: later }), held('b', 'active'), held('c', 'pending')] }, 'c', now, grace, true);
    assert.equal(s.roles?.find((r) => r.username === 'a')?.revokeAfter, later);
    assert.equal(s.roles?.find((r) => r.username === 'b')?.revokeAfter, iso(now.getTime() + grace));
  });

  it('a first issue needs no restart; a later one does', () => {
    const first = promote({ roles: [held('a', 'pending')] }, 'a', now, grace, true);
    assert.equal(first.restartedFor, first.roles?.[0]?.issuedAt);
    const second = promote({ ...first, roles: [...(first.roles ?? []), held('b', 'pending', { issuedAt: now.toISOString() })] }, 'b', now, grace, true);
    assert.notEqual(second.restartedFor, now.toISOString());
    const afterDrop = promote({ ...without(first, ['a'], true), roles: [held('c', 'pending', { issuedAt: now.toISOString() })] }, 'c', now, grace, true);
    assert.notEqual(afterDrop.restartedFor, now.toISOString(), 'a login replaced after its role was dropped restarts the workloads');
  });

  it('renewal moves expiresAt and renewAt of the active role only', () => {
    const s = renewed({ roles: [held('a', 'active'), held('old', 'retiring', { revokeAfter: iso(T0) })] }, 'a', now, new Date(now.getTime() + lease.ttlMs), lease, true);
    assert.equal(s.expiresAt, iso(now.getTime() + lease.ttlMs));
    assert.equal(s.renewAt, iso(renewTime(now, new Date(now.getTime() + lease.ttlMs), 67).getTime()));
    assert.equal(s.roles?.[1]?.expiresAt, held('old', 'retiring').expiresAt);
  });

  it('switching to a static role retires the dynamic login with full grace', () => {
    const s = retireAll({ roles: [held('a', 'active')] }, now, grace);
    assert.deepEqual(s.roles?.map((r) => [r.state, r.revokeAfter]), [['retiring', iso(now.getTime() + grace)]]);
  });

  it('next wake-up has a floor of one second, even for a deadline long past', () => {
    assert.equal(nextWake({ roles: [held('a', 'active')] }, new Date(T0 + 100 * MIN), true), 1000);
    assert.equal(nextWake({ roles: [held('a', 'active')] }, new Date(T0), true), 40 * MIN + 10);
    assert.equal(nextWake({ roles: [held('a', 'active')] }, new Date(T0), false), 60 * MIN + 10, 'without rotation, the lease end');
    assert.equal(nextWake({}, new Date(T0), true), undefined);
  });

  it('rotate request hashes are short and stable whatever the value length', () => {
    const h = rotateRequestHash('x'.repeat(5000));
    assert.ok(h && h.length < 64);
    assert.equal(h, rotateRequestHash('x'.repeat(5000)));
    assert.notEqual(h, rotateRequestHash('y'));
  });
});

// ---- generated sequences with crashes ----

class Crash extends Error {}

/** A fake world: PostgreSQL's roles, the Secret, the persisted status, a clock; effects that may crash or fail. */
class World {
  pg = new Set<string>();
  secretUser: string | undefined;
  persisted: DatabaseCredentialStatus = {};
  now = T0;
  specHash = 'h1';
  rotate: string | undefined;
  crashIn = -1;
  failRevocations = false;
  lostCommitAck = false;
  faults = true;
  retiredAt = new Map<string, number>();
  counter = 0;
  readonly graceMs = 5 * MIN;

  constructor(private readonly rand: () => number) {}

  private step(): void {
    if (this.crashIn === 0) {
      this.crashIn = -1;
      throw new Crash('killed');
    }
    if (this.crashIn > 0) this.crashIn--;
  }

  readonly fx: Effects = {
    commit: async (s) => {
      this.step();
      this.persisted = structuredClone(s);
      for (const r of s.roles ?? []) if (r.state === 'retiring' && !this.retiredAt.has(r.username)) this.retiredAt.set(r.username, this.now);
      return s;
    },
    createRole: async (r) => {
      this.step();
      this.pg.add(r.username);
      if (this.faults && this.rand() < 0.15) throw new Crash('killed after CREATE ROLE committed');
      if (this.lostCommitAck) throw new Error('connection lost before the COMMIT acknowledgement');
    },
    writeSecret: async (r) => {
      this.step();
      this.secretUser = r.username;
    },
    revokeRole: async (r) => {
      this.step();
      if (this.failRevocations) throw new Error('server unreachable');
      this.pg.delete(r.username);
    },
  };

  /** One reconcile of a live credential, in the reconciler's order. */
  async reconcile(): Promise<string> {
    const now = new Date(this.now);
    const settled = settle(this.persisted, this.secretUser, now, this.graceMs, true);
    const revoked = await runRevocations(settled.status, settled.revoke, true, this.fx);
    let status = await this.fx.commit(revoked.status);
    const tgt: Target = { ...target, specHash: this.specHash };
    const observe = (gone: boolean) => decide({ now, status, secretUser: this.secretUser, rotationEnabled: true, graceMs: this.graceMs, target: tgt, rotateRequest: this.rotate, activeRoleGone: gone, expiredForGeneration: false });
    // The reconciler checks now and then that the active role still exists (and always on renewal).
    const active = activeRole(status);
    let d = observe(active !== undefined && this.rand() < 0.5 && !this.pg.has(active.username));
    if (d.action === 'renew') {
      this.step();
      if (!this.pg.has(d.role.username)) {
        const gone = d.role.username;
        status = await this.fx.commit(without(status, [gone], true));
        d = observe(true);
      } else {
        status = await this.fx.commit(renewed(status, d.role.username, now, d.until, lease, true));
        return 'renewed';
      }
    }
    if (d.action === 'issue') {
      const username = `u${++this.counter}`;
      const expiresAt = new Date(now.getTime() + lease.ttlMs);
      const role: HeldRole = {
        username, state: 'pending', config: 'p/c', role: 'p/r', issuedAt: now.toISOString(), expiresAt: iso(expiresAt.getTime()),
        renewAt: iso(renewTime(now, expiresAt, lease.renewalPercent).getTime()), specHash: this.specHash, rotateRequest: this.rotate, server: target.server,
      };
      await runIssue(status, role, now, this.graceMs, true, this.fx);
    }
    return d.action;
  }

  check(context: string): void {
    const roles = this.persisted.roles ?? [];
    const names = roles.map((r) => r.username);
    assert.equal(new Set(names).size, names.length, `${context}: a username listed twice: ${names}`);
    assert.ok(roles.filter((r) => r.state === 'active').length <= 1, `${context}: two active roles`);
    for (const u of this.pg) assert.ok(names.includes(u), `${context}: role ${u} exists in PostgreSQL but is not listed`);
    for (const r of roles.filter((x) => x.state === 'retiring')) {
      assert.ok(r.revokeAfter, `${context}: retiring ${r.username} has no revokeAfter`);
      const since = this.retiredAt.get(r.username) ?? this.now;
      assert.ok(Date.parse(r.revokeAfter) >= Math.floor((since + this.graceMs) / 1000) * 1000, `${context}: ${r.username} revoked before its grace period`);
    }
  }
}

describe('credential policy: generated sequences of events and crashes', function () {
  this.timeout(60_000);
  const SEQUENCES = 400;
  const STEPS = 60;
  it(`keeps its invariants over ${SEQUENCES} random sequences of ${STEPS} steps, and converges once faults stop`, async () => {
    let crashes = 0;
    let issued = 0;
    for (let seq = 1; seq <= SEQUENCES; seq++) {
      const rand = mulberry32(seq);
      const w = new World(rand);
      const trace: string[] = [];
      for (let step = 0; step < STEPS; step++) {
        const p = rand();
        let what: string;
        if (p < 0.45) {
          w.crashIn = rand() < 0.4 ? Math.floor(rand() * 6) : -1;
          w.failRevocations = rand() < 0.1;
          w.lostCommitAck = rand() < 0.05;
          try {
            what = `reconcile:${await w.reconcile()}`;
            if (what === 'reconcile:issue') issued++;
          } catch (err) {
            if (err instanceof Crash) crashes++;
            what = `reconcile failed (${(err as Error).message})`;
          }
        } else if (p < 0.7) {
          const by = Math.floor(rand() * 70 * MIN);
          w.now += by;
          what = `advance ${Math.round(by / MIN)}m`;
        } else if (p < 0.78) {
          w.rotate = rotateRequestHash(String(rand()));
          what = 'rotate annotation';
        } else if (p < 0.84) {
          w.specHash = `h${Math.floor(rand() * 3)}`;
          what = `spec ${w.specHash}`;
        } else if (p < 0.9) {
          w.secretUser = undefined;
          what = 'Secret deleted';
        } else {
          if (w.secretUser) w.pg.delete(w.secretUser);
          what = 'active role dropped outside';
        }
        trace.push(what);
        w.check(`seed ${seq} after [${trace.join(', ')}]`);
      }
      // Faults stop: a few reconciles (with time for grace periods) bring a working login, and nothing else.
      w.crashIn = -1;
      w.failRevocations = false;
      w.lostCommitAck = false;
      w.faults = false;
      for (let i = 0; i < 4; i++) {
        await w.reconcile();
        w.now += lease.ttlMs / 2;
        w.check(`seed ${seq} converging`);
      }
      await w.reconcile();
      const active = activeRole(w.persisted);
      assert.ok(active, `seed ${seq}: an active role after convergence`);
      assert.equal(w.secretUser, active.username, `seed ${seq}: the Secret holds the active login`);
      assert.ok(w.pg.has(active.username), `seed ${seq}: the active login exists`);
      const stray = [...w.pg].filter((u) => u !== active.username && !(w.persisted.roles ?? []).some((r) => r.username === u && r.state === 'retiring'));
      assert.deepEqual(stray, [], `seed ${seq}: no role besides the active and those in grace`);
    }
    assert.ok(crashes > SEQUENCES, `crashes were injected (${crashes})`);
    assert.ok(issued > SEQUENCES, `issues happened (${issued})`);
  });
});
