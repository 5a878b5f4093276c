// What a tenant sees of the platform's problems. A DatabaseCredential in another namespace than its DatabaseRole
// belongs to a tenant, who is told that the platform side is not working and where the details are — never the
// admin user, the root Secret, the server's address or PostgreSQL's error text: those stay on the platform's own
// objects (the DatabaseRole and DatabaseConfig's status, an Event on the DatabaseRole) and in the operator's log.

/**
 * Reasons about the tenant's own request: their messages name only what the tenant wrote or owns. NamespaceNotWatched
 * too: its message names only the roleRef, and the operator has nothing on a role it does not watch to point to.
 */
const TENANT_REASONS: ReadonlySet<string> = new Set([
  'RoleNotFound',
  'NamespaceNotWatched',
  'NamespaceNotAllowed',
  'InvalidTTL',
  'InvalidSecretTemplate',
  'SecretConflict',
  'RoleDropped',
  'Expired',
]);

/** What each platform-side reason means, in the tenant's terms. */
const TENANT_SUMMARIES: Readonly<Record<string, string>> = {
  RoleNotReady: 'the DatabaseRole is not Ready',
  ConfigNotFound: 'the database connection of the DatabaseRole is not set up',
  ConfigNotReady: 'the database connection of the DatabaseRole is not working',
  RoleNotAllowed: 'the database connection of the DatabaseRole does not allow it',
  IssueFailed: 'the database refused to create the login',
  RoleExists: 'a database user with the generated name exists already, and is never taken over',
  RevocationFailed: 'the database refused to revoke a login (retrying with backoff)',
};

export interface TenantView {
  /** The message for the credential's condition and its Events. */
  message: string;
  /** Whether details were withheld (they then belong on the DatabaseRole and in the log). */
  redacted: boolean;
}

/**
 * The message a credential's Ready=False condition carries. Same namespace as the role: the reader can see the
 * role and its config anyway, so the full message. Otherwise the full message only for reasons about the
 * tenant's own request.
 */
export function tenantView(credentialNamespace: string, roleNamespace: string, roleName: string, reason: string, message: string): TenantView {
  if (credentialNamespace === roleNamespace || TENANT_REASONS.has(reason)) return { message, redacted: false };
  const summary = TENANT_SUMMARIES[reason] ?? 'the platform side of this credential is not working';
  return {
    message: `${summary} (${reason}); the platform team that owns DatabaseRole ${roleNamespace}/${roleName} finds the details on it and in the operator's log`,
    redacted: true,
  };
}
