// The orphan sweep: every role this operator creates carries a COMMENT ON ROLE marker with its credential's
// namespace/name/uid. A marked role whose credential no longer exists (or is a different object with the same
// name) is revoked. This catches what a finalizer cannot: a credential force-deleted without its finalizer, or
// roles left by an operator whose status writes were lost.
import { isTrue } from '../api/conditions.js';
import { isNotFound } from '../k8s/client.js';
import { countCredentialEvent } from '../metrics.js';
import type { DatabaseCredential } from '../api/types.js';
import { keyOf, resolveConfig, type OperatorContext } from './context.js';

export class OrphanSweeper {
  private timer: NodeJS.Timeout | undefined;
  private running = false;

  constructor(
    private readonly ctx: OperatorContext,
    private readonly periodMs: number,
  ) {}

  start(): void {
    if (this.periodMs <= 0) return;
    // First sweep soon after start (an operator that was down catches up), then periodically.
    const tick = () => void this.sweep().finally(() => (this.timer = setTimeout(tick, this.periodMs).unref()));
    this.timer = setTimeout(tick, Math.min(this.periodMs, 5_000)).unref();
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
  }

  /** One pass over every Ready config's server; returns the usernames it revoked. */
  async sweep(): Promise<string[]> {
    if (this.running) return [];
    this.running = true;
    const revoked: string[] = [];
    const seenServers = new Set<string>();
    try {
      for (const config of this.ctx.informers.configs.list()) {
        if (!isTrue(config.status?.conditions, 'Ready')) continue;
        try {
          const resolved = await resolveConfig(this.ctx, config);
          const server = `${resolved.settings.host}:${resolved.settings.port}`;
          if (seenServers.has(server)) continue;
          seenServers.add(server);
          for (const { username, marker } of await resolved.admin.listMarkedRoles()) {
            const why = await this.orphanReason(marker.namespace, marker.name, marker.uid, username);
            if (!why) continue;
            await resolved.admin.revokeRole(username);
            revoked.push(username);
            countCredentialEvent('orphan_revoked');
            this.ctx.logger.info('orphaned role revoked', { username, credential: keyOf(marker.namespace, marker.name), config: resolved.key, why });
            this.ctx.events.record(config, 'Normal', 'OrphanRevoked', `revoked role ${username}: ${why}`);
          }
        } catch (err) {
          this.ctx.logger.warn('orphan sweep failed for a config', { config: keyOf(config.metadata.namespace, config.metadata.name), error: err instanceof Error ? err.message : String(err) });
        }
      }
    } finally {
      this.running = false;
    }
    return revoked;
  }

  /**
   * Why a marked role is an orphan, or undefined if it is not (or we cannot tell: never revoke on doubt). A role
   * is listed in its credential's status.roles before it is created and stays there until it is revoked, so a
   * role missing from the live status of its live credential has leaked, like one whose credential is gone.
   * The cache answers "not an orphan" quickly; every "orphan" is confirmed with a live read.
   */
  private async orphanReason(namespace: string, name: string, uid: string, username: string): Promise<string | undefined> {
    // A namespace this operator does not watch (namespaced install) is not ours to judge, nor to read.
    if (!this.ctx.informers.credentials.covers(namespace)) return undefined;
    const holds = (c: DatabaseCredential | undefined) => c?.metadata.uid === uid && (c.status?.roles ?? []).some((r) => r.username === username);
    if (holds(this.ctx.informers.credentials.get(keyOf(namespace, name)))) return undefined;
    let live: DatabaseCredential | undefined;
    try {
      live = await this.ctx.client.getResource<DatabaseCredential>('credential', namespace, name);
    } catch (err) {
      if (!isNotFound(err)) return undefined;
    }
    if (!live || live.metadata.uid !== uid) return `its DatabaseCredential ${namespace}/${name} no longer exists`;
    return holds(live) ? undefined : `DatabaseCredential ${namespace}/${name} does not hold it (not in status.roles)`;
  }
}
