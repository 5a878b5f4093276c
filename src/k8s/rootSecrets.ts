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
        list: async () => {
          this.client.count('list');
          const list = await this.client.core.listNamespacedSecret({ namespace, fieldSelector: `metadata.name=${name}` });
          return { items: list.items, resourceVersion: list.metadata?.resourceVersion ?? '' };
        },
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
