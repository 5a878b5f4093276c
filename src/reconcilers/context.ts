// What the three reconcilers share: clients, caches, pools, the event recorder and the clock — plus the two
// lookups every reconciler needs (a DatabaseConfig resolved to a working RoleAdmin; status writes that happen
// only when something changed).
import { X509Certificate } from 'node:crypto';
import { statusChanged, setCondition, type ConditionInput } from '../api/conditions.js';
import type { AnyResource, DatabaseConfig, DatabaseCredential, DatabaseRole } from '../api/types.js';
import type { Clock } from '../controller/clock.js';
import type { KindKey, KubeClient } from '../k8s/client.js';
import type { EventRecorder } from '../k8s/events.js';
import type { Cache } from '../k8s/informer.js';
import type { RootSecretWatches } from '../k8s/rootSecrets.js';
import type { Logger } from '../logger.js';
import type { ConfigPool, PoolRegistry } from '../postgres/pool.js';
import { RoleAdmin } from '../postgres/roleAdmin.js';
import { validateTemplate, DEFAULT_USERNAME_TEMPLATE, type CompiledUsernameTemplate } from '../postgres/usernameTemplate.js';
import type { SecretContents, SecretMeta } from '../secrets/ownedSecret.js';
import { parseConnectionURL } from '../secrets/secretData.js';
import { clientConfig, type ConnectionSettings } from '../postgres/pool.js';

export interface Informers {
  configs: Cache<DatabaseConfig>;
  roles: Cache<DatabaseRole>;
  credentials: Cache<DatabaseCredential>;
  /** Metadata only, of Secrets controller-owned by our kinds; their data comes from secretContents. */
  ownedSecrets: Cache<SecretMeta>;
}

export interface OperatorContext {
  client: KubeClient;
  logger: Logger;
  clock: Clock;
  events: EventRecorder;
  pools: PoolRegistry;
  informers: Informers;
  secretContents: SecretContents;
  rootSecrets: RootSecretWatches;
  /** This installation's identity (CLUSTER_ID or the kube-system UID), named in the marker of every role it creates. */
  installation: string;
}

export function keyOf(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

export function splitKey(key: string): { namespace: string; name: string } {
  const i = key.indexOf('/');
  return { namespace: key.slice(0, i), name: key.slice(i + 1) };
}

/** A reconcile stopped by a user-fixable problem: reported as Ready=False with this reason, not retried with backoff. */
export class NotReady extends Error {
  constructor(
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
}

/** Kubernetes-style glob: "*" matches any run of characters, everything else literally (linear, see api/glob.ts). */
export { globMatch } from '../api/glob.js';

export interface ResolvedConfig {
  key: string;
  config: DatabaseConfig;
  admin: RoleAdmin;
  pool: ConfigPool;
  settings: ConnectionSettings;
  template: CompiledUsernameTemplate;
  passwordLength: number;
  scram: boolean;
}

/**
 * Turns a DatabaseConfig into something that can run SQL: reads the root Secret (from its watch cache), parses the
 * URL and template, and returns the config's pool. Problems a user must fix come back as NotReady.
 */
export async function resolveConfig(ctx: OperatorContext, config: DatabaseConfig): Promise<ResolvedConfig> {
  const { namespace, name } = config.metadata;
  const key = keyOf(namespace, name);
  const spec = config.spec;
  let url;
  try {
    url = parseConnectionURL(spec.connectionURL, spec.caSecretRef !== undefined);
  } catch (err) {
    throw new NotReady('InvalidConnectionURL', err instanceof Error ? err.message : String(err));
  }
  let template: CompiledUsernameTemplate;
  try {
    // Rendered once with sample values: a template that cannot yield a valid role name is refused here.
    template = validateTemplate(spec.usernameTemplate ?? DEFAULT_USERNAME_TEMPLATE).compiled;
  } catch (err) {
    throw new NotReady('InvalidUsernameTemplate', err instanceof Error ? err.message : String(err));
  }
  const ref = spec.rootCredentialsSecretRef;
  const secret = await ctx.rootSecrets.get(namespace, ref.name, key);
  if (!secret) throw new NotReady('SecretNotFound', `root credentials Secret ${namespace}/${ref.name} not found`);
  const userKey = ref.usernameKey ?? 'username';
  const passKey = ref.passwordKey ?? 'password';
  const user = decode(secret.data?.[userKey]);
  const password = decode(secret.data?.[passKey]);
  if (!user || password === undefined) {
    throw new NotReady('InvalidSecret', `root credentials Secret ${namespace}/${ref.name} lacks key ${!user ? userKey : passKey}`);
  }
  let ca: string | undefined;
  if (spec.caSecretRef) {
    const caKey = spec.caSecretRef.key ?? 'ca.crt';
    const caSecret = await ctx.rootSecrets.get(namespace, spec.caSecretRef.name, key);
    ca = decode(caSecret?.data?.[caKey]);
    if (!ca) throw new NotReady('SecretNotFound', `CA Secret ${namespace}/${spec.caSecretRef.name} or its key not found`);
    // Checked only where TLS is used: with sslmode=disable the CA is read (the reference must hold) but unused.
    if (url.sslmode !== 'disable' && !isPemCertificates(ca)) {
      throw new NotReady('InvalidCA', `key ${caKey} of CA Secret ${namespace}/${spec.caSecretRef.name} holds no valid PEM certificate (-----BEGIN CERTIFICATE----- …)`);
    }
  } else if (url.sslmode === 'verify-ca') {
    // Without a CA of its own, verify-ca would trust any certificate a public CA issued for any name.
    throw new NotReady('CARequired', 'sslmode=verify-ca needs the CA that signed the server certificate: set caSecretRef (or use verify-full)');
  }
  const settings: ConnectionSettings = {
    host: url.host,
    port: url.port,
    database: url.database,
    sslmode: url.sslmode,
    user,
    password,
    ca,
    maxConnections: spec.maxOpenConnections ?? 4,
    allowedAuthentication: spec.allowedAuthenticationMethods,
  };
  const pool = ctx.pools.get(key, settings);
  // One clientConfig per one-off client: each carries its own guarded connection.
  const admin = new RoleAdmin(pool, (database) => clientConfig({ ...settings, database }));
  return {
    key,
    config,
    admin,
    pool,
    settings,
    template,
    passwordLength: spec.passwordPolicy?.length ?? 32,
    scram: (spec.passwordAuthentication ?? 'scram-sha-256') === 'scram-sha-256',
  };
}

/** Whether text is one or more PEM certificates that parse (a bundle is allowed). */
function isPemCertificates(text: string): boolean {
  const blocks = text.match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) return false;
  try {
    for (const block of blocks) new X509Certificate(block);
    return true;
  } catch {
    return false;
  }
}

function decode(b64: string | undefined): string | undefined {
  return b64 === undefined ? undefined : Buffer.from(b64, 'base64').toString('utf8');
}

/**
 * Writes status through the subresource only when it changed; fields that disappeared are deleted (merge patch
 * null). Returns the updated object, or the input when nothing was written.
 */
export async function writeStatus<T extends AnyResource>(ctx: OperatorContext, kind: KindKey, obj: T, status: NonNullable<T['status']>): Promise<T> {
  const old: Record<string, unknown> = { ...(obj.status ?? {}) };
  const patch: Record<string, unknown> = { ...status };
  if (!statusChanged(old, patch)) return obj;
  for (const k of Object.keys(old)) if (!(k in patch) || patch[k] === undefined) patch[k] = null;
  return ctx.client.patchStatus<T>(kind, obj.metadata.namespace, obj.metadata.name, patch, obj.metadata.resourceVersion);
}

/**
 * Ready=False with a reason a user can act on. A Warning Event is recorded when the reason is new, not on every
 * retry, so a problem shows once in `kubectl describe` instead of flooding it.
 */
export function readyFalse<S extends { conditions?: import('../api/types.js').Condition[]; observedGeneration?: number }>(
  ctx: OperatorContext,
  obj: AnyResource,
  status: S,
  reason: string,
  message: string,
): S {
  const before = obj.status?.conditions?.find((c) => c.type === 'Ready');
  if (before?.reason !== reason) ctx.events.record(obj, 'Warning', reason, message);
  return withCondition(ctx, obj, status, { type: 'Ready', status: 'False', reason, message });
}

/** The status with one condition set (observedGeneration from the object, time from the clock). */
export function withCondition<S extends { conditions?: import('../api/types.js').Condition[]; observedGeneration?: number }>(
  ctx: OperatorContext,
  obj: AnyResource,
  status: S,
  condition: ConditionInput,
): S {
  return {
    ...status,
    observedGeneration: obj.metadata.generation,
    conditions: setCondition(status.conditions ?? [], condition, obj.metadata.generation, ctx.clock.now()),
  };
}
