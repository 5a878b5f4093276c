// A list-watch cache that does not give up. client-node's informer (which this replaced) stops for good on any error but 410 and
// never notices a silent watch, so this one: relists on 410 Gone (whether the server says it as an ERROR event in
// the stream or as the status of the watch request itself), re-watches with backoff on any other error, aborts a
// watch that has been silent for too long (watchdog), and replays every cached key periodically (resync).
// Handlers only enqueue keys; an exception in one is caught and logged.
import type { Logger } from '../logger.js';
import type { KubeClient, ListResult } from './client.js';
import { apiErrorCode, apiErrorMessage } from './client.js';

export interface Meta {
  metadata?: { name?: string; namespace?: string; resourceVersion?: string };
}

export type InformerEvent = 'ADDED' | 'MODIFIED' | 'DELETED' | 'RESYNC';
/** old is the cached copy a MODIFIED event replaces, so handlers can ignore changes they do not care about. */
export type InformerHandler<T> = (obj: T, event: InformerEvent, old?: T) => void;

export interface InformerOptions<T> {
  name: string;
  client: KubeClient;
  /** API path of the collection, e.g. /api/v1/secrets or /apis/dbcred.dev/v1alpha1/databaseroles */
  path: string;
  list: () => Promise<ListResult<T>>;
  labelSelector?: string;
  fieldSelector?: string;
  resyncPeriodMs: number;
  logger: Logger;
  /** A watch with no event (bookmarks included) for this long is restarted. */
  watchdogMs?: number;
  /** Starts one watch; default the client's. A seam for unit tests. */
  watch?: WatchFn;
  /**
   * What to keep of each listed or watched object, or undefined to ignore it (as if it did not exist: an object
   * that stops qualifying leaves the cache with a DELETED). Must be idempotent: list() may already have applied it.
   */
  transform?: (obj: T) => T | undefined;
}

/** What reconcilers read: the cache of one kind, possibly made of one informer per watched namespace. */
export interface Cache<T> {
  get(key: string): T | undefined;
  list(): T[];
  on(handler: InformerHandler<T>): void;
  /** Whether this namespace's objects are watched at all (a namespaced install watches only some). */
  covers(namespace: string): boolean;
}

/** Starts one watch: done is called once, with an error (the request's or the stream's) or null (RestClient.watch). */
export type WatchFn = (
  path: string,
  query: Record<string, string | number | boolean | undefined>,
  onEvent: (type: string, obj: unknown) => void,
  done: (err: unknown) => void,
) => Promise<AbortController>;

/** Accept header of a watch that sends each object's metadata only (the API server's PartialObjectMetadata). */
export const METADATA_WATCH_ACCEPT = 'application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1';

/** A watch whose events carry metadata only, never a Secret's data. */
export function metadataWatch(client: KubeClient): WatchFn {
  return (path, query, onEvent, done) => client.watch(path, query, onEvent, done, METADATA_WATCH_ACCEPT);
}

/** What the list-watch loop does once a watch has ended. */
export type NextStep = 'relist' | 'rewatch' | 'backoff';

/**
 * 410 Gone means our resourceVersion is older than the server keeps: only a new list can continue. The server
 * says so either as an ERROR event in the stream (goneEvent) or as the HTTP status of the watch request itself
 * (client-node's Watch then fails with statusCode 410). Any other error re-watches from where we are, after a
 * backoff; a clean end (server timeout, our own abort) re-watches at once.
 */
export function nextStep(err: unknown, goneEvent: boolean): NextStep {
  if (goneEvent || (err !== undefined && err !== null && apiErrorCode(err) === 410)) return 'relist';
  return err === undefined || err === null ? 'rewatch' : 'backoff';
}

const LAST_APPLIED = 'kubectl.kubernetes.io/last-applied-configuration';

/**
 * Drops what the API server and kubectl keep for themselves and the operator never reads — managedFields and
 * kubectl's last-applied copy of the object — from an object about to be cached. Each is often larger than the
 * spec; at thousands of credentials they were most of the cache. Idempotent, in place.
 */
export function withoutBookkeeping<T extends { metadata?: { managedFields?: unknown; annotations?: Record<string, string> } }>(obj: T): T {
  const m = obj.metadata;
  if (!m) return obj;
  delete m.managedFields;
  if (m.annotations && LAST_APPLIED in m.annotations) {
    delete m.annotations[LAST_APPLIED];
    if (Object.keys(m.annotations).length === 0) delete m.annotations;
  }
  return obj;
}

export function objectKey(obj: Meta): string {
  return `${obj.metadata?.namespace ?? ''}/${obj.metadata?.name ?? ''}`;
}

const WATCH_TIMEOUT_S = 290;
const MAX_BACKOFF_MS = 30_000;

export class ResilientInformer<T extends Meta> {
  private readonly store = new Map<string, T>();
  private readonly handlers: InformerHandler<T>[] = [];
  private resourceVersion = '';
  private stopped = false;
  private abort: AbortController | undefined;
  private resyncTimer: NodeJS.Timeout | undefined;
  private syncedResolve: (() => void) | undefined;
  private readonly synced = new Promise<void>((r) => (this.syncedResolve = r));
  private readonly watchdogMs: number;
  private readonly watch: WatchFn;
  /** Set by an ERROR event with code 410 in the current watch's stream. */
  private goneEvent = false;

  constructor(private readonly opts: InformerOptions<T>) {
    this.watchdogMs = opts.watchdogMs ?? (WATCH_TIMEOUT_S + 60) * 1000;
    this.watch = opts.watch ?? ((path, query, onEvent, done) => opts.client.watch(path, query, onEvent, done));
  }

  on(handler: InformerHandler<T>): void {
    this.handlers.push(handler);
  }

  get(key: string): T | undefined {
    return this.store.get(key);
  }

  list(): T[] {
    return [...this.store.values()];
  }

  /** Starts the loop; resolves once the first list has filled the cache. */
  async start(): Promise<void> {
    void this.run();
    this.resyncTimer = setInterval(() => this.resync(), this.opts.resyncPeriodMs);
    this.resyncTimer.unref();
    await this.synced;
  }

  stop(): void {
    this.stopped = true;
    if (this.resyncTimer) clearInterval(this.resyncTimer);
    this.abort?.abort();
  }

  private emit(obj: T, event: InformerEvent, old?: T): void {
    for (const h of this.handlers) {
      try {
        h(obj, event, old);
      } catch (err) {
        this.opts.logger.error('informer handler failed', { informer: this.opts.name, error: apiErrorMessage(err) });
      }
    }
  }

  private resync(): void {
    for (const obj of this.store.values()) this.emit(obj, 'RESYNC');
  }

  private async run(): Promise<void> {
    let backoff = 500;
    while (!this.stopped) {
      try {
        if (!this.resourceVersion) await this.relist();
        await this.watchOnce();
        backoff = 500;
      } catch (err) {
        if (this.stopped) break;
        this.opts.logger.warn('watch failed; retrying', { informer: this.opts.name, backoffMs: backoff, error: apiErrorMessage(err) });
        await new Promise((r) => setTimeout(r, backoff));
        backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
      }
    }
  }

  private keep(obj: T): T | undefined {
    return this.opts.transform ? this.opts.transform(obj) : obj;
  }

  private async relist(): Promise<void> {
    const { items, resourceVersion } = await this.opts.list();
    const seen = new Set<string>();
    for (const raw of items) {
      const item = this.keep(raw);
      if (!item) continue;
      const key = objectKey(item);
      seen.add(key);
      const old = this.store.get(key);
      this.store.set(key, item);
      if (!old) this.emit(item, 'ADDED');
      else if (old.metadata?.resourceVersion !== item.metadata?.resourceVersion) this.emit(item, 'MODIFIED', old);
    }
    for (const [key, old] of this.store) {
      if (!seen.has(key)) {
        this.store.delete(key);
        this.emit(old, 'DELETED');
      }
    }
    this.resourceVersion = resourceVersion;
    this.syncedResolve?.();
  }

  private watchOnce(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let lastEvent = Date.now();
      const watchdog = setInterval(() => {
        if (Date.now() - lastEvent > this.watchdogMs) {
          this.opts.logger.warn('watch silent too long; restarting', { informer: this.opts.name });
          this.abort?.abort();
        }
      }, Math.min(this.watchdogMs, 30_000));
      watchdog.unref();
      const finish = (err?: unknown) => {
        clearInterval(watchdog);
        const step = nextStep(err, this.goneEvent);
        if (step === 'relist') this.resourceVersion = '';
        // An abort is ours (stop, 410, watchdog): not a failure to back off from.
        if (step === 'backoff' && !this.stopped && !this.abort?.signal.aborted) reject(err);
        else resolve();
      };
      this.abort = undefined;
      this.goneEvent = false;
      this.opts.client.count('watch');
      this.watch(
        this.opts.path,
        {
          resourceVersion: this.resourceVersion,
          allowWatchBookmarks: true,
          timeoutSeconds: WATCH_TIMEOUT_S,
          labelSelector: this.opts.labelSelector,
          fieldSelector: this.opts.fieldSelector,
        },
        (type: string, obj: unknown) => {
          lastEvent = Date.now();
          this.handleEvent(type, obj as T & { code?: number });
        },
        (err: unknown) => finish(err ?? undefined),
      )
        .then((ac) => (this.abort = ac))
        .catch(finish);
    });
  }

  private handleEvent(type: string, obj: T & { code?: number }): void {
    if (type === 'ERROR') {
      // 410 Gone: our resourceVersion is too old; relist (see nextStep). Other errors: re-watch from where we are.
      if (obj.code === 410) this.goneEvent = true;
      this.abort?.abort();
      return;
    }
    const rv = obj.metadata?.resourceVersion;
    if (rv) this.resourceVersion = rv;
    if (type === 'BOOKMARK') return;
    if (type !== 'DELETED' && type !== 'ADDED' && type !== 'MODIFIED') return;
    const key = objectKey(obj);
    const kept = this.keep(obj);
    const old = this.store.get(key);
    if (type === 'DELETED' || !kept) {
      // Deleted, or no longer one we keep: gone from the cache either way.
      this.store.delete(key);
      if (old || kept) this.emit(kept ?? old!, 'DELETED');
      return;
    }
    this.store.set(key, kept);
    this.emit(kept, type, old);
  }
}

/**
 * One informer per watched namespace (a namespaced install: each needs only namespaced list/watch), or a single
 * one for all namespaces (namespaces empty), read as one cache.
 */
export class NamespacedInformers<T extends Meta> implements Cache<T> {
  private readonly informers: Map<string, ResilientInformer<T>>;

  constructor(namespaces: readonly string[], make: (namespace: string) => ResilientInformer<T>) {
    this.informers = new Map((namespaces.length ? namespaces : ['']).map((ns) => [ns, make(ns)]));
  }

  covers(namespace: string): boolean {
    return this.informers.has('') || this.informers.has(namespace);
  }

  get(key: string): T | undefined {
    const ns = key.slice(0, key.indexOf('/'));
    return (this.informers.get('') ?? this.informers.get(ns))?.get(key);
  }

  list(): T[] {
    return [...this.informers.values()].flatMap((i) => i.list());
  }

  on(handler: InformerHandler<T>): void {
    for (const i of this.informers.values()) i.on(handler);
  }

  async start(): Promise<void> {
    await Promise.all([...this.informers.values()].map((i) => i.start()));
  }

  stop(): void {
    for (const i of this.informers.values()) i.stop();
  }
}
