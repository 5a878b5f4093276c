// One pg.Pool per DatabaseConfig, replaced only when what it connects with changes (URL, root credentials, CA,
// size). Pools carry connect/statement/lock timeouts and an error listener: an idle client that dies must not
// take the process down.
import { createHash } from 'node:crypto';
import pg from 'pg';
import type { Logger } from '../logger.js';

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

interface Entry {
  pool: pg.Pool;
  fingerprint: string;
  settings: ConnectionSettings;
}

export class PoolRegistry {
  private readonly pools = new Map<string, Entry>();

  constructor(private readonly logger: Logger) {}

  /** The pool for a config key, (re)created when its settings changed. */
  get(key: string, settings: ConnectionSettings): pg.Pool {
    const fp = fingerprint(settings);
    const existing = this.pools.get(key);
    if (existing?.fingerprint === fp) return existing.pool;
    if (existing) this.retire(key, existing);
    const pool = new pg.Pool(poolConfig(settings));
    pool.on('error', (err) => {
      this.logger.warn('idle PostgreSQL connection failed', { config: key, error: err.message });
    });
    this.pools.set(key, { pool, fingerprint: fp, settings });
    return pool;
  }

  /** The pool already made for this config, if any (for revocation when the config cannot be re-read). */
  existing(key: string): { pool: pg.Pool; settings: ConnectionSettings } | undefined {
    const e = this.pools.get(key);
    return e ? { pool: e.pool, settings: e.settings } : undefined;
  }

  remove(key: string): void {
    const e = this.pools.get(key);
    if (e) this.retire(key, e);
  }

  private retire(key: string, entry: Entry): void {
    this.pools.delete(key);
    entry.pool.end().catch((err: Error) => this.logger.debug('closing pool failed', { config: key, error: err.message }));
  }

  async closeAll(): Promise<void> {
    const entries = [...this.pools.values()];
    this.pools.clear();
    await Promise.allSettled(entries.map((e) => e.pool.end()));
  }
}
