// Shell entry points of the local environment:
//   up     start it in the background (idempotent); writes .dev/kubeconfig and .dev/env
//          --node: with a node (containerd, kubelet, kube-scheduler: pods run; see node.ts)
//   down   stop it
//   serve  (internal) run it in the foreground until SIGTERM/SIGINT
//   run    `make run`: environment (or USE_EXISTING_CLUSTER=true), CRDs, example, operator in the foreground;
//          IN_CLUSTER=true: the operator from its image as pods on the environment's node, installed with kubectl apply -k
import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { REPO_ROOT, controlPlaneBinDir } from './controlplane.js';
import { Environment } from './environment.js';
import { buildImages } from './images.js';
import { OPERATOR_NAMESPACE, installOperator } from './incluster.js';
import { PostgresServer, type PostgresConnection } from './postgres.js';
import { freePort, runCommand, waitFor } from './processes.js';

const DEV_DIR = path.join(REPO_ROOT, '.dev');
const PID_FILE = path.join(DEV_DIR, 'env.pid');
const ENV_FILE = path.join(DEV_DIR, 'env');
const KUBECONFIG_FILE = path.join(DEV_DIR, 'kubeconfig');
const LOG_FILE = path.join(DEV_DIR, 'env.log');

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function runningPid(): number | undefined {
  if (!existsSync(PID_FILE)) return undefined;
  const pid = Number(readFileSync(PID_FILE, 'utf8').trim());
  return Number.isInteger(pid) && pid > 0 && alive(pid) ? pid : undefined;
}

function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

function envFileText(kubeconfig: string, pg: PostgresConnection): string {
  const vars: Record<string, string> = {
    KUBECONFIG: kubeconfig,
    PGHOST: pg.host,
    PGPORT: String(pg.port),
    PGUSER: pg.user,
    PGPASSWORD: pg.password,
    PGDATABASE: pg.database,
  };
  return Object.entries(vars).map(([k, v]) => `export ${k}=${shellQuote(v)}`).join('\n') + '\n';
}

function onSignal(stop: () => Promise<void>): void {
  let stopping = false;
  const handler = (sig: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    console.error(`\n${sig}: stopping ...`);
    stop().finally(() => process.exit(0));
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
}

async function serve(): Promise<void> {
  mkdirSync(DEV_DIR, { recursive: true });
  const env = await Environment.start();
  onSignal(async () => {
    await env.stop();
    rmSync(ENV_FILE, { force: true });
    rmSync(PID_FILE, { force: true });
  });
  if (withNode) {
    const node = await env.startNode();
    console.error(`node ${node.name} Ready (containerd socket ${node.containerdSocket}, pod logs in ${node.podLogsDir})`);
  }
  copyFileSync(env.kubeconfigPath, KUBECONFIG_FILE);
  // Written last and atomically: its presence means "ready".
  writeFileSync(`${ENV_FILE}.tmp`, envFileText(KUBECONFIG_FILE, env.postgres.connection), { mode: 0o600 });
  renameSync(`${ENV_FILE}.tmp`, ENV_FILE);
  console.error(`environment ready: KUBECONFIG=${KUBECONFIG_FILE}, PostgreSQL on 127.0.0.1:${env.postgres.port}`);
  setInterval(() => undefined, 1 << 30); // stay up until signalled
}

async function up(): Promise<void> {
  const pid = runningPid();
  if (pid !== undefined && existsSync(ENV_FILE)) {
    console.log(`environment already running (pid ${pid}); source ${path.relative(process.cwd(), ENV_FILE)}`);
    return;
  }
  if (pid !== undefined) process.kill(pid, 'SIGTERM');
  mkdirSync(DEV_DIR, { recursive: true });
  rmSync(ENV_FILE, { force: true });
  controlPlaneBinDir(); // build (or find) the binaries in the foreground, where the user sees the progress
  const log = openSync(LOG_FILE, 'a');
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), 'serve', ...(withNode ? ['--node'] : [])], {
    detached: true,
    stdio: ['ignore', log, log],
  });
  child.unref();
  writeFileSync(PID_FILE, `${child.pid}\n`);
  await waitFor('the environment', async () => existsSync(ENV_FILE), {
    timeoutMs: 180_000,
    intervalMs: 250,
    failFast: () => (child.pid !== undefined && alive(child.pid) ? undefined : `it failed to start; see ${LOG_FILE}`),
  });
  console.log(`environment up. Use it with:  source .dev/env   (kubectl --kubeconfig .dev/kubeconfig get ns)`);
}

async function down(): Promise<void> {
  const pid = runningPid();
  if (pid === undefined) {
    console.log('environment not running');
    rmSync(ENV_FILE, { force: true });
    return;
  }
  process.kill(pid, 'SIGTERM');
  await waitFor('the environment to stop', async () => !alive(pid), { timeoutMs: 60_000 });
  rmSync(PID_FILE, { force: true });
  rmSync(ENV_FILE, { force: true });
  console.log('environment stopped');
}

/** The example of deploy/examples/local.yaml, filled in for a PostgreSQL at conn. */
function renderExample(conn: PostgresConnection): string {
  const text = readFileSync(path.join(REPO_ROOT, 'deploy', 'examples', 'local.yaml'), 'utf8');
  return text
    .replaceAll('${PGHOST}', conn.host)
    .replaceAll('${PGPORT}', String(conn.port))
    .replaceAll('${PGUSER}', conn.user)
    .replaceAll('${PGPASSWORD}', conn.password);
}

async function run(): Promise<void> {
  const useExisting = process.env.USE_EXISTING_CLUSTER === 'true';
  const cleanups: Array<() => Promise<void>> = [];
  const stopAll = async () => {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
  };
  onSignal(stopAll);

  const inCluster = process.env.IN_CLUSTER === 'true';
  if (inCluster && useExisting) {
    throw new Error(
      'IN_CLUSTER=true runs the operator as pods on the embedded environment\'s own node. On your cluster, build the image ' +
        '(docker build -f deploy/Dockerfile -t dbcred-operator:latest .), make it available to the nodes, and kubectl apply -k deploy/ (README: Installing in a cluster).',
    );
  }
  let kubeconfig: string;
  let kubectl: string;
  let pgConn: PostgresConnection;
  let startPods: (() => Promise<void>) | undefined;
  if (useExisting) {
    kubeconfig = process.env.KUBECONFIG ?? path.join(process.env.HOME ?? '', '.kube', 'config');
    kubectl = 'kubectl';
    const baseDir = path.join(DEV_DIR, 'run-pg');
    rmSync(baseDir, { recursive: true, force: true });
    const pgServer = new PostgresServer(baseDir);
    await pgServer.init();
    await pgServer.start();
    cleanups.push(() => pgServer.stop());
    pgConn = pgServer.connection;
    await runCommand(kubectl, ['--kubeconfig', kubeconfig, 'apply', '--server-side', '-f', path.join(REPO_ROOT, 'crds')]);
    await runCommand(kubectl, ['--kubeconfig', kubeconfig, 'wait', '--for', 'condition=Established', '-f', path.join(REPO_ROOT, 'crds')]);
  } else {
    console.error('starting the local environment (etcd, kube-apiserver, kube-controller-manager, PostgreSQL) ...');
    const env = await Environment.start();
    cleanups.push(() => env.stop());
    mkdirSync(DEV_DIR, { recursive: true });
    copyFileSync(env.kubeconfigPath, KUBECONFIG_FILE);
    kubeconfig = KUBECONFIG_FILE;
    kubectl = env.controlPlane.bin('kubectl');
    pgConn = env.postgres.connection;
    writeFileSync(ENV_FILE, envFileText(KUBECONFIG_FILE, pgConn), { mode: 0o600 });
    cleanups.push(async () => rmSync(ENV_FILE, { force: true }));
    if (inCluster) {
      const bin = kubectl;
      startPods = async () => {
        console.error('IN_CLUSTER=true: starting the node (containerd, kubelet, kube-scheduler) and building the images ...');
        const node = await env.startNode();
        const images = await buildImages({ log: (line) => console.error(line) });
        for (const image of [images.operator, images.workload]) await node.importImage(image.tarFile);
        console.error(`installing ${images.operator.ref} with kubectl apply -k (test/deploy/local: two replicas, leader election) ...`);
        await installOperator({
          kubectl: (args, input) => runCommand(bin, ['--kubeconfig', KUBECONFIG_FILE, ...args], { input }),
          dir: path.join(DEV_DIR, 'overlay'),
          image: images.operator.ref,
          apiServerEnv: node.inClusterEnv(),
          healthPort: await freePort(),
        });
      };
    }
  }
  console.error('CRDs installed; applying the example (deploy/examples/local.yaml) ...');
  await runCommand(kubectl, ['--kubeconfig', kubeconfig, 'apply', '-f', '-'], { input: renderExample(pgConn) });

  if (startPods) await startPods();
  // In the foreground: the operator itself, or with IN_CLUSTER=true `kubectl logs -f` of its pods (both replicas).
  const operator = startPods
    ? spawn(kubectl, ['--kubeconfig', kubeconfig, '-n', OPERATOR_NAMESPACE, 'logs', '-f', '--prefix', '--all-containers',
        '-l', 'app.kubernetes.io/name=dbcred-operator', '--max-log-requests', '4'], { stdio: 'inherit' })
    : spawn(process.execPath, [path.join(REPO_ROOT, 'dist', 'src', 'main.js')], {
        stdio: 'inherit',
        env: { ...process.env, KUBECONFIG: kubeconfig },
      });
  cleanups.push(async () => {
    if (operator.exitCode === null) {
      operator.kill('SIGTERM');
      await new Promise((r) => operator.once('exit', r));
    }
  });
  const shownKubectl = useExisting ? 'kubectl' : `kubectl --kubeconfig .dev/kubeconfig`;
  setTimeout(() => {
    console.error(
      [
        '',
        '──────────────────────────────────────────────────────────────────────────────',
        startPods
          ? ` The operator runs as two pods in ${OPERATOR_NAMESPACE} (their JSON logs follow). In another terminal:`
          : ' The operator is running (its JSON logs follow). In another terminal:',
        ...(startPods ? [`   ${shownKubectl} -n ${OPERATOR_NAMESPACE} get pods,lease`] : []),
        `   ${shownKubectl} get dbcred -A`,
        `   ${shownKubectl} -n dbcred-example get secret app-db -o jsonpath='{.data.uri}' | base64 -d`,
        '   source .dev/env   # KUBECONFIG and the PostgreSQL superuser as PG* variables',
        ' Ctrl-C stops the operator and the environment.',
        '──────────────────────────────────────────────────────────────────────────────',
        '',
      ].join('\n'),
    );
  }, 1500).unref();
  const code = await new Promise<number | null>((r) => operator.once('exit', r));
  await stopAll();
  process.exit(code ?? 0);
}

const commands: Record<string, () => Promise<void>> = { up, down, serve, run };
const command = commands[process.argv[2] ?? ''];
const withNode = process.argv.slice(3).includes('--node');
if (!command) {
  console.error(`usage: node ${path.basename(process.argv[1] ?? 'cli.js')} up [--node]|down|run`);
  process.exit(2);
}
command().catch((err: unknown) => {
  console.error(`error: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
