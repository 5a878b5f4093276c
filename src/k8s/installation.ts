// The installation's identity: what the ownership marker on every role this operator creates names, so that two
// clusters using one PostgreSQL server (blue/green, disaster recovery, staging pointed at production, a restore)
// never take each other's roles for orphans. CLUSTER_ID when set (checked with the other settings, config.ts);
// otherwise the UID of the namespace kube-system, which every cluster has, which never changes while the cluster
// lives and which no two clusters share.
import { apiErrorMessage, type KubeClient } from './client.js';

/** The installation id: the configured CLUSTER_ID, or the kube-system namespace's UID (needs get on that one namespace). */
export async function resolveInstallation(client: KubeClient, clusterId: string | undefined): Promise<string> {
  if (clusterId !== undefined) return clusterId;
  try {
    const ns = await client.getNamespace('kube-system');
    if (!ns) throw new Error('the namespace kube-system was not found');
    const uid = ns.metadata?.uid;
    if (!uid) throw new Error('the namespace kube-system has no uid');
    return uid;
  } catch (err) {
    throw new Error(
      `cannot read the UID of the namespace kube-system, this installation's identity in the markers on its roles (${apiErrorMessage(err)}); ` +
        'grant get on namespaces/kube-system (deploy/base/cluster-identity.yaml) or set CLUSTER_ID to an id unique to this cluster',
    );
  }
}
