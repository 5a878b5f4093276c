// Helm and the prometheus-operator CRDs for the chart tests, from test/cluster/build-helm.sh (built or fetched once
// into the cache). Client-side tools: they work against the embedded environment and USE_EXISTING_CLUSTER alike.
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { REPO_ROOT } from './controlplane.js';
import { removeOnExit } from './processes.js';

export const CHART_DIR = path.join(REPO_ROOT, 'deploy', 'chart');

export interface ChartTools {
  helm: string;
  /** Directory of prometheus-operator's CRD files (monitoring.coreos.com_servicemonitors.yaml, ...). */
  prometheusOperatorCrds: string;
}

let tools: ChartTools | undefined;

/** Where build-helm.sh put helm and the CRDs (it builds what is missing first; cached: a fraction of a second). */
export function chartTools(): ChartTools {
  if (tools) return tools;
  const out = execFileSync('bash', [path.join(REPO_ROOT, 'test', 'cluster', 'build-helm.sh')], { stdio: ['ignore', 'pipe', 'inherit'] });
  const vars = Object.fromEntries(out.toString().split('\n').filter((l) => l.includes('=')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
  if (!vars.HELM || !vars.PROMETHEUS_OPERATOR_CRDS) throw new Error(`build-helm.sh printed no HELM= and PROMETHEUS_OPERATOR_CRDS= lines: ${out}`);
  tools = { helm: vars.HELM, prometheusOperatorCrds: vars.PROMETHEUS_OPERATOR_CRDS };
  return tools;
}

export function helmBinary(): string {
  return chartTools().helm;
}

let helmHome: string | undefined;

/**
 * Runs helm; resolves with its stdout (rendered YAML stays free of warnings), rejects with stdout and stderr.
 * Helm's cache, config and data directories are a temporary one of this process: nothing lands in the user's home.
 */
export function runHelm(args: string[], opts: { kubeconfig?: string } = {}): Promise<string> {
  if (!helmHome) {
    helmHome = mkdtempSync(path.join(os.tmpdir(), 'dbcred-helm-'));
    removeOnExit(helmHome);
  }
  const env = {
    ...process.env,
    HELM_CACHE_HOME: path.join(helmHome, 'cache'),
    HELM_CONFIG_HOME: path.join(helmHome, 'config'),
    HELM_DATA_HOME: path.join(helmHome, 'data'),
    ...(opts.kubeconfig ? { KUBECONFIG: opts.kubeconfig } : {}),
  };
  return new Promise((resolve, reject) => {
    execFile(helmBinary(), args, { env, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`helm ${args.join(' ')} failed (${err.code ?? err.signal}): ${stderr.trim() || stdout.trim()}`));
      else resolve(stdout);
    });
  });
}
