// The operator installed the way a user installs it: `kubectl apply --server-side -f crds/`, then `kubectl apply -k`
// of test/deploy/local (deploy/ plus what one loopback-only node needs), plus a last small overlay written here with
// what only the running environment knows. Used by the in-cluster tests and `make run IN_CLUSTER=true`.
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { REPO_ROOT } from './controlplane.js';

export const OPERATOR_NAMESPACE = 'dbcred-system';
export const OPERATOR_DEPLOYMENT = 'dbcred-operator';
export const LOCAL_OVERLAY = path.join(REPO_ROOT, 'test', 'deploy', 'local');

export type Kubectl = (args: string[], input?: string) => Promise<string>;

export interface InClusterOptions {
  kubectl: Kubectl;
  /** Where the generated overlay is written. */
  dir: string;
  /** The operator image as a pod names it, e.g. dbcred-operator:3f2a91c0 (already in the node's containerd). */
  image: string;
  /** How a pod reaches the kube-apiserver (LocalNode.inClusterEnv(): its real 127.0.0.1 port; no kube-proxy here). */
  apiServerEnv: Array<{ name: string; value: string }>;
  /** The health port both replicas share on the host network; a free one, so two environments never meet. */
  healthPort: number;
  /** WATCH_NAMESPACES: the tests share one cluster with operators of their own, so the pods watch only theirs. */
  watchNamespaces?: string[];
  /** Extra operator settings (env), e.g. a shorter lease for a failover test. */
  env?: Record<string, string>;
}

/** image "name:tag" (the name may hold a registry port) as kustomize's images transformer wants it. */
export function splitImage(image: string): { newName: string; newTag: string } {
  const at = image.lastIndexOf(':');
  if (at <= image.lastIndexOf('/') || at === image.length - 1) throw new Error(`image "${image}" has no tag`);
  return { newName: image.slice(0, at), newTag: image.slice(at + 1) };
}

/** The environment's overlay on top of test/deploy/local (pure: the tests check its shape). */
export function environmentOverlay(o: Omit<InClusterOptions, 'kubectl'>): { kustomization: string; patch: string } {
  const env: Record<string, string> = {
    ...Object.fromEntries(o.apiServerEnv.map((e) => [e.name, e.value])),
    HEALTH_PORT: String(o.healthPort),
    ...(o.watchNamespaces?.length ? { WATCH_NAMESPACES: o.watchNamespaces.join(',') } : {}),
    ...(o.env ?? {}),
  };
  const kustomization = {
    apiVersion: 'kustomize.config.k8s.io/v1beta1',
    kind: 'Kustomization',
    // kustomize takes no absolute root: the base is named relative to the overlay's own directory.
    resources: [path.relative(o.dir, LOCAL_OVERLAY)],
    images: [{ name: 'dbcred-operator', ...splitImage(o.image) }],
    patches: [{ path: 'environment.yaml' }],
  };
  const patch = {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: OPERATOR_DEPLOYMENT, namespace: OPERATOR_NAMESPACE },
    spec: {
      template: {
        spec: {
          containers: [
            {
              name: 'operator',
              env: Object.entries(env).map(([name, value]) => ({ name, value })),
              livenessProbe: { httpGet: { port: o.healthPort } },
              readinessProbe: { httpGet: { port: o.healthPort } },
            },
          ],
        },
      },
    },
  };
  // JSON is YAML: no second serializer needed for two small documents.
  return { kustomization: JSON.stringify(kustomization, null, 2), patch: JSON.stringify(patch, null, 2) };
}

/** Applies the CRDs and the overlay, then waits for the Deployment's rollout (every replica Ready to the kubelet). */
export async function installOperator(o: InClusterOptions, rolloutTimeout = '180s'): Promise<void> {
  mkdirSync(o.dir, { recursive: true });
  const { kustomization, patch } = environmentOverlay(o);
  writeFileSync(path.join(o.dir, 'kustomization.yaml'), kustomization);
  writeFileSync(path.join(o.dir, 'environment.yaml'), patch);
  const crds = path.join(REPO_ROOT, 'crds');
  await o.kubectl(['apply', '--server-side', '--force-conflicts', '-f', crds]);
  await o.kubectl(['wait', '--for', 'condition=Established', '--timeout', '60s', '-f', crds]);
  await o.kubectl(['apply', '-k', o.dir]);
  try {
    await o.kubectl(['-n', OPERATOR_NAMESPACE, 'rollout', 'status', `deployment/${OPERATOR_DEPLOYMENT}`, '--timeout', rolloutTimeout]);
  } catch (err) {
    throw new Error(`${err instanceof Error ? err.message : String(err)}\n${await diagnostics(o.kubectl)}`);
  }
}

/** What a failed rollout needs explained: the pods, their events, and the tail of each container's log. */
export async function diagnostics(kubectl: Kubectl, namespace = OPERATOR_NAMESPACE): Promise<string> {
  const ns = ['-n', namespace];
  const out: string[] = [];
  const step = async (title: string, args: string[]) => {
    out.push(`--- ${title}`, (await kubectl(args).catch((e: unknown) => (e instanceof Error ? e.message : String(e)))).trim());
  };
  await step('pods', [...ns, 'get', 'pods', '-o', 'wide']);
  await step('events', [...ns, 'get', 'events', '--sort-by', '.lastTimestamp']);
  const names = (await kubectl([...ns, 'get', 'pods', '-o', 'jsonpath={.items[*].metadata.name}']).catch(() => '')).split(' ').filter(Boolean);
  for (const name of names) await step(`log of ${name} (last 20 lines)`, [...ns, 'logs', name, '--tail', '20', '--all-containers']);
  return out.join('\n');
}

/** `kubectl delete -k` of the same overlay: the namespace (and with it the pods) and the cluster-wide RBAC. */
export async function uninstallOperator(o: Pick<InClusterOptions, 'kubectl' | 'dir'>): Promise<void> {
  await o.kubectl(['delete', '-k', o.dir, '--ignore-not-found', '--wait', '--timeout', '120s']);
}
