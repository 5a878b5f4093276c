// What every integration test stands on: one real environment per mocha run (control plane + PostgreSQL), or,
// with USE_EXISTING_CLUSTER=true, the cluster of the current kubeconfig plus a PostgreSQL the tests start.
// Stopped by the root after-hook below, also when tests fail.
import * as k8s from '@kubernetes/client-node';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { REPO_ROOT, kubeconfigYAML } from '../env/controlplane.js';
import { Environment } from '../env/environment.js';
import { localNodeUnavailableReason, type LocalNode } from '../env/node.js';
import { PostgresServer, type PostgresConnection } from '../env/postgres.js';
import { removeOnExit, runCommand, waitFor } from '../env/processes.js';

export interface TestEnv {
  kubeconfigPath: string;
  kc: k8s.KubeConfig;
  core: k8s.CoreV1Api;
  apps: k8s.AppsV1Api;
  custom: k8s.CustomObjectsApi;
  postgres: PostgresServer;
  /** Only in the embedded environment: stop the kube-apiserver for a while (fault tests). */
  restartApiServer?: (downMs: number) => Promise<void>;
  /** Only in the embedded environment: signal the kube-apiserver's own process group (SIGSTOP/SIGCONT faults). */
  signalApiServer?: (signal: NodeJS.Signals) => boolean;
  /** Only in the embedded environment: its node (containerd, kubelet, kube-scheduler), started on first use. */
  startNode?: (images?: string[]) => Promise<LocalNode>;
  kubectl(args: string[], input?: string): Promise<string>;
}

let shared: Promise<TestEnv> | undefined;
const cleanups: Array<() => Promise<void>> = [];

async function startTestEnv(): Promise<TestEnv> {
  let kubeconfigPath: string;
  let kubectlBin: string;
  let postgres: PostgresServer;
  let restartApiServer: TestEnv['restartApiServer'];
  let signalApiServer: TestEnv['signalApiServer'];
  let startNode: TestEnv['startNode'];
  if (process.env.USE_EXISTING_CLUSTER === 'true') {
    kubeconfigPath = process.env.KUBECONFIG ?? path.join(os.homedir(), '.kube', 'config');
    kubectlBin = 'kubectl';
    const dir = mkdtempSync(path.join(os.tmpdir(), 'dbcred-test-pg-'));
    removeOnExit(dir);
    postgres = new PostgresServer(dir);
    await postgres.init();
    await postgres.start();
    cleanups.push(async () => {
      await postgres.stop();
      rmSync(dir, { recursive: true, force: true });
    });
    const crds = path.join(REPO_ROOT, 'crds');
    await runCommand(kubectlBin, ['--kubeconfig', kubeconfigPath, 'apply', '--server-side', '--force-conflicts', '-f', crds]);
    await runCommand(kubectlBin, ['--kubeconfig', kubeconfigPath, 'wait', '--for', 'condition=Established', '-f', crds]);
  } else {
    const env = await Environment.start({ keepDir: process.env.KEEP_ENV === 'true' });
    cleanups.push(() => env.stop());
    kubeconfigPath = env.kubeconfigPath;
    kubectlBin = env.controlPlane.bin('kubectl');
    postgres = env.postgres;
    restartApiServer = (downMs) => env.controlPlane.restartApiServer(downMs);
    signalApiServer = (signal) => env.controlPlane.signalApiServer(signal);
    startNode = (images) => env.startNode(images);
  }
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(kubeconfigPath);
  return {
    kubeconfigPath,
    kc,
    core: kc.makeApiClient(k8s.CoreV1Api),
    apps: kc.makeApiClient(k8s.AppsV1Api),
    custom: kc.makeApiClient(k8s.CustomObjectsApi),
    postgres,
    restartApiServer,
    signalApiServer,
    startNode,
    kubectl: (args, input) => runCommand(kubectlBin, ['--kubeconfig', kubeconfigPath, ...args], { input }),
  };
}

/** The run's environment, started on first use. */
export function testEnv(): Promise<TestEnv> {
  shared ??= startTestEnv();
  return shared;
}

/**
 * The node of the run's embedded environment (test/env/node.ts), started on first use, with these image
 * archives imported. Skips the calling hook or test, saying why, where no node can run: with
 * USE_EXISTING_CLUSTER=true (a cluster the tests do not own), or without root, containerd or runc.
 */
export async function testNode(ctx: Mocha.Context, images: string[] = []): Promise<LocalNode> {
  const env = await testEnv();
  const reason = env.startNode ? localNodeUnavailableReason() : 'USE_EXISTING_CLUSTER=true: the tests start no node of their own there';
  if (reason || !env.startNode) {
    console.log(`      skipped: ${reason}`);
    ctx.skip();
  }
  return env.startNode(images);
}

export async function stopTestEnv(): Promise<void> {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
}

/**
 * A kubeconfig that authenticates as a ServiceAccount with a real token (TokenRequest): what the operator's pod
 * would use, so requests meet exactly the RBAC that the account was granted.
 */
export async function serviceAccountKubeconfig(env: TestEnv, namespace: string, serviceAccount: string): Promise<{ path: string; token: string }> {
  const token = (await env.kubectl(['-n', namespace, 'create', 'token', serviceAccount, '--duration', '1h'])).trim();
  const cluster = env.kc.getCurrentCluster();
  if (!cluster) throw new Error('the test kubeconfig has no current cluster');
  const tag = `${process.pid}-${namespace}-${serviceAccount}`;
  let caFile = cluster.caFile;
  if (!caFile && cluster.caData) {
    // kind and most kubeconfigs embed the CA instead of naming a file.
    caFile = path.join(os.tmpdir(), `dbcred-sa-${tag}.ca.crt`);
    writeFileSync(caFile, Buffer.from(cluster.caData, 'base64'));
    removeOnExit(caFile);
  }
  if (!caFile) throw new Error('the cluster has no CA');
  const file = path.join(os.tmpdir(), `dbcred-sa-${tag}.kubeconfig`);
  removeOnExit(file);
  writeFileSync(file, kubeconfigYAML(cluster.server, caFile, token), { mode: 0o600 });
  return { path: file, token };
}

let nsCounter = 0;
/** A fresh namespace per test suite, so suites never see each other's objects. */
export async function createNamespace(env: TestEnv, prefix: string): Promise<string> {
  const name = `${prefix}-${process.pid}-${++nsCounter}-${Math.random().toString(36).slice(2, 6)}`;
  await env.core.createNamespace({ body: { metadata: { name } } });
  return name;
}

/** Deletes a namespace and waits until the namespace controller has removed it and everything in it. */
export async function deleteNamespaceAndWait(env: TestEnv, name: string, timeoutMs = 120_000): Promise<void> {
  await env.core.deleteNamespace({ name });
  await waitFor(`namespace ${name} to disappear`, async () => {
    try {
      await env.core.readNamespace({ name });
      return false;
    } catch (err) {
      return (err as { code?: number }).code === 404;
    }
  }, { timeoutMs, intervalMs: 500 });
}

/** Logs in over TCP with exactly these credentials and runs one query. */
export async function queryAs(conn: PostgresConnection, sql: string): Promise<pg.QueryResult> {
  const client = new pg.Client({ ...conn, connectionTimeoutMillis: 5000 });
  client.on('error', () => undefined);
  await client.connect();
  try {
    return await client.query(sql);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** The SQLSTATE (or network code) that a login with conn fails with, or undefined when it succeeds. */
export async function loginError(conn: PostgresConnection): Promise<string | undefined> {
  try {
    await queryAs(conn, 'SELECT 1');
    return undefined;
  } catch (err) {
    return (err as { code?: string }).code ?? (err instanceof Error ? err.message : String(err));
  }
}

export { waitFor };

/** Whether a PostgreSQL role of this name exists on the server of conn. */
export async function roleExists(conn: PostgresConnection, username: string): Promise<boolean> {
  return (await queryAs(conn, `SELECT 1 FROM pg_roles WHERE rolname = ${pg.escapeLiteral(username)}`)).rowCount === 1;
}

/** The installation id an operator started by the tests uses (no CLUSTER_ID): the UID of the namespace kube-system. */
export async function installationOf(env: Pick<TestEnv, 'core'>): Promise<string> {
  const uid = (await env.core.readNamespace({ name: 'kube-system' })).metadata?.uid;
  if (!uid) throw new Error('kube-system has no uid');
  return uid;
}

/** The comment text of the marker the operator of `installation` writes on a role it creates for a credential. */
export function markerComment(installation: string, namespace: string, name: string, uid: string, username: string): string {
  return `dbcred:v2:${JSON.stringify({ installation, namespace, name, uid, username })}`;
}

/**
 * A barrier on the orphan sweep of `installation`: an orphan of its own (marked for a credential that never
 * existed in `namespace`) is planted and waited on until the sweep revokes it; twice, so that at least one whole
 * pass ran in between. Whatever that pass would have revoked is gone by then.
 */
export async function sweptTwice(conn: PostgresConnection, installation: string, namespace: string): Promise<void> {
  for (let i = 0; i < 2; i++) {
    const orphan = `v-barrier-${process.pid}-${Date.now()}-${i}`;
    const marker = markerComment(installation, namespace, 'gone', '00000000-0000-0000-0000-000000000000', orphan);
    await queryAs(conn, `CREATE ROLE ${pg.escapeIdentifier(orphan)} LOGIN; COMMENT ON ROLE ${pg.escapeIdentifier(orphan)} IS ${pg.escapeLiteral(marker)}`);
    await waitFor(`the sweep of ${installation} to revoke ${orphan}`, async () => !(await roleExists(conn, orphan)), { timeoutMs: 30_000, intervalMs: 200 });
  }
}

/** The roles carrying the operator's marker for the credential namespace/name. */
export async function markedRolesOf(conn: PostgresConnection, namespace: string, name: string): Promise<string[]> {
  const pattern = `%"namespace":${JSON.stringify(namespace)},"name":${JSON.stringify(name)}%`;
  const res = await queryAs(conn, `SELECT r.rolname FROM pg_roles r JOIN pg_shdescription d ON d.objoid = r.oid AND d.classoid = 'pg_authid'::regclass
     WHERE d.description LIKE 'dbcred:%' AND d.description LIKE ${pg.escapeLiteral(pattern)}`);
  return res.rows.map((r) => r.rolname as string);
}
