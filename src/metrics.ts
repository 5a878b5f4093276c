// Prometheus metrics (prom-client), served on HEALTH_PORT at /metrics: the process defaults (memory, CPU, event
// loop lag) plus what an operator of this operator watches: reconcile outcomes and durations, credentials issued,
// renewed and revoked, revocation failures, API requests.
import client from 'prom-client';

export const registry = new client.Registry();
client.collectDefaultMetrics({ register: registry });

export const apiRequests = new client.Counter({
  name: 'dbcred_api_requests_total',
  help: 'Requests to the Kubernetes API server, by verb (watches included).',
  labelNames: ['verb'] as const,
  registers: [registry],
});

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

export type CredentialEvent =
  | 'issued'
  | 'rotated'
  | 'renewed'
  | 'expired'
  | 'revoked'
  | 'revocation_failed'
  | 'revocation_refused'
  | 'orphan_revoked'
  | 'abandoned'
  | 'remarked';

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
}

export function countCredentialEvent(event: CredentialEvent, n = 1): void {
  credentialEvents.inc({ event }, n);
}

/** The reconcile observer the generic controller calls after each run. */
export function observeReconcile(controller: string, result: string, seconds: number): void {
  reconciles.inc({ controller, result });
  reconcileSeconds.observe({ controller }, seconds);
}
