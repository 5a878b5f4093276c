// Leader election on a coordination.k8s.io Lease, after client-go's tools/leaderelection (client-node has none):
//   - Time is only ever compared on this process's own monotonic clock. A foreign Lease is expired when its record
//     (holder, renewTime, transitions, resourceVersion) has not changed for its leaseDuration since this process
//     last saw it change; the holder's renewTime is never compared with our clock, so clock skew cannot make a live
//     Lease look expired or a dead one look live.
//   - Writes are optimistic: replace carries the resourceVersion that was read, so two candidates cannot both win
//     (the loser gets 409, which is a failure, never a success). Taking the Lease from another holder increments
//     leaseTransitions.
//   - Every request is aborted when it runs past its deadline, and loss is judged on a timer from the last
//     successful renewal, so a hung request cannot hide a lost Lease. Seeing another holder while leading is a
//     loss at once.
import { performance } from 'node:perf_hooks';
import { type Cancel, type Clock, realClock } from '../controller/clock.js';
import type { Logger } from '../logger.js';
import { apiErrorMessage, isConflict, type KubeClient } from './client.js';

/** A coordination.k8s.io/v1 Lease as it travels: times are RFC 3339 strings with microseconds (MicroTime). */
export interface Lease {
  apiVersion?: string;
  kind?: string;
  metadata?: { name?: string; namespace?: string; resourceVersion?: string; [field: string]: unknown };
  spec?: { holderIdentity?: string; leaseDurationSeconds?: number; acquireTime?: string; renewTime?: string; leaseTransitions?: number };
}

/** A MicroTime: RFC 3339 with six fractional digits, as the API server writes it. */
export function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

/** The Lease calls the elector makes; each is aborted by signal. A seam for unit tests. */
export interface LeaseAPI {
  get(signal: AbortSignal): Promise<Lease | undefined>;
  create(lease: Lease, signal: AbortSignal): Promise<Lease>;
  /** Must be refused (409) when lease.metadata.resourceVersion is no longer current. */
  replace(lease: Lease, signal: AbortSignal): Promise<Lease>;
}

export function kubeLeaseAPI(client: KubeClient, namespace: string, name: string): LeaseAPI {
  const collection = `/apis/coordination.k8s.io/v1/namespaces/${namespace}/leases`;
  const path = `${collection}/${encodeURIComponent(name)}`;
  const typed = (lease: Lease): Lease => ({ apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', ...lease });
  return {
    get: (signal) => client.getOptional<Lease>(path, signal),
    create(lease, signal) {
      client.count('create');
      return client.rest.request<Lease>('POST', collection, { body: typed(lease), signal });
    },
    replace(lease, signal) {
      client.count('update');
      return client.rest.request<Lease>('PUT', path, { body: typed(lease), signal });
    },
  };
}

/**
 * A Clock that never jumps: wall time at process start plus monotonic time since. The elector measures every
 * interval on it, so an NTP step on this machine cannot shorten or stretch a lease.
 */
export const monotonicClock: Clock = {
  now: () => new Date(performance.timeOrigin + performance.now()),
  setTimeout: (fn, ms) => realClock.setTimeout(fn, ms),
};

export interface LeaderElectionOptions {
  client: KubeClient;
  logger: Logger;
  namespace: string;
  name: string;
  identity: string;
  /** How long a standby waits, after the Lease last changed, before it takes the Lease over. Default 15s. */
  leaseDurationMs?: number;
  /** The leader gives up when it has not renewed for this long. Shorter than leaseDurationMs. Default 10s. */
  renewDeadlineMs?: number;
  /** Time between attempts to acquire or renew. Default 2s. */
  retryPeriodMs?: number;
  /** Default: monotonicClock. */
  clock?: Clock;
  /** Default: the Lease namespace/name through client. */
  api?: LeaseAPI;
}

/** The outcome of one attempt: we hold the Lease now, another live holder has it, or the attempt failed. */
type Attempt = 'held' | 'heldByOther' | 'failed';

/** What identifies one version of the Lease record: any change to these restarts the expiry count. */
function recordOf(lease: Lease): string {
  const s = lease.spec ?? {};
  return JSON.stringify([
    s.holderIdentity ?? '',
    s.renewTime ? new Date(s.renewTime).toISOString() : '',
    s.leaseTransitions ?? 0,
    s.leaseDurationSeconds ?? 0,
    lease.metadata?.resourceVersion ?? '',
  ]);
}

export class LeaderElector {
  private readonly leaseDurationMs: number;
  private readonly renewDeadlineMs: number;
  private readonly retryPeriodMs: number;
  private readonly clock: Clock;
  private readonly api: LeaseAPI;
  private readonly lease: string;
  private stopped = false;
  private leading = false;
  /** The Lease as last read or written, and when (on this.clock) its record last changed. */
  private observed: Lease | undefined;
  private observedRecord = '';
  private observedAtMs = 0;
  private lastRenewMs = 0;
  private cancelDeadline: Cancel | undefined;
  private cancelNext: Cancel | undefined;
  private wake: (() => void) | undefined;

  constructor(private readonly opts: LeaderElectionOptions) {
    this.leaseDurationMs = opts.leaseDurationMs ?? 15_000;
    this.renewDeadlineMs = opts.renewDeadlineMs ?? 10_000;
    this.retryPeriodMs = opts.retryPeriodMs ?? 2_000;
    if (!(this.leaseDurationMs > this.renewDeadlineMs && this.renewDeadlineMs > this.retryPeriodMs && this.retryPeriodMs > 0)) {
      throw new Error('leader election wants leaseDuration > renewDeadline > retryPeriod > 0');
    }
    this.clock = opts.clock ?? monotonicClock;
    this.api = opts.api ?? kubeLeaseAPI(opts.client, opts.namespace, opts.name);
    this.lease = `${opts.namespace}/${opts.name}`;
  }

  get isLeader(): boolean {
    return this.leading;
  }

  /**
   * Resolves once this process holds the Lease (or release() was called first); then keeps renewing it and calls
   * onLost once, at the moment it can no longer be sure it holds the Lease.
   */
  async run(onLost: () => void): Promise<void> {
    while (!this.stopped) {
      const startedMs = this.nowMs();
      if ((await this.attempt(this.renewDeadlineMs)) === 'held') {
        if (this.stopped) return; // released while the request ran: release() did not know to give it back
        this.leading = true;
        this.lastRenewMs = startedMs;
        this.opts.logger.info('became leader', { lease: this.lease, identity: this.opts.identity });
        this.armDeadline(onLost);
        this.scheduleRenew(onLost);
        return;
      }
      await this.sleep(this.retryPeriodMs);
    }
  }

  /** Gives the Lease up (on a clean shutdown) so that another replica need not wait for it to expire. */
  async release(): Promise<void> {
    const wasLeading = this.leading;
    this.stop();
    if (!wasLeading) return;
    const ac = new AbortController();
    const cancel = this.clock.setTimeout(() => ac.abort(new Error('lease release timed out')), this.retryPeriodMs);
    try {
      const lease = await this.bounded(this.api.get(ac.signal), ac.signal);
      if (lease?.spec?.holderIdentity !== this.opts.identity) return;
      const now = microTime(this.nowMs());
      // As client-go: no holder, a 1s duration, transitions kept; resourceVersion makes it a no-op if taken.
      lease.spec = { leaseDurationSeconds: 1, acquireTime: now, renewTime: now, leaseTransitions: lease.spec.leaseTransitions };
      await this.bounded(this.api.replace(lease, ac.signal), ac.signal);
    } catch (err) {
      this.opts.logger.warn('could not release the lease', { lease: this.lease, error: apiErrorMessage(err) });
    } finally {
      cancel();
    }
  }

  private stop(): void {
    this.stopped = true;
    this.leading = false;
    this.cancelDeadline?.();
    this.cancelNext?.();
    this.wake?.();
  }

  private nowMs(): number {
    return this.clock.now().getTime();
  }

  private sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      this.wake = resolve;
      this.cancelNext = this.clock.setTimeout(resolve, ms);
    });
  }

  /** Loss is a timer from the last renewal: it fires even while a renew request hangs. */
  private armDeadline(onLost: () => void): void {
    this.cancelDeadline?.();
    const remaining = this.lastRenewMs + this.renewDeadlineMs - this.nowMs();
    this.cancelDeadline = this.clock.setTimeout(() => this.lose(onLost, 'not renewed within the renew deadline'), remaining);
  }

  private scheduleRenew(onLost: () => void): void {
    this.cancelNext = this.clock.setTimeout(() => void this.renew(onLost), this.retryPeriodMs);
  }

  private async renew(onLost: () => void): Promise<void> {
    if (!this.leading) return;
    const startedMs = this.nowMs();
    // No request may outlive the deadline: past it the renewal would come too late to count anyway.
    const outcome = await this.attempt(this.lastRenewMs + this.renewDeadlineMs - startedMs);
    if (!this.leading) return; // lost (deadline timer) or released while the request ran
    if (outcome === 'held') {
      this.lastRenewMs = startedMs;
      this.armDeadline(onLost);
    } else if (outcome === 'heldByOther') {
      return this.lose(onLost, `the lease is held by ${this.observed?.spec?.holderIdentity ?? 'another holder'}`);
    }
    this.scheduleRenew(onLost);
  }

  private lose(onLost: () => void, reason: string): void {
    if (!this.leading) return;
    this.stop();
    this.opts.logger.error('lost leadership', { lease: this.lease, identity: this.opts.identity, reason });
    onLost();
  }

  /** Settles when the promise does or the signal fires, whichever is first: a request that ignores its signal cannot hang us. */
  private bounded<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const onAbort = () => reject(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
      if (signal.aborted) return onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
    });
  }

  private observe(lease: Lease): void {
    const record = recordOf(lease);
    if (record !== this.observedRecord) {
      this.observedRecord = record;
      this.observedAtMs = this.nowMs();
    }
    this.observed = lease;
  }

  /** A foreign Lease is expired when its record has not changed for its own leaseDuration, on our clock. */
  private expired(lease: Lease): boolean {
    const durationMs = (lease.spec?.leaseDurationSeconds || Math.ceil(this.leaseDurationMs / 1000)) * 1000;
    return this.nowMs() >= this.observedAtMs + durationMs;
  }

  /** One try to acquire or renew, with every request aborted after timeoutMs. */
  private async attempt(timeoutMs: number): Promise<Attempt> {
    if (timeoutMs <= 0) return 'failed';
    const ac = new AbortController();
    const cancel = this.clock.setTimeout(() => ac.abort(new Error(`lease request timed out after ${timeoutMs}ms`)), timeoutMs);
    try {
      return await this.tryAcquireOrRenew(ac.signal);
    } catch (err) {
      // A conflict is someone else's write winning the race: expected, and still a failed attempt.
      const level = isConflict(err) ? 'debug' : 'warn';
      this.opts.logger.log(level, 'leader election request failed', { lease: this.lease, error: apiErrorMessage(err) });
      return 'failed';
    } finally {
      cancel();
    }
  }

  private async tryAcquireOrRenew(signal: AbortSignal): Promise<Attempt> {
    const old = await this.bounded(this.api.get(signal), signal);
    const desired = (now: string, acquireTime: string | undefined, transitions: number): NonNullable<Lease['spec']> => ({
      holderIdentity: this.opts.identity,
      leaseDurationSeconds: Math.ceil(this.leaseDurationMs / 1000),
      acquireTime: acquireTime ? microTime(Date.parse(acquireTime)) : now,
      renewTime: now,
      leaseTransitions: transitions,
    });
    if (!old) {
      const now = microTime(this.nowMs());
      const body: Lease = { metadata: { name: this.opts.name, namespace: this.opts.namespace }, spec: desired(now, undefined, 0) };
      this.observe(await this.bounded(this.api.create(body, signal), signal));
      return 'held';
    }
    this.observe(old);
    const holder = old.spec?.holderIdentity;
    const mine = holder === this.opts.identity;
    if (holder && !mine && !this.expired(old)) return 'heldByOther';
    const now = microTime(this.nowMs());
    const transitions = old.spec?.leaseTransitions ?? 0;
    // old.metadata carries the resourceVersion we read: if anyone wrote in between, this is refused with 409.
    const body: Lease = {
      ...old,
      spec: mine ? desired(now, old.spec?.acquireTime, transitions) : desired(now, undefined, transitions + 1),
    };
    this.observe(await this.bounded(this.api.replace(body, signal), signal));
    return 'held';
  }
}
