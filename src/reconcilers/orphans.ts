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
            if (await this.credentialExists(marker.namespace, marker.name, marker.uid)) continue;
            await resolved.admin.revokeRole(username);
            revoked.push(username);
            countCredentialEvent('orphan_revoked');
            this.ctx.logger.info('orphaned role revoked', { username, credential: keyOf(marker.namespace, marker.name), config: resolved.key });
            this.ctx.events.record(config, 'Normal', 'OrphanRevoked', `revoked role ${username}: its DatabaseCredential ${marker.namespace}/${marker.name} no longer exists`);
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

  /** The cache says yes quickly; a "no" is confirmed with a live read, so a just-created credential is never swept. */
  private async credentialExists(namespace: string, name: string, uid: string): Promise<boolean> {
    const cached = this.ctx.informers.credentials.get(keyOf(namespace, name));
    if (cached?.metadata.uid === uid) return true;
    try {
      const live = await this.ctx.client.getResource<DatabaseCredential>('credential', namespace, name);
      return live?.metadata.uid === uid;
    } catch (err) {
      if (isNotFound(err)) return false;
      return true; // cannot tell: never revoke on doubt
    }
  }
}
