// One pool per DatabaseConfig, whose pg.Pool is replaced only when what it connects with changes (URL, root
// credentials, CA, size), and retired gracefully. Pools carry connect/statement/lock timeouts and an error
// listener (an idle client that dies must not take the process down); checkout() gives a checked-out client one.
// Every connection is a GuardedConnection: sslmode means what it means to libpq, and a server that asks for the
// password in a form the config does not allow (cleartext, MD5) gets nothing.
import { createHash } from 'node:crypto';
import net from 'node:net';
import { TLSSocket, type ConnectionOptions } from 'node:tls';
import type { EventEmitter } from 'node:events';
import pg from 'pg';
import type { Logger } from '../logger.js';
import { QUIET_SESSION_SQL } from './quietLogs.js';

/** The password-based methods a server may ask for; libpq's require_auth names them the same way. */
export const AUTH_METHODS = ['scram-sha-256', 'md5', 'password'] as const;
export type AuthMethod = (typeof AUTH_METHODS)[number];
export const DEFAULT_AUTH_METHODS: readonly AuthMethod[] = ['scram-sha-256'];

export interface ConnectionSettings {
  host: string;
  port: number;
  database: string;
  user: string;
  password: string;
  sslmode: string;
  ca?: string;
  maxConnections: number;
  /** The password-based authentication the server may ask for (default: scram-sha-256 only). */
  allowedAuthentication?: readonly AuthMethod[];
}

const CONNECT_TIMEOUT_MS = 5_000;
const STATEMENT_TIMEOUT_MS = 30_000;
const LOCK_TIMEOUT_MS = 10_000;

/** How the server's certificate is checked: against the CA and the host name, the CA only, or not at all. */
export type TlsVerification = 'full' | 'ca' | 'none';

/** What an sslmode asks of a connection, as libpq defines it (https://www.postgresql.org/docs/current/libpq-ssl.html). */
interface TransportPolicy {
  /** pg's ssl option for the first attempt: false = plaintext. */
  ssl: false | ConnectionOptions;
  /** prefer: when the server declines TLS or the TLS attempt fails before authentication, connect again without. */
  fallbackToPlaintext: boolean;
  verification: TlsVerification;
  allowedAuthentication: readonly AuthMethod[];
}

const skipHostNameCheck = (): undefined => undefined;

function transportPolicy(settings: ConnectionSettings): TransportPolicy {
  const allowedAuthentication = settings.allowedAuthentication ?? DEFAULT_AUTH_METHODS;
  // With a CA, libpq verifies the chain in every mode that uses TLS (a root certificate present means verify-ca).
  const chainOnly: ConnectionOptions = { ca: settings.ca, rejectUnauthorized: true, checkServerIdentity: skipHostNameCheck };
  const tryTls: TransportPolicy = settings.ca
    ? { ssl: chainOnly, fallbackToPlaintext: false, verification: 'ca', allowedAuthentication }
    : { ssl: { rejectUnauthorized: false }, fallbackToPlaintext: false, verification: 'none', allowedAuthentication };
  switch (settings.sslmode) {
    case 'disable':
    case 'allow': // libpq would try TLS after a refused plaintext login; here allow stays plaintext (README).
      return { ssl: false, fallbackToPlaintext: false, verification: 'none', allowedAuthentication };
    case 'prefer':
      return { ...tryTls, fallbackToPlaintext: true };
    case 'require':
      return tryTls;
    case 'verify-ca':
      return { ssl: chainOnly, fallbackToPlaintext: false, verification: 'ca', allowedAuthentication };
    default: // verify-full: the CA given, else the system's trusted CAs; and the host name
      return { ssl: { ...(settings.ca ? { ca: settings.ca } : {}), rejectUnauthorized: true }, fallbackToPlaintext: false, verification: 'full', allowedAuthentication };
  }
}

/** How a connection with these settings verifies the server when it uses TLS. */
export function tlsVerification(settings: ConnectionSettings): TlsVerification {
  return transportPolicy(settings).verification;
}

/** The server asked for the password in a form the config does not allow; nothing was sent. */
export class InsecureAuthenticationError extends Error {
  override name = 'InsecureAuthenticationError';
  constructor(
    readonly method: AuthMethod,
    readonly allowed: readonly AuthMethod[],
  ) {
    super(
      `the server asked for ${method === 'password' ? 'the password in cleartext ("password" authentication)' : `${method} authentication`}, ` +
        `which allowedAuthenticationMethods (${allowed.join(', ')}) does not allow; the password was not sent`,
    );
  }
}

/** What a connection ended up with: TLS or not, and whether prefer fell back to plaintext. */
export interface TransportState {
  tls: boolean;
  /** e.g. TLSv1.3 */
  protocol?: string;
  fellBack: boolean;
}

/** The parts of pg's Connection this file builds on (lib/connection.js; not in @types/pg). */
interface PgConnectionInternals extends EventEmitter {
  stream: net.Socket;
  ssl: false | ConnectionOptions;
  /** set by pg's Client when it gives up (connect timeout, end()) */
  _ending: boolean;
  connect(port: number, host: string): void;
  requestSsl(): void;
}
const PgConnection = pg.Connection as unknown as new (config: object) => PgConnectionInternals;

const AUTH_REQUESTS: ReadonlyMap<string, AuthMethod> = new Map([
  ['authenticationCleartextPassword', 'password'],
  ['authenticationMD5Password', 'md5'],
  ['authenticationSASL', 'scram-sha-256'],
]);

/**
 * pg's Connection with two changes, both made where the server's messages arrive, before pg's Client acts on them:
 * an authentication request of a method not allowed becomes an InsecureAuthenticationError and the socket is
 * destroyed (pg's Client would answer a cleartext request with the password, an MD5 request with a hash that is
 * as good as the password for MD5 logins); and with sslmode=prefer, a server that declines TLS, a failed TLS
 * handshake or an error before authentication starts leads to a second, plaintext attempt, as libpq does.
 */
class GuardedConnection extends PgConnection {
  private target: { port: number; host: string } | undefined;
  private rawSocket: net.Socket | undefined;
  /** The TCP connection stands: a fallback is about TLS, never about an unreachable server. */
  private reachedServer = false;
  /** The server has started authentication (or accepted us): from here on an error is an error. */
  private authenticating = false;
  private fellBack = false;

  constructor(private readonly policy: TransportPolicy) {
    super({ ssl: policy.ssl, keepAlive: false, encoding: 'utf8' });
  }

  override connect(port: number, host: string): void {
    this.target = { port, host };
    this.rawSocket = this.stream;
    super.connect(port, host);
  }

  override requestSsl(): void {
    // After a fallback pg's Client still asks for TLS on 'connect'; the plaintext attempt goes straight to startup.
    if (this.fellBack) {
      process.nextTick(() => this.emit('sslconnect'));
      return;
    }
    super.requestSsl();
  }

  override emit(event: string | symbol, ...args: unknown[]): boolean {
    if (event === 'connect') this.reachedServer = true;
    if (typeof event === 'string' && event.startsWith('authentication')) {
      this.authenticating = true;
      const method = AUTH_REQUESTS.get(event);
      if (method !== undefined && !this.policy.allowedAuthentication.includes(method)) {
        this.stream.destroy();
        return super.emit('error', new InsecureAuthenticationError(method, this.policy.allowedAuthentication));
      }
    } else if ((event === 'error' || event === 'errorMessage') && this.mayFallBack) {
      this.connectWithoutTls();
      return true;
    }
    return super.emit(event, ...args);
  }

  /** prefer, still in the TLS attempt, the server reached, nothing sent yet, and pg's Client has not given up. */
  private get mayFallBack(): boolean {
    return this.policy.fallbackToPlaintext && this.ssl !== false && this.reachedServer && !this.authenticating && !this.fellBack && !this._ending;
  }

  get transport(): TransportState {
    const stream = this.stream;
    const tls = stream instanceof TLSSocket && stream.encrypted;
    return { tls, protocol: tls ? ((stream as TLSSocket).getProtocol() ?? undefined) : undefined, fellBack: this.fellBack };
  }

  private connectWithoutTls(): void {
    for (const socket of new Set([this.rawSocket, this.stream])) {
      if (!socket) continue;
      socket.removeAllListeners();
      socket.on('error', () => undefined);
      socket.destroy();
    }
    this.fellBack = true;
    this.ssl = false;
    this.stream = new net.Socket();
    const { port, host } = this.target ?? { port: 0, host: '' };
    this.connect(port, host);
  }
}

interface GuardedClientConfig extends pg.ClientConfig {
  transportPolicy: TransportPolicy;
}

/** The pool's client: a pg.Client on a GuardedConnection (pg-pool passes its options to each new Client). */
class GuardedClient extends pg.Client {
  constructor(config: GuardedClientConfig) {
    // pg-pool keeps the password non-enumerable in its options (out of stack traces): a spread would drop it.
    super({ ...config, password: config.password, connection: new GuardedConnection(config.transportPolicy) } as pg.ClientConfig);
  }
}

/** The TLS state of a client made from poolConfig or clientConfig, or undefined for another client. */
export function transportOf(client: pg.ClientBase): TransportState | undefined {
  const connection: unknown = (client as unknown as { connection?: unknown }).connection;
  return connection instanceof GuardedConnection ? connection.transport : undefined;
}

function baseConfig(settings: ConnectionSettings): pg.ClientConfig {
  return {
    host: settings.host,
    port: settings.port,
    database: settings.database,
    user: settings.user,
    password: settings.password,
    ssl: transportPolicy(settings).ssl,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    statement_timeout: STATEMENT_TIMEOUT_MS,
    lock_timeout: LOCK_TIMEOUT_MS,
    application_name: 'dbcred-operator',
    // statements.ts escapes literals for standard_conforming_strings=on (backslash is an ordinary character).
    options: '-c standard_conforming_strings=on',
  };
}

export function poolConfig(settings: ConnectionSettings): pg.PoolConfig {
  const config: pg.PoolConfig & GuardedClientConfig = {
    ...baseConfig(settings),
    max: settings.maxConnections,
    idleTimeoutMillis: 30_000,
    transportPolicy: transportPolicy(settings),
    Client: GuardedClient as unknown as pg.PoolConfig['Client'],
  };
  return config;
}

/**
 * The config of one pg.Client (not a pool). Call it once per client: it carries the client's own connection.
 */
export function clientConfig(settings: ConnectionSettings): pg.ClientConfig {
  return { ...baseConfig(settings), connection: new GuardedConnection(transportPolicy(settings)) } as pg.ClientConfig;
}

const UNTRUSTED_CERTIFICATE = new Set([
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
]);
const INVALID_CERTIFICATE = new Set(['CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID', 'INVALID_PURPOSE', 'CERT_REVOKED']);

/** Why a connection failed, when it failed in TLS or in the choice of authentication: a reason a user can act on. */
export interface TransportFailure {
  reason: string;
  message: string;
}

/**
 * The transport failure behind err, or undefined for anything else (a wrong password, an unreachable server).
 * Messages name the host and the certificate problem, never a credential.
 */
export function transportFailure(err: unknown, settings: ConnectionSettings): TransportFailure | undefined {
  if (err instanceof InsecureAuthenticationError) return { reason: 'InsecureAuthentication', message: err.message };
  const { code, message } = (typeof err === 'object' && err !== null ? err : {}) as { code?: unknown; message?: unknown };
  const text = typeof message === 'string' ? message : '';
  const server = `${settings.host}:${settings.port}`;
  const trusted = settings.ca ? 'the CA of caSecretRef' : 'the system CAs (no caSecretRef)';
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    return { reason: 'TLSHostnameMismatch', message: `the certificate of ${server} is not valid for host "${settings.host}" (sslmode=${settings.sslmode}): ${text}` };
  }
  if (typeof code === 'string' && UNTRUSTED_CERTIFICATE.has(code)) {
    return { reason: 'TLSCertificateUntrusted', message: `the certificate of ${server} is not signed by ${trusted} (sslmode=${settings.sslmode}): ${text} (${code})` };
  }
  if (typeof code === 'string' && INVALID_CERTIFICATE.has(code)) {
    return { reason: 'TLSCertificateInvalid', message: `the certificate of ${server} is not valid: ${text} (${code})` };
  }
  if (text === 'The server does not support SSL connections') {
    return { reason: 'TLSUnavailable', message: `${server} does not offer TLS, which sslmode=${settings.sslmode} requires` };
  }
  if (typeof code === 'string' && (code.startsWith('ERR_SSL_') || code.startsWith('ERR_TLS_'))) {
    return { reason: 'TLSHandshakeFailed', message: `the TLS handshake with ${server} failed: ${text} (${code})` };
  }
  return undefined;
}

function fingerprint(settings: ConnectionSettings): string {
  return createHash('sha256').update(JSON.stringify(settings)).digest('hex');
}

/** What talking to PostgreSQL needs of a pool: a client checkout. A pg.Pool is one, and so is a ConfigPool. */
export interface ClientSource {
  connect(): Promise<pg.PoolClient>;
}

/**
 * Runs fn on a client checked out of source, and gives the client back. pg emits 'error' on a checked-out client
 * whose connection dies (57P01 when the server shuts down, a reset socket), while pg-pool listens only on idle
 * clients: unheard, that event kills the process. Here it is heard, and surfaces as the failure of fn's next
 * query (pg fails every query of a broken client). A client that saw any error is destroyed rather than returned
 * (release(err)): it may be broken, or still in a transaction that ROLLBACK could not end.
 */
export async function checkout<T>(source: ClientSource, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await source.connect();
  let failure: unknown;
  const onError = (err: Error): void => {
    failure ??= err;
  };
  client.on('error', onError);
  try {
    // A session that could not be quieted never runs our statements (they carry verifiers).
    await quieted.get(client);
    return await fn(client);
  } catch (err) {
    failure ??= err ?? new Error('query failed');
    throw err;
  } finally {
    if (failure === undefined) {
      client.removeListener('error', onError);
      client.release();
    } else {
      // Destroyed, not returned: its dying connection may still emit 'error' (a FATAL 57P01 arriving after the
      // query's own error, while pg-pool ends it). The listener stays so that late event is heard too.
      client.release(failure instanceof Error ? failure : new Error(String(failure)));
    }
  }
}

/**
 * Each session's quieting (quietLogs.ts), started when pg-pool opens the connection: queued on the client before
 * anything a checkout sends, so it runs first; checkout() waits for its outcome.
 */
const quieted = new WeakMap<pg.ClientBase, Promise<void>>();

function quietSession(client: pg.ClientBase): void {
  const done = client.query(QUIET_SESSION_SQL).then(() => undefined);
  done.catch(() => undefined); // heard by the checkout that awaits it
  quieted.set(client, done);
}

/** A retired pool is ended once idle, or after this long at the latest (ending never cuts a checked-out client). */
const RETIRED_POOL_MAX_MS = 2 * STATEMENT_TIMEOUT_MS;

/**
 * The connections of one DatabaseConfig, one object for the life of the config. When what it connects with
 * changes (root rotation, an edited root Secret or URL), a new pg.Pool takes every new checkout, while the old
 * one is retired gracefully: queries running on it finish, checkouts queued on it are served by the clients
 * they wait for, and it is ended once nothing is checked out or waiting. Ending it at once would fail those
 * queued checkouts ("Cannot use a pool after calling end" or a connect timeout) in reconciles that had nothing
 * wrong with them.
 */
export class ConfigPool implements ClientSource {
  private current: pg.Pool;
  private fingerprint: string;
  private closed = false;

  constructor(
    private readonly key: string,
    private settingsInUse: ConnectionSettings,
    private readonly logger: Logger,
  ) {
    this.current = this.open(settingsInUse);
    this.fingerprint = fingerprint(settingsInUse);
  }

  /** The settings new connections use. */
  get settings(): ConnectionSettings {
    return this.settingsInUse;
  }

  /** The pg.Pool that takes new checkouts now (what per-pool memos key on). */
  get active(): pg.Pool {
    return this.current;
  }

  async connect(): Promise<pg.PoolClient> {
    const pool = this.current;
    if (this.closed) throw new Error(`the connections of DatabaseConfig ${this.key} were closed`);
    try {
      return await pool.connect();
    } catch (err) {
      // Replaced while this checkout waited, e.g. by a root rotation after which the old password no longer
      // logs in: the successor serves it.
      if (pool !== this.current && !this.closed) return this.current.connect();
      throw err;
    }
  }

  /** What a connection of this pool negotiated (connecting if none is idle): TLS or not, and whether prefer fell back. */
  transport(): Promise<TransportState | undefined> {
    return checkout(this, async (client) => transportOf(client));
  }

  /** Switches new checkouts to a new pg.Pool when the settings differ from those in use. */
  use(settings: ConnectionSettings): void {
    const fp = fingerprint(settings);
    if (fp === this.fingerprint || this.closed) return;
    const old = this.current;
    this.current = this.open(settings);
    this.fingerprint = fp;
    this.settingsInUse = settings;
    this.logger.debug('PostgreSQL connection settings changed; new pool in use', { config: this.key });
    void this.retire(old);
  }

  /** No new checkouts; resolves when the pool in use has finished what is in flight and is ended. */
  close(): Promise<void> {
    this.closed = true;
    return this.retire(this.current);
  }

  private open(settings: ConnectionSettings): pg.Pool {
    const pool = new pg.Pool(poolConfig(settings));
    pool.on('error', (err) => {
      this.logger.warn('idle PostgreSQL connection failed', { config: this.key, error: err.message });
    });
    // Every client of ours hears 'error' for its whole life, whoever holds it at that moment: pg-pool listens only
    // while a client is idle and checkout() while it is checked out, and a dying connection must never find a
    // moment in between (an unheard 'error' event ends the process). What it means is handled where it is heard.
    pool.on('connect', (client) => {
      client.on('error', (err: Error) => this.logger.debug('PostgreSQL connection error', { config: this.key, error: err.message }));
      quietSession(client);
    });
    return pool;
  }

  private retire(pool: pg.Pool): Promise<void> {
    return new Promise((resolve) => {
      let ended = false;
      const end = (): void => {
        if (ended) return;
        ended = true;
        clearTimeout(deadline);
        pool.off('release', check).off('remove', check);
        pool
          .end()
          .catch((err: Error) => this.logger.debug('closing pool failed', { config: this.key, error: err.message }))
          .finally(resolve);
      };
      // 'release' fires before the client is back among the idle ones (or handed to a waiter): look a tick later.
      const check = (): void => {
        setImmediate(() => {
          if (pool.waitingCount === 0 && pool.idleCount === pool.totalCount) end();
        });
      };
      const deadline = setTimeout(end, RETIRED_POOL_MAX_MS);
      deadline.unref();
      pool.on('release', check).on('remove', check);
      check();
    });
  }
}

/** One ConfigPool per DatabaseConfig key. */
export class PoolRegistry {
  private readonly pools = new Map<string, ConfigPool>();

  constructor(private readonly logger: Logger) {}

  /** The pool for a config key; new checkouts use these settings from now on. */
  get(key: string, settings: ConnectionSettings): ConfigPool {
    const existing = this.pools.get(key);
    if (existing) {
      existing.use(settings);
      return existing;
    }
    const pool = new ConfigPool(key, settings, this.logger);
    this.pools.set(key, pool);
    return pool;
  }

  /** The pool already made for this config, if any (for revocation when the config cannot be re-read). */
  existing(key: string): { pool: ConfigPool; settings: ConnectionSettings } | undefined {
    const pool = this.pools.get(key);
    return pool ? { pool, settings: pool.settings } : undefined;
  }

  /** Forgets a config's pool; what is in flight on it finishes first. */
  remove(key: string): void {
    const pool = this.pools.get(key);
    if (!pool) return;
    this.pools.delete(key);
    void pool.close();
  }

  async closeAll(): Promise<void> {
    const pools = [...this.pools.values()];
    this.pools.clear();
    await Promise.allSettled(pools.map((p) => p.close()));
  }
}
