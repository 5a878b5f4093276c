// Samples what the issuer's PostgreSQL sessions are doing (pg_stat_activity, application_name dbcred-operator —
// the operator's pools and the floor's, which uses the same pool settings) every intervalMs. Averages per state tell
// where issuing waits: on the advisory lock that serialises role DDL, on the client (idle in transaction: the
// server is done and waits for the issuer's next statement), or running.
import type pg from 'pg';

export type SessionState = 'lockWait' | 'idleInTransaction' | 'running' | 'idle';

export class PgSampler {
  private timer: NodeJS.Timeout | undefined;
  private busy = false;
  samples = 0;
  /** Sum over samples of the number of sessions in each state. */
  private readonly sums: Record<SessionState, number> = { lockWait: 0, idleInTransaction: 0, running: 0, idle: 0 };
  /** Samples in which someone held the lock while another waited for it. */
  samplesWithLockWaiters = 0;

  constructor(
    private readonly pool: pg.Pool,
    private readonly intervalMs = 100,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.sample(), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Mean number of sessions per state. */
  means(): Record<SessionState, number> {
    const n = Math.max(1, this.samples);
    return {
      lockWait: this.sums.lockWait / n,
      idleInTransaction: this.sums.idleInTransaction / n,
      running: this.sums.running / n,
      idle: this.sums.idle / n,
    };
  }

  private async sample(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      const res = await this.pool.query<{ state: string | null; wait_event_type: string | null }>(
        `SELECT state, wait_event_type FROM pg_stat_activity WHERE application_name = 'dbcred-operator' AND pid <> pg_backend_pid()`,
      );
      let waiters = 0;
      for (const row of res.rows) {
        let s: SessionState;
        if (row.state === 'idle in transaction') s = 'idleInTransaction';
        else if (row.state === 'active' && row.wait_event_type === 'Lock') s = 'lockWait';
        else if (row.state === 'active') s = 'running';
        else s = 'idle';
        if (s === 'lockWait') waiters++;
        this.sums[s]++;
      }
      if (waiters) this.samplesWithLockWaiters++;
      this.samples++;
    } catch {
      // a missed sample is fine
    } finally {
      this.busy = false;
    }
  }
}
