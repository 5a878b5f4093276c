// The operator's only door to the API server: typed calls for our kinds, the Secrets we own, Events, Leases and
// the workloads we restart, over rest.ts. Every call is counted (dbcred_api_requests_total in /metrics, which the
// benchmark reads). Errors are ApiError: use apiErrorMessage() to log them (one line, redacted).
import type * as k8s from '@kubernetes/client-node';
import { API_VERSION, KINDS, type AnyResource } from '../api/types.js';
import { redactText } from '../logger.js';
import { apiRequests } from '../metrics.js';
import type { EventSeries, EventsV1Event } from './events.js';
import { loadClusterAccess, type ClusterAccess } from './kubeconfig.js';
import { ApiError, MERGE_PATCH, RestClient, STRATEGIC_MERGE_PATCH, type Query, type WatchHandler } from './rest.js';

export type KindKey = keyof typeof KINDS;

export function apiErrorCode(err: unknown): number | undefined {
  if (err instanceof ApiError) return err.code;
  const code = (err as { code?: unknown; statusCode?: unknown } | null)?.statusCode ?? (err as { code?: unknown } | null)?.code;
  return typeof code === 'number' ? code : undefined;
}

export const isNotFound = (err: unknown): boolean => apiErrorCode(err) === 404;
export const isConflict = (err: unknown): boolean => apiErrorCode(err) === 409;

/** One line that says what the API server answered, without the headers or the object it may echo. */
export function apiErrorMessage(err: unknown): string {
  if (err instanceof ApiError) {
    const reason = err.statusMessage ?? (err.body as { reason?: string } | null)?.reason ?? '';
    return redactText(`API ${err.code}${reason ? `: ${reason}` : ''}`);
  }
  return redactText(err instanceof Error ? err.message.split('\n')[0] ?? '' : String(err));
}

/** Accept header of a list that returns PartialObjectMetadataList: each item's metadata, never a Secret's data. */
export const METADATA_LIST_ACCEPT = 'application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1';

/** Objects per list page. Small for Secrets: even their metadata (labels, annotations) can be large. */
const PAGE_SIZE = 500;
const SECRET_PAGE_SIZE = 50;

export interface ListResult<T> {
  items: T[];
  resourceVersion: string;
}

export class KubeClient {
  readonly rest: RestClient;

  constructor(access: ClusterAccess) {
    this.rest = new RestClient(access);
  }

  /** $KUBECONFIG, ~/.kube/config, or in-cluster (kubeconfig.ts). */
  static fromDefault(): KubeClient {
    return new KubeClient(loadClusterAccess());
  }

  count(verb: string): void {
    apiRequests.inc({ verb });
  }

  /** Starts one watch (the informer counts it); see RestClient.watch. */
  watch(path: string, query: Query, onEvent: WatchHandler, done: (err: unknown) => void, accept?: string): Promise<AbortController> {
    return this.rest.watch(path, query, onEvent, done, accept);
  }

  /** A GET that answers undefined for 404. */
  async getOptional<T>(path: string, signal?: AbortSignal): Promise<T | undefined> {
    this.count('get');
    try {
      return await this.rest.request<T>('GET', path, { signal });
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  // ---- our kinds ----

  private objectPath(kind: KindKey, namespace: string, name: string): string {
    return `${this.resourcePath(kind, namespace)}/${encodeURIComponent(name)}`;
  }

  async getResource<T extends AnyResource>(kind: KindKey, namespace: string, name: string): Promise<T | undefined> {
    return this.getOptional<T>(this.objectPath(kind, namespace, name));
  }

  /** Lists page by page (limit + continue); all pages are one consistent snapshot at the returned resourceVersion. */
  async listResources<T extends AnyResource>(kind: KindKey, namespace = ''): Promise<ListResult<T>> {
    return this.listPaged<T, T>(this.resourcePath(kind, namespace), {}, PAGE_SIZE, (item) => item);
  }

  /** Merge-patches metadata (finalizers, annotations); resourceVersion makes it an optimistic-lock update. */
  async patchMetadata<T extends AnyResource>(kind: KindKey, namespace: string, name: string, metadata: Record<string, unknown>): Promise<T> {
    this.count('patch');
    return this.rest.request<T>('PATCH', this.objectPath(kind, namespace, name), { body: { metadata }, contentType: MERGE_PATCH });
  }

  /** Writes status through the /status subresource (merge patch; null deletes a field). */
  async patchStatus<T extends AnyResource>(kind: KindKey, namespace: string, name: string, status: object, resourceVersion?: string): Promise<T> {
    this.count('patch');
    const body: Record<string, unknown> = { status };
    if (resourceVersion) body.metadata = { resourceVersion };
    return this.rest.request<T>('PATCH', `${this.objectPath(kind, namespace, name)}/status`, { body, contentType: MERGE_PATCH });
  }

  resourcePath(kind: KindKey, namespace: string): string {
    const base = `/apis/${API_VERSION}`;
    return namespace ? `${base}/namespaces/${namespace}/${KINDS[kind].plural}` : `${base}/${KINDS[kind].plural}`;
  }

  /**
   * Lists a collection page by page (limit + continue, one consistent snapshot); keep() says what to keep of each
   * item (undefined: nothing), so a page of objects we do not want is dropped before the next one is fetched.
   */
  async listPaged<T, M>(
    path: string,
    query: Query,
    limit: number,
    keep: (item: T) => M | undefined,
    accept?: string,
    /** Asked after each page: false stops the listing there (the result is then partial). */
    more: () => boolean = () => true,
  ): Promise<ListResult<M>> {
    const items: M[] = [];
    let resourceVersion = '';
    let next: string | undefined;
    do {
      this.count('list');
      const list = await this.rest.request<{ items: T[] | null; metadata?: { resourceVersion?: string; continue?: string } }>('GET', path, {
        query: { ...query, limit, continue: next },
        accept,
      });
      // A PartialObjectMetadataList says "items": null when empty.
      for (const item of list.items ?? []) {
        const kept = keep(item);
        if (kept !== undefined) items.push(kept);
      }
      resourceVersion = list.metadata?.resourceVersion ?? '';
      next = list.metadata?.continue || undefined;
    } while (next && more());
    return { items, resourceVersion };
  }

  // ---- Secrets ----

  private secretPath(namespace: string, name?: string): string {
    return `/api/v1/namespaces/${namespace}/secrets${name === undefined ? '' : `/${encodeURIComponent(name)}`}`;
  }

  /** Lists labelled Secrets as PartialObjectMetadata (never their data), page by page, keeping what keep() returns. */
  async listSecretMetadata<M>(namespace: string, labelSelector: string, keep: (s: k8s.V1Secret) => M | undefined): Promise<ListResult<M>> {
    const path = namespace ? this.secretPath(namespace) : '/api/v1/secrets';
    return this.listPaged<k8s.V1Secret, M>(path, { labelSelector }, SECRET_PAGE_SIZE, keep, METADATA_LIST_ACCEPT);
  }

  /** Secrets of one namespace matching a field selector, with their data (a root Secret's watch). */
  async listSecrets(namespace: string, fieldSelector: string): Promise<ListResult<k8s.V1Secret>> {
    return this.listPaged<k8s.V1Secret, k8s.V1Secret>(this.secretPath(namespace), { fieldSelector }, SECRET_PAGE_SIZE, (s) => s);
  }

  async getSecret(namespace: string, name: string): Promise<k8s.V1Secret | undefined> {
    return this.getOptional<k8s.V1Secret>(this.secretPath(namespace, name));
  }

  async createSecret(namespace: string, secret: k8s.V1Secret): Promise<k8s.V1Secret> {
    this.count('create');
    return this.rest.request<k8s.V1Secret>('POST', this.secretPath(namespace), { body: secret });
  }

  /** Full replace with the resourceVersion it was read at: a concurrent change fails with 409 instead of being lost. */
  async replaceSecret(namespace: string, secret: k8s.V1Secret): Promise<k8s.V1Secret> {
    this.count('update');
    return this.rest.request<k8s.V1Secret>('PUT', this.secretPath(namespace, secret.metadata?.name ?? ''), { body: secret });
  }

  /** Merge-patches a Secret's metadata (the in-use finalizer). */
  async patchSecretMetadata(namespace: string, name: string, metadata: Record<string, unknown>): Promise<void> {
    this.count('patch');
    await this.rest.request('PATCH', this.secretPath(namespace, name), { body: { metadata }, contentType: MERGE_PATCH });
  }

  async deleteSecret(namespace: string, name: string, uid?: string): Promise<void> {
    this.count('delete');
    try {
      await this.rest.request('DELETE', this.secretPath(namespace, name), { body: uid ? { preconditions: { uid } } : undefined });
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }

  // ---- Events, namespaces and workloads ----

  async createEvent(namespace: string, event: EventsV1Event): Promise<void> {
    this.count('create');
    await this.rest.request('POST', `/apis/events.k8s.io/v1/namespaces/${namespace}/events`, { body: event });
  }

  /**
   * A repeat of an Event: its series and its latest note. Through core/v1, the same stored object: events.k8s.io/v1
   * refuses any change of note (422), core/v1 keeps accepting one for the clients that always updated messages.
   */
  async patchEventSeries(namespace: string, name: string, series: EventSeries, note: string): Promise<void> {
    this.count('patch');
    const body = { series, message: note };
    await this.rest.request('PATCH', `/api/v1/namespaces/${namespace}/events/${encodeURIComponent(name)}`, { body, contentType: MERGE_PATCH });
  }

  async getNamespace(name: string): Promise<k8s.V1Namespace | undefined> {
    return this.getOptional<k8s.V1Namespace>(`/api/v1/namespaces/${encodeURIComponent(name)}`);
  }

  /** Sets a pod-template annotation, which makes the workload controller roll out new pods. */
  async annotatePodTemplate(kind: 'Deployment' | 'StatefulSet' | 'DaemonSet', namespace: string, name: string, annotations: Record<string, string>): Promise<void> {
    this.count('patch');
    const plural = { Deployment: 'deployments', StatefulSet: 'statefulsets', DaemonSet: 'daemonsets' }[kind];
    const body = { spec: { template: { metadata: { annotations } } } };
    await this.rest.request('PATCH', `/apis/apps/v1/namespaces/${namespace}/${plural}/${encodeURIComponent(name)}`, { body, contentType: STRATEGIC_MERGE_PATCH });
  }
}
