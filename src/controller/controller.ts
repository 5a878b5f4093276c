// A generic controller: keys in, reconcile out, after controller-runtime's pkg/internal/controller/controller.go.
// Workers take keys from a WorkQueue (which guarantees one key never runs twice at once), call reconcile, and
// turn its Result or error into the next enqueue:
//   success                → forget (reset backoff); requeueAfter > 0 → addAfter; else requeue → addRateLimited
//   TerminalError          → log, forget, no retry (the object needs a change, which brings a new event)
//   any other error/throw  → log the message only, addRateLimited (per-key exponential backoff)
// Nothing a reconcile does can stop a worker.

import { AsyncLocalStorage } from 'node:async_hooks';
import type { Logger } from 'winston';
import { type Cancel, type Clock, realClock } from './clock.js';
import { WorkQueue } from './queue.js';

export interface Result {
  /** Reconcile this key again after this many milliseconds (the next deadline). Takes precedence over requeue. */
  requeueAfter?: number;
  /** Reconcile again after the key's backoff delay, without counting as an error. */
  requeue?: boolean;
}

/**
 * Reconciles the object named by key ("namespace/name"): re-read it and converge, never act on an event payload.
 * signal aborts when the controller stops and the grace period ran out, or at once on abort().
 */
export type ReconcileFunc = (key: string, signal: AbortSignal) => Promise<Result>;

/** The running reconcile's signal, for code deep below it (SQL, API writes) without threading a parameter. */
const reconcileSignal = new AsyncLocalStorage<AbortSignal>();

/**
 * Throws if the reconcile this call runs in was aborted (leadership lost, shutdown): called before every step
 * that changes PostgreSQL or the API server, so that a replica that may no longer lead stops acting at once.
 */
export function throwIfAborted(): void {
  reconcileSignal.getStore()?.throwIfAborted();
}

/** An error retrying cannot fix (invalid spec, refused reference). Reported, then the key is not requeued. */
export class TerminalError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'TerminalError';
  }
}

/** True if err, or an error in its cause chain, is a TerminalError (as errors.Is walks wrapped errors). */
export function isTerminalError(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 16; e = e.cause, depth++) {
    if (e instanceof TerminalError) return true;
  }
  return false;
}

export interface ControllerOptions {
  /** Appears in every log line as `controller`. */
  name: string;
  logger: Logger;
  reconcile: ReconcileFunc;
  /** Concurrent reconciles (of different keys). Default 1. */
  workers?: number;
  /** Default: a new WorkQueue on clock with the default backoff. */
  queue?: WorkQueue;
  clock?: Clock;
  /** How long stop() waits for in-flight reconciles before aborting their signal. Default 30s. */
  shutdownTimeoutMs?: number;
  /** One safe line for a log: the default is the error's message; pass one that also strips API bodies. */
  describeError?: (err: unknown) => string;
  /** Called after every reconcile (metrics): result is success, requeue, error or terminal. */
  observe?: (controller: string, result: 'success' | 'requeue' | 'error' | 'terminal', seconds: number) => void;
}

const DEFAULT_SHUTDOWN_TIMEOUT_MS = 30_000;

export class Controller {
  private readonly describeError: (err: unknown) => string;
  private readonly observe: NonNullable<ControllerOptions['observe']>;
  readonly name: string;
  readonly queue: WorkQueue;
  private readonly logger: Logger;
  private readonly reconcileFn: ReconcileFunc;
  private readonly workerCount: number;
  private readonly clock: Clock;
  private readonly shutdownTimeoutMs: number;
  private readonly aborter = new AbortController();
  private workers: Promise<void>[] = [];
  private started = false;
  private stopping: Promise<void> | undefined;

  constructor(options: ControllerOptions) {
    this.name = options.name;
    this.logger = options.logger;
    this.reconcileFn = options.reconcile;
    this.describeError = options.describeError ?? errorMessage;
    this.observe = options.observe ?? (() => undefined);
    this.workerCount = Math.max(1, Math.floor(options.workers ?? 1));
    this.clock = options.clock ?? realClock;
    this.queue = options.queue ?? new WorkQueue({ clock: this.clock });
    this.shutdownTimeoutMs = options.shutdownTimeoutMs ?? DEFAULT_SHUTDOWN_TIMEOUT_MS;
  }

  /** Starts the workers and returns; keys enqueued before start() are processed once it runs. */
  start(): void {
    if (this.started || this.stopping !== undefined) return;
    this.started = true;
    this.logger.info('starting workers', { controller: this.name, workers: this.workerCount });
    for (let i = 0; i < this.workerCount; i++) this.workers.push(this.runWorker());
  }

  enqueue(key: string): void {
    this.queue.add(key);
  }

  enqueueAfter(key: string, ms: number): void {
    this.queue.addAfter(key, ms);
  }

  /**
   * Stops handing out keys and waits for in-flight reconciles, up to the shutdown timeout; after that their
   * AbortSignal fires and stop() returns without waiting further. Safe to call more than once.
   */
  stop(): Promise<void> {
    this.stopping ??= this.shutDown();
    return this.stopping;
  }

  /**
   * Stops at once, without waiting: no key is handed out any more and every in-flight reconcile's AbortSignal
   * fires now. For when this process must stop acting immediately (leadership lost).
   */
  abort(reason = `controller ${this.name} aborted`): void {
    this.queue.shutDown();
    this.aborter.abort(new Error(reason));
  }

  private async shutDown(): Promise<void> {
    this.logger.info('stopping workers', { controller: this.name });
    let cancelTimeout: Cancel | undefined;
    const timedOut = new Promise<false>((resolve) => {
      cancelTimeout = this.clock.setTimeout(() => resolve(false), this.shutdownTimeoutMs);
    });
    const drained = this.queue.shutDownWithDrain().then(() => true as const);
    const finished = await Promise.race([drained, timedOut]);
    cancelTimeout?.();
    if (finished) {
      await Promise.all(this.workers);
      this.logger.info('workers stopped', { controller: this.name });
    } else {
      this.logger.warn('shutdown timeout reached, aborting in-flight reconciles', {
        controller: this.name,
        timeoutMs: this.shutdownTimeoutMs,
      });
      this.aborter.abort(new Error(`controller ${this.name} stopped`));
    }
  }

  private async runWorker(): Promise<void> {
    for (;;) {
      const key = await this.queue.get();
      if (key === undefined) return;
      try {
        await this.processItem(key);
      } catch {
        // processItem catches reconcile errors; only a failing logger gets here, and it must not stop the worker.
      }
    }
  }

  private async processItem(key: string): Promise<void> {
    const startedMs = this.clock.now().getTime();
    const fields = { controller: this.name, key };
    try {
      const signal = this.aborter.signal;
      const result: Result | undefined = await reconcileSignal.run(signal, () => this.reconcileFn(key, signal));
      const durationMs = this.clock.now().getTime() - startedMs;
      const requeueAfter = result?.requeueAfter;
      this.observe(this.name, result?.requeue === true && requeueAfter === undefined ? 'requeue' : 'success', durationMs / 1000);
      if (requeueAfter !== undefined && requeueAfter > 0 && Number.isFinite(requeueAfter)) {
        this.queue.forget(key);
        this.queue.addAfter(key, requeueAfter);
        this.logger.debug('reconciled', { ...fields, durationMs, requeueAfterMs: requeueAfter });
      } else if (result?.requeue === true) {
        this.queue.addRateLimited(key);
        this.logger.debug('reconciled', { ...fields, durationMs, requeue: true });
      } else {
        this.queue.forget(key);
        this.logger.debug('reconciled', { ...fields, durationMs });
      }
    } catch (err) {
      const durationMs = this.clock.now().getTime() - startedMs;
      // The message only: API errors carry request and response bodies, which can hold Secret data.
      const error = this.describeError(err);
      this.observe(this.name, isTerminalError(err) ? 'terminal' : 'error', durationMs / 1000);
      if (isTerminalError(err)) {
        this.queue.forget(key);
        this.logger.error('reconcile failed, not retrying', { ...fields, durationMs, error });
      } else {
        this.queue.addRateLimited(key);
        this.logger.error('reconcile failed', {
          ...fields,
          durationMs,
          error,
          retries: this.queue.numRequeues(key),
        });
      }
    } finally {
      this.queue.done(key);
    }
  }
}

function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  if (typeof err === 'string') return err;
  return `non-error thrown (${typeof err})`;
}
