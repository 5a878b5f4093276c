import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import winston from 'winston';
import { FakeClock } from '../../src/controller/clock.js';
import type { KubeClient } from '../../src/k8s/client.js';
import { LeaderElector, microTime, type Lease, type LeaseAPI } from '../../src/k8s/leaderElection.js';
import { ApiError } from '../../src/k8s/rest.js';

const HOUR = 3_600_000;

async function flush(): Promise<void> {
  for (let i = 0; i < 10; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

/** An API server for one Lease: resourceVersions, 404 when absent, 409 on a stale resourceVersion. */
class FakeLeaseServer implements LeaseAPI {
  lease: Lease | undefined;
  private rv = 0;
  /** While true, every request hangs forever and ignores its signal (a stopped API server). */
  hang = false;
  /** Runs just before a replace is applied (another writer racing us). */
  beforeReplace: (() => void) | undefined;
  replaces = 0;

  async get(): Promise<Lease | undefined> {
    if (this.hang) return new Promise(() => undefined);
    return this.lease && structuredClone(this.lease);
  }

  async create(lease: Lease): Promise<Lease> {
    if (this.hang) return new Promise(() => undefined);
    if (this.lease) throw new ApiError(409, { reason: 'AlreadyExists' });
    return this.store(lease);
  }

  async replace(lease: Lease): Promise<Lease> {
    if (this.hang) return new Promise(() => undefined);
    this.beforeReplace?.();
    if (!this.lease || lease.metadata?.resourceVersion !== this.lease.metadata?.resourceVersion) {
      throw new ApiError(409, { reason: 'Conflict' });
    }
    this.replaces++;
    return this.store(lease);
  }

  /** Another process writes the Lease (its own clock, its own idea of time). */
  write(spec: NonNullable<Lease['spec']>): void {
    this.store({ metadata: { name: 'lease', namespace: 'ns' }, spec });
  }

  private store(lease: Lease): Lease {
    this.lease = structuredClone({ ...lease, metadata: { ...lease.metadata, resourceVersion: String(++this.rv) } });
    return structuredClone(this.lease);
  }
}

interface Setup {
  clock: FakeClock;
  server: FakeLeaseServer;
  elector: LeaderElector;
  lost: number[];
  lines: string[];
  /** Advances the fake clock in small steps, letting the elector's requests settle in between. */
  advance(ms: number): Promise<void>;
}

function setup(server = new FakeLeaseServer()): Setup {
  const clock = new FakeClock();
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      lines.push((JSON.parse(chunk.toString()) as { message: string }).message);
      callback();
    },
  });
  const logger = winston.createLogger({ format: winston.format.json(), transports: [new winston.transports.Stream({ stream })] });
  const elector = new LeaderElector({
    client: undefined as unknown as KubeClient, // never used: api is given
    logger,
    namespace: 'ns',
    name: 'lease',
    identity: 'me',
    leaseDurationMs: 15_000,
    renewDeadlineMs: 10_000,
    retryPeriodMs: 2_000,
    clock,
    api: server,
  });
  const advance = async (ms: number) => {
    await flush();
    for (let done = 0; done < ms; done += 100) {
      clock.advance(Math.min(100, ms - done));
      await flush();
    }
  };
  return { clock, server, elector, lost: [], lines, advance };
}

/** Starts run(); returns a function telling whether it has resolved (this process leads). */
function start(s: Setup): () => boolean {
  let leading = false;
  void s.elector.run(() => s.lost.push(s.clock.now().getTime())).then(() => (leading = true));
  return () => leading;
}

function foreign(s: Setup, renewTime: number, transitions = 3): NonNullable<Lease['spec']> {
  return {
    holderIdentity: 'other',
    leaseDurationSeconds: 15,
    acquireTime: microTime(renewTime),
    renewTime: microTime(renewTime),
    leaseTransitions: transitions,
  };
}

describe('LeaderElector', () => {
  it('creates the Lease when there is none and leads', async () => {
    const s = setup();
    const leading = start(s);
    await s.advance(0);
    assert.equal(leading(), true);
    assert.equal(s.server.lease?.spec?.holderIdentity, 'me');
    assert.equal(s.server.lease?.spec?.leaseTransitions, 0);
  });

  it('takes over a foreign Lease whose renewTime is an hour in the future once it has not changed for leaseDuration', async () => {
    const s = setup();
    s.server.write(foreign(s, s.clock.now().getTime() + HOUR));
    const leading = start(s);
    await s.advance(12_000);
    assert.equal(leading(), false, 'the record was seen only 12s ago: the holder may be alive');
    await s.advance(6_000);
    assert.equal(leading(), true, 'the record has not changed for 15s on our clock: expired, whatever its renewTime says');
    assert.equal(s.server.lease?.spec?.holderIdentity, 'me');
  });

  it('does not take over a foreign Lease whose renewTime is an hour in the past while its holder keeps renewing', async () => {
    const s = setup();
    const skewedNow = () => s.clock.now().getTime() - HOUR; // the holder's clock is an hour behind ours
    s.server.write(foreign(s, skewedNow()));
    const leading = start(s);
    for (let i = 0; i < 30; i++) {
      await s.advance(2_000);
      s.server.write(foreign(s, skewedNow()));
    }
    assert.equal(leading(), false, 'a Lease that keeps changing is alive, however old its renewTime looks');
    assert.equal(s.server.lease?.spec?.holderIdentity, 'other');
  });

  it('acquiring from an expired foreign holder increments leaseTransitions and keeps the resourceVersion precondition', async () => {
    const s = setup();
    s.server.write(foreign(s, s.clock.now().getTime() - HOUR, 7));
    const leading = start(s);
    await s.advance(20_000);
    assert.equal(leading(), true);
    const spec = s.server.lease?.spec;
    assert.equal(spec?.holderIdentity, 'me');
    assert.equal(spec?.leaseTransitions, 8);
    // Renewals by the same holder keep the count and the acquireTime.
    const acquired = new Date(spec?.acquireTime ?? 0).getTime();
    await s.advance(5_000);
    assert.equal(s.server.lease?.spec?.leaseTransitions, 8);
    assert.equal(new Date(s.server.lease?.spec?.acquireTime ?? 0).getTime(), acquired);
    assert.ok(new Date(s.server.lease?.spec?.renewTime ?? 0).getTime() > acquired, 'renewed');
  });

  it('takes over a released Lease (no holder) at once', async () => {
    const s = setup();
    s.server.write({ leaseDurationSeconds: 1, leaseTransitions: 2 });
    const leading = start(s);
    await s.advance(0);
    assert.equal(leading(), true);
    assert.equal(s.server.lease?.spec?.leaseTransitions, 3);
  });

  it('a conflict (409) is not an acquisition', async () => {
    const s = setup();
    s.server.write(foreign(s, s.clock.now().getTime()));
    // Whenever we try to write, the other holder renews first: our replace carries a stale resourceVersion.
    s.server.beforeReplace = () => s.server.write(foreign(s, s.clock.now().getTime()));
    const leading = start(s);
    await s.advance(60_000);
    assert.equal(leading(), false);
    assert.equal(s.server.replaces, 0);
    assert.equal(s.server.lease?.spec?.holderIdentity, 'other');
  });

  it('a conflict (409) is not a renewal: a leader whose renewals all conflict loses within the renew deadline', async () => {
    const s = setup();
    const leading = start(s);
    await s.advance(0);
    assert.equal(leading(), true);
    const lastRenew = s.clock.now().getTime();
    // Someone keeps bumping the resourceVersion (holder unchanged) just before each of our writes.
    s.server.beforeReplace = () => {
      const lease = s.server.lease;
      if (lease?.spec) s.server.write({ ...lease.spec });
    };
    await s.advance(12_000);
    assert.equal(s.lost.length, 1, 'onLost was called once');
    assert.ok((s.lost[0] ?? Infinity) <= lastRenew + 10_000, 'within the renew deadline');
  });

  it('a hung renew request leads to onLost within the renew deadline', async () => {
    const s = setup();
    const leading = start(s);
    await s.advance(4_000); // two renewals
    assert.equal(leading(), true);
    const lastRenew = s.clock.now().getTime(); // the renewal due now has just succeeded
    s.server.hang = true;
    await s.advance(9_000);
    assert.equal(s.lost.length, 0, 'still within the deadline');
    await s.advance(3_000);
    assert.equal(s.lost.length, 1, 'lost although no request ever returned');
    assert.ok((s.lost[0] ?? Infinity) <= lastRenew + 10_000);
    assert.ok(s.lines.includes('lost leadership'));
  });

  it('a leader that sees another holder loses at once, without waiting for the deadline', async () => {
    const s = setup();
    const leading = start(s);
    await s.advance(0);
    assert.equal(leading(), true);
    const stolenAt = s.clock.now().getTime();
    s.server.write(foreign(s, stolenAt));
    await s.advance(2_100); // the next renewal
    assert.equal(s.lost.length, 1);
    assert.ok((s.lost[0] ?? Infinity) <= stolenAt + 2_100);
    assert.equal(s.server.lease?.spec?.holderIdentity, 'other', 'the deposed leader did not write');
  });

  it('release gives the Lease up so that a standby takes it at once', async () => {
    const s = setup();
    const leading = start(s);
    await s.advance(0);
    assert.equal(leading(), true);
    await s.elector.release();
    assert.equal(s.server.lease?.spec?.holderIdentity, undefined);
    await s.advance(30_000);
    assert.equal(s.lost.length, 0, 'a release is not a loss');
    assert.equal(s.elector.isLeader, false);
  });
});
