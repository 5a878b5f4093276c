// Kubernetes Events for what a user must see (kubectl describe). Messages are redacted like logs; a failure to
// record an event is logged and otherwise ignored: events are best effort.
import { randomBytes } from 'node:crypto';
import type { AnyResource } from '../api/types.js';
import { redactText, type Logger } from '../logger.js';
import { apiErrorMessage, type KubeClient } from './client.js';

export type EventType = 'Normal' | 'Warning';

export class EventRecorder {
  constructor(
    private readonly client: KubeClient,
    private readonly logger: Logger,
    private readonly component = 'dbcred-operator',
  ) {}

  record(obj: AnyResource, type: EventType, reason: string, message: string): void {
    const now = new Date().toISOString();
    const { name, namespace, uid, resourceVersion } = obj.metadata;
    this.client
      .createEvent(namespace, {
        metadata: { name: `${name}.${randomBytes(8).toString('hex')}`, namespace },
        involvedObject: { apiVersion: obj.apiVersion, kind: obj.kind, name, namespace, uid, resourceVersion },
        type,
        reason,
        message: redactText(message),
        source: { component: this.component },
        reportingComponent: this.component,
        reportingInstance: this.component,
        firstTimestamp: new Date(now),
        lastTimestamp: new Date(now),
        count: 1,
      })
      .catch((err: unknown) => this.logger.debug('recording event failed', { reason, error: apiErrorMessage(err) }));
  }
}
