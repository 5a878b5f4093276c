// Secrets the operator owns: a controller ownerReference to the object they belong to (same namespace only), the
// managed-by label (the operator watches only Secrets carrying it), and a refusal to take over anyone else's.
import type * as k8s from '@kubernetes/client-node';
import { MANAGED_BY_LABEL, MANAGED_BY_VALUE, type AnyResource } from '../api/types.js';
import { isConflict, type KubeClient } from '../k8s/client.js';

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

export function isOwnedBy(secret: k8s.V1Secret, owner: AnyResource): boolean {
  return (secret.metadata?.ownerReferences ?? []).some((o) => o.controller && o.uid === owner.metadata.uid);
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
 * 409 rather than being lost). Returns false when nothing needed writing. Throws SecretConflictError for a Secret
 * that someone else owns.
 */
export async function writeOwnedSecret(client: KubeClient, owner: AnyResource, spec: OwnedSecretSpec, existing: k8s.V1Secret | undefined): Promise<boolean> {
  const ns = owner.metadata.namespace;
  if (!existing) {
    try {
      await client.createSecret(ns, buildOwnedSecret(owner, spec));
      return true;
    } catch (err) {
      if (!isConflict(err)) throw err;
      existing = await client.getSecret(ns, spec.name);
      if (!existing) throw err;
    }
  }
  if (!isOwnedBy(existing, owner)) throw new SecretConflictError(`Secret ${ns}/${spec.name} exists and is not owned by this ${owner.kind}; refusing to take it over`);
  const want = buildOwnedSecret(owner, spec, existing.metadata?.resourceVersion);
  if (secretMatches(existing, want)) return false;
  await client.replaceSecret(ns, want);
  return true;
}

/** Our cached copy (label-filtered informer) or, for a Secret we may not own, a live read. */
export async function readSecret(client: KubeClient, cache: { get(key: string): k8s.V1Secret | undefined }, namespace: string, name: string): Promise<k8s.V1Secret | undefined> {
  return cache.get(`${namespace}/${name}`) ?? (await client.getSecret(namespace, name));
}
