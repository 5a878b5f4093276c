// What reuseConnections is for: client-node opens a new connection pool for every request (1.4: a new http(s).Agent
// in KubeConfig.createAgent; 2.x: a new undici Agent in KubeConfig.createDispatcher), so without it every API call
// is a new TCP (and TLS) connection. Counted from the server side, on 127.0.0.1. These fail when an upgrade of
// client-node turns reuseConnections into a silent no-op (with 2.0.1 it still compiled and patched nothing).
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as k8s from '@kubernetes/client-node';
import { KubeClient } from '../../src/k8s/client.js';
import { METADATA_WATCH_ACCEPT, metadataWatch } from '../../src/k8s/informer.js';

const LEASE = JSON.stringify({ apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: 'l', namespace: 'ns', resourceVersion: '1' } });

describe('connection reuse', () => {
  let server: http.Server;
  let connections = 0;
  const accepts: string[] = [];

  before(async () => {
    server = http.createServer((req, res) => {
      if (req.url?.includes('watch=true')) {
        accepts.push(req.headers.accept ?? '');
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.end(`${JSON.stringify({ type: 'ADDED', object: JSON.parse(LEASE) })}\n`);
        return;
      }
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(LEASE);
    });
    server.on('connection', () => connections++);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  });

  after(() => {
    server.closeAllConnections();
    server.close();
  });

  /** A kubeconfig with TLS settings (skipTLSVerify), as every real cluster has (a CA, a client certificate). */
  function kubeConfig(): k8s.KubeConfig {
    const kc = new k8s.KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: 'c', server: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, skipTLSVerify: true }],
      users: [{ name: 'u', token: 'not-a-secret' }],
      contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
      currentContext: 'x',
    });
    return kc;
  }

  async function connectionsFor(read: () => Promise<unknown>, n: number): Promise<number> {
    const before = connections;
    for (let i = 0; i < n; i++) await read();
    return connections - before;
  }

  it('sends every request of a KubeClient over one kept-alive connection', async () => {
    const client = new KubeClient(kubeConfig());
    const opened = await connectionsFor(() => client.coordination.readNamespacedLease({ namespace: 'ns', name: 'l' }), 20);
    // A second one may open while the first response is still being finished (undici, 2.x); then both are reused.
    assert.ok(opened <= 2, `${opened} connections for 20 requests`);
  });

  it('(client-node alone opens one connection per request: the reason for it)', async () => {
    const api = kubeConfig().makeApiClient(k8s.CoordinationV1Api);
    const opened = await connectionsFor(() => api.readNamespacedLease({ namespace: 'ns', name: 'l' }), 5);
    assert.equal(opened, 5);
  });

  it('gives the metadata watch its Accept header and the shared connections', async () => {
    const client = new KubeClient(kubeConfig());
    const watch = metadataWatch(client.kc);
    const events: string[] = [];
    const watchOnce = () =>
      new Promise<void>((resolve, reject) => {
        void watch('/apis/coordination.k8s.io/v1/leases', {}, (type) => events.push(type), (err) => (err ? reject(err as Error) : resolve())).catch(reject);
      });
    const opened = await connectionsFor(watchOnce, 10);
    assert.deepEqual(events, Array(10).fill('ADDED'));
    assert.deepEqual(accepts.slice(-10), Array(10).fill(METADATA_WATCH_ACCEPT));
    assert.ok(opened <= 2, `${opened} connections for 10 watches`);
  });
});
