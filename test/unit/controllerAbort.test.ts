import assert from 'node:assert/strict';
import winston from 'winston';
import { FakeClock } from '../../src/controller/clock.js';
import { Controller, throwIfAborted } from '../../src/controller/controller.js';

async function flush(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

describe('Controller.abort (leadership lost)', () => {
  it('fires every in-flight reconcile signal at once and hands out no further key', async () => {
    const clock = new FakeClock();
    const started: string[] = [];
    const aborted: string[] = [];
    const controller = new Controller({
      name: 'test',
      logger: winston.createLogger({ silent: true }),
      clock,
      workers: 2,
      reconcile: (key, signal) =>
        new Promise((resolve) => {
          started.push(key);
          signal.addEventListener('abort', () => {
            aborted.push(key);
            resolve({});
          });
        }),
    });
    controller.start();
    controller.enqueue('ns/a');
    controller.enqueue('ns/b');
    await flush();
    assert.deepEqual(started, ['ns/a', 'ns/b']);
    controller.enqueue('ns/c');
    controller.abort('leadership lost');
    await flush();
    assert.deepEqual(aborted.sort(), ['ns/a', 'ns/b'], 'aborted without waiting for any grace period (no time passed)');
    controller.enqueue('ns/d');
    await flush();
    assert.deepEqual(started, ['ns/a', 'ns/b'], 'nothing new started');
  });

  it('lets code deep inside a reconcile stop before its next write (throwIfAborted)', async () => {
    const steps: string[] = [];
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => (release = r));
    let outcome: unknown;
    const controller = new Controller({
      name: 'test',
      logger: winston.createLogger({ silent: true }),
      clock: new FakeClock(),
      reconcile: async () => {
        throwIfAborted();
        steps.push('first write');
        await gate; // e.g. waiting on PostgreSQL
        try {
          throwIfAborted();
          steps.push('second write');
        } catch (err) {
          outcome = err;
        }
        return {};
      },
    });
    controller.start();
    controller.enqueue('ns/a');
    await flush();
    controller.abort('leadership lost');
    release();
    await flush();
    assert.deepEqual(steps, ['first write'], 'nothing was written after the abort');
    assert.ok(outcome instanceof Error);
    assert.doesNotThrow(() => throwIfAborted(), 'outside a reconcile it never throws');
  });
});
