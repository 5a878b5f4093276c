// DatabaseRole: is this role usable? Its config exists, is Ready and allows it, its placeholders are known, and
// its creation statements run (in a transaction that is rolled back) before any credential depends on them.
import { isTrue, getCondition } from '../api/conditions.js';
import type { DatabaseConfig, DatabaseRole, DatabaseRoleStatus } from '../api/types.js';
import type { Result } from '../controller/controller.js';
import { RoleAdminError } from '../postgres/roleAdmin.js';
import { placeholdersIn } from '../postgres/statements.js';
import { generatePassword } from '../secrets/password.js';
import { NotReady, globMatch, keyOf, resolveConfig, splitKey, withCondition, writeStatus, type OperatorContext } from './context.js';

/** The config a role points at, checked for existence, readiness and allowedRoles. */
export function configForRole(ctx: OperatorContext, role: DatabaseRole): DatabaseConfig {
  const configKey = keyOf(role.metadata.namespace, role.spec.configRef.name);
  const config = ctx.informers.configs.get(configKey);
  if (!config) throw new NotReady('ConfigNotFound', `DatabaseConfig ${configKey} not found`);
  const allowed = config.spec.allowedRoles ?? [];
  if (!allowed.some((p) => globMatch(p, role.metadata.name))) {
    throw new NotReady('RoleNotAllowed', `DatabaseConfig ${configKey} does not list "${role.metadata.name}" in allowedRoles`);
  }
  if (!isTrue(config.status?.conditions, 'Ready')) {
    const c = getCondition(config.status?.conditions, 'Ready');
    throw new NotReady('ConfigNotReady', `DatabaseConfig ${configKey} is not Ready${c ? `: ${c.reason}: ${c.message}` : ''}`);
  }
  return config;
}

function checkPlaceholders(role: DatabaseRole): void {
  const spec = role.spec;
  const groups: Array<[string, string[] | undefined]> = [
    ['creationStatements', spec.creationStatements],
    ['revocationStatements', spec.revocationStatements],
    ['rollbackStatements', spec.rollbackStatements],
    ['renewStatements', spec.renewStatements],
  ];
  for (const [field, statements] of groups) {
    if (!statements?.length) continue;
    let used: Set<string>;
    try {
      used = placeholdersIn(statements);
    } catch (err) {
      throw new NotReady('InvalidStatements', `${field}: ${err instanceof Error ? err.message : String(err)}`);
    }
    if (field === 'creationStatements' && !used.has('name') && !used.has('username')) {
      throw new NotReady('InvalidStatements', 'creationStatements must use {{name}}: every credential needs its own role');
    }
  }
}

export class DatabaseRoleReconciler {
  /** generation/config-resourceVersion of the last successful dry run, so it is not repeated every resync. */
  private readonly checked = new Map<string, string>();

  constructor(private readonly ctx: OperatorContext) {}

  async reconcile(key: string): Promise<Result> {
    const role = this.ctx.informers.roles.get(key);
    if (!role || role.metadata.deletionTimestamp) {
      this.checked.delete(key);
      return {};
    }
    const { namespace, name } = splitKey(key);
    let status: DatabaseRoleStatus = { ...(role.status ?? {}), activeCredentials: this.countActive(namespace, name) };
    let requeueAfter: number | undefined;
    try {
      checkPlaceholders(role);
      const config = configForRole(this.ctx, role);
      const stamp = `${role.metadata.generation}/${config.metadata.resourceVersion}`;
      const creation = role.spec.creationStatements ?? [];
      if (creation.length && this.checked.get(key) !== stamp) {
        const resolved = await resolveConfig(this.ctx, config);
        await resolved.admin.dryRun(creation, {
          name: `dbcred_dryrun_${Date.now().toString(36)}`,
          password: generatePassword(resolved.passwordLength),
          expiration: new Date(this.ctx.clock.now().getTime() + 3600_000),
        });
        this.checked.set(key, stamp);
      }
      const message = role.spec.static
        ? `static role for PostgreSQL user "${role.spec.static.username}"`
        : 'creation statements checked in a rolled-back transaction';
      status = withCondition(this.ctx, role, status, { type: 'Ready', status: 'True', reason: 'Checked', message });
    } catch (err) {
      let reason: string;
      if (err instanceof NotReady) reason = err.reason;
      else if (err instanceof RoleAdminError) {
        reason = err.kind === 'transient' ? 'ConfigUnreachable' : 'StatementsFailed';
        requeueAfter = 30_000;
      } else throw err;
      this.checked.delete(key);
      if (getCondition(role.status?.conditions, 'Ready')?.reason !== reason) {
        this.ctx.events.record(role, 'Warning', reason, (err as Error).message);
      }
      status = withCondition(this.ctx, role, status, { type: 'Ready', status: 'False', reason, message: (err as Error).message });
    }
    await writeStatus<DatabaseRole>(this.ctx, 'role', role, status);
    return requeueAfter ? { requeueAfter } : {};
  }

  private countActive(namespace: string, name: string): number {
    let n = 0;
    for (const cred of this.ctx.informers.credentials.list()) {
      const ref = cred.spec.roleRef;
      if (ref.name === name && (ref.namespace ?? cred.metadata.namespace) === namespace && cred.status?.roles?.some((r) => r.state === 'active')) n++;
    }
    return n;
  }
}
