// The invariant auditor of issue 7: looks at the world from outside the operator (the API server with the test's
// admin kubeconfig, PostgreSQL as its superuser, and a login with each Ready credential's Secret, as a pod would)
// and reports every violation of the rules in invariants.ts. Every integration suite runs it at its end, the
// fault suite (test/chaos) after its quiet period.
import type { DatabaseConfig, DatabaseCredential, DatabaseRole } from '../../src/api/types.js';
import { markedRolesQuery, parseRoleComment } from '../../src/postgres/statements.js';
import { loginError, queryAs, type TestEnv } from '../integration/harness.js';
import { connectionFromSecret, readSecretData } from '../integration/operator.js';
import {
  evaluate,
  formatViolations,
  keyOf,
  needsLoginCheck,
  secretNameOf,
  type MarkedRole,
  type NamespaceState,
  type SecretCheck,
  type Snapshot,
  type Violation,
} from './invariants.js';

export type { Violation } from './invariants.js';

export interface AuditOptions {
  /** Only these namespaces (objects in them, and marked roles whose marker names them). Default: everything. */
  namespaces?: string[];
  /** An object being deleted for longer than this is stuck. Default 30 s. */
  quietPeriodMs?: number;
}

const SECRET_KEYS = ['host', 'port', 'database', 'username', 'password'];

async function listAll<T extends { metadata: { namespace: string } }>(env: TestEnv, plural: string, scope: Set<string> | undefined): Promise<T[]> {
  const list = (await env.custom.listClusterCustomObject({ group: 'dbcred.dev', version: 'v1alpha1', plural })) as { items: T[] };
  return list.items.filter((o) => !scope || scope.has(o.metadata.namespace));
}

/** Every PostgreSQL role carrying the operator's marker, optionally only those whose marker names a namespace in scope. */
export async function markedRoles(env: TestEnv, namespaces?: string[]): Promise<MarkedRole[]> {
  const scope = namespaces ? new Set(namespaces) : undefined;
  const rows = (await queryAs(env.postgres.connection, markedRolesQuery)).rows as Array<{ rolname: string; comment: string | null }>;
  const out: MarkedRole[] = [];
  for (const row of rows) {
    const marker = parseRoleComment(row.comment);
    if (marker && (!scope || scope.has(marker.namespace))) out.push({ username: row.rolname, marker });
  }
  return out;
}

async function checkSecret(env: TestEnv, cred: DatabaseCredential): Promise<SecretCheck> {
  const secretName = secretNameOf(cred);
  const data = await readSecretData(env, cred.metadata.namespace, secretName);
  if (!data) return { outcome: 'missing', secretName };
  const missingKeys = SECRET_KEYS.filter((k) => !data[k]);
  if (missingKeys.length > 0) return { outcome: 'incomplete', secretName, missingKeys };
  const code = await loginError(connectionFromSecret(data));
  return code === undefined ? { outcome: 'ok' } : { outcome: 'login-failed', secretName, username: data.username ?? '', code };
}

async function namespaceStates(env: TestEnv, namespaces: string[] | undefined): Promise<NamespaceState[]> {
  const toState = (ns: { metadata?: { name?: string; deletionTimestamp?: Date | string; finalizers?: string[] } }): NamespaceState => ({
    name: ns.metadata?.name ?? '',
    deletionTimestamp: ns.metadata?.deletionTimestamp ? new Date(ns.metadata.deletionTimestamp).toISOString() : undefined,
    finalizers: ns.metadata?.finalizers,
  });
  if (!namespaces) return (await env.core.listNamespace()).items.map(toState);
  const out: NamespaceState[] = [];
  for (const name of namespaces) {
    try {
      out.push(toState(await env.core.readNamespace({ name })));
    } catch (err) {
      if ((err as { code?: number }).code !== 404) throw err;
    }
  }
  return out;
}

/**
 * One look at the world. Marked roles are read between two reads of the credentials and a role counts as listed
 * if either read lists it: a role is listed before it is created and until after it is dropped, so a role that
 * neither read lists has leaked (and one created and dropped between the reads cannot be mistaken for a leak).
 */
export async function snapshot(env: TestEnv, opts: AuditOptions = {}): Promise<Snapshot> {
  const scope = opts.namespaces ? new Set(opts.namespaces) : undefined;
  const before = await listAll<DatabaseCredential>(env, 'databasecredentials', scope);
  const marked = await markedRoles(env, opts.namespaces);
  const credentials = await listAll<DatabaseCredential>(env, 'databasecredentials', scope);
  const configs = await listAll<DatabaseConfig>(env, 'databaseconfigs', scope);
  const roles = await listAll<DatabaseRole>(env, 'databaseroles', scope);
  const listedBefore = new Set(before.flatMap((c) => (c.status?.roles ?? []).map((r) => `${keyOf(c)}#${c.metadata.uid}#${r.username}`)));
  const markedRolesSeen = marked.filter((m) => !listedBefore.has(`${m.marker.namespace}/${m.marker.name}#${m.marker.uid}#${m.username}`));
  const secretChecks: Record<string, SecretCheck> = {};
  for (const cred of credentials) if (needsLoginCheck(cred)) secretChecks[keyOf(cred)] = await checkSecret(env, cred);
  return { credentials, configs, roles, namespaces: await namespaceStates(env, opts.namespaces), markedRoles: markedRolesSeen, secretChecks };
}

/** Every violation right now (no retry). */
export async function audit(env: TestEnv, opts: AuditOptions = {}): Promise<Violation[]> {
  const snap = await snapshot(env, opts);
  return evaluate(snap, new Date(), { quietPeriodMs: opts.quietPeriodMs ?? 30_000 });
}

/**
 * Audits until a look finds no violation, for at most settleMs (status lags the world by a moment: a rotation
 * between the Secret read and the login, a revocation between two reads). Throws with every violation of the last
 * look, naming the objects.
 */
export async function assertNoViolations(env: TestEnv, opts: AuditOptions & { settleMs?: number; intervalMs?: number } = {}): Promise<void> {
  const deadline = Date.now() + (opts.settleMs ?? 30_000);
  let violations: Violation[] = [];
  for (;;) {
    violations = await audit(env, opts);
    if (violations.length === 0) return;
    if (Date.now() >= deadline) break;
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 2000));
  }
  throw new Error(`invariant auditor: ${violations.length} violation(s)${opts.namespaces ? ` in ${opts.namespaces.join(', ')}` : ''}:\n${formatViolations(violations)}`);
}
