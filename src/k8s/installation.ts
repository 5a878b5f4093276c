// The installation's identity: what the ownership marker on every role this operator creates names, so that two
// clusters using one PostgreSQL server (blue/green, disaster recovery, staging pointed at production, a restore)
// never take each other's roles for orphans. CLUSTER_ID when set; otherwise the UID of the namespace kube-system,
// which every cluster has, which never changes while the cluster lives and which no two clusters share.
import { apiErrorMessage, type KubeClient } from './client.js';

/** Printable, no quotes or backslashes (it is stored in JSON inside a SQL literal; both escape it anyway). */
const CLUSTER_ID = /^[A-Za-z0-9][A-Za-z0-9._:\/-]{0,127}$/;

export class InstallationError extends Error {}

/** CLUSTER_ID checked, or undefined when unset. */
export function clusterIdSetting(env: NodeJS.ProcessEnv): string | undefined {
  const raw = env.CLUSTER_ID;
  if (raw === undefined || raw === '') return undefined;
  if (!CLUSTER_ID.test(raw)) {
    throw new InstallationError(`CLUSTER_ID=${JSON.stringify(raw.slice(0, 140))}: want 1 to 128 letters, digits or . _ : / - (starting with a letter or digit)`);
  }
  return raw;
}

/** The installation id: CLUSTER_ID, or the kube-system namespace's UID (needs get on that one namespace). */
export async function resolveInstallation(client: KubeClient, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  const configured = clusterIdSetting(env);
  if (configured !== undefined) return configured;
  try {
    const uid = (await client.core.readNamespace({ name: 'kube-system' })).metadata?.uid;
    if (!uid) throw new Error('the namespace kube-system has no uid');
    return uid;
  } catch (err) {
    throw new InstallationError(
      `cannot read the UID of the namespace kube-system, this installation's identity in the markers on its roles (${apiErrorMessage(err)}); ` +
        'grant get on namespaces/kube-system (deploy/base/rbac.yaml) or set CLUSTER_ID to an id unique to this cluster',
    );
  }
}
