// A ClusterAccess for unit tests: a server address and nothing to authenticate with.
import type { ClusterAccess } from '../../src/k8s/kubeconfig.js';

export function testAccess(server = 'https://127.0.0.1:1'): ClusterAccess {
  return { server, source: 'test', tls: async () => ({ rejectUnauthorized: true }), authorization: async () => undefined, invalidate: () => undefined };
}
