import assert from 'node:assert/strict';
import { FakeClock } from '../../src/controller/clock.js';
import { observeQueue, registry } from '../../src/metrics.js';
import {
  DEFAULT_BASE_DELAY_MS,
  DEFAULT_MAX_DELAY_MS,
  ExponentialBackoff,
  WorkQueue,
} from '../../src/controller/queue.js';

/** Lets resolved promises and their continuations run. */
async function flush(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

describe('WorkQueue', () => {
  let clock: FakeClock;
  let queue: WorkQueue;

  beforeEach(() => {
    clock = new FakeClock();
    queue = new WorkQueue({ clock });
  });

  afterEach(() => queue.shutDown());

  it('collapses a burst of adds of one key into one pending item', async () => {
    for (let i = 0; i < 10; i++) queue.add('ns/a');
    queue.add('ns/b');
    assert.equal(queue.len(), 2);
    assert.equal(await queue.get(), 'ns/a');
    assert.equal(await queue.get(), 'ns/b');
    assert.equal(queue.len(), 0);
  });

  it('hands out ready keys in FIFO order', async () => {
    for (const key of ['c', 'a', 'b']) queue.add(key);
    queue.add('c');
    const got = [await queue.get(), await queue.get(), await queue.get()];
    assert.deepEqual(got, ['c', 'a', 'b']);
  });

  it('does not hand out a key being processed; a key added meanwhile is handed out again after done', async () => {
    queue.add('a');
    assert.equal(await queue.get(), 'a');
    queue.add('a');
    queue.add('a');
    assert.equal(queue.len(), 0, 'dirtied key is not ready while processing');

    let second: string | undefined;
    void queue.get().then((key) => (second = key));
    await flush();
    assert.equal(second, undefined, 'get waits while the only key is processing');

    queue.done('a');
    await flush();
    assert.equal(second, 'a');
    queue.done('a');
    assert.equal(queue.len(), 0, 'the dirty adds collapsed into one re-run');
  });

  it('does not re-queue a key on done when nothing added it meanwhile', async () => {
    queue.add('a');
    const key = await queue.get();
    assert.equal(key, 'a');
    queue.done('a');
    assert.equal(queue.len(), 0);
  });

  it('get waits for work and resolves when a key is added', async () => {
    const pending = queue.get();
    queue.add('late');
    assert.equal(await pending, 'late');
  });

  it('hands out a key whose deadline came before keys that were merely added (a burst does not delay a lease end)', async () => {
    for (let i = 0; i < 100; i++) queue.add(`burst-${i}`);
    queue.addAfter('expiring', 1000);
    clock.advance(1000);
    assert.equal(queue.len(), 101);
    assert.equal(await queue.get(), 'expiring');
    assert.equal(await queue.get(), 'burst-0');
  });

  it('moves a key already waiting in the ordinary line up when its deadline comes', async () => {
    for (const key of ['a', 'b', 'c']) queue.add(key);
    queue.addAfter('c', 0);
    assert.equal(queue.len(), 3, 'moved, not added twice');
    assert.deepEqual([await queue.get(), await queue.get(), await queue.get()], ['c', 'a', 'b']);
  });

  it('keeps the urgency of a key that came due while it was being processed', async () => {
    queue.add('x');
    queue.add('busy');
    assert.equal(await queue.get(), 'x');
    assert.equal(await queue.get(), 'busy');
    queue.add('y');
    queue.addAfter('busy', 0); // due again while processing
    queue.done('busy');
    assert.equal(await queue.get(), 'busy', 'ahead of y');
    assert.equal(await queue.get(), 'y');
  });

  it('addAfter makes the key ready exactly at its deadline', () => {
    queue.addAfter('a', 1000);
    clock.advance(999);
    assert.equal(queue.len(), 0);
    clock.advance(1);
    assert.equal(queue.len(), 1);
  });

  it('addAfter keeps the earliest deadline when a key is re-added', async () => {
    queue.addAfter('a', 5000);
    queue.addAfter('a', 1000);
    queue.addAfter('a', 3000);
    assert.equal(clock.pendingTimers(), 1);
    clock.advance(1000);
    assert.equal(queue.len(), 1);
    assert.equal(await queue.get(), 'a');
    queue.done('a');
    clock.advance(10_000);
    assert.equal(queue.len(), 0, 'later deadlines were dropped');
  });

  it('a delayed add of a key already queued does not duplicate it', () => {
    queue.add('a');
    queue.addAfter('a', 100);
    clock.advance(100);
    assert.equal(queue.len(), 1);
  });

  it('addAfter with a non-positive delay adds immediately', () => {
    queue.addAfter('a', 0);
    queue.addAfter('b', -5);
    assert.equal(queue.len(), 2);
  });

  it('addRateLimited backs off exponentially per key and forget resets it', () => {
    const readyAfter = (key: string): number => {
      queue.addRateLimited(key);
      let waited = 0;
      while (queue.len() === 0) {
        clock.advance(1);
        waited++;
      }
      return waited;
    };
    const delays: number[] = [];
    for (let i = 0; i < 4; i++) {
      delays.push(readyAfter('a'));
      void queue.get();
      queue.done('a');
    }
    assert.deepEqual(delays, [100, 200, 400, 800]);
    assert.equal(queue.numRequeues('a'), 4);
    assert.equal(queue.numRequeues('b'), 0, 'backoff is per key');

    queue.forget('a');
    assert.equal(queue.numRequeues('a'), 0);
    assert.equal(readyAfter('a'), 100);
  });

  it('shutDown resolves pending get with undefined and refuses new work', async () => {
    const pending = [queue.get(), queue.get()];
    queue.addAfter('later', 1000);
    queue.shutDown();
    assert.deepEqual(await Promise.all(pending), [undefined, undefined]);
    assert.equal(await queue.get(), undefined);
    queue.add('a');
    assert.equal(queue.len(), 0);
    assert.equal(clock.pendingTimers(), 0, 'delayed adds are cancelled');
    assert.equal(queue.isShuttingDown(), true);
  });

  it('shutDown drops queued keys', async () => {
    queue.add('a');
    queue.shutDown();
    assert.equal(queue.len(), 0);
    assert.equal(await queue.get(), undefined);
  });

  it('shutDownWithDrain resolves once every key handed out is done', async () => {
    queue.add('a');
    const key = await queue.get();
    assert.equal(key, 'a');
    queue.add('a'); // dirty while processing: dropped by shutdown, not re-queued by done
    let drained = false;
    void queue.shutDownWithDrain().then(() => (drained = true));
    await flush();
    assert.equal(drained, false);
    queue.done('a');
    await flush();
    assert.equal(drained, true);
    assert.equal(queue.len(), 0);
  });

  it('shutDownWithDrain resolves at once when nothing is processing', async () => {
    await queue.shutDownWithDrain();
  });
});

describe('ExponentialBackoff', () => {
  it('defaults to 100ms doubling, capped at 5 minutes', () => {
    assert.equal(DEFAULT_BASE_DELAY_MS, 100);
    assert.equal(DEFAULT_MAX_DELAY_MS, 300_000);
    const backoff = new ExponentialBackoff();
    const delays = Array.from({ length: 14 }, () => backoff.when('k'));
    assert.deepEqual(delays.slice(0, 5), [100, 200, 400, 800, 1600]);
    assert.equal(delays[11], 204_800);
    assert.equal(delays[12], 300_000);
    assert.equal(delays[13], 300_000);
    for (let i = 0; i < 2000; i++) backoff.when('k');
    assert.equal(backoff.when('k'), 300_000, 'no overflow after many failures');
  });

  it('accepts custom parameters and rejects nonsense', () => {
    const backoff = new ExponentialBackoff({ baseDelayMs: 5, maxDelayMs: 12 });
    assert.deepEqual([backoff.when('k'), backoff.when('k'), backoff.when('k')], [5, 10, 12]);
    assert.throws(() => new ExponentialBackoff({ baseDelayMs: 0 }), RangeError);
    assert.throws(() => new ExponentialBackoff({ baseDelayMs: 10, maxDelayMs: 5 }), RangeError);
  });
});

describe('FakeClock', () => {
  it('fires due timers in deadline order, ties in scheduling order, with now() at each deadline', () => {
    const clock = new FakeClock(0);
    const fired: string[] = [];
    clock.setTimeout(() => fired.push(`b@${clock.now().getTime()}`), 20);
    clock.setTimeout(() => fired.push(`a@${clock.now().getTime()}`), 10);
    clock.setTimeout(() => fired.push(`c@${clock.now().getTime()}`), 20);
    const cancel = clock.setTimeout(() => fired.push('cancelled'), 15);
    cancel();
    clock.advance(15);
    assert.deepEqual(fired, ['a@10']);
    clock.setTimeout(() => fired.push(`d@${clock.now().getTime()}`), 1); // due at 16, before b and c
    clock.advance(100);
    assert.deepEqual(fired, ['a@10', 'd@16', 'b@20', 'c@20']);
    assert.equal(clock.now().getTime(), 115);
  });
});

describe('work queue metrics', () => {
  it('reports each controller queue\'s waiting and in-flight keys at scrape time', async () => {
    const q = new WorkQueue();
    observeQueue('test-controller', { depth: () => q.len(), inFlight: () => q.inFlight() });
    q.add('a');
    q.add('b');
    const key = await q.get();
    const text = await registry.metrics();
    assert.match(text, /^dbcred_workqueue_depth\{controller="test-controller"\} 1$/m);
    assert.match(text, /^dbcred_workqueue_in_flight\{controller="test-controller"\} 1$/m);
    q.done(key as string);
    assert.match(await registry.metrics(), /^dbcred_workqueue_in_flight\{controller="test-controller"\} 0$/m);
  });
});
