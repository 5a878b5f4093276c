// The local environment: a real control plane plus a throwaway PostgreSQL, started together and stopped
// together. Used by the integration tests, `make env-up` and `make run`.
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ControlPlane, REPO_ROOT, controlPlaneBinDir } from './controlplane.js';
import { LocalNode } from './node.js';
import { PostgresServer } from './postgres.js';
import { removeOnExit } from './processes.js';

export interface EnvironmentOptions {
  /** Keep the temp directory (logs, data) after stop, for debugging. */
  keepDir?: boolean;
  /** CRDs installed before the controller manager starts; default the repository's crds/. */
  crdDir?: string | null;
}

export class Environment {
  readonly baseDir: string;
  readonly controlPlane: ControlPlane;
  readonly postgres: PostgresServer;
  private readonly binDir: string;
  private node: Promise<LocalNode> | undefined;
  private stopped = false;

  private constructor(private readonly opts: EnvironmentOptions) {
    this.baseDir = mkdtempSync(path.join(os.tmpdir(), 'dbcred-env-'));
    if (!opts.keepDir) removeOnExit(this.baseDir);
    this.binDir = controlPlaneBinDir();
    this.controlPlane = new ControlPlane({
      baseDir: path.join(this.baseDir, 'k8s'),
      binDir: this.binDir,
      crdDir: opts.crdDir === null ? undefined : (opts.crdDir ?? path.join(REPO_ROOT, 'crds')),
    });
    this.postgres = new PostgresServer(path.join(this.baseDir, 'pg'));
  }

  static async start(opts: EnvironmentOptions = {}): Promise<Environment> {
    const env = new Environment(opts);
    try {
      // Independent: start both at once.
      await Promise.all([env.controlPlane.start(), env.postgres.init().then(() => env.postgres.start())]);
    } catch (err) {
      await env.stop();
      throw err;
    }
    return env;
  }

  get kubeconfigPath(): string {
    return this.controlPlane.kubeconfigPath;
  }

  /**
   * A real node on this environment (containerd, kubelet, kube-scheduler; see node.ts), started on first use;
   * later calls return the same node and import the images it does not have yet. Stopped by stop().
   */
  async startNode(images: string[] = []): Promise<LocalNode> {
    if (this.stopped) throw new Error('the environment is stopped');
    if (!this.node) {
      const starting = LocalNode.start({
        baseDir: path.join(this.baseDir, 'node'),
        binDir: this.binDir,
        kubeconfigPath: this.kubeconfigPath,
        kubeletCA: this.controlPlane.kubeletCA,
        images,
      });
      this.node = starting;
      starting.catch(() => {
        if (this.node === starting) this.node = undefined; // a later call may try again
      });
      return starting;
    }
    const node = await this.node;
    for (const image of images) await node.importImage(image);
    return node;
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    // The node before the control plane: the kubelet still reaches the apiserver while it stops.
    const node = await this.node?.catch(() => undefined);
    await node?.stop();
    await Promise.allSettled([this.controlPlane.stop(), this.postgres.stop()]);
    if (!this.opts.keepDir) rmSync(this.baseDir, { recursive: true, force: true });
  }
}
