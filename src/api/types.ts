// TypeScript shapes of the three dbcred.dev/v1alpha1 kinds. The CRD schemas in crds/ are the source of truth
// for validation; these types mirror them for the reconcilers. See ../shared/API.md (the contract) and README.md.

export const GROUP = 'dbcred.dev';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;

export const KINDS = {
  config: { kind: 'DatabaseConfig', plural: 'databaseconfigs' },
  role: { kind: 'DatabaseRole', plural: 'databaseroles' },
  credential: { kind: 'DatabaseCredential', plural: 'databasecredentials' },
} as const;

/** Finalizer that guards revocation of every PostgreSQL role a credential holds. */
export const CREDENTIAL_FINALIZER = 'dbcred.dev/revoke-roles';
/** Keeps a DatabaseConfig (and so the way to reach its server) until no credential holds a role on it. */
export const CONFIG_FINALIZER = 'dbcred.dev/credentials-revoked';
export const MANAGED_BY_LABEL = 'app.kubernetes.io/managed-by';
export const MANAGED_BY_VALUE = 'dbcred-operator';
export const ROTATE_ANNOTATION = 'dbcred.dev/rotate';
export const ROTATE_ROOT_ANNOTATION = 'dbcred.dev/rotate-root';
export const RESTARTED_AT_ANNOTATION = 'dbcred.dev/restartedAt';
/**
 * On a DatabaseConfig (an admin act): credentials being deleted whose roles on this config cannot be revoked
 * let go of them instead of waiting forever (the server is gone for good). Every abandoned username is recorded
 * in a Warning Event and the log. Value "true".
 */
export const ABANDON_ROLES_ANNOTATION = 'dbcred.dev/abandon-roles';

export interface ObjectMeta {
  name: string;
  namespace: string;
  uid?: string;
  generation?: number;
  resourceVersion?: string;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  finalizers?: string[];
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

/** metav1.Condition */
export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  lastTransitionTime: string;
  observedGeneration?: number;
}

export interface CommonStatus {
  observedGeneration?: number;
  conditions?: Condition[];
}

export interface LocalSecretKeyRef {
  name: string;
  usernameKey?: string;
  passwordKey?: string;
}

/** Role attributes a platform may allow the users of static roles to have (SUPERUSER never). */
export type StaticRoleAttribute = 'CREATEROLE' | 'REPLICATION' | 'BYPASSRLS';

export interface DatabaseConfigSpec {
  plugin: 'postgresql';
  connectionURL: string;
  rootCredentialsSecretRef: LocalSecretKeyRef;
  allowedRoles?: string[];
  verifyConnection?: boolean;
  maxOpenConnections?: number;
  usernameTemplate?: string;
  passwordPolicy?: { length?: number };
  passwordAuthentication?: 'scram-sha-256' | 'password';
  /** The password-based authentication the server may ask the operator for (default: scram-sha-256 only). */
  allowedAuthenticationMethods?: Array<'scram-sha-256' | 'md5' | 'password'>;
  rootRotation?: { period?: string };
  caSecretRef?: { name: string; key?: string };
  /**
   * What the users of static DatabaseRoles on this config may have beyond an ordinary login. Refused by default:
   * CREATEROLE, REPLICATION, BYPASSRLS and membership (direct or inherited) in any predefined pg_* role. The admin,
   * members of the admin role, superusers and roles the operator issued are always refused.
   */
  staticRoles?: { allowedAttributes?: StaticRoleAttribute[]; allowedPredefinedRoles?: string[] };
}

export interface DatabaseConfigStatus extends CommonStatus {
  serverVersion?: string;
  lastRootRotationTime?: string;
  /** value of the dbcred.dev/rotate-root annotation already acted on */
  rootRotateRequest?: string;
  /** Secrets of this namespace that carry the dbcred.dev/in-use finalizer for this config (recorded before it is added) */
  secretsInUse?: string[];
}

export interface DatabaseConfig {
  apiVersion: string;
  kind: 'DatabaseConfig';
  metadata: ObjectMeta;
  spec: DatabaseConfigSpec;
  status?: DatabaseConfigStatus;
}

export interface DatabaseRoleSpec {
  configRef: { name: string };
  creationStatements?: string[];
  revocationStatements?: string[];
  rollbackStatements?: string[];
  renewStatements?: string[];
  defaultTTL?: string;
  maxTTL?: string;
  allowedNamespaces?: string[];
  static?: { username: string; rotationPeriod?: string; rotationStatements?: string[] };
}

export interface DatabaseRoleStatus extends CommonStatus {
  activeCredentials?: number;
  /** static roles: when the password was last rotated, when it rotates next, and where it is kept */
  lastRotationTime?: string;
  nextRotationTime?: string;
  passwordSecretName?: string;
  /** static roles: value of the dbcred.dev/rotate annotation already acted on */
  rotateRequest?: string;
}

export interface DatabaseRole {
  apiVersion: string;
  kind: 'DatabaseRole';
  metadata: ObjectMeta;
  spec: DatabaseRoleSpec;
  status?: DatabaseRoleStatus;
}

export interface RolloutRestartTarget {
  kind: 'Deployment' | 'StatefulSet' | 'DaemonSet';
  name: string;
}

export interface DatabaseCredentialSpec {
  roleRef: { name: string; namespace?: string };
  ttl?: string;
  secretName?: string;
  rotation?: { enabled?: boolean; renewalPercent?: number; gracePeriod?: string };
  rolloutRestartTargets?: RolloutRestartTarget[];
  secretTemplate?: {
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    data?: Record<string, string>;
  };
}

/** A PostgreSQL role the credential holds or held; kept in status so revocation survives operator restarts. */
export interface HeldRole {
  username: string;
  /** pending: intent recorded, role may not exist yet; active: in the Secret; retiring: revoke after revokeAfter */
  state: 'pending' | 'active' | 'retiring';
  /** DatabaseConfig (namespace/name) whose server holds the role: revocation works even if the DatabaseRole is gone. */
  config: string;
  /** DatabaseRole (namespace/name) that made it, for its revocation statements. */
  role: string;
  issuedAt?: string;
  expiresAt?: string;
  revokeAfter?: string;
  /** active role: when its lease is renewed next */
  renewAt?: string;
  /** hash of the spec fields this role was issued for (roleRef, secretName): a change means a new role */
  specHash?: string;
  /** hashed dbcred.dev/rotate value this role was issued for */
  rotateRequest?: string;
  /** host:port/database of the server the role was created on: revocation goes there even if the config moved */
  server?: string;
}

export interface DatabaseCredentialStatus extends CommonStatus {
  username?: string;
  issuedAt?: string;
  expiresAt?: string;
  renewAt?: string;
  secretName?: string;
  binding?: { name: string };
  /** every role this credential may still hold in PostgreSQL; the finalizer revokes all of them */
  roles?: HeldRole[];
  /** value of the dbcred.dev/rotate annotation already acted on */
  rotateRequest?: string;
  /** hash of the spec fields whose change needs a new role (roleRef, secretName) */
  issuedForHash?: string;
  /** rollout restarts done for the rotation that issued this role (its issuedAt) */
  restartedFor?: string;
}

export interface DatabaseCredential {
  apiVersion: string;
  kind: 'DatabaseCredential';
  metadata: ObjectMeta;
  spec: DatabaseCredentialSpec;
  status?: DatabaseCredentialStatus;
}

export type AnyResource = DatabaseConfig | DatabaseRole | DatabaseCredential;
