// A keyed work queue with client-go workqueue semantics (util/workqueue/queue.go, delaying_queue.go,
// default_rate_limiters.go), the guarantees controller-runtime builds on:
//   - add() dedupes: a key waiting to be processed is queued once, however many events arrive (bursts collapse);
//   - a key handed out by get() is not handed out again until done(key), so one key never runs twice at once;
//   - a key added while it is being processed is marked dirty and queued again by done(key);
//   - addAfter() delays an add (earliest deadline wins), addRateLimited() delays by per-key exponential backoff;
//   - ready keys are handed out FIFO.
// Unlike client-go, get() hands out nothing after shutDown(): reconciles are level-based, so dropped keys are
// picked up again by the next start's initial list (or the next leader).

import { type Cancel, type Clock, realClock } from './clock.js';

/** Backoff of ItemExponentialFailureRateLimiter: baseDelayMs * 2^failures, capped at maxDelayMs. */
export interface BackoffOptions {
  /** Delay after the first failure. client-go uses 5ms; 100ms spares PostgreSQL and the API server a burst. */
  baseDelayMs?: number;
  /** Ceiling. client-go uses 1000s; 5 minutes keeps a fixed outage from delaying recovery for long. */
  maxDelayMs?: number;
}

export const DEFAULT_BASE_DELAY_MS = 100;
export const DEFAULT_MAX_DELAY_MS = 5 * 60 * 1000;

/** Per-key exponential backoff: 100ms, 200ms, 400ms, … 5m by default. forget(key) starts over. */
export class ExponentialBackoff {
  private readonly baseDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly failures = new Map<string, number>();

  constructor(options: BackoffOptions = {}) {
    this.baseDelayMs = options.baseDelayMs ?? DEFAULT_BASE_DELAY_MS;
    this.maxDelayMs = options.maxDelayMs ?? DEFAULT_MAX_DELAY_MS;
    if (!(this.baseDelayMs > 0) || !(this.maxDelayMs >= this.baseDelayMs)) {
      throw new RangeError(`invalid backoff: base ${this.baseDelayMs}ms, max ${this.maxDelayMs}ms`);
    }
  }

  /** Records one more failure of key and returns how long to wait before retrying it. */
  when(key: string): number {
    const failures = this.failures.get(key) ?? 0;
    this.failures.set(key, failures + 1);
    // 2^failures overflows to Infinity long after the cap is reached; Math.min handles that.
    return Math.min(this.baseDelayMs * 2 ** failures, this.maxDelayMs);
  }

  numRequeues(key: string): number {
    return this.failures.get(key) ?? 0;
  }

  forget(key: string): void {
    this.failures.delete(key);
  }
}

export interface WorkQueueOptions extends BackoffOptions {
  clock?: Clock;
}

interface Waiting {
  readyAtMs: number;
  cancel: Cancel;
}

export class WorkQueue {
  private readonly clock: Clock;
  private readonly backoff: ExponentialBackoff;
  /** Keys ready to be handed out, FIFO. Every key here is also in dirty. */
  private queue: string[] = [];
  /**
   * Keys whose deadline has come (addAfter): handed out before queue. A lease that ends or a grace period that is
   * over must not wait behind a burst of new objects (measured: revocation lag p99 11.6 s during a burst of 1,000
   * creates when both shared one FIFO).
   */
  private urgent: string[] = [];
  /** The keys in dirty whose pending processing is urgent. */
  private readonly urgentKeys = new Set<string>();
  /** Keys that need processing (queued, or added again while processing). */
  private readonly dirty = new Set<string>();
  /** Keys handed out by get() and not yet done(). */
  private readonly processing = new Set<string>();
  /** Delayed adds, one timer per key: the earliest deadline. */
  private readonly waiting = new Map<string, Waiting>();
  private readonly getters: Array<(key: string | undefined) => void> = [];
  private drainWaiters: Array<() => void> = [];
  private shuttingDown = false;

  constructor(options: WorkQueueOptions = {}) {
    this.clock = options.clock ?? realClock;
    this.backoff = new ExponentialBackoff(options);
  }

  /** Marks key as needing processing. A no-op if it is already queued or after shutDown(). */
  add(key: string): void {
    this.enqueue(key, false);
  }

  private enqueue(key: string, urgent: boolean): void {
    if (this.shuttingDown) return;
    if (this.dirty.has(key)) {
      if (!urgent || this.urgentKeys.has(key)) return;
      // Waiting in the ordinary line, and now due: it moves up (unless it is being processed: done() queues it).
      this.urgentKeys.add(key);
      const i = this.queue.indexOf(key);
      if (i >= 0) {
        this.queue.splice(i, 1);
        this.urgent.push(key);
        this.handOut();
      }
      return;
    }
    this.dirty.add(key);
    if (urgent) this.urgentKeys.add(key);
    if (this.processing.has(key)) return; // done(key) queues it again
    (urgent ? this.urgent : this.queue).push(key);
    this.handOut();
  }

  /** Adds key once ms have passed. If key is already waiting, the earlier deadline wins. */
  addAfter(key: string, ms: number): void {
    if (this.shuttingDown) return;
    if (!(ms > 0)) {
      this.enqueue(key, true);
      return;
    }
    const readyAtMs = this.clock.now().getTime() + ms;
    const existing = this.waiting.get(key);
    if (existing !== undefined) {
      if (existing.readyAtMs <= readyAtMs) return;
      existing.cancel();
    }
    const cancel = this.clock.setTimeout(() => {
      this.waiting.delete(key);
      this.enqueue(key, true);
    }, ms);
    this.waiting.set(key, { readyAtMs, cancel });
  }

  /** Adds key after its backoff delay, and counts one more failure for it. */
  addRateLimited(key: string): void {
    this.addAfter(key, this.backoff.when(key));
  }

  /** Resets key's backoff: call after it was processed successfully. Does not remove a pending add. */
  forget(key: string): void {
    this.backoff.forget(key);
  }

  /** How many times key was rate-limited since it was last forgotten. */
  numRequeues(key: string): number {
    return this.backoff.numRequeues(key);
  }

  /**
   * Waits for the next ready key and marks it processing; the caller must call done(key) afterwards.
   * Resolves undefined once the queue is shut down.
   */
  get(): Promise<string | undefined> {
    if (this.shuttingDown) return Promise.resolve(undefined);
    const key = this.takeNext();
    if (key !== undefined) return Promise.resolve(key);
    return new Promise((resolve) => this.getters.push(resolve));
  }

  /** Marks key as processed. If it was added meanwhile, it is queued again. */
  done(key: string): void {
    this.processing.delete(key);
    if (this.shuttingDown) {
      if (this.processing.size === 0) this.notifyDrained();
      return;
    }
    if (this.dirty.has(key)) {
      (this.urgentKeys.has(key) ? this.urgent : this.queue).push(key);
      this.handOut();
    }
  }

  /** Number of keys ready to be handed out (not counting those processing or waiting for a deadline). */
  len(): number {
    return this.queue.length + this.urgent.length;
  }

  /** Number of keys handed out by get() and not yet done(). */
  inFlight(): number {
    return this.processing.size;
  }

  isShuttingDown(): boolean {
    return this.shuttingDown;
  }

  /** Stops handing out keys: pending and future get() resolve undefined; queued and delayed keys are dropped. */
  shutDown(): void {
    if (this.shuttingDown) return;
    this.shuttingDown = true;
    for (const { cancel } of this.waiting.values()) cancel();
    this.waiting.clear();
    this.queue = [];
    this.urgent = [];
    this.urgentKeys.clear();
    this.dirty.clear();
    for (const resolve of this.getters.splice(0)) resolve(undefined);
    if (this.processing.size === 0) this.notifyDrained();
  }

  /** shutDown(), then resolves once every key handed out has been marked done. */
  shutDownWithDrain(): Promise<void> {
    this.shutDown();
    if (this.processing.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  private takeNext(): string | undefined {
    const key = this.urgent.shift() ?? this.queue.shift();
    if (key === undefined) return undefined;
    this.dirty.delete(key);
    this.urgentKeys.delete(key);
    this.processing.add(key);
    return key;
  }

  private handOut(): void {
    while (this.getters.length > 0 && this.len() > 0) {
      const resolve = this.getters.shift();
      const key = this.takeNext();
      if (resolve !== undefined && key !== undefined) resolve(key);
    }
  }

  private notifyDrained(): void {
    for (const resolve of this.drainWaiters.splice(0)) resolve();
  }
}
