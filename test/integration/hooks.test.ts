// Root hooks for the integration run: whatever happens in the tests, the environment is stopped at the end.
import { stopTestEnv } from './harness.js';

after(async function () {
  this.timeout(60_000);
  await stopTestEnv();
});
