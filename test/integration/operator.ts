// The operator as the real process a user runs (node dist/src/main.js), plus helpers to apply objects and wait
// for what a user would wait for with kubectl.
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import yaml from 'js-yaml';
import type { Condition, DatabaseConfig, DatabaseCredential, DatabaseRole } from '../../src/api/types.js';
import { REPO_ROOT } from '../env/controlplane.js';
import type { PostgresConnection } from '../env/postgres.js';
import { waitFor, type TestEnv } from './harness.js';

let instances = 0;

export class OperatorProcess {
  private readonly id = ++instances;
  private child: ChildProcess | undefined;
  /** Everything the operator printed, across restarts (for the no-secrets-in-logs check). */
  output = '';

  constructor(
    private readonly env: TestEnv,
    private readonly extraEnv: Record<string, string> = {},
  ) {}

  start(): void {
    const child = spawn(process.execPath, [path.join(REPO_ROOT, 'dist', 'src', 'main.js')], {
      env: { ...process.env, KUBECONFIG: this.env.kubeconfigPath, LOG_LEVEL: 'debug', ...this.extraEnv },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout?.on('data', (d: Buffer) => (this.output += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (this.output += d.toString()));
    this.child = child;
  }

  async waitReady(): Promise<void> {
    await waitFor('the operator to sync its caches', async () => this.output.includes('operator ready'), {
      timeoutMs: 30_000,
      failFast: () => (this.child?.exitCode !== null && this.child?.exitCode !== undefined ? `operator exited ${this.child.exitCode}: ${this.output.slice(-2000)}` : undefined),
    });
  }

  /** SIGTERM and wait: a clean shutdown. With OPERATOR_LOG_DIR set, the log is kept there for a look. */
  async stop(): Promise<void> {
    await this.signal('SIGTERM');
    const dir = process.env.OPERATOR_LOG_DIR;
    if (dir) writeFileSync(path.join(dir, `operator-${process.pid}-${this.id}.log`), this.output);
  }

  /** SIGKILL: a crash at whatever point it is. */
  async kill(): Promise<void> {
    await this.signal('SIGKILL');
  }

  get exitCode(): number | null | undefined {
    return this.child?.exitCode;
  }

  /** Started and not ended, neither by an exit nor by a signal (a V8 out-of-memory aborts with SIGABRT). */
  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  private async signal(sig: NodeJS.Signals): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill(sig);
    await exited;
  }
}

export type Kind = 'databaseconfigs' | 'databaseroles' | 'databasecredentials';

export async function apply(env: TestEnv, namespace: string, docs: object[]): Promise<void> {
  const text = docs.map((d) => yaml.dump(d)).join('---\n');
  await env.kubectl(['apply', '-n', namespace, '-f', '-'], text);
}

export async function getObject<T>(env: TestEnv, plural: Kind, namespace: string, name: string): Promise<T | undefined> {
  try {
    return (await env.custom.getNamespacedCustomObject({ group: 'dbcred.dev', version: 'v1alpha1', namespace, plural, name })) as T;
  } catch (err) {
    if ((err as { code?: number }).code === 404) return undefined;
    throw err;
  }
}

export function condition(obj: { status?: { conditions?: Condition[] } } | undefined, type: string): Condition | undefined {
  return obj?.status?.conditions?.find((c) => c.type === type);
}

/** Waits until the object's condition has this status (and, if given, reason); returns the object. */
export async function waitForCondition<T extends DatabaseConfig | DatabaseRole | DatabaseCredential>(
  env: TestEnv,
  plural: Kind,
  namespace: string,
  name: string,
  type: string,
  status: 'True' | 'False',
  reason?: string,
  timeoutMs = 30_000,
): Promise<T> {
  let obj: T | undefined;
  await waitFor(`${plural} ${namespace}/${name} ${type}=${status}${reason ? ` (${reason})` : ''}`, async () => {
    obj = await getObject<T>(env, plural, namespace, name);
    const c = condition(obj, type);
    return c?.status === status && (reason === undefined || c.reason === reason);
  }, { timeoutMs, intervalMs: 100 }).catch((err: Error) => {
    throw new Error(`${err.message}; last status: ${JSON.stringify(obj?.status)}`);
  });
  return obj as T;
}

export async function readSecretData(env: TestEnv, namespace: string, name: string): Promise<Record<string, string> | undefined> {
  try {
    const s = await env.core.readNamespacedSecret({ namespace, name });
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(s.data ?? {})) out[k] = Buffer.from(v, 'base64').toString('utf8');
    return out;
  } catch (err) {
    if ((err as { code?: number }).code === 404) return undefined;
    throw err;
  }
}

/** Exactly what a pod mounting the Secret would use to connect. */
export function connectionFromSecret(data: Record<string, string>): PostgresConnection {
  return {
    host: data.host ?? '',
    port: Number(data.port),
    user: data.username ?? '',
    password: data.password ?? '',
    database: data.database ?? '',
  };
}

/** A root Secret, a DatabaseConfig and a DatabaseRole against the test PostgreSQL. */
export function platformObjects(
  env: TestEnv,
  opts: { config?: string; role?: string; creationStatements?: string[]; allowedNamespaces?: string[]; roleExtra?: object } = {},
): object[] {
  const pg = env.postgres.connection;
  const configName = opts.config ?? 'pg';
  return [
    { apiVersion: 'v1', kind: 'Secret', metadata: { name: `${configName}-root` }, stringData: { username: pg.user, password: pg.password } },
    {
      apiVersion: 'dbcred.dev/v1alpha1',
      kind: 'DatabaseConfig',
      metadata: { name: configName },
      spec: {
        connectionURL: `postgresql://{{username}}:{{password}}@${pg.host}:${pg.port}/${pg.database}?sslmode=disable`,
        rootCredentialsSecretRef: { name: `${configName}-root` },
        allowedRoles: ['*'],
      },
    },
    {
      apiVersion: 'dbcred.dev/v1alpha1',
      kind: 'DatabaseRole',
      metadata: { name: opts.role ?? 'reader' },
      spec: {
        configRef: { name: configName },
        creationStatements: opts.creationStatements ?? [
          `CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';`,
          'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{{name}}";',
        ],
        defaultTTL: '1h',
        maxTTL: '24h',
        ...(opts.allowedNamespaces ? { allowedNamespaces: opts.allowedNamespaces } : {}),
        ...(opts.roleExtra ?? {}),
      },
    },
  ];
}

export function credentialObject(name: string, spec: Record<string, unknown>): object {
  return { apiVersion: 'dbcred.dev/v1alpha1', kind: 'DatabaseCredential', metadata: { name }, spec };
}
