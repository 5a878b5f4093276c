// Prometheus metrics (prom-client), served on HEALTH_PORT at /metrics: the process defaults (memory, CPU, event
// loop lag) plus what an operator of this operator watches: reconcile outcomes and durations, credentials issued,
// renewed and revoked, revocation failures, API requests, leadership and the credentials' state.
//
// The metrics are a contract (README "Metrics", deploy/monitoring's alerts and dashboard): no label carries a
// username, a credential's name or anything else unbounded; every label's values are listed here. Counters with
// known label values start at 0, so rate() and the dashboard see a series before the first event.
import client from 'prom-client';
import { CREDENTIAL_STATES, credentialHealth, type CredentialHealth } from './credentialHealth.js';
import type { DatabaseCredential } from './api/types.js';

export const registry = new client.Registry();
client.collectDefaultMetrics({ register: registry });

export const API_VERBS = ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete'] as const;
export const apiRequests = new client.Counter({
  name: 'dbcred_api_requests_total',
  help: 'Requests to the Kubernetes API server, by verb (watches included).',
  labelNames: ['verb'] as const,
  registers: [registry],
});
for (const verb of API_VERBS) apiRequests.inc({ verb }, 0);

export const RECONCILE_RESULTS = ['success', 'requeue', 'error', 'terminal'] as const;
export const reconciles = new client.Counter({
  name: 'dbcred_reconcile_total',
  help: 'Reconciles by controller and result (success, requeue, error, terminal).',
  labelNames: ['controller', 'result'] as const,
  registers: [registry],
});

export const reconcileSeconds = new client.Histogram({
  name: 'dbcred_reconcile_duration_seconds',
  help: 'How long one reconcile took, by controller.',
  labelNames: ['controller'] as const,
  buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  registers: [registry],
});

export const credentialEvents = new client.Counter({
  name: 'dbcred_credential_events_total',
  help: 'Credential lifecycle steps: issued, rotated, renewed, expired, revoked, revocation_failed, revocation_refused, orphan_revoked, abandoned, remarked.',
  labelNames: ['event'] as const,
  registers: [registry],
});

export const CREDENTIAL_EVENTS = [
  'issued',
  'rotated',
  'renewed',
  'expired',
  'revoked',
  'revocation_failed',
  'revocation_refused',
  'orphan_revoked',
  'abandoned',
  'remarked',
] as const;
export type CredentialEvent = (typeof CREDENTIAL_EVENTS)[number];
for (const event of CREDENTIAL_EVENTS) credentialEvents.inc({ event }, 0);

export const issueSeconds = new client.Histogram({
  name: 'dbcred_issue_duration_seconds',
  help: 'From the start of the reconcile that issues a login to its Secret and status written, by kind (issued: first login, rotated: a new login replacing one).',
  labelNames: ['kind'] as const,
  buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
  registers: [registry],
});
for (const kind of ['issued', 'rotated'] as const) issueSeconds.zero({ kind });

export function observeIssue(kind: 'issued' | 'rotated', seconds: number): void {
  issueSeconds.observe({ kind }, seconds);
}

/** 1 while this replica leads (or runs without leader election), 0 while it waits as a standby. */
export const leader = new client.Gauge({
  name: 'dbcred_leader',
  help: '1 while this replica leads (or runs without leader election), 0 while it waits as a standby.',
  registers: [registry],
});
leader.set(0);

/**
 * The credentials as a whole, read from the cache at scrape time, counted by the leader only (a standby's cache is
 * as full, and two replicas counting would double every sum): a standby reports 0. The three gauges share one pass
 * per scrape.
 */
let credentialSource: (() => Iterable<DatabaseCredential> | undefined) | undefined;
let lastHealth: { at: number; health: CredentialHealth | undefined } | undefined;

function currentHealth(): CredentialHealth | undefined {
  const now = Date.now();
  if (!lastHealth || now - lastHealth.at > 1_000) {
    const creds = credentialSource?.();
    lastHealth = { at: now, health: creds ? credentialHealth(creds, now) : undefined };
  }
  return lastHealth.health;
}

/** Reports the credentials source returns (undefined while not leading) in the dbcred_credentials* gauges. */
export function observeCredentials(source: () => Iterable<DatabaseCredential> | undefined): void {
  credentialSource = source;
  lastHealth = undefined;
}

export const credentialsByState = new client.Gauge({
  name: 'dbcred_credentials',
  help: 'DatabaseCredentials by state (ready, not_ready, expired, deleting); counted by the leader, 0 on a standby.',
  labelNames: ['state'] as const,
  registers: [registry],
  collect() {
    const health = currentHealth();
    for (const state of CREDENTIAL_STATES) this.set({ state }, health?.states[state] ?? 0);
  },
});

/** An unlabelled gauge read from the credentials' health at scrape time (0 on a standby). */
function healthGauge(name: string, help: string, read: (h: CredentialHealth) => number): client.Gauge {
  return new client.Gauge({
    name,
    help,
    registers: [registry],
    collect() {
      const health = currentHealth();
      this.set(health ? read(health) : 0);
    },
  });
}

export const revocationsOverdue = healthGauge(
  'dbcred_revocations_overdue',
  'PostgreSQL roles held past the time they were due for revocation (credential deleted, lease ended or grace period over) by more than a minute; counted by the leader, 0 on a standby.',
  (h) => h.revocationsOverdue,
);

export const renewalsOverdue = healthGauge(
  'dbcred_leases_renewal_overdue',
  'Credentials with rotation whose lease was not renewed well after status.renewAt (a quarter of the time left to expiresAt, at least 30 s); counted by the leader, 0 on a standby.',
  (h) => h.renewalsOverdue,
);

/**
 * Roles the last orphan sweep found with an operator marker it cannot prove is this installation's and that no
 * credential of it holds: old-format markers (before installation ids) and markers copied onto another role.
 * They are never revoked by the sweep; a DBA decides.
 */
export const unprovenRoles = new client.Gauge({
  name: 'dbcred_orphan_sweep_unproven_roles',
  help: 'Roles with an operator marker that the last orphan sweep could not prove are this installation\'s orphans (never swept).',
  registers: [registry],
});

/** Each controller's work queue, read at scrape time. */
const queues = new Map<string, { depth: () => number; inFlight: () => number }>();

/** A gauge by controller whose value is read from each queue at scrape time. */
function queueGauge(name: string, help: string, read: (q: { depth: () => number; inFlight: () => number }) => number): client.Gauge<'controller'> {
  return new client.Gauge({
    name,
    help,
    labelNames: ['controller'] as const,
    registers: [registry],
    collect() {
      for (const [controller, q] of queues) this.set({ controller }, read(q));
    },
  });
}

export const queueDepth = queueGauge('dbcred_workqueue_depth', 'Keys waiting for a worker, by controller (delayed requeues not counted).', (q) => q.depth());
export const queueInFlight = queueGauge('dbcred_workqueue_in_flight', 'Keys being reconciled now, by controller.', (q) => q.inFlight());

/** Reports a controller's queue in dbcred_workqueue_depth and dbcred_workqueue_in_flight. */
export function observeQueue(controller: string, q: { depth: () => number; inFlight: () => number }): void {
  queues.set(controller, q);
  for (const result of RECONCILE_RESULTS) reconciles.inc({ controller, result }, 0);
  reconcileSeconds.zero({ controller });
}

export function countCredentialEvent(event: CredentialEvent, n = 1): void {
  credentialEvents.inc({ event }, n);
}

/** The reconcile observer the generic controller calls after each run. */
export function observeReconcile(controller: string, result: string, seconds: number): void {
  reconciles.inc({ controller, result });
  reconcileSeconds.observe({ controller }, seconds);
}
