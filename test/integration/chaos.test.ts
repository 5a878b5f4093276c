// The short fault suite of `make test`: the chaos engine (test/chaos/chaos.ts) for about a minute with a fixed seed,
// then the quiet period and the invariant auditor. CHAOS_SEED and CHAOS_DURATION (Go duration) override; a failure
// prints the seed and the timeline, so `CHAOS_SEED=<seed>` (or `make chaos SEED=<seed>`) replays it.
import assert from 'node:assert/strict';
import { parseDuration } from '../../src/api/duration.js';
import { formatReport, runChaos } from '../chaos/chaos.js';
import { testEnv } from './harness.js';

describe('fault suite (short chaos run)', function () {
  const seed = Number(process.env.CHAOS_SEED ?? 20261202);
  const durationMs = parseDuration(process.env.CHAOS_DURATION || '75s');
  this.timeout(durationMs + 600_000);

  it(`keeps every invariant through random operations and faults (seed ${seed})`, async function () {
    const env = await testEnv();
    const timeline: string[] = [];
    const report = await runChaos({
      env,
      seed,
      durationMs,
      quietMs: 40_000,
      log: (line) => {
        timeline.push(line);
        if (process.env.CHAOS_VERBOSE === 'true') console.log(line);
      },
    });
    const summary = formatReport(report);
    console.log(summary.split('\n').map((l) => `      ${l}`).join('\n'));
    if (!report.passed) {
      assert.fail(`chaos seed ${seed} failed (replay: CHAOS_SEED=${seed})\n${summary}\ntimeline:\n${timeline.join('\n')}`);
    }
  });
});
