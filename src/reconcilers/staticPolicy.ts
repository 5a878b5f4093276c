// Which PostgreSQL users a static DatabaseRole may take over, as pure functions. A static role sets the password
// of an existing user and hands it to every namespace its allowedNamespaces admit, so the user it names must be an
// ordinary application login: never the config's admin, a superuser, a role the operator issued, a user another
// static role already manages, and none with powers the platform did not allow on the DatabaseConfig
// (spec.staticRoles). The reconciler asks before every rotation (attributes can change at any time) and again in
// the rotation's own transaction; a refusal is Ready=False with one of the reasons below, and no SQL that changes
// anything runs.
import type { DatabaseConfigSpec, StaticRoleAttribute } from '../api/types.js';
import type { RoleAttributes, StaticUserFacts } from '../postgres/roleAdmin.js';
import { MARKER_PREFIX } from '../postgres/statements.js';

/** A refusal: the Ready=False reason and a message that names the user's side of the problem. */
export interface StaticRefusal {
  reason: 'StaticUserNotFound' | 'StaticUserIsAdmin' | 'StaticUserIsSuperuser' | 'StaticUserIsDynamic' | 'StaticUserPrivileged' | 'StaticUserClaimed';
  message: string;
}

/** What the platform allows a static user to have beyond an ordinary login (DatabaseConfig spec.staticRoles). */
export interface StaticAllowance {
  attributes: ReadonlySet<StaticRoleAttribute>;
  predefinedRoles: ReadonlySet<string>;
}

export function allowanceOf(spec: DatabaseConfigSpec): StaticAllowance {
  return {
    attributes: new Set(spec.staticRoles?.allowedAttributes ?? []),
    predefinedRoles: new Set(spec.staticRoles?.allowedPredefinedRoles ?? []),
  };
}

const ATTRIBUTES: ReadonlyArray<[StaticRoleAttribute, (r: RoleAttributes) => boolean]> = [
  ['CREATEROLE', (r) => r.createRole],
  ['REPLICATION', (r) => r.replication],
  ['BYPASSRLS', (r) => r.bypassRLS],
];

const through = (role: RoleAttributes, user: string) => (role.name === user ? '' : ` through role "${role.name}"`);

/**
 * Why this user may not be managed by a static role, or undefined when it may. admins: the names the config's
 * connection stands for (the root Secret's username; current_user and session_user come with the facts).
 * Membership counts directly or through other roles, whatever INHERIT says: SET ROLE reaches every role one is a
 * member of. Predefined roles (pg_*) reached only through an allowed predefined role are allowed with it.
 */
export function staticUserRefusal(username: string, facts: StaticUserFacts | undefined, admins: readonly string[], allow: StaticAllowance): StaticRefusal | undefined {
  if (!facts) return { reason: 'StaticUserNotFound', message: `PostgreSQL user "${username}" does not exist (a static role manages an existing user)` };
  const adminNames = new Set([...admins, ...facts.connectedAs]);
  const everyRole = [facts.user, ...facts.reachable];
  // These two messages do not repeat the name: a role's message reaches the namespaces that use it, and which
  // user is the admin is the platform's business.
  if (adminNames.has(username)) {
    return { reason: 'StaticUserIsAdmin', message: 'the static user is the admin this DatabaseConfig connects as; a static role cannot manage it' };
  }
  if (facts.reachable.some((r) => adminNames.has(r.name))) {
    return { reason: 'StaticUserIsAdmin', message: 'the static user is a member of the admin role this DatabaseConfig connects as; a static role cannot manage it' };
  }
  if (facts.user.comment?.startsWith(MARKER_PREFIX)) {
    return { reason: 'StaticUserIsDynamic', message: `PostgreSQL user "${username}" was issued by the operator for a DatabaseCredential; a static role cannot manage it` };
  }
  const superuser = everyRole.find((r) => r.superuser);
  if (superuser) {
    return { reason: 'StaticUserIsSuperuser', message: `PostgreSQL user "${username}" is a superuser${through(superuser, username)}; a static role cannot manage it` };
  }
  const powers: string[] = [];
  for (const [attribute, has] of ATTRIBUTES) {
    if (allow.attributes.has(attribute)) continue;
    const holder = everyRole.find(has);
    if (holder) powers.push(`${attribute}${through(holder, username)}`);
  }
  const allowedPredefined = closure(allow.predefinedRoles, facts.reachable);
  const predefined = facts.reachable.filter((r) => r.predefined && !allowedPredefined.has(r.name)).map((r) => r.name).sort();
  if (predefined.length) powers.push(`membership in ${predefined.join(', ')}`);
  if (powers.length) {
    return {
      reason: 'StaticUserPrivileged',
      message:
        `PostgreSQL user "${username}" has powers this DatabaseConfig does not allow static roles: ${powers.join('; ')} ` +
        '(the platform may allow them in the DatabaseConfig\'s spec.staticRoles)',
    };
  }
  return undefined;
}

/** The allowed roles plus every role they are members of (among the roles the user reaches). */
function closure(allowed: ReadonlySet<string>, roles: readonly RoleAttributes[]): Set<string> {
  const byName = new Map(roles.map((r) => [r.name, r]));
  const out = new Set<string>();
  const visit = (name: string): void => {
    if (out.has(name)) return;
    out.add(name);
    for (const parent of byName.get(name)?.memberOf ?? []) visit(parent);
  };
  for (const name of allowed) if (byName.has(name)) visit(name);
  return out;
}

// ---- one static role per user and server ----

/** A static DatabaseRole that manages (or wants to manage) a user on a server. */
export interface StaticClaim {
  namespace: string;
  name: string;
  creationTimestamp?: string;
}

/** Oldest first (creationTimestamp), then namespace/name: every reconciler picks the same winner. */
export function compareClaims(a: StaticClaim, b: StaticClaim): number {
  const ta = a.creationTimestamp ? Date.parse(a.creationTimestamp) : Number.POSITIVE_INFINITY;
  const tb = b.creationTimestamp ? Date.parse(b.creationTimestamp) : Number.POSITIVE_INFINITY;
  if (ta !== tb) return ta < tb ? -1 : 1;
  const ka = `${a.namespace}/${a.name}`;
  const kb = `${b.namespace}/${b.name}`;
  return ka < kb ? -1 : ka > kb ? 1 : 0;
}

/**
 * Refusal for a role that is not the winner among the claims on its user (claims include the role itself). The
 * message names the winner only when it lives in the loser's own namespace: a role's Ready message reaches the
 * namespaces that use it, and what another namespace manages is not theirs to know.
 */
export function claimRefusal(self: StaticClaim, username: string, claims: readonly StaticClaim[]): StaticRefusal | undefined {
  const winner = [...claims, self].sort(compareClaims)[0];
  if (!winner || (winner.namespace === self.namespace && winner.name === self.name)) return undefined;
  const who = winner.namespace === self.namespace ? `DatabaseRole ${winner.namespace}/${winner.name}` : 'a static DatabaseRole in another namespace';
  return {
    reason: 'StaticUserClaimed',
    message: `PostgreSQL user "${username}" on this server is already managed by ${who} (the oldest static role for it wins); two static roles on one user would overwrite each other's password`,
  };
}
