// `make chaos SEED=… DURATION=…`: the fault suite as a soak in its own environment. Prints the seed first, a line
// per operation and fault, the report, and ends with "chaos PASS" or "chaos FAIL" (exit code 0 or 1).
// SEED: a number, or "random" (the default); DURATION: a Go duration (default 10m); QUIET: the quiet period (60s).
import { parseDuration } from '../../src/api/duration.js';
import { stopTestEnv, testEnv } from '../integration/harness.js';
import { formatReport, runChaos } from './chaos.js';

async function main(): Promise<number> {
  const rawSeed = process.env.SEED || 'random';
  const seed = rawSeed === 'random' ? Math.floor(Math.random() * 2 ** 31) : Number(rawSeed);
  if (!Number.isInteger(seed) || seed < 0) throw new Error(`SEED=${rawSeed}: want a non-negative integer or "random"`);
  const durationMs = parseDuration(process.env.DURATION || '10m');
  const quietMs = parseDuration(process.env.QUIET || '60s');
  console.log(`chaos seed ${seed} (replay: make chaos SEED=${seed} DURATION=${process.env.DURATION || '10m'})`);
  const env = await testEnv();
  try {
    const report = await runChaos({ env, seed, durationMs, quietMs, log: (line) => console.log(line) });
    console.log(formatReport(report));
    console.log(report.passed ? `chaos PASS (seed ${seed})` : `chaos FAIL (seed ${seed})`);
    return report.passed ? 0 : 1;
  } finally {
    await stopTestEnv();
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err instanceof Error ? err.stack ?? err.message : String(err));
    console.log('chaos FAIL (the run itself failed)');
    process.exit(1);
  },
);
