// A real Kubernetes control plane as local processes: etcd, kube-apiserver (RBAC, an admin token, service-account
// signing keys so TokenRequest works) and kube-controller-manager (garbage collector, namespace, deployment,
// replicaset and serviceaccount controllers). What envtest does, plus the controller manager.
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ManagedProcess, freePort, runCommand, waitFor } from './processes.js';
import { CertificateAuthority } from './tls.js';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/** The cache directory with the binaries: built (or found) by test/cluster/build.sh. */
export function controlPlaneBinDir(): string {
  if (process.env.DBCRED_BIN_DIR) return process.env.DBCRED_BIN_DIR;
  const out = execFileSync('bash', [path.join(REPO_ROOT, 'test', 'cluster', 'build.sh')], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return out.toString().trim().split('\n').pop() ?? '';
}

/** A plain GET (http or https) with an optional CA and bearer token; shared by the environment and the benchmark. */
export function httpGet(url: string, opts: { ca?: Buffer; token?: string; timeoutMs?: number } = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const mod = url.startsWith('https:') ? https : http;
    const req = mod.get(
      url,
      { ca: opts.ca, headers: opts.token ? { Authorization: `Bearer ${opts.token}` } : {}, timeout: opts.timeoutMs ?? 5000 },
      (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('timeout', () => req.destroy(new Error('request timed out')));
    req.on('error', reject);
  });
}

export interface ControlPlaneOptions {
  baseDir: string;
  binDir: string;
  /** CRD manifests applied (and awaited Established) before the controller manager starts. */
  crdDir?: string;
  controllers?: string[];
}

export const DEFAULT_CONTROLLERS = [
  'garbage-collector-controller',
  'namespace-controller',
  'deployment-controller',
  'replicaset-controller',
  'serviceaccount-controller',
  // The kube-root-ca.crt ConfigMap in every namespace: pods' projected ServiceAccount volumes need it.
  'root-ca-certificate-publisher-controller',
  // Takes the not-ready taint (added by admission to every new Node) off a Ready node, so that the local node
  // (node.ts) is schedulable, and puts it back when a node stops reporting.
  'node-lifecycle-controller',
];

export class ControlPlane {
  readonly adminToken = randomBytes(24).toString('hex');
  apiServerURL = '';
  kubeconfigPath = '';
  private caCert: Buffer | undefined;
  /**
   * The CA between the kube-apiserver and kubelets: it signs the apiserver's kubelet client certificate and a
   * kubelet's serving certificate (LocalNode), so that logs and exec through the apiserver are authenticated
   * both ways. Set by start().
   */
  kubeletCA: CertificateAuthority | undefined;
  private readonly procs: ManagedProcess[] = [];

  constructor(private readonly opts: ControlPlaneOptions) {}

  bin(name: string): string {
    return path.join(this.opts.binDir, name);
  }

  async start(): Promise<void> {
    const { baseDir } = this.opts;
    for (const b of ['etcd', 'kube-apiserver', 'kube-controller-manager', 'kubectl']) {
      if (!existsSync(this.bin(b))) throw new Error(`missing ${this.bin(b)}: run test/cluster/build.sh (make control-plane)`);
    }
    mkdirSync(baseDir, { recursive: true });
    await this.startEtcd();
    await this.startApiServer();
    if (this.opts.crdDir) await this.installCRDs(this.opts.crdDir);
    await this.startControllerManager();
  }

  async stop(): Promise<void> {
    // Reverse order: clients of etcd first.
    for (const p of [...this.procs].reverse()) await p.stop('SIGTERM', 10_000);
    this.procs.length = 0;
  }

  /** kubectl of the pinned release against this plane. */
  kubectl(args: string[], input?: string): Promise<string> {
    return runCommand(this.bin('kubectl'), ['--kubeconfig', this.kubeconfigPath, ...args], { input });
  }

  async installCRDs(dir: string): Promise<void> {
    await this.kubectl(['apply', '--server-side', '--force-conflicts', '-f', dir]);
    await this.kubectl(['wait', '--for', 'condition=Established', '--timeout', '60s', '-f', dir]);
  }

  private spawn(name: string, command: string, args: string[]): ManagedProcess {
    const p = new ManagedProcess({ name, command, args, logFile: path.join(this.opts.baseDir, `${name}.log`) });
    p.start();
    this.procs.push(p);
    return p;
  }

  private exitedReason(p: ManagedProcess): () => string | undefined {
    return () => (p.running ? undefined : `${p.name} exited; see ${path.join(this.opts.baseDir, `${p.name}.log`)}`);
  }

  private async startEtcd(): Promise<void> {
    const [client, peer] = [await freePort(), await freePort()];
    const etcd = this.spawn('etcd', this.bin('etcd'), [
      '--data-dir', path.join(this.opts.baseDir, 'etcd'),
      '--listen-client-urls', `http://127.0.0.1:${client}`,
      '--advertise-client-urls', `http://127.0.0.1:${client}`,
      '--listen-peer-urls', `http://127.0.0.1:${peer}`,
      '--initial-advertise-peer-urls', `http://127.0.0.1:${peer}`,
      '--initial-cluster', `default=http://127.0.0.1:${peer}`,
      '--unsafe-no-fsync', '--log-level', 'warn',
    ]);
    this.etcdURL = `http://127.0.0.1:${client}`;
    await waitFor('etcd to be healthy', async () => (await httpGet(`${this.etcdURL}/health`)).status === 200, {
      failFast: this.exitedReason(etcd),
    });
  }

  private etcdURL = '';

  private async startApiServer(): Promise<void> {
    const dir = this.opts.baseDir;
    const certDir = path.join(dir, 'certs');
    mkdirSync(certDir, { recursive: true });
    const { publicKey, privateKey } = generateKeyPairSync('rsa', {
      modulusLength: 2048,
      publicKeyEncoding: { type: 'spki', format: 'pem' },
      privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
    });
    writeFileSync(path.join(dir, 'sa.pub'), publicKey);
    writeFileSync(path.join(dir, 'sa.key'), privateKey, { mode: 0o600 });
    writeFileSync(path.join(dir, 'tokens.csv'), `${this.adminToken},admin,admin,"system:masters"\n`, { mode: 0o600 });
    const kubeletCA = await CertificateAuthority.create(path.join(dir, 'kubelet-pki'), 'dbcred kubelet CA');
    const kubeletClient = await kubeletCA.issueClientCertificate(path.join(dir, 'kubelet-pki'), 'apiserver-kubelet-client',
      'kube-apiserver-kubelet-client', 'system:masters');
    this.kubeletCA = kubeletCA;
    const port = await freePort();
    this.apiServerURL = `https://127.0.0.1:${port}`;
    const apiserver = this.spawn('kube-apiserver', this.bin('kube-apiserver'), [
      '--etcd-servers', this.etcdURL,
      '--secure-port', String(port),
      '--bind-address', '127.0.0.1',
      '--cert-dir', certDir,
      '--authorization-mode', 'RBAC',
      // Loopback, so that the `kubernetes` Service (whose ClusterIP the kubelet gives pods as
      // KUBERNETES_SERVICE_HOST) and any other ClusterIP never point off this machine.
      '--service-cluster-ip-range', '127.0.0.0/24',
      '--allow-privileged',
      '--service-account-issuer', this.apiServerURL,
      '--service-account-key-file', path.join(dir, 'sa.pub'),
      '--service-account-signing-key-file', path.join(dir, 'sa.key'),
      '--token-auth-file', path.join(dir, 'tokens.csv'),
      '--endpoint-reconciler-type', 'none',
      '--kubelet-client-certificate', kubeletClient.certFile,
      '--kubelet-client-key', kubeletClient.keyFile,
      '--kubelet-certificate-authority', kubeletCA.certFile,
      '--v', '0',
    ]);
    this.apiserver = apiserver;
    const caFile = path.join(certDir, 'apiserver.crt');
    await waitFor('the kube-apiserver serving certificate', async () => existsSync(caFile), {
      failFast: this.exitedReason(apiserver),
    });
    this.caCert = readFileSync(caFile);
    await this.waitApiServerReady();
    this.kubeconfigPath = path.join(dir, 'kubeconfig');
    writeFileSync(this.kubeconfigPath, kubeconfigYAML(this.apiServerURL, caFile, this.adminToken), { mode: 0o600 });
  }

  private apiserver: ManagedProcess | undefined;

  private async waitApiServerReady(): Promise<void> {
    const apiserver = this.apiserver;
    if (!apiserver) throw new Error('kube-apiserver not started');
    const auth = { ca: this.caCert, token: this.adminToken };
    await waitFor(
      'kube-apiserver to be ready',
      async () =>
        (await httpGet(`${this.apiServerURL}/readyz`, auth)).status === 200 &&
        (await httpGet(`${this.apiServerURL}/api/v1/namespaces/default`, auth)).status === 200,
      { timeoutMs: 90_000, failFast: this.exitedReason(apiserver) },
    );
  }

  /** Stops the kube-apiserver for downMs (a fault test: every watch and request fails), then brings it back. */
  async restartApiServer(downMs: number): Promise<void> {
    await this.apiserver?.stop('SIGTERM', 15_000);
    await new Promise((r) => setTimeout(r, downMs));
    this.apiserver?.start();
    await this.waitApiServerReady();
  }

  /** Signals the kube-apiserver's process group (fault tests: SIGSTOP, then SIGCONT); false when it is not running. */
  signalApiServer(signal: NodeJS.Signals): boolean {
    return this.apiserver?.signalGroup(signal) ?? false;
  }

  private async startControllerManager(): Promise<void> {
    const kcm = this.spawn('kube-controller-manager', this.bin('kube-controller-manager'), [
      '--kubeconfig', this.kubeconfigPath,
      '--controllers', (this.opts.controllers ?? DEFAULT_CONTROLLERS).join(','),
      '--leader-elect=false',
      '--use-service-account-credentials=false',
      // Published as ca.crt in every namespace's kube-root-ca.crt: the apiserver's self-signed serving chain.
      '--root-ca-file', path.join(this.opts.baseDir, 'certs', 'apiserver.crt'),
      '--bind-address', '127.0.0.1',
      '--secure-port', '0',
      '--v', '0',
    ]);
    // Give it a moment to crash on a bad flag, so a broken plane fails here rather than in a GC test.
    await new Promise((r) => setTimeout(r, 500));
    if (!kcm.running) throw new Error(this.exitedReason(kcm)() ?? 'kube-controller-manager exited');
  }
}

export function kubeconfigYAML(server: string, caFile: string, token: string): string {
  return [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    '- name: dbcred-local',
    '  cluster:',
    `    server: ${server}`,
    `    certificate-authority: ${caFile}`,
    'users:',
    '- name: admin',
    '  user:',
    `    token: ${token}`,
    'contexts:',
    '- name: dbcred-local',
    '  context: {cluster: dbcred-local, user: admin, namespace: default}',
    'current-context: dbcred-local',
    '',
  ].join('\n');
}
