// What reuseConnections is for: client-node opens a new connection pool for every request (2.x: a new undici
// Agent in KubeConfig.createDispatcher whenever the kubeconfig has TLS settings), so without it every API call is
// a new TCP (and TLS) connection. Counted from the server side, on 127.0.0.1.
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as k8s from '@kubernetes/client-node';
import { KubeClient } from '../../src/k8s/client.js';
import { METADATA_WATCH_ACCEPT, clientWatch, metadataWatch } from '../../src/k8s/informer.js';

const LEASE = JSON.stringify({ apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: 'l', namespace: 'ns', resourceVersion: '1' } });

describe('connection reuse', () => {
  let server: http.Server;
  let connections = 0;
  const accepts: string[] = [];

  before(async () => {
    server = http.createServer((req, res) => {
      if (req.url?.includes('/quiet')) {
        // A quiet watch: headers at once, then one event after pauseMs, then the end.
        const pauseMs = Number(new URL(req.url, 'http://x').searchParams.get('pauseMs'));
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.flushHeaders();
        const timer = setTimeout(() => res.end(`${JSON.stringify({ type: 'ADDED', object: JSON.parse(LEASE) })}\n`), pauseMs);
        res.on('close', () => clearTimeout(timer));
        return;
      }
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
    // undici may open a second one while the first response is still being finished; then they are reused.
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

  /** How a watch through clientWatch(silenceMs) ends when the server stays silent for pauseMs. */
  function quietWatch(silenceMs: number, pauseMs: number): Promise<{ events: string[]; err: unknown }> {
    const watch = clientWatch(kubeConfig(), silenceMs);
    const events: string[] = [];
    return new Promise((resolve) => {
      void watch.watch('/quiet', { pauseMs }, (type: string) => events.push(type), (err: unknown) => resolve({ events, err }));
    });
  }

  it('lets a watch stay silent for as long as it is told (client-node 2.x alone ends it after 30 s)', async () => {
    const patient = await quietWatch(1500, 700);
    assert.deepEqual(patient, { events: ['ADDED'], err: null });
    const impatient = await quietWatch(200, 700);
    assert.deepEqual(impatient.events, []);
    assert.equal((impatient.err as Error).name, 'TimeoutError');
  });
});
