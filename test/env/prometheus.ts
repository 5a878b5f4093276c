// A real Prometheus (Debian's `prometheus` package) on loopback, for the alert and dashboard tests: it scrapes the
// operator's /metrics every second and evaluates rule files every second. promtool comes with it.
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import yaml from 'js-yaml';
import { httpGet } from './controlplane.js';
import { ManagedProcess, freePort, removeOnExit, runCommand, waitFor } from './processes.js';

const PROMETHEUS = process.env.PROMETHEUS_BIN ?? '/usr/bin/prometheus';
const PROMTOOL = process.env.PROMTOOL_BIN ?? '/usr/bin/promtool';

/** Why Prometheus cannot run here (its binaries are missing), or undefined when it can. */
export function prometheusMissing(): string | undefined {
  for (const bin of [PROMETHEUS, PROMTOOL]) {
    if (!existsSync(bin)) return `${bin} not found (Debian: apt-get install --no-install-recommends prometheus; make test installs it as root)`;
  }
  return undefined;
}

export function promtool(args: string[], cwd?: string): Promise<string> {
  return runCommand(PROMTOOL, args, { cwd });
}

export interface Sample {
  metric: Record<string, string>;
  value: [number, string];
}

export interface ActiveAlert {
  labels: Record<string, string>;
  annotations: Record<string, string>;
  state: 'pending' | 'firing';
  activeAt: string;
  value: string;
}

export class PrometheusServer {
  private readonly dir = mkdtempSync(path.join(os.tmpdir(), 'dbcred-prometheus-'));
  private process: ManagedProcess | undefined;
  private port = 0;

  /**
   * targets: host:port of /metrics endpoints (job "dbcred-operator"); scrapeConfigs: more scrape configs as they are
   * (e.g. Kubernetes service discovery); ruleFiles: rule file contents by name.
   */
  constructor(private readonly opts: { targets?: string[]; scrapeConfigs?: object[]; ruleFiles?: Record<string, string> }) {
    removeOnExit(this.dir);
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get logFile(): string {
    return path.join(this.dir, 'prometheus.log');
  }

  async start(): Promise<void> {
    const ruleFiles = Object.entries(this.opts.ruleFiles ?? {}).map(([name, text]) => {
      const file = path.join(this.dir, name);
      writeFileSync(file, text);
      return file;
    });
    const config = {
      global: { scrape_interval: '1s', scrape_timeout: '900ms', evaluation_interval: '1s' },
      rule_files: ruleFiles,
      scrape_configs: [
        ...(this.opts.targets ? [{ job_name: 'dbcred-operator', static_configs: [{ targets: this.opts.targets }] }] : []),
        ...(this.opts.scrapeConfigs ?? []),
      ],
    };
    writeFileSync(path.join(this.dir, 'prometheus.yml'), yaml.dump(config));
    await runCommand(PROMTOOL, ['check', 'config', path.join(this.dir, 'prometheus.yml')]);
    this.port = await freePort();
    this.process = new ManagedProcess({
      name: 'prometheus',
      command: PROMETHEUS,
      args: [
        `--config.file=${path.join(this.dir, 'prometheus.yml')}`,
        `--storage.tsdb.path=${path.join(this.dir, 'data')}`,
        `--web.listen-address=127.0.0.1:${this.port}`,
        '--web.enable-lifecycle',
      ],
      logFile: this.logFile,
    });
    this.process.start();
    await waitFor('Prometheus to be ready', async () => {
      if (!this.process?.running) throw new Error(`prometheus exited; see ${this.logFile}`);
      return (await httpGet(`${this.url}/-/ready`, { timeoutMs: 2_000 }).catch(() => ({ status: 0 }))).status === 200;
    }, { timeoutMs: 30_000, intervalMs: 200 });
  }

  async stop(): Promise<void> {
    await this.process?.stop();
  }

  private async api<T>(pathAndQuery: string): Promise<T> {
    const res = await httpGet(`${this.url}${pathAndQuery}`, { timeoutMs: 10_000 });
    const body = JSON.parse(res.body) as { status: string; data: T; error?: string };
    if (res.status !== 200 || body.status !== 'success') throw new Error(`Prometheus ${pathAndQuery}: ${res.status} ${body.error ?? res.body.slice(0, 300)}`);
    return body.data;
  }

  /** An instant query; throws on a query Prometheus refuses (a syntax error is a failure, not "no series"). */
  async query(expr: string): Promise<Sample[]> {
    const data = await this.api<{ resultType: string; result: Sample[] | [number, string] }>(`/api/v1/query?query=${encodeURIComponent(expr)}`);
    if (data.resultType === 'scalar') return [{ metric: {}, value: data.result as [number, string] }];
    return data.result as Sample[];
  }

  async alerts(): Promise<ActiveAlert[]> {
    return (await this.api<{ alerts: ActiveAlert[] }>('/api/v1/alerts')).alerts;
  }

  /** The firing alerts of that name (empty while it is only pending or inactive). */
  async firing(name: string): Promise<ActiveAlert[]> {
    return (await this.alerts()).filter((a) => a.labels.alertname === name && a.state === 'firing');
  }

  /** Waits until the alert fires (pending does not count). */
  async waitFiring(name: string, timeoutMs: number): Promise<void> {
    await waitFor(`${name} to fire`, async () => (await this.firing(name)).length > 0, { timeoutMs, intervalMs: 500 });
  }

  /** Waits until the alert is neither pending nor firing. */
  async waitResolved(name: string, timeoutMs: number): Promise<void> {
    await waitFor(`${name} to resolve`, async () => !(await this.alerts()).some((a) => a.labels.alertname === name), { timeoutMs, intervalMs: 500 });
  }

  /** Whether every static target is up (scraped successfully on the last attempt). */
  async targetsUp(): Promise<boolean> {
    const up = await this.query('up{job="dbcred-operator"}');
    return up.length === (this.opts.targets?.length ?? 0) && up.every((s) => s.value[1] === '1');
  }

  /** The rules Prometheus loaded, with their state and health (an expression that fails to evaluate is not "ok"). */
  async rules(): Promise<{ name: string; state?: string; health: string; lastError?: string; lastEvaluation: string }[]> {
    const data = await this.api<{ groups: { rules: { name: string; state?: string; health: string; lastError?: string; lastEvaluation: string }[] }[] }>('/api/v1/rules');
    return data.groups.flatMap((g) => g.rules);
  }
}

/**
 * The rules with every duration divided by factor (rounded up to whole seconds, at least 2 s): `for:` clauses and
 * range selectors such as [10m]. An end-to-end test cannot wait 15 minutes; the expressions stay as shipped.
 */
export function compressRuleTimes(text: string, factor: number): string {
  const seconds = (n: number, unit: string) => n * ({ ms: 0.001, s: 1, m: 60, h: 3600, d: 86400 } as Record<string, number>)[unit]!;
  const short = (n: number, unit: string) => `${Math.max(2, Math.ceil(seconds(n, unit) / factor))}s`;
  return text
    .replace(/\[(\d+)(ms|s|m|h|d)\]/g, (_m, n: string, unit: string) => `[${short(Number(n), unit)}]`)
    .replace(/^(\s*for:\s*)(\d+)(ms|s|m|h|d)\s*$/gm, (_m, pre: string, n: string, unit: string) => `${pre}${short(Number(n), unit)}`);
}
