// One pool per DatabaseConfig, whose pg.Pool is replaced only when what it connects with changes (URL, root
// credentials, CA, size), and retired gracefully. Pools carry connect/statement/lock timeouts and an error
// listener (an idle client that dies must not take the process down); checkout() gives a checked-out client one.
import { createHash } from 'node:crypto';
import pg from 'pg';
import type { Logger } from '../logger.js';
import { QUIET_SESSION_SQL } from './quietLogs.js';

export interface ConnectionSettings {
  host: string;
  port: number;
  database: string;
  user: string;
  password: string;
  sslmode: string;
  ca?: string;
  maxConnections: number;
}

const CONNECT_TIMEOUT_MS = 5_000;
const STATEMENT_TIMEOUT_MS = 30_000;
const LOCK_TIMEOUT_MS = 10_000;

function sslOption(settings: ConnectionSettings): pg.PoolConfig['ssl'] {
  switch (settings.sslmode) {
    case 'disable':
    case 'allow':
    case 'prefer':
      // libpq's prefer falls back to plaintext; pg cannot, so prefer = no TLS (documented in the README).
      return false;
    case 'require':
      return { rejectUnauthorized: false, ca: settings.ca };
    case 'verify-ca':
      return { ca: settings.ca, checkServerIdentity: () => undefined };
    default: // verify-full
      return { ca: settings.ca, rejectUnauthorized: true };
  }
}

export function poolConfig(settings: ConnectionSettings): pg.PoolConfig {
  return {
    host: settings.host,
    port: settings.port,
    database: settings.database,
    user: settings.user,
    password: settings.password,
    ssl: sslOption(settings),
    max: settings.maxConnections,
    idleTimeoutMillis: 30_000,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    statement_timeout: STATEMENT_TIMEOUT_MS,
    lock_timeout: LOCK_TIMEOUT_MS,
    application_name: 'dbcred-operator',
    // statements.ts escapes literals for standard_conforming_strings=on (backslash is an ordinary character).
    options: '-c standard_conforming_strings=on',
  };
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
