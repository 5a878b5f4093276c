// DatabaseConfig: can we reach this PostgreSQL server as an admin that may create roles? Ready says so, with a
// reason a user can act on. The config's pool lives in the PoolRegistry; the root Secret is watched by name.
import type { DatabaseConfig, DatabaseConfigStatus } from '../api/types.js';
import type { Result } from '../controller/controller.js';
import { RoleAdminError } from '../postgres/roleAdmin.js';
import { NotReady, keyOf, resolveConfig, splitKey, withCondition, writeStatus, type OperatorContext } from './context.js';

/** A Ready config is checked again this often, so a server that goes away shows on the object. */
const REVERIFY_MS = 5 * 60_000;
const RETRY_UNREACHABLE_MS = 15_000;

function reasonFor(err: RoleAdminError): { reason: string; retryMs: number } {
  switch (err.kind) {
    case 'auth':
      return { reason: 'LoginFailed', retryMs: 60_000 };
    case 'privilege':
      return { reason: 'InsufficientPrivileges', retryMs: 60_000 };
    case 'transient':
      return { reason: 'Unreachable', retryMs: RETRY_UNREACHABLE_MS };
    default:
      return { reason: 'ConnectionFailed', retryMs: RETRY_UNREACHABLE_MS };
  }
}

export class DatabaseConfigReconciler {
  constructor(private readonly ctx: OperatorContext) {}

  async reconcile(key: string): Promise<Result> {
    const { namespace, name } = splitKey(key);
    const config = this.ctx.informers.configs.get(key);
    if (!config || config.metadata.deletionTimestamp) {
      // Gone: drop its pool and watches. Credentials that still hold roles keep the finalizer until revoked.
      this.ctx.pools.remove(key);
      this.ctx.rootSecrets.release(key);
      return {};
    }
    const keep = [keyOf(namespace, config.spec.rootCredentialsSecretRef.name)];
    if (config.spec.caSecretRef) keep.push(keyOf(namespace, config.spec.caSecretRef.name));
    this.ctx.rootSecrets.release(key, keep);

    let status: DatabaseConfigStatus = { ...(config.status ?? {}) };
    let requeueAfter = REVERIFY_MS;
    try {
      const resolved = await resolveConfig(this.ctx, config);
      if (config.spec.verifyConnection !== false) {
        const info = await resolved.admin.serverInfo();
        status.serverVersion = info.version;
        if (!info.canCreateRoles) {
          throw new NotReady('InsufficientPrivileges', `user "${info.currentUser}" has neither SUPERUSER nor CREATEROLE`);
        }
      }
      status = withCondition(this.ctx, config, status, {
        type: 'Ready',
        status: 'True',
        reason: 'Connected',
        message: config.spec.verifyConnection === false ? 'configuration accepted (connection not verified)' : `connected to PostgreSQL ${status.serverVersion ?? ''}`.trim(),
      });
    } catch (err) {
      let reason: string;
      if (err instanceof NotReady) {
        reason = err.reason;
        requeueAfter = 60_000;
      } else if (err instanceof RoleAdminError) {
        ({ reason, retryMs: requeueAfter } = reasonFor(err));
      } else {
        throw err;
      }
      const before = config.status?.conditions?.find((c) => c.type === 'Ready');
      if (before?.reason !== reason) this.ctx.events.record(config, 'Warning', reason, (err as Error).message);
      status = withCondition(this.ctx, config, status, { type: 'Ready', status: 'False', reason, message: (err as Error).message });
    }
    await writeStatus<DatabaseConfig>(this.ctx, 'config', config, status);
    return { requeueAfter };
  }
}
