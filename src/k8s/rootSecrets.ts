// Watches exactly the Secrets that DatabaseConfigs reference (root credentials, CA), one field-selected watch per
// Secret, instead of caching every Secret in the cluster. A change re-queues the configs that use the Secret.
import type * as k8s from '@kubernetes/client-node';
import type { Logger } from '../logger.js';
import type { KubeClient } from './client.js';
import { ResilientInformer } from './informer.js';

const SYNC_TIMEOUT_MS = 15_000;

interface Watched {
  informer: ResilientInformer<k8s.V1Secret>;
  users: Set<string>;
  synced: Promise<void>;
}

export class RootSecretWatches {
  private readonly watches = new Map<string, Watched>();

  constructor(
    private readonly client: KubeClient,
    private readonly logger: Logger,
    private readonly resyncPeriodMs: number,
    private readonly onChange: (userKeys: string[]) => void,
  ) {}

  /** The Secret as last seen by its watch (started on first use); user is the config key that depends on it. */
  async get(namespace: string, name: string, user: string): Promise<k8s.V1Secret | undefined> {
    const key = `${namespace}/${name}`;
    let w = this.watches.get(key);
    if (!w) {
      const informer = new ResilientInformer<k8s.V1Secret>({
        name: `secret ${key}`,
        client: this.client,
        path: `/api/v1/namespaces/${namespace}/secrets`,
        fieldSelector: `metadata.name=${name}`,
        list: () => this.client.listSecrets(namespace, `metadata.name=${name}`),
        resyncPeriodMs: this.resyncPeriodMs,
        logger: this.logger,
      });
      const watched: Watched = { informer, users: new Set(), synced: informer.start() };
      informer.on((_obj, event) => {
        if (event !== 'RESYNC') this.onChange([...watched.users]);
      });
      this.watches.set(key, watched);
      w = watched;
    }
    w.users.add(user);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`watch of Secret ${key} has not synced (RBAC? API server?)`)), SYNC_TIMEOUT_MS);
    });
    try {
      await Promise.race([w.synced, timeout]);
    } finally {
      clearTimeout(timer);
    }
    return w.informer.get(key);
  }

  /** Forgets a config's interest in every Secret; watches nobody needs are stopped. */
  release(user: string, keep: string[] = []): void {
    for (const [key, w] of this.watches) {
      if (keep.includes(key)) continue;
      w.users.delete(user);
      if (w.users.size === 0) {
        w.informer.stop();
        this.watches.delete(key);
      }
    }
  }

  stopAll(): void {
    for (const w of this.watches.values()) w.informer.stop();
    this.watches.clear();
  }
}

// ---- The in-use finalizer on referenced Secrets ----
//
// Revocation needs the root (and CA) Secret of the config that issued a role. A namespace deleted with
// everything in it deletes those Secrets at once, and an operator that was down or failing over at that moment
// has nothing else to log in with: pools are in memory. So a DatabaseConfig holds a finalizer on the Secrets it
// references; Kubernetes keeps them, readable, until the config lets go.

/** Kept on a Secret that a DatabaseConfig references while the config may still need it to revoke roles. */
export const SECRET_IN_USE_FINALIZER = 'dbcred.dev/in-use';

/**
 * Adds (hold=true) or removes the in-use finalizer, with the resourceVersion it was read at as a precondition
 * (a concurrent change fails with 409 instead of being lost). No call when nothing would change. A Secret being
 * deleted cannot take a new finalizer, so none is added to one.
 */
export async function setSecretInUse(client: KubeClient, secret: k8s.V1Secret, hold: boolean): Promise<void> {
  const meta = secret.metadata ?? {};
  const finalizers = meta.finalizers ?? [];
  const has = finalizers.includes(SECRET_IN_USE_FINALIZER);
  if (has === hold || (hold && meta.deletionTimestamp)) return;
  const next = hold ? [...finalizers, SECRET_IN_USE_FINALIZER] : finalizers.filter((f) => f !== SECRET_IN_USE_FINALIZER);
  await client.patchSecretMetadata(meta.namespace ?? '', meta.name ?? '', { finalizers: next.length ? next : null, resourceVersion: meta.resourceVersion });
}
