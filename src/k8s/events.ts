// Kubernetes Events (events.k8s.io/v1) for what a user must see in `kubectl describe`. An Event that repeats on the
// same object is one Event object whose series.count grows, not a new object per occurrence, as client-go's
// tools/events does: 10,000 renewals must not mean 10,000 Events in etcd. Unlike client-go, a repeat also sets the
// note to the latest one. Notes are redacted like logs. Events are best effort: a failure is logged at debug
// (without the note) and otherwise ignored.
import { randomBytes } from 'node:crypto';
import type { AnyResource } from '../api/types.js';
import { realClock, type Clock } from '../controller/clock.js';
import { redactText, type Logger } from '../logger.js';
import { apiErrorMessage, isConflict, isNotFound } from './client.js';
import { microTime } from './leaderElection.js';

export type EventType = 'Normal' | 'Warning';

/** The controller named in every Event (`From` in kubectl describe); the API wants a qualified name. */
export const REPORTING_CONTROLLER = 'dbcred.dev/operator';
/**
 * Every Event is recorded by the reconcile loop; the reason says what happened. A constant action keeps the
 * isomorphic key what it would be without one (object, type, reason).
 */
const ACTION = 'Reconcile';
/** The API's limit on a note, in bytes. */
export const NOTE_MAX_BYTES = 1024;
/** The API's limit on an object name (DNS subdomain), minus the `.` and 16 hex digits of the suffix. */
const NAME_PREFIX_MAX = 253 - 17;
/** kube-apiserver's default --event-ttl: an Event not written for this long is gone. */
export const EVENT_TTL_MS = 3_600_000;
/**
 * Series remembered at once. An entry costs about 0.3 kB of heap (key, name, bookkeeping), so the whole map stays
 * under half a megabyte whatever the number of credentials; a series pushed out only means that its next
 * occurrence creates a new Event.
 */
export const SERIES_CAPACITY = 1024;

/** An events.k8s.io/v1 Event as it travels: times are MicroTime strings (RFC 3339, microseconds). */
export interface EventsV1Event {
  apiVersion: 'events.k8s.io/v1';
  kind: 'Event';
  metadata: { name: string; namespace: string };
  eventTime: string;
  reportingController: string;
  reportingInstance: string;
  action: string;
  reason: string;
  type: EventType;
  note: string;
  regarding: { apiVersion: string; kind: string; name: string; namespace?: string; uid?: string; resourceVersion?: string };
  series?: EventSeries;
}

export interface EventSeries {
  count: number;
  lastObservedTime: string;
}

/** The two calls the recorder makes (KubeClient has them); a seam for unit tests. */
export interface EventsAPI {
  createEvent(namespace: string, event: EventsV1Event): Promise<void>;
  patchEventSeries(namespace: string, name: string, series: EventSeries, note: string): Promise<void>;
}

/**
 * One isomorphic key's Event: its name once created, how often it occurred, and when it was last written. `tail`
 * chains the writes of this key, so that two records at once never create two Events.
 */
interface Series {
  name: string | undefined;
  namespace: string;
  count: number;
  lastWriteMs: number;
  tail: Promise<void>;
}

export interface EventRecorderOptions {
  /** reportingInstance: the pod (POD_NAME) or host and pid; at most 128 characters. */
  instance: string;
  clock?: Clock;
  capacity?: number;
}

export class EventRecorder {
  /** Least recently used first (a Map keeps insertion order; a hit is moved to the end). */
  private readonly series = new Map<string, Series>();
  private readonly clock: Clock;
  private readonly capacity: number;
  private readonly instance: string;

  constructor(
    private readonly api: EventsAPI,
    private readonly logger: Logger,
    options: EventRecorderOptions,
  ) {
    this.clock = options.clock ?? realClock;
    this.capacity = options.capacity ?? SERIES_CAPACITY;
    this.instance = options.instance.slice(0, 128);
  }

  /** Series currently remembered (for tests and their bound). */
  get size(): number {
    return this.series.size;
  }

  /**
   * Records one occurrence. The promise resolves once it is written or given up; it never rejects, so callers
   * need not await it.
   */
  record(obj: AnyResource, type: EventType, reason: string, message: string): Promise<void> {
    const { namespace, uid } = obj.metadata;
    // reportingController and action are the same for every Event of this recorder: the object, type and reason
    // make the key. The note is not part of it: a repeat with other words is still the same series.
    const key = `${uid ?? `${obj.kind}/${namespace}/${obj.metadata.name}`}\0${type}\0${reason}`;
    const s = this.seriesOf(key, namespace);
    const run = s.tail.then(() => this.write(s, obj, type, reason, message));
    s.tail = run.catch((err: unknown) => {
      this.logger.debug('recording event failed', { reason, error: apiErrorMessage(err) });
    });
    return s.tail;
  }

  private seriesOf(key: string, namespace: string): Series {
    let s = this.series.get(key);
    if (s) {
      this.series.delete(key);
    } else {
      s = { name: undefined, namespace, count: 0, lastWriteMs: 0, tail: Promise.resolve() };
      // An entry pushed out while its write still runs is harmless: at worst its key's next occurrence creates a
      // second Event.
      for (const oldest of this.series.keys()) {
        if (this.series.size < this.capacity) break;
        this.series.delete(oldest);
      }
    }
    this.series.set(key, s);
    return s;
  }

  private async write(s: Series, obj: AnyResource, type: EventType, reason: string, message: string): Promise<void> {
    const nowMs = this.clock.now().getTime();
    // An Event not written for the event TTL has been deleted by the API server: do not ask, create a new one.
    if (s.name !== undefined && nowMs - s.lastWriteMs < EVENT_TTL_MS) {
      try {
        // client-go keeps the first occurrence's note; we show the latest, the one on-call needs (which role,
        // which target, which error now).
        await this.api.patchEventSeries(s.namespace, s.name, { count: s.count + 1, lastObservedTime: microTime(nowMs) }, noteOf(message));
        s.count += 1;
        s.lastWriteMs = nowMs;
        return;
      } catch (err) {
        // 404: the Event expired earlier (a shorter --event-ttl) or was deleted; a new series starts below.
        if (!isNotFound(err)) throw err;
      }
    }
    const event = this.newEvent(obj, type, reason, message, nowMs);
    try {
      await this.api.createEvent(s.namespace, event);
    } catch (err) {
      // 409: an Event of this random name exists, so this create got through after all; patch it next time.
      if (!isConflict(err)) throw err;
    }
    s.name = event.metadata.name;
    s.count = 1;
    s.lastWriteMs = nowMs;
  }

  private newEvent(obj: AnyResource, type: EventType, reason: string, message: string, nowMs: number): EventsV1Event {
    const { name, namespace, uid, resourceVersion } = obj.metadata;
    const prefix = name.slice(0, NAME_PREFIX_MAX).replace(/[-.]+$/, '');
    return {
      apiVersion: 'events.k8s.io/v1',
      kind: 'Event',
      metadata: { name: `${prefix}.${randomBytes(8).toString('hex')}`, namespace },
      eventTime: microTime(nowMs),
      reportingController: REPORTING_CONTROLLER,
      reportingInstance: this.instance,
      action: ACTION,
      reason,
      type,
      note: noteOf(message),
      regarding: { apiVersion: obj.apiVersion, kind: obj.kind, name, namespace, uid, resourceVersion },
    };
  }
}

/** A message as a note: redacted like logs, within the API's limit. */
function noteOf(message: string): string {
  return truncateUTF8(redactText(message), NOTE_MAX_BYTES);
}

/** text cut to at most maxBytes of UTF-8, never inside a character; `…` marks a cut. */
export function truncateUTF8(text: string, maxBytes: number): string {
  if (Buffer.byteLength(text) <= maxBytes) return text;
  const ellipsis = '…';
  const budget = maxBytes - Buffer.byteLength(ellipsis);
  let bytes = 0;
  let end = 0;
  for (const ch of text) {
    const size = Buffer.byteLength(ch);
    if (bytes + size > budget) break;
    bytes += size;
    end += ch.length;
  }
  return text.slice(0, end) + ellipsis;
}
