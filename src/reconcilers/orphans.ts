// The orphan sweep: every role this operator creates carries a COMMENT ON ROLE marker naming its installation, its
// credential's namespace/name/uid and the role itself. A role marked by this installation whose credential no
// longer exists (or is a different object with the same name, or does not hold it) is revoked. This catches what
// a finalizer cannot: a credential force-deleted without its finalizer, or roles left by an operator whose status
// writes were lost. Another installation's roles on the same server are never touched; an old-format marker (no
// installation) proves nothing, so such a role is re-marked when one of our credentials holds it and otherwise
// only counted (dbcred_orphan_sweep_unproven_roles), never revoked.
import { isTrue } from '../api/conditions.js';
import { isNotFound } from '../k8s/client.js';
import { countCredentialEvent, unprovenRoles } from '../metrics.js';
import { RoleNotOursError, type MarkedRole, type RoleAdmin } from '../postgres/roleAdmin.js';
import { isLegacyMarker } from '../postgres/statements.js';
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
    const unproven: string[] = [];
    const seenServers = new Set<string>();
    try {
      for (const config of this.ctx.informers.configs.list()) {
        if (!isTrue(config.status?.conditions, 'Ready')) continue;
        try {
          const resolved = await resolveConfig(this.ctx, config);
          const server = `${resolved.settings.host}:${resolved.settings.port}`;
          if (seenServers.has(server)) continue;
          seenServers.add(server);
          for (const role of await resolved.admin.listMarkedRoles()) {
            try {
              const swept = await this.sweepRole(resolved.admin, role);
              if (swept.outcome === 'unproven') unproven.push(role.username);
              if (swept.outcome === 'revoked') {
                revoked.push(role.username);
                this.ctx.events.record(config, 'Normal', 'OrphanRevoked', `revoked role ${role.username}: ${swept.why}`);
              }
            } catch (err) {
              // One role that fails (a revocation PostgreSQL refuses) does not stop the others.
              this.ctx.logger.warn('orphan sweep failed for a role', { username: role.username, config: resolved.key, error: err instanceof Error ? err.message : String(err) });
            }
          }
        } catch (err) {
          this.ctx.logger.warn('orphan sweep failed for a config', { config: keyOf(config.metadata.namespace, config.metadata.name), error: err instanceof Error ? err.message : String(err) });
        }
      }
      unprovenRoles.set(unproven.length);
      if (unproven.length) {
        this.ctx.logger.warn('roles with an operator marker that this installation cannot prove are its own; not swept', {
          count: unproven.length,
          usernames: unproven.slice(0, 20),
        });
      }
    } finally {
      this.running = false;
    }
    return revoked;
  }

  /**
   * One marked role: another installation's is left alone; an old-format marker is replaced when one of our
   * credentials holds the role, and is otherwise unproven; ours is revoked when its credential does not hold it.
   */
  private async sweepRole(admin: RoleAdmin, { username, marker, comment }: MarkedRole): Promise<{ outcome: 'kept' | 'unproven' } | { outcome: 'revoked'; why: string }> {
    const installation = this.ctx.installation;
    const credential = keyOf(marker.namespace, marker.name);
    if (isLegacyMarker(marker)) {
      if (!(await this.holds(marker.namespace, marker.name, marker.uid, username))) return { outcome: 'unproven' };
      if (await admin.remarkRole({ installation, namespace: marker.namespace, name: marker.name, uid: marker.uid, username }, comment)) {
        countCredentialEvent('remarked');
        this.ctx.logger.info('old-format role marker replaced by this installation', { username, credential });
      }
      return { outcome: 'kept' };
    }
    if (marker.installation !== installation) return { outcome: 'kept' }; // another installation's role
    if (marker.username !== username) return { outcome: 'unproven' }; // a marker copied onto another role
    const why = await this.orphanReason(marker.namespace, marker.name, marker.uid, username);
    if (!why) return { outcome: 'kept' };
    try {
      await admin.revokeRole(username, { installation, uid: marker.uid, acceptLegacy: false });
    } catch (err) {
      if (!(err instanceof RoleNotOursError)) throw err;
      this.ctx.logger.warn('orphan sweep refused to revoke a marked role', { username, credential, why: err.message });
      return { outcome: 'unproven' };
    }
    countCredentialEvent('orphan_revoked');
    this.ctx.logger.info('orphaned role revoked', { username, credential, why });
    return { outcome: 'revoked', why };
  }

  /**
   * Where the role stands with its credential: held (listed in status.roles of the credential with that uid),
   * gone (no such credential, or another object of that name), not-held (it exists and does not list the role), or
   * unknown (a namespace this operator does not watch, or the API did not answer: never act on doubt). A role is
   * listed in its credential's status.roles before it is created and until it is revoked, so a role missing from
   * the live status of its live credential has leaked. The cache answers "held" quickly; anything else is
   * confirmed with a live read.
   */
  private async standing(namespace: string, name: string, uid: string, username: string): Promise<'held' | 'gone' | 'not-held' | 'unknown'> {
    // A namespace this operator does not watch (namespaced install) is not ours to judge, nor to read.
    if (!this.ctx.informers.credentials.covers(namespace)) return 'unknown';
    const holds = (c: DatabaseCredential) => (c.status?.roles ?? []).some((r) => r.username === username);
    const cached = this.ctx.informers.credentials.get(keyOf(namespace, name));
    if (cached?.metadata.uid === uid && holds(cached)) return 'held';
    let live: DatabaseCredential | undefined;
    try {
      live = await this.ctx.client.getResource<DatabaseCredential>('credential', namespace, name);
    } catch (err) {
      if (!isNotFound(err)) return 'unknown';
    }
    if (!live || live.metadata.uid !== uid) return 'gone';
    return holds(live) ? 'held' : 'not-held';
  }

  /** Whether this installation's credential namespace/name with this uid holds the role. */
  private async holds(namespace: string, name: string, uid: string, username: string): Promise<boolean> {
    return (await this.standing(namespace, name, uid, username)) === 'held';
  }

  /** Why a marked role of this installation is an orphan, or undefined if it is not (or we cannot tell). */
  private async orphanReason(namespace: string, name: string, uid: string, username: string): Promise<string | undefined> {
    switch (await this.standing(namespace, name, uid, username)) {
      case 'gone':
        return `its DatabaseCredential ${namespace}/${name} no longer exists`;
      case 'not-held':
        return `DatabaseCredential ${namespace}/${name} does not hold it (not in status.roles)`;
      default:
        return undefined;
    }
  }
}
