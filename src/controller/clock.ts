// The clock seam: every TTL, backoff and requeue deadline in the operator reads time and schedules wake-ups
// through a Clock, so unit tests drive time with FakeClock instead of sleeping.

/** Cancels a timer scheduled with Clock.setTimeout. Calling it after the timer fired, or twice, is a no-op. */
export type Cancel = () => void;

export interface Clock {
  now(): Date;
  /** Calls fn once, no earlier than ms milliseconds from now. */
  setTimeout(fn: () => void, ms: number): Cancel;
}

// Node's setTimeout fires after 1ms when the delay exceeds 2^31-1 ms (~24.8 days); a 720h rotation period
// must not become a hot loop, so long delays are split into chained timers.
const MAX_NODE_TIMEOUT_MS = 2 ** 31 - 1;

export const realClock: Clock = {
  now: () => new Date(),
  setTimeout(fn: () => void, ms: number): Cancel {
    let cancelled = false;
    let timer: NodeJS.Timeout | undefined;
    const deadline = Date.now() + Math.max(0, ms);
    const arm = (): void => {
      const remaining = deadline - Date.now();
      if (remaining > MAX_NODE_TIMEOUT_MS) {
        timer = setTimeout(arm, MAX_NODE_TIMEOUT_MS);
      } else {
        timer = setTimeout(() => {
          if (!cancelled) fn();
        }, Math.max(0, remaining));
      }
      // Timers are wake-up optimisations, never the reason the process stays alive (deadlines live in status).
      timer.unref();
    };
    arm();
    return () => {
      cancelled = true;
      if (timer !== undefined) clearTimeout(timer);
    };
  },
};

interface FakeTimer {
  dueMs: number;
  seq: number;
  fn: () => void;
}

/** A manually advanced clock for tests. Timers fire only inside advance(), in deadline order (ties: FIFO). */
export class FakeClock implements Clock {
  private nowMs: number;
  private seq = 0;
  private timers: FakeTimer[] = [];

  constructor(start: Date | number = Date.UTC(2025, 0, 1, 0, 0, 0)) {
    this.nowMs = typeof start === 'number' ? start : start.getTime();
  }

  now(): Date {
    return new Date(this.nowMs);
  }

  setTimeout(fn: () => void, ms: number): Cancel {
    const timer: FakeTimer = { dueMs: this.nowMs + Math.max(0, ms), seq: this.seq++, fn };
    this.timers.push(timer);
    return () => {
      this.timers = this.timers.filter((t) => t !== timer);
    };
  }

  /**
   * Moves time forward by ms, firing every timer that falls due on the way, each with now() equal to its
   * deadline. Timers scheduled by a callback fire too if they fall due within the window.
   */
  advance(ms: number): void {
    const targetMs = this.nowMs + Math.max(0, ms);
    for (;;) {
      const next = this.nextDue();
      if (next === undefined || next.dueMs > targetMs) break;
      this.timers = this.timers.filter((t) => t !== next);
      this.nowMs = Math.max(this.nowMs, next.dueMs);
      next.fn();
    }
    this.nowMs = targetMs;
  }

  /** Number of timers scheduled and not yet fired or cancelled. */
  pendingTimers(): number {
    return this.timers.length;
  }

  private nextDue(): FakeTimer | undefined {
    let next: FakeTimer | undefined;
    for (const t of this.timers) {
      if (next === undefined || t.dueMs < next.dueMs || (t.dueMs === next.dueMs && t.seq < next.seq)) next = t;
    }
    return next;
  }
}
