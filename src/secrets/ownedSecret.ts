// Secrets the operator owns: a controller ownerReference to the object they belong to (same namespace only), the
// managed-by label (the operator watches only Secrets carrying it), and a refusal to take over anyone else's.
//
// Anyone who can create a Secret can put the label on it, so the watch caches metadata only, and only of Secrets
// controller-owned by one of our kinds; the data of the few the reconcilers need is read when they need it and
// remembered for exactly the resourceVersion it was read or written at (SecretContents).
import type * as k8s from '@kubernetes/client-node';
import { API_VERSION, MANAGED_BY_LABEL, MANAGED_BY_VALUE, type AnyResource } from '../api/types.js';
import { isConflict, type KubeClient } from '../k8s/client.js';
import { objectKey, type Cache } from '../k8s/informer.js';

export class SecretConflictError extends Error {}

export interface OwnedSecretSpec {
  name: string;
  type: string;
  data: Record<string, string>;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

export function encodeData(data: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(data)) out[k] = Buffer.from(v, 'utf8').toString('base64');
  return out;
}

export function decodeKey(secret: k8s.V1Secret | undefined, key: string): string | undefined {
  const b64 = secret?.data?.[key];
  return b64 === undefined ? undefined : Buffer.from(b64, 'base64').toString('utf8');
}

export function isOwnedBy(secret: { metadata?: { ownerReferences?: k8s.V1OwnerReference[] } }, owner: AnyResource): boolean {
  return (secret.metadata?.ownerReferences ?? []).some((o) => o.controller && o.uid === owner.metadata.uid);
}

/** The kinds whose objects own Secrets: a credential's Secret, a static role's password Secret. */
const OWNER_KINDS: ReadonlySet<string> = new Set(['DatabaseCredential', 'DatabaseRole']);

/** What the operator caches of a Secret: who it is, its version and its controller; never its data. */
export interface SecretMeta {
  metadata: { name: string; namespace: string; uid?: string; resourceVersion?: string; ownerReferences: k8s.V1OwnerReference[] };
}

/**
 * The cached form of a Secret controller-owned by a DatabaseCredential or DatabaseRole; undefined for any other
 * Secret, labelled or not (not kept). Idempotent.
 */
export function ownedSecretMeta(secret: { metadata?: k8s.V1ObjectMeta }): SecretMeta | undefined {
  const m = secret.metadata;
  const owner = m?.ownerReferences?.find((o) => o.controller);
  if (!m?.name || !m.namespace || !owner || owner.apiVersion !== API_VERSION || !OWNER_KINDS.has(owner.kind)) return undefined;
  return {
    metadata: {
      name: m.name,
      namespace: m.namespace,
      uid: m.uid,
      resourceVersion: m.resourceVersion,
      ownerReferences: [{ apiVersion: owner.apiVersion, kind: owner.kind, name: owner.name, uid: owner.uid, controller: true }],
    },
  };
}

/**
 * The data of owned Secrets, read when a reconciler needs it. Each copy (as last read or written) is used only
 * while the metadata cache shows its very resourceVersion, so a steady state reads nothing, a changed Secret is
 * read once, and a restart reads each Secret once. Only Secrets controller-owned by our kinds are remembered,
 * and a copy goes when its Secret leaves the cache (prune() drops any whose Secret never reached it).
 */
/** Secrets per page when reading data ahead: a labelled Secret may be up to 1 MiB. */
const PREFILL_PAGE_SIZE = 5;

export class SecretContents {
  private readonly known = new Map<string, k8s.V1Secret>();
  private readonly reading = new Map<string, Promise<k8s.V1Secret | undefined>>();

  constructor(
    private readonly client: KubeClient,
    private readonly cache: Cache<SecretMeta>,
  ) {
    cache.on((obj, event) => {
      if (event === 'DELETED') this.known.delete(objectKey(obj));
    });
  }

  /**
   * The Secret with its data: the remembered copy if the cache shows that resourceVersion and trust accepts it,
   * else a live read (also when the cache has no such Secret: it may lag behind a create). Concurrent reads of one
   * Secret share one GET.
   */
  async read(namespace: string, name: string, trust: (s: k8s.V1Secret) => boolean = () => true): Promise<k8s.V1Secret | undefined> {
    const key = `${namespace}/${name}`;
    const known = this.known.get(key);
    const cachedVersion = this.cache.get(key)?.metadata.resourceVersion;
    if (known && cachedVersion !== undefined && known.metadata?.resourceVersion === cachedVersion && trust(known)) return known;
    let live = this.reading.get(key);
    if (!live) {
      live = this.client.getSecret(namespace, name).finally(() => this.reading.delete(key));
      this.reading.set(key, live);
      const secret = await live;
      if (secret) this.remember(secret);
      else this.known.delete(key);
      return secret;
    }
    return live;
  }

  /**
   * Records a Secret as the API server returned it from a read or a write: only what the reconcilers read of it
   * (identity, version, owner, labels, annotations, type, data), not managedFields and the client's empty fields.
   */
  remember(secret: k8s.V1Secret): void {
    if (!ownedSecretMeta(secret)) return;
    const m = secret.metadata ?? {};
    this.known.set(objectKey(secret), {
      type: secret.type,
      data: secret.data,
      metadata: { name: m.name, namespace: m.namespace, uid: m.uid, resourceVersion: m.resourceVersion, labels: m.labels, annotations: m.annotations, ownerReferences: m.ownerReferences },
    });
  }

  /**
   * Reads the data of the cached Secrets a page at a time (small pages: a labelled Secret can be large), so that
   * a starting operator reads its Secrets in one paginated list instead of one GET per credential. Keeps nothing
   * of Secrets the cache does not hold (not ours). Returns how many it remembered.
   */
  async prefill(namespaces: readonly string[], labelSelector: string): Promise<number> {
    let n = 0;
    for (const ns of namespaces.length ? namespaces : ['']) {
      const path = ns ? `/api/v1/namespaces/${ns}/secrets` : '/api/v1/secrets';
      let foreign = false;
      await this.client.listPaged<k8s.V1Secret, never>(
        path,
        { labelSelector },
        PREFILL_PAGE_SIZE,
        (secret) => {
          if (!this.cache.get(objectKey(secret))) foreign = true;
          else if (!this.known.has(objectKey(secret))) {
            this.remember(secret);
            n++;
          }
          return undefined;
        },
        undefined,
        // Labelled Secrets that are not ours (anyone can set the label, e.g. a flood of large ones): stop
        // downloading data we would throw away; the rest are read one by one when needed.
        () => !foreign,
      );
      if (foreign) break;
    }
    return n;
  }

  /** Drops copies whose Secret is not in the cache (e.g. created, then deleted while the watch was relisting). */
  prune(): void {
    for (const key of this.known.keys()) if (!this.cache.get(key)) this.known.delete(key);
  }
}

export function buildOwnedSecret(owner: AnyResource, spec: OwnedSecretSpec, resourceVersion?: string): k8s.V1Secret {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    type: spec.type,
    metadata: {
      name: spec.name,
      namespace: owner.metadata.namespace,
      resourceVersion,
      labels: { ...(spec.labels ?? {}), [MANAGED_BY_LABEL]: MANAGED_BY_VALUE },
      annotations: spec.annotations,
      ownerReferences: [
        { apiVersion: owner.apiVersion, kind: owner.kind, name: owner.metadata.name, uid: owner.metadata.uid ?? '', controller: true, blockOwnerDeletion: true },
      ],
    },
    data: encodeData(spec.data),
  };
}

function sameStrings(a: Record<string, string> | undefined, b: Record<string, string> | undefined): boolean {
  const ka = Object.keys(a ?? {});
  return ka.length === Object.keys(b ?? {}).length && ka.every((k) => a?.[k] === b?.[k]);
}

/** True when existing already holds exactly what spec asks for (data, labels, annotations, type). */
export function secretMatches(existing: k8s.V1Secret, want: k8s.V1Secret): boolean {
  return (
    existing.type === want.type &&
    sameStrings(existing.data, want.data) &&
    sameStrings(existing.metadata?.labels, want.metadata?.labels) &&
    sameStrings(existing.metadata?.annotations, want.metadata?.annotations)
  );
}

/**
 * Creates the Secret, or replaces ours in one write at the resourceVersion we read (a concurrent change fails with
 * 409 rather than being lost). Returns the Secret as the API server now holds it (existing, when nothing needed
 * writing). Throws SecretConflictError for a Secret that someone else owns.
 */
export async function writeOwnedSecret(client: KubeClient, owner: AnyResource, spec: OwnedSecretSpec, existing: k8s.V1Secret | undefined): Promise<k8s.V1Secret> {
  const ns = owner.metadata.namespace;
  if (!existing) {
    try {
      return await client.createSecret(ns, buildOwnedSecret(owner, spec));
    } catch (err) {
      if (!isConflict(err)) throw err;
      existing = await client.getSecret(ns, spec.name);
      if (!existing) throw err;
    }
  }
  if (!isOwnedBy(existing, owner)) throw new SecretConflictError(`Secret ${ns}/${spec.name} exists and is not owned by this ${owner.kind}; refusing to take it over`);
  const want = buildOwnedSecret(owner, spec, existing.metadata?.resourceVersion);
  if (secretMatches(existing, want)) return existing;
  return client.replaceSecret(ns, want);
}

/** Who a Secret is and who owns it: our cached metadata or, for a Secret we may not own, a live read. */
export async function readSecretMeta(client: KubeClient, cache: Cache<SecretMeta>, namespace: string, name: string): Promise<{ metadata?: k8s.V1ObjectMeta } | undefined> {
  return cache.get(`${namespace}/${name}`) ?? (await client.getSecret(namespace, name));
}
