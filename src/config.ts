// Operator settings, from the environment, parsed and validated once at start-up.
import { parseDuration } from './api/duration.js';

export interface OperatorConfig {
  logLevel: string;
  /** Namespaces to watch (WATCH_NAMESPACES, or the single WATCH_NAMESPACE); empty = all namespaces. */
  watchNamespaces: string[];
  /** Concurrent reconciles per controller. */
  workers: number;
  /** Every cached object is reconciled again at least this often (ms). */
  resyncPeriodMs: number;
  /** Port of the /healthz and /readyz endpoints; 0 = off. */
  healthPort: number;
  /** SO_REUSEPORT on the health port: replicas that share one network namespace (hostNetwork on one node). */
  healthReusePort: boolean;
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
  /** CLUSTER_ID: this installation's identity in role markers; undefined = the kube-system namespace UID. */
  clusterId: string | undefined;
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

const NAMESPACE_NAME = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

/** Printable, no quotes or backslashes (it is stored in JSON inside a SQL literal; both escape it anyway). */
const CLUSTER_ID = /^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$/;

/** CLUSTER_ID checked, or undefined when unset (the kube-system namespace UID is used then). */
export function clusterIdSetting(env: NodeJS.ProcessEnv): string | undefined {
  const raw = env.CLUSTER_ID;
  if (raw === undefined || raw === '') return undefined;
  if (!CLUSTER_ID.test(raw)) {
    throw new ConfigError(`CLUSTER_ID=${JSON.stringify(raw.slice(0, 140))}: want 1 to 128 letters, digits or . _ : / - (starting with a letter or digit)`);
  }
  return raw;
}

/**
 * WATCH_NAMESPACES=a,b,c (or the older single WATCH_NAMESPACE=a, which also takes a list): the namespaces whose
 * objects and Secrets the operator watches, each with its own namespaced list/watch. Unset or empty: all.
 */
export function watchNamespaces(env: NodeJS.ProcessEnv): string[] {
  const many = env.WATCH_NAMESPACES ?? '';
  const one = env.WATCH_NAMESPACE ?? '';
  if (many.trim() && one.trim()) throw new ConfigError('set WATCH_NAMESPACES or WATCH_NAMESPACE, not both');
  const name = many.trim() ? 'WATCH_NAMESPACES' : 'WATCH_NAMESPACE';
  const list = (many.trim() ? many : one).split(',').map((s) => s.trim()).filter((s) => s !== '');
  for (const ns of list) {
    if (!NAMESPACE_NAME.test(ns)) throw new ConfigError(`${name}: "${ns}" is not a namespace name (lowercase letters, digits and '-', at most 63)`);
  }
  return [...new Set(list)];
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
    watchNamespaces: watchNamespaces(env),
    workers: intSetting(env, 'WORKERS', 8, 1, 64),
    resyncPeriodMs: durationSetting(env, 'RESYNC_PERIOD', '10m'),
    healthPort: intSetting(env, 'HEALTH_PORT', 0, 0, 65535),
    healthReusePort: boolSetting(env, 'HEALTH_REUSE_PORT', false),
    leaderElection: boolSetting(env, 'LEADER_ELECT', false),
    leaseNamespace: env.POD_NAMESPACE || 'dbcred-system',
    leaseName: env.LEASE_NAME || 'dbcred-operator-leader',
    leaseDurationMs,
    renewDeadlineMs,
    retryPeriodMs,
    orphanSweepPeriodMs: durationSetting(env, 'ORPHAN_SWEEP_PERIOD', '5m'),
    identity: env.POD_NAME || `${process.env.HOSTNAME ?? 'local'}-${process.pid}`,
    clusterId: clusterIdSetting(env),
  };
}
