// The workload container's main process: logs in once at start with the delivered credential (same arguments as
// login.mjs: `files <dir>` or `env <PREFIX>`), prints the result line, then waits until SIGTERM/SIGINT and exits 0.
import { loginFromArgs } from './login.mjs';

for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => process.exit(0));
const { line } = await loginFromArgs(process.argv.slice(2));
console.log(line);
setInterval(() => {}, 1 << 30); // keeps the event loop, and so the container, alive
