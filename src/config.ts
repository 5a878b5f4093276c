// Operator settings, from the environment, parsed and validated once at start-up.
import { parseDuration } from './api/duration.js';

export interface OperatorConfig {
  logLevel: string;
  /** Namespace to watch; empty = all namespaces. */
  watchNamespace: string;
  /** Concurrent reconciles per controller. */
  workers: number;
  /** Every cached object is reconciled again at least this often (ms). */
  resyncPeriodMs: number;
  /** Port of the /healthz and /readyz endpoints; 0 = off. */
  healthPort: number;
  leaderElection: boolean;
  leaseNamespace: string;
  leaseName: string;
  /** A standby takes the Lease over once its record has not changed for this long (ms). */
  leaseDurationMs: number;
  /** The leader stops (exits) when it has not renewed the Lease for this long (ms). */
  renewDeadlineMs: number;
  /** Time between attempts to acquire or renew the Lease (ms). */
  retryPeriodMs: number;
  /** How often roles marked by this operator are checked against their credentials (ms); 0 = off. */
  orphanSweepPeriodMs: number;
  identity: string;
}

export class ConfigError extends Error {}

function intSetting(env: NodeJS.ProcessEnv, name: string, dflt: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return dflt;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) throw new ConfigError(`${name}=${raw}: want an integer in ${min}..${max}`);
  return n;
}

function durationSetting(env: NodeJS.ProcessEnv, name: string, dflt: string): number {
  const raw = env[name] || dflt;
  try {
    return parseDuration(raw);
  } catch (err) {
    throw new ConfigError(`${name}=${raw}: ${err instanceof Error ? err.message : String(err)}`);
  }
}

function boolSetting(env: NodeJS.ProcessEnv, name: string, dflt: boolean): boolean {
  const raw = env[name];
  if (raw === undefined || raw === '') return dflt;
  if (raw === 'true' || raw === '1') return true;
  if (raw === 'false' || raw === '0') return false;
  throw new ConfigError(`${name}=${raw}: want true or false`);
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): OperatorConfig {
  const leaseDurationMs = durationSetting(env, 'LEASE_DURATION', '15s');
  const renewDeadlineMs = durationSetting(env, 'RENEW_DEADLINE', '10s');
  const retryPeriodMs = durationSetting(env, 'RETRY_PERIOD', '2s');
  // As client-go: the leader must give up before a standby may take over, and get more than one try first.
  if (!(leaseDurationMs > renewDeadlineMs && renewDeadlineMs > retryPeriodMs && retryPeriodMs > 0)) {
    throw new ConfigError(`LEASE_DURATION > RENEW_DEADLINE > RETRY_PERIOD > 0 is required (got ${leaseDurationMs}ms, ${renewDeadlineMs}ms, ${retryPeriodMs}ms)`);
  }
  if (leaseDurationMs < 1000 || leaseDurationMs % 1000 !== 0) {
    throw new ConfigError(`LEASE_DURATION: want whole seconds (the Lease stores seconds), got ${leaseDurationMs}ms`);
  }
  return {
    logLevel: env.LOG_LEVEL || 'info',
    watchNamespace: env.WATCH_NAMESPACE ?? '',
    workers: intSetting(env, 'WORKERS', 8, 1, 64),
    resyncPeriodMs: durationSetting(env, 'RESYNC_PERIOD', '10m'),
    healthPort: intSetting(env, 'HEALTH_PORT', 0, 0, 65535),
    leaderElection: boolSetting(env, 'LEADER_ELECT', false),
    leaseNamespace: env.POD_NAMESPACE || 'dbcred-system',
    leaseName: env.LEASE_NAME || 'dbcred-operator-leader',
    leaseDurationMs,
    renewDeadlineMs,
    retryPeriodMs,
    orphanSweepPeriodMs: durationSetting(env, 'ORPHAN_SWEEP_PERIOD', '5m'),
    identity: env.POD_NAME || `${process.env.HOSTNAME ?? 'local'}-${process.pid}`,
  };
}
