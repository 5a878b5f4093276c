// Leader election on a coordination.k8s.io Lease, as client-go's leaderelection does: acquire when the Lease is
// free or expired, renew every retry period, give up leadership when renewals fail for the renew deadline, and
// release the Lease on a clean shutdown so a standby takes over at once. client-node has no such helper.
import * as k8s from '@kubernetes/client-node';
import type { Logger } from '../logger.js';
import { apiErrorMessage, isConflict, isNotFound, type KubeClient } from './client.js';

export interface LeaderElectionOptions {
  client: KubeClient;
  logger: Logger;
  namespace: string;
  name: string;
  identity: string;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class LeaderElector {
  private readonly leaseDurationMs: number;
  private readonly renewDeadlineMs: number;
  private readonly retryPeriodMs: number;
  private stopped = false;
  private leading = false;

  constructor(private readonly opts: LeaderElectionOptions) {
    this.leaseDurationMs = opts.leaseDurationMs ?? 15_000;
    this.renewDeadlineMs = opts.renewDeadlineMs ?? 10_000;
    this.retryPeriodMs = opts.retryPeriodMs ?? 2_000;
  }

  /** Resolves once this process holds the Lease; then keeps renewing it and calls onLost if it cannot. */
  async run(onLost: () => void): Promise<void> {
    while (!this.stopped && !(await this.tryAcquireOrRenew())) await sleep(this.retryPeriodMs);
    if (this.stopped) return;
    this.leading = true;
    this.opts.logger.info('became leader', { lease: `${this.opts.namespace}/${this.opts.name}`, identity: this.opts.identity });
    void this.renewLoop(onLost);
  }

  private async renewLoop(onLost: () => void): Promise<void> {
    let lastRenew = Date.now();
    while (!this.stopped) {
      await sleep(this.retryPeriodMs);
      if (this.stopped) return;
      if (await this.tryAcquireOrRenew()) {
        lastRenew = Date.now();
      } else if (Date.now() - lastRenew > this.renewDeadlineMs) {
        this.leading = false;
        this.opts.logger.error('lost leadership', { lease: `${this.opts.namespace}/${this.opts.name}` });
        onLost();
        return;
      }
    }
  }

  /** Gives the Lease up (on a clean shutdown) so that another replica need not wait for it to expire. */
  async release(): Promise<void> {
    this.stopped = true;
    if (!this.leading) return;
    this.leading = false;
    try {
      const lease = await this.read();
      if (lease?.spec?.holderIdentity !== this.opts.identity) return;
      lease.spec = { ...lease.spec, holderIdentity: undefined, renewTime: new k8s.V1MicroTime(Date.now() - this.leaseDurationMs), leaseDurationSeconds: 1 };
      await this.replace(lease);
    } catch (err) {
      this.opts.logger.warn('could not release the lease', { error: apiErrorMessage(err) });
    }
  }

  private async read(): Promise<k8s.V1Lease | undefined> {
    this.opts.client.count('get');
    try {
      return await this.opts.client.coordination.readNamespacedLease({ namespace: this.opts.namespace, name: this.opts.name });
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  private async replace(lease: k8s.V1Lease): Promise<void> {
    this.opts.client.count('update');
    await this.opts.client.coordination.replaceNamespacedLease({ namespace: this.opts.namespace, name: this.opts.name, body: lease });
  }

  private async tryAcquireOrRenew(): Promise<boolean> {
    const now = Date.now();
    const spec = (acquireTime: Date): k8s.V1LeaseSpec => ({
      holderIdentity: this.opts.identity,
      leaseDurationSeconds: Math.ceil(this.leaseDurationMs / 1000),
      acquireTime: new k8s.V1MicroTime(acquireTime.getTime()),
      renewTime: new k8s.V1MicroTime(now),
    });
    try {
      const lease = await this.read();
      if (!lease) {
        this.opts.client.count('create');
        await this.opts.client.coordination.createNamespacedLease({
          namespace: this.opts.namespace,
          body: { metadata: { name: this.opts.name, namespace: this.opts.namespace }, spec: spec(new Date(now)) },
        });
        return true;
      }
      const holder = lease.spec?.holderIdentity;
      const renewed = lease.spec?.renewTime ? new Date(lease.spec.renewTime).getTime() : 0;
      const duration = (lease.spec?.leaseDurationSeconds ?? 0) * 1000;
      const mine = holder === this.opts.identity;
      if (!mine && holder && renewed + duration > now) return false; // someone else holds a live lease
      const acquired = mine && lease.spec?.acquireTime ? new Date(lease.spec.acquireTime) : new Date(now);
      await this.replace({ ...lease, spec: spec(acquired) });
      return true;
    } catch (err) {
      if (!isConflict(err)) this.opts.logger.warn('leader election request failed', { error: apiErrorMessage(err) });
      return false;
    }
  }
}
