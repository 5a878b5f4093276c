// A real node for the local environment: containerd (Debian's package, CRI plugin) and a kubelet as plain
// processes, registered against the environment's kube-apiserver as node "127.0.0.1", plus kube-scheduler, so
// that pods and Deployments really run (runc, host network only). Everything lives under one base directory and
// one cgroup of its own; stop() — or the exit of this process, however it exits — kills every container, shim
// and daemon of the node, unmounts what they mounted and removes the cgroups.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync, rmSync, rmdirSync, unlinkSync, writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { httpGet } from './controlplane.js';
import { pauseImage } from './ociImage.js';
import { ManagedProcess, freePort, onExitSync, removeOnExit, runCommand, waitFor } from './processes.js';
import type { CertificateAuthority } from './tls.js';

export interface LocalNodeOptions {
  /** Everything of the node lives here: containerd's root/state, the kubelet's root-dir, certificates, logs. */
  baseDir: string;
  /** kubelet, kube-scheduler and kubectl of the pinned release (test/cluster/build.sh). */
  binDir: string;
  /** A kubeconfig with the rights of the node and the scheduler (the environment's admin kubeconfig). */
  kubeconfigPath: string;
  /** Image archives (docker-save or OCI layout tar) imported into containerd before the kubelet starts. */
  images?: string[];
  /**
   * The CA of the kube-apiserver's kubelet client certificate (--kubelet-client-certificate). The kubelet
   * accepts that client and serves with a certificate from the same CA (--kubelet-certificate-authority), so
   * that `kubectl logs` and `exec` work through the apiserver. Without it those answer 401.
   */
  kubeletCA?: CertificateAuthority;
}

/**
 * The node's name and, since it parses as an IP, its InternalIP (the kubelet refuses --node-ip 127.0.0.1, but
 * uses a hostname override that is an IP as the node address): hostNetwork pods get podIP 127.0.0.1, probes and
 * the apiserver's kubelet connections (logs, exec) stay on the loopback interface.
 */
export const LOCAL_NODE_NAME = '127.0.0.1';

const CNI_BIN_DIR = process.env.CNI_BIN_DIR ?? '/usr/lib/cni';
const SEARCH_PATH = [...(process.env.PATH ?? '').split(':'), '/usr/local/sbin', '/usr/sbin', '/sbin'].filter(Boolean);
const CHILD_ENV = { ...process.env, PATH: SEARCH_PATH.join(':') };
/**
 * A unix socket path has at most 107 bytes, and the kubelet makes sockets up to ~35 bytes deep in its root-dir
 * (pod-resources/<random>, plugins_registry/…), containerd "<socket>.ttrpc". Past this length of the base
 * directory, both go to a short directory of their own.
 */
const MAX_SHORT_BASE = 64;

function which(command: string): string | undefined {
  for (const dir of SEARCH_PATH) {
    const file = path.join(dir, command);
    if (existsSync(file)) return file;
  }
  return undefined;
}

/**
 * Why a local node cannot run on this machine (not root, a missing program or plugin), or undefined when it
 * can. Tests that need a node skip with this reason.
 */
export function localNodeUnavailableReason(): string | undefined {
  if (process.platform !== 'linux') return `a local node needs Linux (this is ${process.platform})`;
  if (process.getuid?.() !== 0) return 'a local node needs root (containerd, runc, mounts and cgroups)';
  const missing = ['containerd', 'ctr', 'containerd-shim-runc-v2', 'runc', 'gcc', 'tar', 'mount', 'umount'].filter((c) => !which(c));
  if (!existsSync(path.join(CNI_BIN_DIR, 'loopback'))) missing.push(`${CNI_BIN_DIR}/loopback`);
  if (missing.length > 0) {
    return `a local node needs ${missing.join(', ')} (Debian: apt-get install containerd runc containernetworking-plugins gcc)`;
  }
  if (cgroupMounts().length === 0) return 'no cgroup file system is mounted';
  return undefined;
}

// ---- cgroups: one tree per node, in every hierarchy ------------------------------------------------------------

interface CgroupMount {
  dir: string;
  /** cgroup v1 controllers/names of the hierarchy (empty for cgroup2). */
  options: string[];
  v2: boolean;
}

function unescapeMountPath(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

function mountInfo(): Array<{ mountPoint: string; fsType: string; superOptions: string }> {
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter(Boolean).map((line) => {
    const fields = line.split(' ');
    const sep = fields.indexOf('-');
    return { mountPoint: unescapeMountPath(fields[4] ?? ''), fsType: fields[sep + 1] ?? '', superOptions: fields[sep + 3] ?? '' };
  });
}

function cgroupMounts(): CgroupMount[] {
  return mountInfo()
    .filter((m) => m.fsType === 'cgroup' || m.fsType === 'cgroup2')
    .map((m) => ({ dir: m.mountPoint, v2: m.fsType === 'cgroup2', options: m.fsType === 'cgroup' ? m.superOptions.split(',') : [] }));
}

/** Hierarchies where containerd (and so every shim it starts) is placed, to find them again: pids/freezer, or v2. */
function trackingMounts(mounts: CgroupMount[]): CgroupMount[] {
  const v1 = mounts.filter((m) => m.options.includes('pids') || m.options.includes('freezer'));
  return v1.length > 0 ? v1 : mounts.filter((m) => m.v2);
}

function makeCgroup(mount: CgroupMount, rel: string): void {
  const dir = path.join(mount.dir, rel);
  mkdirSync(dir, { recursive: true });
  if (mount.options.includes('cpuset')) {
    // A new v1 cpuset is empty, and nothing can join it until it has CPUs and memory nodes: inherit them.
    for (const file of ['cpuset.cpus', 'cpuset.mems']) {
      if (readFileSync(path.join(dir, file), 'utf8').trim() === '') {
        writeFileSync(path.join(dir, file), readFileSync(path.join(path.dirname(dir), file), 'utf8').trim());
      }
    }
  }
}

/** dir and every cgroup below it, deepest first. */
function cgroupTree(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.isDirectory()) out.push(...cgroupTree(path.join(dir, entry.name)));
  }
  out.push(dir);
  return out;
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** SIGKILLs every process in the cgroup tree rel (in any hierarchy) until none is left; false if some survive. */
function killCgroupTree(rel: string, rounds = 50): boolean {
  for (let round = 0; round < rounds; round++) {
    const pids = new Set<number>();
    for (const mount of cgroupMounts()) {
      for (const dir of cgroupTree(path.join(mount.dir, rel))) {
        try {
          for (const line of readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').split('\n')) if (line) pids.add(Number(line));
        } catch {
          // removed meanwhile
        }
      }
    }
    if (pids.size === 0) return true;
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // exited meanwhile
      }
    }
    sleepSync(100);
  }
  return false;
}

function removeCgroupTree(rel: string): void {
  for (const mount of cgroupMounts()) {
    for (const dir of cgroupTree(path.join(mount.dir, rel))) {
      try {
        rmdirSync(dir);
      } catch {
        // still busy or already gone: the next stop or the operator of the machine sees it
      }
    }
  }
}

// ---- mounts ---------------------------------------------------------------------------------------------------

function mountsUnder(dirs: string[]): string[] {
  return mountInfo()
    .map((m) => m.mountPoint)
    .filter((mp) => dirs.some((d) => mp === d || mp.startsWith(`${d}/`)));
}

/** Unmounts everything mounted at or below dirs, deepest first (lazily if a mount stays busy). */
function unmountUnder(dirs: string[]): void {
  for (let round = 0; round < 10; round++) {
    const mounts = mountsUnder(dirs).sort((a, b) => b.length - a.length);
    if (mounts.length === 0) return;
    for (const mp of mounts) {
      try {
        execFileSync('umount', [mp], { stdio: 'ignore' });
      } catch {
        try {
          execFileSync('umount', ['-l', mp], { stdio: 'ignore' });
        } catch {
          // unmounted by a propagation meanwhile
        }
      }
    }
  }
}

// ---- kernel settings the kubelet changes ---------------------------------------------------------------------

/**
 * The kubelet sets these on start unless they already have its values (protectKernelDefaults would make it
 * refuse to start instead). They are put back when the last node of this process stops.
 */
const KUBELET_SYSCTLS: Record<string, string> = {
  'vm/overcommit_memory': '1',
  'vm/panic_on_oom': '0',
  'kernel/panic': '10',
  'kernel/panic_on_oops': '1',
  'kernel/keys/root_maxkeys': '1000000',
  'kernel/keys/root_maxbytes': '25000000',
};
let savedSysctls: Record<string, string> | undefined;
let runningNodes = 0;

function readSysctl(key: string): string | undefined {
  try {
    return readFileSync(`/proc/sys/${key}`, 'utf8').trim();
  } catch {
    return undefined;
  }
}

function saveSysctls(): void {
  if (savedSysctls) return;
  savedSysctls = {};
  for (const key of Object.keys(KUBELET_SYSCTLS)) {
    const value = readSysctl(key);
    if (value !== undefined) savedSysctls[key] = value;
  }
}

function restoreSysctls(): void {
  if (!savedSysctls) return;
  for (const [key, original] of Object.entries(savedSysctls)) {
    // Only what the kubelet changed, and only if nobody changed it again since.
    if (original !== KUBELET_SYSCTLS[key] && readSysctl(key) === KUBELET_SYSCTLS[key]) {
      try {
        writeFileSync(`/proc/sys/${key}`, original);
      } catch {
        // read-only here: nothing was changed then either
      }
    }
  }
  savedSysctls = undefined;
}

// ---- the node ---------------------------------------------------------------------------------------------------

/** Where the kubelet links every container log (a fixed path in the kubelet); links into our logs are removed. */
const CONTAINER_LOG_LINKS = '/var/log/containers';

export class LocalNode {
  readonly name = LOCAL_NODE_NAME;
  /** Container logs: <podLogsDir>/<namespace>_<pod>_<uid>/<container>/<restart>.log (CRI log format). */
  readonly podLogsDir: string;
  /** containerd's CRI socket (for crictl, or `ctr --address <socket> --namespace k8s.io`). */
  readonly containerdSocket: string;
  /** The kubelet's HTTPS port on 127.0.0.1 (the apiserver reaches it for logs and exec). */
  kubeletPort = 0;
  /** The reference of the sandbox image (test/images/pause), named in containerd's sandbox_image. */
  sandboxImage = '';
  /** The kubelet's cgroup root (cgroupfs driver), below which every pod runs: unique per node. */
  readonly cgroupRoot = `/dbcred-node-${randomBytes(4).toString('hex')}`;

  private readonly dirs: { containerdRoot: string; containerdState: string; runc: string; kubelet: string; certs: string; cni: string; logs: string };
  private readonly procs: { containerd?: ManagedProcess; kubelet?: ManagedProcess; scheduler?: ManagedProcess } = {};
  private readonly imported = new Set<string>();
  private stopping: Promise<void> | undefined;
  private cleanedUp = false;
  private counted = false;
  private unregisterExitHook: () => void = () => undefined;
  /** The short directory for sockets and the kubelet's root-dir when baseDir is too long for them. */
  private readonly shortDir: string | undefined;

  private constructor(private readonly opts: LocalNodeOptions) {
    const base = opts.baseDir;
    if (base.length > MAX_SHORT_BASE) this.shortDir = path.join('/tmp', `dbcred-node-${randomBytes(4).toString('hex')}`);
    const short = this.shortDir ?? base;
    this.dirs = {
      containerdRoot: path.join(base, 'containerd', 'root'),
      containerdState: path.join(base, 'containerd', 'state'),
      runc: path.join(base, 'containerd', 'runc'),
      kubelet: path.join(short, 'kubelet'),
      certs: path.join(base, 'certs'),
      cni: path.join(base, 'cni'),
      logs: path.join(base, 'logs'),
    };
    this.podLogsDir = path.join(base, 'pod-logs');
    this.containerdSocket = path.join(short, 'containerd.sock');
  }

  /** Starts containerd, imports the images, starts the kubelet and kube-scheduler, and waits for the node to be Ready. */
  static async start(opts: LocalNodeOptions): Promise<LocalNode> {
    const reason = localNodeUnavailableReason();
    if (reason) throw new Error(reason);
    for (const b of ['kubelet', 'kube-scheduler', 'kubectl']) {
      if (!existsSync(path.join(opts.binDir, b))) throw new Error(`missing ${path.join(opts.binDir, b)}: run test/cluster/build.sh`);
    }
    const node = new LocalNode(opts);
    try {
      await node.startAll();
    } catch (err) {
      await node.stop();
      throw err;
    }
    return node;
  }

  private async startAll(): Promise<void> {
    if (this.shortDir) removeOnExit(this.shortDir);
    for (const dir of [...Object.values(this.dirs), this.podLogsDir]) mkdirSync(dir, { recursive: true });
    this.unregisterExitHook = onExitSync(() => this.cleanUpSync());
    runningNodes++;
    this.counted = true;
    const mounts = cgroupMounts();
    for (const mount of mounts) makeCgroup(mount, this.cgroupRoot);
    for (const mount of trackingMounts(mounts)) makeCgroup(mount, path.join(this.cgroupRoot, 'runtime'));

    const pause = await pauseImage();
    this.sandboxImage = pause.ref;
    // Loopback only: enough for the runtime to report its network ready (and so the node Ready). Pods must use
    // hostNetwork: a pod with its own network namespace gets no address and its sandbox fails.
    writeFileSync(path.join(this.dirs.cni, '10-loopback.conflist'),
      JSON.stringify({ cniVersion: '1.0.0', name: 'loopback-only', plugins: [{ type: 'loopback' }] }));
    await this.startContainerd();
    for (const archive of [pause.archive, ...(this.opts.images ?? [])]) await this.importImage(archive);
    await Promise.all([this.startKubelet(), this.startScheduler()]);
    await this.waitReady();
  }

  private spawn(name: string, command: string, args: string[]): ManagedProcess {
    const p = new ManagedProcess({ name, command, args, logFile: path.join(this.dirs.logs, `${name}.log`), env: CHILD_ENV });
    p.start();
    return p;
  }

  private exitedReason(p: ManagedProcess): () => string | undefined {
    return () => (p.running ? undefined : `${p.name} exited; see ${path.join(this.dirs.logs, `${p.name}.log`)}`);
  }

  private ctr(args: string[]): Promise<string> {
    return runCommand('ctr', ['--address', this.containerdSocket, '--namespace', 'k8s.io', ...args], { env: CHILD_ENV });
  }

  private kubectl(args: string[]): Promise<string> {
    return runCommand(path.join(this.opts.binDir, 'kubectl'), ['--kubeconfig', this.opts.kubeconfigPath, ...args]);
  }

  private containerdConfig(): string {
    const q = (s: string) => JSON.stringify(s); // a TOML basic string
    const cri = 'plugins."io.containerd.grpc.v1.cri"';
    return [
      'version = 2',
      `root = ${q(this.dirs.containerdRoot)}`,
      `state = ${q(this.dirs.containerdState)}`,
      'oom_score = 0',
      // Only the overlayfs snapshotter is used (the v1 runtime must stay: the tasks service of 1.6 needs it).
      'disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]',
      '[grpc]',
      `  address = ${q(this.containerdSocket)}`,
      '[ttrpc]',
      `  address = ${q(`${this.containerdSocket}.ttrpc`)}`,
      '[plugins."io.containerd.internal.v1.opt"]',
      `  path = ${q(path.join(this.dirs.containerdRoot, 'opt'))}`,
      `[${cri}]`,
      `  sandbox_image = ${q(this.sandboxImage)}`,
      // This VM refuses a negative oom_score_adj, and CRI asks for -998 for every sandbox.
      '  restrict_oom_score_adj = true',
      '  stream_server_address = "127.0.0.1"',
      '  stream_server_port = "0"',
      '  enable_selinux = false',
      '  netns_mounts_under_state_dir = true',
      '  max_container_log_line_size = 16384',
      `[${cri}.containerd]`,
      '  snapshotter = "overlayfs"',
      '  default_runtime_name = "runc"',
      `[${cri}.containerd.runtimes.runc]`,
      '  runtime_type = "io.containerd.runc.v2"',
      `[${cri}.containerd.runtimes.runc.options]`,
      '  SystemdCgroup = false',
      `  Root = ${q(this.dirs.runc)}`,
      `[${cri}.cni]`,
      `  bin_dir = ${q(CNI_BIN_DIR)}`,
      `  conf_dir = ${q(this.dirs.cni)}`,
      '  max_conf_num = 1',
      '',
    ].join('\n');
  }

  private async startContainerd(): Promise<void> {
    const config = path.join(this.opts.baseDir, 'containerd.toml');
    writeFileSync(config, this.containerdConfig());
    // containerd joins the node's own cgroup before it starts, so that every shim it forks (they leave its
    // process group on purpose) is found there again on stop.
    const join = trackingMounts(cgroupMounts())
      .map((m) => `echo $$ > ${JSON.stringify(path.join(m.dir, this.cgroupRoot, 'runtime', 'cgroup.procs'))}`)
      .join(' && ');
    const containerd = this.spawn('containerd', '/bin/sh', ['-c', `${join} && exec "$@"`, 'sh', 'containerd', '--config', config, '--log-level', 'warn']);
    this.procs.containerd = containerd;
    await waitFor('containerd to answer', async () => {
      await this.ctr(['version']);
      return true;
    }, { timeoutMs: 30_000, intervalMs: 100, failFast: this.exitedReason(containerd) });
  }

  /** Imports an image archive (docker-save or OCI layout tar) into containerd's k8s.io namespace. */
  async importImage(archive: string): Promise<void> {
    if (this.imported.has(archive)) return;
    await this.ctr(['images', 'import', archive]);
    this.imported.add(archive);
  }

  private async startKubelet(): Promise<void> {
    const [port, healthzPort] = [await freePort(), await freePort()];
    this.kubeletPort = port;
    const ca = this.opts.kubeletCA;
    let tls: { tlsCertFile?: string; tlsPrivateKeyFile?: string } = {};
    if (ca) {
      const serving = await ca.issueServerCertificate(path.join(this.dirs.certs, 'serving'), [`IP:${LOCAL_NODE_NAME}`, 'DNS:localhost']);
      tls = { tlsCertFile: serving.certFile, tlsPrivateKeyFile: serving.keyFile };
    }
    const endpoint = `unix://${this.containerdSocket}`;
    const config = {
      apiVersion: 'kubelet.config.k8s.io/v1beta1',
      kind: 'KubeletConfiguration',
      address: '127.0.0.1',
      port,
      healthzBindAddress: '127.0.0.1',
      healthzPort,
      readOnlyPort: 0,
      ...tls,
      authentication: {
        anonymous: { enabled: false },
        // Bearer tokens are checked with TokenReview, client certificates against the apiserver's kubelet CA.
        webhook: { enabled: true, cacheTTL: '10s' },
        x509: ca ? { clientCAFile: ca.certFile } : {},
      },
      authorization: { mode: 'Webhook', webhook: { cacheAuthorizedTTL: '10s', cacheUnauthorizedTTL: '5s' } },
      containerRuntimeEndpoint: endpoint,
      imageServiceEndpoint: endpoint,
      // cgroup v1 (this machine is hybrid) is refused by default since 1.35.
      failCgroupV1: false,
      cgroupDriver: 'cgroupfs',
      cgroupRoot: this.cgroupRoot,
      cgroupsPerQOS: true,
      failSwapOn: false,
      podLogsDir: this.podLogsDir,
      volumePluginDir: path.join(this.dirs.kubelet, 'volume-plugins'),
      // Pods are resynced (and Secret volumes rewritten) this often: tests wait for a changed Secret in a pod.
      syncFrequency: '5s',
      nodeStatusUpdateFrequency: '5s',
      // No eviction, no node-allocatable enforcement, no image garbage collection: a test machine's disk and
      // memory are what they are; evicting the pods under test would only confuse.
      evictionHard: {},
      enforceNodeAllocatable: [],
      localStorageCapacityIsolation: false,
      imageGCHighThresholdPercent: 100,
      imageGCLowThresholdPercent: 99,
      // The kubelet must not touch the host's iptables.
      makeIPTablesUtilChains: false,
      serializeImagePulls: false,
      rotateCertificates: false,
      serverTLSBootstrap: false,
      kubeAPIQPS: 50,
      kubeAPIBurst: 100,
      shutdownGracePeriod: '0s',
    };
    const configFile = path.join(this.opts.baseDir, 'kubelet.json');
    writeFileSync(configFile, JSON.stringify(config, null, 2));
    saveSysctls();
    this.procs.kubelet = this.spawn('kubelet', path.join(this.opts.binDir, 'kubelet'), [
      '--config', configFile,
      '--kubeconfig', this.opts.kubeconfigPath,
      '--hostname-override', LOCAL_NODE_NAME,
      '--root-dir', this.dirs.kubelet,
      '--cert-dir', this.dirs.certs,
      '--v', '1',
    ]);
    const kubelet = this.procs.kubelet;
    await waitFor('the kubelet to be healthy', async () => (await httpGet(`http://127.0.0.1:${healthzPort}/healthz`)).status === 200, {
      timeoutMs: 60_000, failFast: this.exitedReason(kubelet),
    });
  }

  private async startScheduler(): Promise<void> {
    const port = await freePort();
    const certDir = path.join(this.dirs.certs, 'scheduler');
    const kubeconfig = this.opts.kubeconfigPath;
    const scheduler = this.spawn('kube-scheduler', path.join(this.opts.binDir, 'kube-scheduler'), [
      '--kubeconfig', kubeconfig,
      // /healthz needs no authentication; the apiserver has no front-proxy configuration to look up.
      '--authentication-skip-lookup=true',
      '--authorization-kubeconfig', kubeconfig,
      '--leader-elect=false',
      '--bind-address', '127.0.0.1',
      '--secure-port', String(port),
      '--cert-dir', certDir,
      '--v', '0',
    ]);
    this.procs.scheduler = scheduler;
    const certFile = path.join(certDir, 'kube-scheduler.crt');
    await waitFor('kube-scheduler to be healthy', async () =>
      existsSync(certFile) && (await httpGet(`https://127.0.0.1:${port}/healthz`, { ca: readFileSync(certFile) })).status === 200, {
      timeoutMs: 60_000, failFast: this.exitedReason(scheduler),
    });
  }

  private async waitReady(): Promise<void> {
    const kubelet = this.procs.kubelet;
    const containerd = this.procs.containerd;
    await waitFor(`node ${this.name} to be Ready`, async () =>
      (await this.kubectl(['get', 'node', this.name, '-o', 'jsonpath={.status.conditions[?(@.type=="Ready")].status}'])).trim() === 'True', {
      timeoutMs: 120_000,
      intervalMs: 250,
      failFast: () => (kubelet && this.exitedReason(kubelet)()) || (containerd && this.exitedReason(containerd)()),
    });
  }

  /**
   * Environment variables that make an in-cluster client in a pod reach the kube-apiserver on 127.0.0.1: the
   * kubelet injects the `kubernetes` Service (port 443, a fixed port), not the apiserver's own port.
   */
  inClusterEnv(): Array<{ name: string; value: string }> {
    const server = /^\s*server:\s*(\S+)/m.exec(readFileSync(this.opts.kubeconfigPath, 'utf8'))?.[1];
    if (!server) throw new Error(`no server in ${this.opts.kubeconfigPath}`);
    const url = new URL(server);
    const port = url.port || '443';
    return [
      { name: 'KUBERNETES_SERVICE_HOST', value: url.hostname },
      { name: 'KUBERNETES_SERVICE_PORT', value: port },
      { name: 'KUBERNETES_SERVICE_PORT_HTTPS', value: port },
    ];
  }

  /** Stops the kubelet, kills every container, sandbox and shim of this node, unmounts, stops containerd and kube-scheduler. */
  stop(): Promise<void> {
    this.stopping ??= this.stopAll();
    return this.stopping;
  }

  private async stopAll(): Promise<void> {
    // The kubelet first, so that nothing restarts the containers killed next.
    await this.procs.kubelet?.stop('SIGTERM', 10_000);
    killCgroupTree(path.join(this.cgroupRoot, 'kubepods'));
    await this.procs.containerd?.stop('SIGTERM', 10_000);
    await this.procs.scheduler?.stop('SIGTERM', 10_000);
    this.cleanUpSync();
  }

  /** What stop() leaves to the end, and all that the exit hook does: idempotent and synchronous. */
  private cleanUpSync(): void {
    if (this.cleanedUp) return;
    this.cleanedUp = true;
    this.unregisterExitHook();
    killCgroupTree(this.cgroupRoot); // shims, and whatever an abrupt exit left behind
    this.removeShimSockets();
    unmountUnder([this.opts.baseDir, ...(this.shortDir ? [this.shortDir] : [])]);
    removeCgroupTree(this.cgroupRoot);
    this.removeContainerLogLinks();
    if (this.shortDir) rmSync(this.shortDir, { recursive: true, force: true });
    if (this.counted && --runningNodes === 0) restoreSysctls();
  }

  /** The kubelet links every container log from /var/log/containers; the links into this node's logs go with it. */
  private removeContainerLogLinks(): void {
    if (!existsSync(CONTAINER_LOG_LINKS)) return;
    for (const name of readdirSync(CONTAINER_LOG_LINKS)) {
      const link = path.join(CONTAINER_LOG_LINKS, name);
      try {
        if (lstatSync(link).isSymbolicLink() && readlinkSync(link).startsWith(`${this.podLogsDir}/`)) unlinkSync(link);
      } catch {
        // gone meanwhile
      }
    }
  }

  /** Shims listen on sockets outside containerd's state (/run/containerd/s/…); a killed shim leaves its socket. */
  private removeShimSockets(): void {
    const tasks = path.join(this.dirs.containerdState, 'io.containerd.runtime.v2.task');
    if (!existsSync(tasks)) return;
    for (const ns of readdirSync(tasks)) {
      for (const id of readdirSync(path.join(tasks, ns))) {
        try {
          const address = readFileSync(path.join(tasks, ns, id, 'address'), 'utf8').trim();
          if (address.startsWith('unix://')) rmSync(address.slice('unix://'.length), { force: true });
        } catch {
          // no address file: the shim never started
        }
      }
    }
  }
}
