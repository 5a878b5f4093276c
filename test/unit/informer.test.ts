import assert from 'node:assert/strict';
import winston from 'winston';
import { KubeClient } from '../../src/k8s/client.js';
import { ApiError } from '../../src/k8s/rest.js';
import { testAccess } from './testAccess.js';
import { ResilientInformer, nextStep, withoutBookkeeping, type WatchFn } from '../../src/k8s/informer.js';

interface Obj {
  metadata: { name: string; namespace: string; resourceVersion: string };
}

/** Client-node's Watch fails a watch request the server answered with a non-200 status like this. */
function httpStatusError(status: number): Error {
  return Object.assign(new Error('Gone'), { statusCode: status });
}

interface WatchCall {
  resourceVersion: unknown;
  onEvent: (type: string, obj: unknown) => void;
  done: (err: unknown) => void;
}

/** A fake Watch: records each call; script decides what each call does (by index). */
function fakeWatch(script: (call: WatchCall, index: number) => void): { watch: WatchFn; calls: WatchCall[]; nth: (n: number) => Promise<WatchCall> } {
  const calls: WatchCall[] = [];
  const waiters: Array<{ n: number; resolve: (c: WatchCall) => void }> = [];
  const watch: WatchFn = async (_path, query, onEvent, done) => {
    const call = { resourceVersion: query.resourceVersion, onEvent, done };
    calls.push(call);
    for (const w of waiters.filter((x) => x.n === calls.length)) w.resolve(call);
    const ac = new AbortController();
    ac.signal.addEventListener('abort', () => done(null));
    script(call, calls.length - 1);
    return ac;
  };
  const nth = (n: number) =>
    new Promise<WatchCall>((resolve) => {
      const c = calls[n - 1];
      if (c) resolve(c);
      else waiters.push({ n, resolve });
    });
  return { watch, calls, nth };
}

function informerWith(watch: WatchFn, lists: string[]): ResilientInformer<Obj> {
  let listed = 0;
  return new ResilientInformer<Obj>({
    name: 'test',
    client: new KubeClient(testAccess()),
    path: '/api/v1/things',
    list: async () => {
      const rv = String(100 * ++listed);
      lists.push(rv);
      return { items: [{ metadata: { name: 'a', namespace: 'ns', resourceVersion: rv } }], resourceVersion: rv };
    },
    resyncPeriodMs: 3_600_000,
    logger: winston.createLogger({ silent: true }),
    watch,
  });
}

describe('informer: what follows the end of a watch', () => {
  it('relists on 410 Gone, whether an ERROR event in the stream or the status of the watch request', () => {
    assert.equal(nextStep(undefined, true), 'relist');
    assert.equal(nextStep(httpStatusError(410), false), 'relist');
    assert.equal(nextStep(new ApiError(410, { reason: 'Expired' }), false), 'relist');
  });

  it('backs off and re-watches from where it is on any other error, re-watches at once after a clean end', () => {
    assert.equal(nextStep(httpStatusError(500), false), 'backoff');
    assert.equal(nextStep(new Error('socket hang up'), false), 'backoff');
    assert.equal(nextStep(undefined, false), 'rewatch');
    assert.equal(nextStep(null, false), 'rewatch');
  });

  it('relists when the watch request itself is answered 410, instead of re-watching the expired resourceVersion', async () => {
    const lists: string[] = [];
    const fake = fakeWatch((call, i) => {
      if (i === 0) call.done(httpStatusError(410)); // as client-node does, before watch() returns
    });
    const informer = informerWith(fake.watch, lists);
    try {
      await informer.start();
      const second = await fake.nth(2);
      assert.deepEqual(lists, ['100', '200'], 'a second list followed the 410');
      assert.equal(fake.calls[0]?.resourceVersion, '100');
      assert.equal(second.resourceVersion, '200', 'the new watch starts from the new list');
    } finally {
      informer.stop();
    }
  });

  it('relists after a 410 ERROR event in the stream', async () => {
    const lists: string[] = [];
    const fake = fakeWatch((call, i) => {
      if (i === 0) setImmediate(() => call.onEvent('ERROR', { kind: 'Status', code: 410, reason: 'Expired' }));
    });
    const informer = informerWith(fake.watch, lists);
    try {
      await informer.start();
      const second = await fake.nth(2);
      assert.deepEqual(lists, ['100', '200']);
      assert.equal(second.resourceVersion, '200');
    } finally {
      informer.stop();
    }
  });

  it('keeps its resourceVersion when the watch ends cleanly', async () => {
    const lists: string[] = [];
    const fake = fakeWatch((call, i) => {
      if (i === 0) {
        setImmediate(() => {
          call.onEvent('MODIFIED', { metadata: { name: 'a', namespace: 'ns', resourceVersion: '150' } });
          call.done(null);
        });
      }
    });
    const informer = informerWith(fake.watch, lists);
    try {
      await informer.start();
      const second = await fake.nth(2);
      assert.deepEqual(lists, ['100']);
      assert.equal(second.resourceVersion, '150');
    } finally {
      informer.stop();
    }
  });
});

describe('informer: what the caches keep of an object', () => {
  it('drops managedFields and kubectl last-applied-configuration, keeps every other annotation, and is idempotent', () => {
    const obj = {
      metadata: {
        name: 'c',
        managedFields: [{ manager: 'kubectl', operation: 'Apply' }],
        annotations: { 'kubectl.kubernetes.io/last-applied-configuration': '{"spec":{}}', 'dbcred.dev/rotate': 'now' },
      },
      spec: { ttl: '1h' },
    };
    const kept = withoutBookkeeping(withoutBookkeeping(obj));
    assert.deepEqual(kept, { metadata: { name: 'c', annotations: { 'dbcred.dev/rotate': 'now' } }, spec: { ttl: '1h' } });
  });

  it('leaves no empty annotations object behind (an annotation change compares equal)', () => {
    const kept = withoutBookkeeping({ metadata: { name: 'c', annotations: { 'kubectl.kubernetes.io/last-applied-configuration': '{}' } } });
    assert.deepEqual(kept, { metadata: { name: 'c' } });
  });
});
