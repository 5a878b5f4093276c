// The invariants of issue 7, as pure rules over a snapshot of what the API server and PostgreSQL say. The auditor
// (auditor.ts) gathers the snapshot from outside the operator; these rules decide. No I/O here, so the rules are
// unit-tested over plain data (test/unit/auditor.test.ts). A violation names objects and usernames, never a password.
import type { Condition, DatabaseConfig, DatabaseCredential, DatabaseRole } from '../../src/api/types.js';
import type { RoleMarker } from '../../src/postgres/statements.js';

export type Invariant =
  | 'ready-secret-logs-in'
  | 'marked-role-listed'
  | 'username-unique'
  | 'rotating-never-expires'
  | 'one-active-role'
  | 'retiring-has-deadline'
  | 'no-stuck-deletion'
  /** the auditor could not look (the API server or PostgreSQL did not answer) */
  | 'audit-failed';

export interface Violation {
  invariant: Invariant;
  /** namespace/name of each object involved, and usernames as `role "<username>"`. */
  objects: string[];
  message: string;
}

/** What a login with the credential's Secret gave: the auditor fills one per credential that `needsLoginCheck`. */
export type SecretCheck =
  | { outcome: 'ok' }
  | { outcome: 'missing'; secretName: string }
  | { outcome: 'incomplete'; secretName: string; missingKeys: string[] }
  | { outcome: 'login-failed'; secretName: string; username: string; code: string };

export interface MarkedRole {
  username: string;
  /** Which credential the marker names (its installation is not checked here: the auditor sees one cluster). */
  marker: Pick<RoleMarker, 'namespace' | 'name' | 'uid'>;
}

export interface NamespaceState {
  name: string;
  deletionTimestamp?: string;
  finalizers?: string[];
}

export interface Snapshot {
  credentials: DatabaseCredential[];
  configs: DatabaseConfig[];
  roles: DatabaseRole[];
  /** the namespaces in scope that still exist */
  namespaces: NamespaceState[];
  /** every PostgreSQL role whose comment carries the operator's marker (already limited to the scope) */
  markedRoles: MarkedRole[];
  /** by credential key (namespace/name) */
  secretChecks: Record<string, SecretCheck>;
}

export interface RuleOptions {
  /** an object (or namespace) being deleted for longer than this is stuck */
  quietPeriodMs: number;
}

export const keyOf = (obj: { metadata: { namespace?: string; name: string } }): string =>
  `${obj.metadata.namespace ?? ''}/${obj.metadata.name}`;

function readyCondition(cred: DatabaseCredential): Condition | undefined {
  return cred.status?.conditions?.find((c) => c.type === 'Ready');
}

/**
 * Ready=True for the current generation, and not being deleted: the Secret is a promise that it logs in.
 * (A credential being deleted is covered by no-stuck-deletion; an older generation's Ready is not yet a promise.)
 */
export function needsLoginCheck(cred: DatabaseCredential): boolean {
  const ready = readyCondition(cred);
  if (ready?.status !== 'True' || cred.metadata.deletionTimestamp) return false;
  const observed = ready.observedGeneration ?? cred.status?.observedGeneration;
  return observed === undefined || cred.metadata.generation === undefined || observed === cred.metadata.generation;
}

/** The Secret a Ready credential delivers to: status.secretName, else spec.secretName, else its own name. */
export function secretNameOf(cred: DatabaseCredential): string {
  return cred.status?.secretName ?? cred.spec.secretName ?? cred.metadata.name;
}

export function rotationEnabled(cred: DatabaseCredential): boolean {
  return cred.spec.rotation?.enabled !== false;
}

/** What status says about the lease and the roles, for a violation message (no secrets in status). */
export function statusSummary(cred: DatabaseCredential): string {
  const s = cred.status;
  const roles = (s?.roles ?? []).map((r) => `${r.username}:${r.state}${r.expiresAt ? ` until ${r.expiresAt}` : ''}`).join(', ');
  return `status: generation ${cred.metadata.generation ?? '?'}, expiresAt ${s?.expiresAt ?? '-'}, renewAt ${s?.renewAt ?? '-'}, rotation ${rotationEnabled(cred) ? 'on' : 'off'}, roles [${roles}]`;
}

export function evaluate(snapshot: Snapshot, now: Date, opts: RuleOptions): Violation[] {
  const out: Violation[] = [];
  const creds = snapshot.credentials;

  // Every Ready credential's Secret logs in.
  for (const cred of creds) {
    if (!needsLoginCheck(cred)) continue;
    const key = keyOf(cred);
    const check = snapshot.secretChecks[key];
    if (!check) {
      out.push({ invariant: 'ready-secret-logs-in', objects: [key], message: `${key} is Ready but its Secret was not checked` });
    } else if (check.outcome === 'missing') {
      out.push({ invariant: 'ready-secret-logs-in', objects: [key, `${cred.metadata.namespace}/${check.secretName}`], message: `${key} is Ready but its Secret ${check.secretName} does not exist` });
    } else if (check.outcome === 'incomplete') {
      out.push({ invariant: 'ready-secret-logs-in', objects: [key, `${cred.metadata.namespace}/${check.secretName}`], message: `${key} is Ready but its Secret ${check.secretName} lacks ${check.missingKeys.join(', ')}` });
    } else if (check.outcome === 'login-failed') {
      out.push({
        invariant: 'ready-secret-logs-in',
        objects: [key, `${cred.metadata.namespace}/${check.secretName}`, `role "${check.username}"`],
        message: `${key} is Ready but the login "${check.username}" of its Secret ${check.secretName} fails (${check.code}); ${statusSummary(cred)}`,
      });
    }
  }

  // Every marked role is listed in the status.roles of the credential its marker names (same uid).
  const byKey = new Map(creds.map((c) => [keyOf(c), c]));
  for (const { username, marker } of snapshot.markedRoles) {
    const key = `${marker.namespace}/${marker.name}`;
    const cred = byKey.get(key);
    const role = `role "${username}"`;
    if (!cred) {
      out.push({ invariant: 'marked-role-listed', objects: [role, key], message: `leaked role: ${role} belongs to ${key}, which no longer exists` });
    } else if (cred.metadata.uid !== marker.uid) {
      out.push({ invariant: 'marked-role-listed', objects: [role, key], message: `leaked role: ${role} belongs to an earlier ${key} (uid ${marker.uid}, now ${cred.metadata.uid ?? 'unknown'})` });
    } else if (!(cred.status?.roles ?? []).some((r) => r.username === username)) {
      out.push({ invariant: 'marked-role-listed', objects: [role, key], message: `leaked role: ${role} is marked for ${key} but not in its status.roles` });
    }
  }

  // No username twice, in one credential or across credentials.
  const holders = new Map<string, string[]>();
  for (const cred of creds) {
    const key = keyOf(cred);
    const seen = new Set<string>();
    for (const r of cred.status?.roles ?? []) {
      if (seen.has(r.username)) {
        out.push({ invariant: 'username-unique', objects: [key, `role "${r.username}"`], message: `${key} lists role "${r.username}" twice in status.roles` });
        continue;
      }
      seen.add(r.username);
      holders.set(r.username, [...(holders.get(r.username) ?? []), key]);
    }
  }
  for (const [username, keys] of holders) {
    if (keys.length > 1) {
      out.push({ invariant: 'username-unique', objects: [...keys, `role "${username}"`], message: `role "${username}" is listed by ${keys.join(' and ')}` });
    }
  }

  for (const cred of creds) {
    const key = keyOf(cred);
    // With rotation on, a credential never gives up.
    const expired = cred.status?.conditions?.find((c) => c.type === 'Expired');
    if (rotationEnabled(cred) && expired?.status === 'True') {
      out.push({ invariant: 'rotating-never-expires', objects: [key], message: `${key} has rotation enabled but Expired=True (${expired.reason}: ${expired.message})` });
    }
    const roles = cred.status?.roles ?? [];
    const active = roles.filter((r) => r.state === 'active');
    if (active.length > 1) {
      out.push({ invariant: 'one-active-role', objects: [key, ...active.map((r) => `role "${r.username}"`)], message: `${key} has ${active.length} active roles` });
    }
    for (const r of roles) {
      if (r.state === 'retiring' && !r.revokeAfter) {
        out.push({ invariant: 'retiring-has-deadline', objects: [key, `role "${r.username}"`], message: `${key}: retiring role "${r.username}" has no revokeAfter` });
      }
    }
  }

  // Nothing of ours is stuck being deleted past the quiet period.
  const stuckSince = (ts: string | undefined) => ts !== undefined && now.getTime() - new Date(ts).getTime() > opts.quietPeriodMs;
  const kinds: Array<[string, Array<DatabaseCredential | DatabaseConfig | DatabaseRole>]> = [
    ['DatabaseCredential', creds],
    ['DatabaseConfig', snapshot.configs],
    ['DatabaseRole', snapshot.roles],
  ];
  for (const [kind, objs] of kinds) {
    for (const obj of objs) {
      if (!stuckSince(obj.metadata.deletionTimestamp)) continue;
      const key = keyOf(obj);
      const extra = kind === 'DatabaseCredential' ? ` holding ${((obj as DatabaseCredential).status?.roles ?? []).map((r) => `"${r.username}"`).join(', ') || 'no roles'}` : '';
      out.push({
        invariant: 'no-stuck-deletion',
        objects: [key],
        message: `${kind} ${key} is being deleted since ${obj.metadata.deletionTimestamp} with finalizers [${(obj.metadata.finalizers ?? []).join(', ')}]${extra}`,
      });
    }
  }
  for (const ns of snapshot.namespaces) {
    if (!stuckSince(ns.deletionTimestamp)) continue;
    out.push({ invariant: 'no-stuck-deletion', objects: [ns.name], message: `namespace ${ns.name} is Terminating since ${ns.deletionTimestamp}` });
  }
  return out;
}

export function formatViolations(violations: Violation[]): string {
  return violations.map((v) => `  [${v.invariant}] ${v.message}`).join('\n');
}
