// DatabaseConfig: can we reach this PostgreSQL server as an admin that may create roles? Ready says so, with a
// reason a user can act on. The config's pool lives in the PoolRegistry; the root Secret is watched by name.
import type * as k8s from '@kubernetes/client-node';
import pg from 'pg';
import { parseDuration, toRFC3339 } from '../api/duration.js';
import { CONFIG_FINALIZER, ROTATE_ROOT_ANNOTATION, type DatabaseConfig, type DatabaseConfigStatus, type DatabaseCredential } from '../api/types.js';
import { clientConfig, tlsVerification, transportFailure, type ConnectionSettings, type TransportFailure, type TransportState } from '../postgres/pool.js';
import { classifyPgError, safeErrorMessage } from '../postgres/errors.js';
import { scramSha256Verifier } from '../postgres/scram.js';
import { decodeKey, encodeData } from '../secrets/ownedSecret.js';
import { generatePassword } from '../secrets/password.js';
import type { Result } from '../controller/controller.js';
import { isConflict } from '../k8s/client.js';
import { RoleAdminError, type ServerInfo } from '../postgres/roleAdmin.js';
import type { ConditionInput } from '../api/conditions.js';
import { setSecretInUse } from '../k8s/rootSecrets.js';
import { NotReady, keyOf, readyFalse, resolveConfig, splitKey, withCondition, writeStatus, type OperatorContext, type ResolvedConfig } from './context.js';

/** A Ready config is checked again this often, so a server that goes away shows on the object. */
const REVERIFY_MS = 5 * 60_000;
const RETRY_UNREACHABLE_MS = 15_000;

/**
 * On the root Secret: when its password was last rotated, and the dbcred.dev/rotate-root value that rotation
 * answered. Read live with the Secret, so a reconcile that runs on a cached config whose status does not show the
 * rotation yet (the root Secret's own change enqueues one at once) does not rotate a second time.
 */
const ROOT_ROTATED_AT_ANNOTATION = 'dbcred.dev/root-rotated-at';
const ROOT_ROTATE_REQUEST_ANNOTATION = 'dbcred.dev/root-rotate-request';

/** A copy of a user's Secret with some keys set and some removed; everything else (metadata) kept as it was. */
function withData(secret: k8s.V1Secret, set: Record<string, string>, remove: string[] = [], annotations?: Record<string, string>): k8s.V1Secret {
  const data = { ...(secret.data ?? {}), ...encodeData(set) };
  for (const k of remove) delete data[k];
  if (!annotations) return { ...secret, data };
  return { ...secret, metadata: { ...secret.metadata, annotations: { ...(secret.metadata?.annotations ?? {}), ...annotations } }, data };
}

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

/**
 * Whether revocation can end the sessions of the roles this admin creates. Reported, not a reason for Ready=False:
 * issuing works, and so does revoking a role nobody is connected as; revoking one with a session fails (and says
 * so) instead of reporting success while the session lives on.
 */
function sessionTerminationCondition(info: ServerInfo): ConditionInput {
  const type = 'SessionTermination';
  switch (info.sessionTermination) {
    case 'superuser':
      return { type, status: 'True', reason: 'Superuser', message: `user "${info.currentUser}" is a superuser` };
    case 'pg_signal_backend':
      return { type, status: 'True', reason: 'SignalBackend', message: `user "${info.currentUser}" has the privileges of pg_signal_backend` };
    case 'role-membership':
      return {
        type,
        status: 'True',
        reason: 'RoleMembership',
        message: `user "${info.currentUser}" has CREATEROLE: revocation makes it a member of the role before ending the role's sessions`,
      };
    default:
      return {
        type,
        status: 'False',
        reason: 'CannotTerminateSessions',
        message:
          `user "${info.currentUser}" is not a superuser, lacks pg_signal_backend and does not inherit the privileges of roles it ` +
          'joins (NOINHERIT): revoking a role that still has open sessions or owns objects will fail (RevocationFailed)',
      };
  }
}

/**
 * Whether the statements that carry a credential's SCRAM verifier (in password mode, its plaintext) stay out of the
 * server log and pg_stat_statements. Each operator session quiets every setting its user may set (quietLogs.ts);
 * what stays loud is reported here and in a Warning Event, not a reason for Ready=False: the server's own
 * configuration is the platform's decision, and the README says what to change.
 */
function quietLogsCondition(info: ServerInfo, passwordMode: boolean): ConditionInput {
  const type = 'QuietLogs';
  if (info.loudSettings.length === 0) {
    return { type, status: 'True', reason: 'Quiet', message: 'role statements are kept out of the server log and pg_stat_statements' };
  }
  const loud = info.loudSettings.map((s) => `${s.name}=${s.value} (${s.effect})`).join('; ');
  return {
    type,
    status: 'False',
    reason: 'StatementsLogged',
    message:
      `server settings that user "${info.currentUser}" may not change for its sessions: ${loud}. ` +
      `The ${passwordMode ? 'plaintext password' : 'SCRAM verifier'} of issued credentials can reach the server log or statistics; ` +
      'a superuser admin, or GRANT SET ON PARAMETER (PostgreSQL 15+), lets the operator quiet them per session',
  };
}

/**
 * Whether the admin connection uses TLS, and how the server was verified. False when sslmode keeps it plaintext
 * or prefer fell back (the server declined TLS, or the TLS attempt failed), or when TLS itself failed.
 */
export function tlsCondition(settings: ConnectionSettings, transport: TransportState | undefined, failure?: TransportFailure): ConditionInput {
  const type = 'TLS';
  if (failure) return { type, status: 'False', reason: failure.reason, message: failure.message };
  if (!transport) return { type, status: 'Unknown', reason: 'NotConnected', message: 'the connection was not checked' };
  if (!transport.tls) {
    return transport.fellBack
      ? { type, status: 'False', reason: 'ServerDeclinedTLS', message: `sslmode=prefer: the TLS attempt failed or the server declined it; the admin connection is plaintext (use sslmode=verify-full with caSecretRef)` }
      : { type, status: 'False', reason: 'Disabled', message: `sslmode=${settings.sslmode}: the admin connection is plaintext` };
  }
  const protocol = transport.protocol ?? 'TLS';
  switch (tlsVerification(settings)) {
    case 'full':
      return { type, status: 'True', reason: 'VerifiedFull', message: `${protocol}; the server certificate is verified against ${settings.ca ? 'the CA of caSecretRef' : 'the system CAs'} and the host name` };
    case 'ca':
      return { type, status: 'True', reason: 'VerifiedCA', message: `${protocol}; the server certificate is verified against the CA of caSecretRef, not the host name (sslmode=${settings.sslmode})` };
    default:
      return { type, status: 'True', reason: 'NotVerified', message: `${protocol}; the server certificate is not verified (sslmode=${settings.sslmode} without caSecretRef)` };
  }
}

/**
 * Connects (or takes an idle connection) and reports its transport. A TLS or authentication-method failure comes
 * back as a TransportFailure, for a reason of its own; anything else is thrown as the RoleAdminError serverInfo
 * would have thrown, so a wrong password still reads LoginFailed.
 */
async function checkTransport(resolved: ResolvedConfig): Promise<{ transport?: TransportState; failure?: TransportFailure }> {
  try {
    return { transport: await resolved.pool.transport() };
  } catch (err) {
    const failure = transportFailure(err, resolved.settings);
    if (failure) return { failure };
    throw new RoleAdminError(`connecting: ${safeErrorMessage(err, [resolved.settings.password])}`, classifyPgError(err));
  }
}

/** The Secrets (names, in the config's namespace) that the config reads: root credentials, and the CA if set. */
export function referencedSecrets(config: DatabaseConfig): string[] {
  const names = [config.spec.rootCredentialsSecretRef.name];
  if (config.spec.caSecretRef && !names.includes(config.spec.caSecretRef.name)) names.push(config.spec.caSecretRef.name);
  return names;
}

/**
 * Whether a config still needs a Secret kept for revocation (so the dbcred.dev/in-use finalizer stays on it).
 * A config needs the Secrets it references while any credential holds a role issued through it; and, so that a
 * role issued later can be revoked too, while it is alive, unless someone is deleting the Secret itself (then
 * only held roles keep it: nothing depends on it otherwise, and the user asked for it to go).
 */
export function needsSecret(config: DatabaseConfig, secretName: string, holders: number, secretBeingDeleted: boolean): boolean {
  if (!referencedSecrets(config).includes(secretName)) return false;
  if (holders > 0) return true;
  return !config.metadata.deletionTimestamp && !secretBeingDeleted;
}

export class DatabaseConfigReconciler {
  constructor(private readonly ctx: OperatorContext) {}

  private nextRootRotation(config: DatabaseConfig, status: DatabaseConfigStatus): number {
    const last = new Date(status.lastRootRotationTime ?? config.metadata.creationTimestamp ?? this.ctx.clock.now());
    return last.getTime() + parseDuration(config.spec.rootRotation?.period ?? '0s');
  }

  /**
   * Root rotation: the new password is recorded in the root Secret (key <passwordKey>.pending) before PostgreSQL
   * changes, then set with ALTER ROLE (a verifier in scram mode), then promoted. A crash at any point leaves a
   * Secret with a password that logs in: the old one until ALTER ROLE, the pending one after it.
   */
  private async rotateRootIfDue(config: DatabaseConfig, resolved: ResolvedConfig, status: DatabaseConfigStatus): Promise<DatabaseConfigStatus> {
    const { namespace } = config.metadata;
    const ref = config.spec.rootCredentialsSecretRef;
    const passKey = ref.passwordKey ?? 'password';
    const pendingKey = `${passKey}.pending`;
    const now = this.ctx.clock.now();
    const request = config.metadata.annotations?.[ROTATE_ROOT_ANNOTATION];
    const secret = await this.ctx.client.getSecret(namespace, ref.name);
    if (!secret) throw new NotReady('SecretNotFound', `root credentials Secret ${namespace}/${ref.name} not found`);
    const pending = decodeKey(secret, pendingKey);
    const recorded = secret.metadata?.annotations ?? {};
    status = {
      ...status,
      lastRootRotationTime: recorded[ROOT_ROTATED_AT_ANNOTATION] ?? status.lastRootRotationTime,
      rootRotateRequest: recorded[ROOT_ROTATE_REQUEST_ANNOTATION] ?? status.rootRotateRequest,
    };
    const due =
      pending !== undefined ||
      (request !== undefined && request !== status.rootRotateRequest) ||
      (config.spec.rootRotation?.period !== undefined && now.getTime() >= this.nextRootRotation(config, status));
    if (!due) return status;

    const password = pending ?? generatePassword(resolved.passwordLength);
    let current = secret;
    if (pending === undefined) {
      current = await this.ctx.client.replaceSecret(namespace, withData(secret, { [pendingKey]: password }));
    }
    await resolved.admin.setPassword(resolved.settings.user, resolved.scram ? await scramSha256Verifier(password) : password);
    const answered = { [ROOT_ROTATED_AT_ANNOTATION]: toRFC3339(now), ...(request !== undefined ? { [ROOT_ROTATE_REQUEST_ANNOTATION]: request } : {}) };
    await this.ctx.client.replaceSecret(namespace, withData(current, { [passKey]: password }, [pendingKey], answered));
    // New checkouts connect with the new password at once; what is in flight on the old pool finishes there.
    this.ctx.pools.get(resolved.key, { ...resolved.settings, password });
    this.ctx.events.record(config, 'Normal', 'RootRotated', `rotated the password of "${resolved.settings.user}"`);
    this.ctx.logger.info('root password rotated', { config: resolved.key, user: resolved.settings.user });
    return { ...status, lastRootRotationTime: toRFC3339(now), rootRotateRequest: request };
  }

  /** The root login failed: if a rotation was interrupted after ALTER ROLE, the pending password works; promote it. */
  private async finishInterruptedRootRotation(config: DatabaseConfig): Promise<boolean> {
    const { namespace } = config.metadata;
    const ref = config.spec.rootCredentialsSecretRef;
    const passKey = ref.passwordKey ?? 'password';
    const pendingKey = `${passKey}.pending`;
    const secret = await this.ctx.client.getSecret(namespace, ref.name);
    const pending = decodeKey(secret, pendingKey);
    const existing = this.ctx.pools.existing(keyOf(namespace, config.metadata.name));
    if (!secret || pending === undefined || !existing) return false;
    const client = new pg.Client(clientConfig({ ...existing.settings, password: pending }));
    client.on('error', () => undefined);
    try {
      await client.connect();
    } catch {
      return false;
    } finally {
      await client.end().catch(() => undefined);
    }
    await this.ctx.client.replaceSecret(namespace, withData(secret, { [passKey]: pending }, [pendingKey]));
    this.ctx.logger.info('finished an interrupted root rotation', { config: keyOf(namespace, config.metadata.name) });
    return true;
  }

  /**
   * A config being deleted stays until no credential holds a role on its server: deleting a namespace with
   * everything in it must still revoke every role (the credentials' finalizers need this config to do so).
   */
  private async finalize(key: string, config: DatabaseConfig): Promise<Result> {
    const holders = this.holdersOf(key);
    if (!(config.metadata.finalizers ?? []).includes(CONFIG_FINALIZER)) {
      // Deleted before it was ever ours (or its finalizer was removed by hand): it cannot wait for anything.
      await this.syncSecretsInUse(config, { ...(config.status ?? {}) }, true);
      return {};
    }
    if (holders.length) {
      const held = await this.syncSecretsInUse(config, { ...(config.status ?? {}) });
      config = held.config;
      const names = holders.slice(0, 5).map((c) => keyOf(c.metadata.namespace, c.metadata.name)).join(', ');
      const status = withCondition(this.ctx, config, held.status, {
        type: 'Ready',
        status: 'False',
        reason: 'WaitingForRevocation',
        message: `being deleted; waiting for ${holders.length} credential(s) to revoke their roles (${names}${holders.length > 5 ? ', …' : ''})`,
      });
      await writeStatus<DatabaseConfig>(this.ctx, 'config', config, status).catch(() => undefined);
      return { requeueAfter: 2_000 };
    }
    // The Secrets first: a crash after this leaves the config, whose next reconcile lands here again.
    await this.syncSecretsInUse(config, { ...(config.status ?? {}) });
    await this.ctx.client.patchMetadata('config', config.metadata.namespace, config.metadata.name, {
      finalizers: (config.metadata.finalizers ?? []).filter((f) => f !== CONFIG_FINALIZER),
      resourceVersion: config.metadata.resourceVersion,
    });
    this.ctx.pools.remove(key);
    this.ctx.rootSecrets.release(key);
    return {};
  }

  /** Credentials that hold (or may hold) a role issued through this config. */
  private holdersOf(key: string): DatabaseCredential[] {
    return this.ctx.informers.credentials.list().filter((c) => c.status?.roles?.some((r) => r.config === key));
  }

  /**
   * Puts the dbcred.dev/in-use finalizer on the Secrets this config needs (needsSecret) and takes it off those
   * that no config of the namespace needs any more: Secrets it no longer references, and all of them once it is
   * deleted and no credential holds a role through it. A Secret name is recorded in status.secretsInUse before
   * the finalizer goes on, so that it is found again after a restart even when the reference changed meanwhile.
   * Only Secrets a config references ever get the finalizer.
   */
  private async syncSecretsInUse(config: DatabaseConfig, status: DatabaseConfigStatus, releaseAll = false): Promise<{ config: DatabaseConfig; status: DatabaseConfigStatus }> {
    const { namespace, name } = config.metadata;
    const key = keyOf(namespace, name);
    const recorded = status.secretsInUse ?? [];
    const candidates = [...new Set([...recorded, ...referencedSecrets(config)])];
    const neighbours = this.ctx.informers.configs.list().filter((c) => c.metadata.namespace === namespace && c.metadata.name !== name);
    const holders = (c: DatabaseConfig) => this.holdersOf(keyOf(c.metadata.namespace, c.metadata.name)).length;
    const inUse: string[] = [];
    const toHold: k8s.V1Secret[] = [];
    for (const secretName of candidates) {
      const referenced = referencedSecrets(config).includes(secretName);
      // A referenced Secret is read through its watch (resolveConfig reads it there too); a former one live.
      const secret = referenced ? await this.ctx.rootSecrets.get(namespace, secretName, key) : await this.ctx.client.getSecret(namespace, secretName);
      if (!secret) continue;
      const deleting = !!secret.metadata?.deletionTimestamp;
      if (!releaseAll && needsSecret(config, secretName, holders(config), deleting)) {
        inUse.push(secretName);
        toHold.push(secret);
      } else if (!neighbours.some((c) => needsSecret(c, secretName, holders(c), deleting))) {
        // Read live: a watch that lags behind our own add would make the removal a silent no-op.
        const live = referenced ? await this.ctx.client.getSecret(namespace, secretName) : secret;
        if (live) await setSecretInUse(this.ctx.client, live, false);
        this.ctx.logger.debug('released in-use finalizer', { config: key, secret: secretName });
      }
      // else: another config of the namespace needs it and holds it under its own name.
    }
    const next: DatabaseConfigStatus = { ...status, secretsInUse: inUse.length ? inUse : undefined };
    // Intent first: record every Secret that is about to get the finalizer before it does.
    const recordedAll = [...new Set([...recorded, ...inUse])];
    if (toHold.some((s) => !recorded.includes(s.metadata?.name ?? ''))) {
      config = await writeStatus<DatabaseConfig>(this.ctx, 'config', config, { ...status, secretsInUse: recordedAll });
    }
    for (const secret of toHold) await setSecretInUse(this.ctx.client, secret, true);
    return { config, status: next };
  }

  async reconcile(key: string): Promise<Result> {
    const { namespace } = splitKey(key);
    let config = this.ctx.informers.configs.get(key);
    if (!config) {
      this.ctx.pools.remove(key);
      this.ctx.rootSecrets.release(key);
      return {};
    }
    if (config.metadata.deletionTimestamp) return this.finalize(key, config);
    if (!(config.metadata.finalizers ?? []).includes(CONFIG_FINALIZER)) {
      config = await this.ctx.client.patchMetadata<DatabaseConfig>('config', namespace, config.metadata.name, {
        finalizers: [...(config.metadata.finalizers ?? []), CONFIG_FINALIZER],
        resourceVersion: config.metadata.resourceVersion,
      });
    }
    const keep = [keyOf(namespace, config.spec.rootCredentialsSecretRef.name)];
    if (config.spec.caSecretRef) keep.push(keyOf(namespace, config.spec.caSecretRef.name));
    this.ctx.rootSecrets.release(key, keep);

    let status: DatabaseConfigStatus = { ...(config.status ?? {}) };
    let requeueAfter = REVERIFY_MS;
    try {
      ({ config, status } = await this.syncSecretsInUse(config, status));
      const resolved = await resolveConfig(this.ctx, config);
      if (config.spec.verifyConnection !== false) {
        const { transport, failure } = await checkTransport(resolved);
        const tls = tlsCondition(resolved.settings, transport, failure);
        const tlsBefore = config.status?.conditions?.find((c) => c.type === tls.type);
        if (tls.reason === 'ServerDeclinedTLS' && tlsBefore?.reason !== tls.reason) this.ctx.events.record(config, 'Warning', tls.reason, tls.message);
        status = withCondition(this.ctx, config, status, tls);
        if (failure) throw new NotReady(failure.reason, failure.message);
        const info = await resolved.admin.serverInfo();
        status.serverVersion = info.version;
        if (!info.canCreateRoles) {
          throw new NotReady('InsufficientPrivileges', `user "${info.currentUser}" has neither SUPERUSER nor CREATEROLE`);
        }
        const passwordMode = (config.spec.passwordAuthentication ?? 'scram-sha-256') === 'password';
        for (const reported of [sessionTerminationCondition(info), quietLogsCondition(info, passwordMode)]) {
          const before = config.status?.conditions?.find((c) => c.type === reported.type);
          if (reported.status === 'False' && (before?.reason !== reported.reason || before.message !== reported.message)) {
            this.ctx.events.record(config, 'Warning', reported.reason, reported.message);
          }
          status = withCondition(this.ctx, config, status, reported);
        }
      }
      status = await this.rotateRootIfDue(config, resolved, status);
      if (config.spec.rootRotation?.period) {
        const next = this.nextRootRotation(config, status);
        requeueAfter = Math.min(requeueAfter, Math.max(0, next - this.ctx.clock.now().getTime()) + 10);
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
        if (err.kind === 'auth' && (await this.finishInterruptedRootRotation(config))) return { requeue: true };
        ({ reason, retryMs: requeueAfter } = reasonFor(err));
      } else if (isConflict(err)) {
        return { requeue: true }; // a Secret or this config changed under us; the next run sees the new one
      } else {
        throw err;
      }
      status = readyFalse(this.ctx, config, status, reason, (err as Error).message);
    }
    try {
      await writeStatus<DatabaseConfig>(this.ctx, 'config', config, status);
    } catch (err) {
      if (isConflict(err)) return { requeue: true }; // our cached copy was stale; the next run sees the new one
      throw err;
    }
    return { requeueAfter };
  }
}
