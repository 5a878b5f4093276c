// The REST transport against a real HTTP server on 127.0.0.1: kept-alive connections, error statuses, aborts and
// timeouts, re-asking for a token after 401, and watch streams (lines split across chunks, error statuses).
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { KubeClient, apiErrorCode, apiErrorMessage } from '../../src/k8s/client.js';
import { METADATA_WATCH_ACCEPT, metadataWatch } from '../../src/k8s/informer.js';
import type { ClusterAccess } from '../../src/k8s/kubeconfig.js';
import { ApiError, RestClient } from '../../src/k8s/rest.js';
import { testAccess } from './testAccess.js';

const LEASE = { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: 'l', namespace: 'ns', resourceVersion: '1' } };

type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => void;

describe('rest transport', () => {
  let server: http.Server;
  let connections = 0;
  let handler: Handler = (_req, res) => res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify(LEASE));
  const seen: Array<{ method?: string; url?: string; accept?: string; authorization?: string; contentType?: string; body: string }> = [];
  let invalidated = 0;
  let token = 'first-token';

  function access(): ClusterAccess {
    return {
      ...testAccess(`http://127.0.0.1:${(server.address() as AddressInfo).port}`),
      authorization: async () => `Bearer ${token}`,
      invalidate: () => {
        invalidated++;
        token = 'second-token';
      },
    };
  }

  before(async () => {
    server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => {
        seen.push({ method: req.method, url: req.url, accept: req.headers.accept, authorization: req.headers.authorization, contentType: req.headers['content-type'], body });
        handler(req, res);
      });
    });
    server.on('connection', () => connections++);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  });

  afterEach(() => {
    handler = (_req, res) => res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify(LEASE));
  });

  after(() => {
    server.closeAllConnections();
    server.close();
  });

  it('sends every request over one kept-alive connection', async () => {
    const client = new KubeClient(access());
    const before = connections;
    for (let i = 0; i < 20; i++) assert.equal((await client.getOptional<typeof LEASE>('/apis/coordination.k8s.io/v1/namespaces/ns/leases/l'))?.metadata.name, 'l');
    assert.equal(connections - before, 1);
  });

  it('sends the body as JSON with the patch content type and the Authorization header', async () => {
    const client = new KubeClient(access());
    await client.patchStatus('credential', 'ns', 'c', { username: 'u' }, '7');
    const last = seen[seen.length - 1];
    assert.equal(last?.method, 'PATCH');
    assert.equal(last?.url, '/apis/dbcred.dev/v1alpha1/namespaces/ns/databasecredentials/c/status');
    assert.equal(last?.contentType, 'application/merge-patch+json');
    assert.deepEqual(JSON.parse(last?.body ?? ''), { status: { username: 'u' }, metadata: { resourceVersion: '7' } });
    assert.match(last?.authorization ?? '', /^Bearer /);
  });

  it('turns an error status into an ApiError with its code and the Status message', async () => {
    handler = (_req, res) => res.writeHead(409, { 'Content-Type': 'application/json' }).end(JSON.stringify({ kind: 'Status', reason: 'Conflict', message: 'the object has been modified' }));
    const client = new KubeClient(access());
    const err = await client.createSecret('ns', { metadata: { name: 's' } }).then(() => undefined, (e: unknown) => e);
    assert.ok(err instanceof ApiError);
    assert.equal(apiErrorCode(err), 409);
    assert.equal(apiErrorMessage(err), 'API 409: the object has been modified');
  });

  it('answers undefined for a 404 on an optional read', async () => {
    handler = (_req, res) => res.writeHead(404, { 'Content-Type': 'application/json' }).end('{"kind":"Status","reason":"NotFound"}');
    assert.equal(await new KubeClient(access()).getSecret('ns', 'missing'), undefined);
  });

  it('asks for a new token once after a 401, then succeeds', async () => {
    token = 'first-token';
    const before = invalidated;
    handler = (req, res) => {
      if (req.headers.authorization === 'Bearer first-token') res.writeHead(401).end('{"kind":"Status","reason":"Unauthorized"}');
      else res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify(LEASE));
    };
    const got = await new KubeClient(access()).getOptional<typeof LEASE>('/x');
    assert.equal(got?.kind, 'Lease');
    assert.equal(invalidated - before, 1);
  });

  it('aborts a request that gets no answer when its signal fires', async () => {
    handler = () => undefined; // a hung API server
    const ac = new AbortController();
    const started = Date.now();
    setTimeout(() => ac.abort(new Error('deadline')), 100);
    const err = await new RestClient(access()).request('GET', '/hang', { signal: ac.signal }).then(() => undefined, (e: unknown) => e);
    assert.ok(err instanceof Error);
    assert.ok(Date.now() - started >= 90, 'it was the signal that ended it');
  });

  it('fails a request that gets no answer within its timeout', async () => {
    handler = () => undefined;
    const err = await new RestClient(access()).request('GET', '/hang', { timeoutMs: 150 }).then(() => undefined, (e: unknown) => e);
    assert.ok(err instanceof Error);
    assert.match(err.message, /no answer from the API server within 150 ms/);
  });

  it('streams watch events split across chunks, with the metadata Accept header, over the shared connection', async () => {
    handler = (_req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      const line = `${JSON.stringify({ type: 'ADDED', object: LEASE })}\n${JSON.stringify({ type: 'MODIFIED', object: LEASE })}\n`;
      res.write(line.slice(0, 17));
      setTimeout(() => res.end(line.slice(17)), 20);
    };
    const client = new KubeClient(access());
    const watch = metadataWatch(client);
    const before = connections;
    for (let i = 0; i < 5; i++) {
      const events: string[] = [];
      const err = await new Promise<unknown>((resolve, reject) => {
        watch('/apis/coordination.k8s.io/v1/leases', { resourceVersion: '5' }, (type) => events.push(type), resolve).catch(reject);
      });
      assert.equal(err, null);
      assert.deepEqual(events, ['ADDED', 'MODIFIED']);
    }
    const last = seen[seen.length - 1];
    assert.equal(last?.accept, METADATA_WATCH_ACCEPT);
    assert.match(last?.url ?? '', /resourceVersion=5/);
    assert.match(last?.url ?? '', /watch=true/);
    assert.ok(connections - before <= 1, `${connections - before} connections for 5 watches`);
  });

  it('ends a watch whose request is refused with an ApiError carrying the status (410 Gone → relist)', async () => {
    handler = (_req, res) => res.writeHead(410, { 'Content-Type': 'application/json' }).end('{"kind":"Status","reason":"Expired","code":410}');
    const err = await new Promise<unknown>((resolve, reject) => {
      new RestClient(access()).watch('/w', {}, () => undefined, resolve).catch(reject);
    });
    assert.equal(apiErrorCode(err), 410);
  });

  it('says done(null) once when the watch is aborted by its controller', async () => {
    handler = (_req, res) => res.writeHead(200, { 'Content-Type': 'application/json' }).write('');
    const calls: unknown[] = [];
    const ac = await new RestClient(access()).watch('/w', {}, () => undefined, (err) => calls.push(err));
    ac.abort();
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(calls, [null]);
  });
});
