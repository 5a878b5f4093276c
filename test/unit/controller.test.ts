import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import winston from 'winston';
import { FakeClock } from '../../src/controller/clock.js';
import { Controller, type Result, TerminalError, isTerminalError } from '../../src/controller/controller.js';

async function flush(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

interface Deferred {
  promise: Promise<void>;
  resolve: () => void;
}

function deferred(): Deferred {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

/** A real winston JSON logger whose lines are kept in memory. */
function captureLogger(): { logger: winston.Logger; lines: string[] } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      lines.push(chunk.toString().trim());
      callback();
    },
  });
  const logger = winston.createLogger({
    level: 'debug',
    format: winston.format.json(),
    transports: [new winston.transports.Stream({ stream })],
  });
  return { logger, lines };
}

describe('Controller', () => {
  let clock: FakeClock;
  let log: { logger: winston.Logger; lines: string[] };
  let controllers: Controller[];

  function newController(
    reconcile: (key: string, signal: AbortSignal) => Promise<Result>,
    workers = 1,
    shutdownTimeoutMs?: number,
  ): Controller {
    const controller = new Controller({
      name: 'test',
      logger: log.logger,
      clock,
      workers,
      reconcile,
      ...(shutdownTimeoutMs === undefined ? {} : { shutdownTimeoutMs }),
    });
    controllers.push(controller);
    controller.start();
    return controller;
  }

  /** Advances fake time, then lets the resulting reconciles run. */
  async function advance(ms: number): Promise<void> {
    clock.advance(ms);
    await flush();
  }

  beforeEach(() => {
    clock = new FakeClock();
    log = captureLogger();
    controllers = [];
  });

  afterEach(async () => {
    for (const c of controllers) c.queue.shutDown();
  });

  it('never reconciles one key concurrently, and re-runs a key dirtied while it ran, once', async () => {
    const active = new Map<string, number>();
    const maxActive = new Map<string, number>();
    const runs: string[] = [];
    let gate = deferred();
    const controller = newController(async (key) => {
      runs.push(key);
      active.set(key, (active.get(key) ?? 0) + 1);
      maxActive.set(key, Math.max(maxActive.get(key) ?? 0, active.get(key) ?? 0));
      await gate.promise;
      active.set(key, (active.get(key) ?? 0) - 1);
      return {};
    }, 4);

    controller.enqueue('ns/a');
    await flush();
    assert.deepEqual(runs, ['ns/a']);
    for (let i = 0; i < 20; i++) {
      controller.enqueue('ns/a');
      await Promise.resolve();
    }
    await flush();
    assert.deepEqual(runs, ['ns/a'], 'idle workers did not pick up the running key');

    const first = gate;
    gate = deferred();
    first.resolve();
    await flush();
    assert.deepEqual(runs, ['ns/a', 'ns/a'], 'ran again after being dirtied');
    gate.resolve();
    await flush();
    assert.equal(runs.length, 2, 'the burst collapsed into one re-run');
    assert.equal(maxActive.get('ns/a'), 1);
  });

  it('reconciles different keys in parallel up to the worker count', async () => {
    const gate = deferred();
    let active = 0;
    let maxActive = 0;
    const controller = newController(async () => {
      active++;
      maxActive = Math.max(maxActive, active);
      await gate.promise;
      active--;
      return {};
    }, 4);
    for (const key of ['a', 'b', 'c', 'd', 'e', 'f']) controller.enqueue(key);
    await flush();
    assert.equal(active, 4);
    gate.resolve();
    await flush();
    assert.equal(maxActive, 4);
    assert.equal(active, 0);
  });

  it('retries errors with growing backoff and resets it after a success', async () => {
    let failing = true;
    const runsAt: number[] = [];
    const start = clock.now().getTime();
    const controller = newController(async () => {
      runsAt.push(clock.now().getTime() - start);
      if (failing) throw new Error('connection refused');
      return {};
    });

    controller.enqueue('ns/a');
    await flush();
    await advance(99);
    assert.deepEqual(runsAt, [0]);
    await advance(1);
    assert.deepEqual(runsAt, [0, 100]);
    await advance(199);
    assert.equal(runsAt.length, 2);
    await advance(1);
    assert.deepEqual(runsAt, [0, 100, 300]);
    await advance(400);
    assert.deepEqual(runsAt, [0, 100, 300, 700]);
    assert.equal(controller.queue.numRequeues('ns/a'), 4);

    failing = false;
    await advance(800);
    assert.deepEqual(runsAt, [0, 100, 300, 700, 1500]);
    assert.equal(controller.queue.numRequeues('ns/a'), 0, 'success forgets the backoff');

    failing = true;
    controller.enqueue('ns/a');
    await flush();
    await advance(100);
    assert.deepEqual(runsAt.slice(5), [1500, 1600], 'backoff starts over at the base delay');
  });

  it('does not retry a TerminalError, even when wrapped', async () => {
    const runs: string[] = [];
    const controller = newController(async (key) => {
      runs.push(key);
      if (key === 'ns/wrapped') throw new Error('reconcile', { cause: new TerminalError('role not allowed') });
      throw new TerminalError('invalid ttl');
    });
    controller.enqueue('ns/a');
    controller.enqueue('ns/wrapped');
    await flush();
    await advance(60 * 60 * 1000);
    assert.deepEqual(runs, ['ns/a', 'ns/wrapped']);
    assert.equal(controller.queue.numRequeues('ns/a'), 0);
    assert.equal(clock.pendingTimers(), 0);
    assert.ok(log.lines.some((l) => l.includes('invalid ttl') && l.includes('"level":"error"')));
  });

  it('isTerminalError walks the cause chain', () => {
    assert.equal(isTerminalError(new TerminalError('x')), true);
    assert.equal(isTerminalError(new Error('x', { cause: new Error('y', { cause: new TerminalError('z') }) })), true);
    assert.equal(isTerminalError(new Error('x')), false);
    assert.equal(isTerminalError('x'), false);
  });

  it('keeps its workers alive through synchronous throws and non-Error throws', async () => {
    const done: string[] = [];
    const controller = newController(((key: string): Promise<Result> => {
      if (key === 'sync') throw new Error('thrown before any await');
      if (key === 'string') return Promise.reject('a string');
      if (key === 'undefined') return Promise.reject(undefined);
      done.push(key);
      return Promise.resolve({});
    }) as (key: string) => Promise<Result>);
    for (const key of ['sync', 'string', 'undefined', 'good']) controller.enqueue(key);
    await flush();
    assert.deepEqual(done, ['good']);
    controller.enqueue('good-again');
    await flush();
    assert.deepEqual(done, ['good', 'good-again']);
    assert.equal(controller.queue.numRequeues('sync'), 1);
  });

  it('logs the error message only, never the error object', async () => {
    const controller = newController(async () => {
      const err = new Error('secrets "pg-root" is forbidden') as Error & { body: unknown };
      err.body = { data: { password: 'aHVudGVyMg==' }, stringData: { password: 'hunter2' } };
      throw err;
    });
    controller.enqueue('ns/a');
    await flush();
    const failure = log.lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((e) => e.level === 'error');
    assert.ok(failure);
    assert.equal(failure.message, 'reconcile failed');
    assert.equal(failure.error, 'secrets "pg-root" is forbidden');
    assert.equal(failure.controller, 'test');
    assert.equal(failure.key, 'ns/a');
    assert.equal(typeof failure.durationMs, 'number');
    assert.ok(!log.lines.some((l) => l.includes('hunter2') || l.includes('aHVudGVyMg')));
  });

  it('logs a successful reconcile at debug level with controller, key and duration', async () => {
    const controller = newController(async () => {
      clock.advance(42);
      return {};
    });
    controller.enqueue('ns/a');
    await flush();
    const entry = log.lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((e) => e.message === 'reconciled');
    assert.deepEqual(
      { level: entry?.level, controller: entry?.controller, key: entry?.key, durationMs: entry?.durationMs },
      { level: 'debug', controller: 'test', key: 'ns/a', durationMs: 42 },
    );
  });

  it('requeueAfter reconciles again at the returned deadline', async () => {
    const runsAt: number[] = [];
    const start = clock.now().getTime();
    const controller = newController(async () => {
      runsAt.push(clock.now().getTime() - start);
      return runsAt.length === 1 ? { requeueAfter: 60_000 } : {};
    });
    controller.enqueue('ns/a');
    await flush();
    await advance(59_999);
    assert.deepEqual(runsAt, [0]);
    await advance(1);
    assert.deepEqual(runsAt, [0, 60_000]);
    await advance(10 * 60_000);
    assert.equal(runsAt.length, 2);
  });

  it('an event before the requeueAfter deadline reconciles at once, and the deadline still holds', async () => {
    const runsAt: number[] = [];
    const start = clock.now().getTime();
    const controller = newController(async () => {
      runsAt.push(clock.now().getTime() - start);
      return runsAt.length === 1 ? { requeueAfter: 60_000 } : {};
    });
    controller.enqueue('ns/a');
    await flush();
    await advance(10_000);
    controller.enqueue('ns/a');
    await flush();
    await advance(50_000);
    assert.deepEqual(runsAt, [0, 10_000, 60_000]);
  });

  it('requeue: true retries after the backoff delay without counting as a failure log', async () => {
    const runsAt: number[] = [];
    const start = clock.now().getTime();
    const controller = newController(async () => {
      runsAt.push(clock.now().getTime() - start);
      return { requeue: runsAt.length < 3 };
    });
    controller.enqueue('ns/a');
    await flush();
    await advance(100);
    await advance(200);
    assert.deepEqual(runsAt, [0, 100, 300]);
    assert.equal(controller.queue.numRequeues('ns/a'), 0);
    assert.ok(!log.lines.some((l) => l.includes('"level":"error"')));
  });

  it('enqueueAfter delays a key on the clock', async () => {
    const runs: string[] = [];
    const controller = newController(async (key) => {
      runs.push(key);
      return {};
    });
    controller.enqueueAfter('ns/a', 5000);
    await advance(4999);
    assert.deepEqual(runs, []);
    await advance(1);
    assert.deepEqual(runs, ['ns/a']);
  });

  it('stop waits for in-flight reconciles and hands out no more keys', async () => {
    const gate = deferred();
    const runs: string[] = [];
    const controller = newController(async (key) => {
      runs.push(key);
      await gate.promise;
      return {};
    }, 2);
    controller.enqueue('a');
    await flush();
    controller.enqueue('a'); // dirtied while running
    controller.enqueue('b');
    controller.enqueue('c');
    await flush();
    let stopped = false;
    void controller.stop().then(() => (stopped = true));
    controller.enqueue('d');
    await flush();
    assert.equal(stopped, false, 'stop waits for in-flight reconciles');
    gate.resolve();
    await flush();
    assert.equal(stopped, true);
    assert.deepEqual(runs, ['a', 'b']);
    assert.equal(clock.pendingTimers(), 0, 'the shutdown timeout was cancelled');
  });

  it('stop aborts the signal of reconciles still running at the shutdown timeout', async () => {
    let aborted = false;
    const controller = newController(
      (_key, signal) =>
        new Promise<Result>((resolve) => {
          signal.addEventListener('abort', () => {
            aborted = true;
            resolve({});
          });
        }),
      1,
      1000,
    );
    controller.enqueue('a');
    await flush();
    let stopped = false;
    void controller.stop().then(() => (stopped = true));
    await advance(999);
    assert.equal(stopped, false);
    assert.equal(aborted, false);
    await advance(1);
    assert.equal(stopped, true);
    assert.equal(aborted, true);
    assert.ok(log.lines.some((l) => l.includes('shutdown timeout reached')));
  });
});
