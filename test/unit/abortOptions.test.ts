import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as k8s from '@kubernetes/client-node';
import { KubeClient, abortOptions } from '../../src/k8s/client.js';

describe('abortOptions', () => {
  let server: http.Server;
  let client: KubeClient;

  before(async () => {
    // An API server that accepts requests and never answers (as a stopped kube-apiserver does).
    server = http.createServer(() => undefined);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const kc = new k8s.KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: 'c', server: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, skipTLSVerify: true }],
      users: [{ name: 'u' }],
      contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
      currentContext: 'x',
    });
    client = new KubeClient(kc);
  });

  after(() => {
    server.closeAllConnections();
    server.close();
  });

  it('aborts a request that gets no answer when its signal fires', async () => {
    const ac = new AbortController();
    const request = client.coordination.readNamespacedLease({ namespace: 'ns', name: 'lease' }, abortOptions(ac.signal));
    const started = Date.now();
    setTimeout(() => ac.abort(new Error('deadline')), 100);
    const err = await request.then(() => undefined, (e: unknown) => e);
    assert.ok(err instanceof Error);
    assert.equal(err.name, 'AbortError');
    assert.ok(Date.now() - started >= 90, 'it was the signal that ended it, not a refused connection');
  });
});
