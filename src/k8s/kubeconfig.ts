// A small kubeconfig loader: the part of client-go's clientcmd the operator needs to find its API server and
// credentials, so that it does not have to import @kubernetes/client-node (74 MiB of RSS for the import alone).
// It follows client-go's rules where it supports a feature, and refuses with a KubeConfigError the features
// it does not support rather than quietly connecting as someone else.
// Messages and `source` name files, contexts, clusters, users and fields, never their values: a kubeconfig
// holds tokens, passwords and keys.
import { execFile, type ExecFileException } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import path from 'node:path';
import yaml from 'js-yaml';

/** How long an exec credential plugin may run. */
const EXEC_TIMEOUT_MS = 60_000;

export class KubeConfigError extends Error {
  override name = 'KubeConfigError';
}

/** The TLS identity to reach the API server with. */
export interface TlsIdentity {
  /** PEM bundle (undefined: the system CAs). */
  ca?: string;
  /** Client certificate PEM. */
  cert?: string;
  /** Client key PEM. */
  key?: string;
  /** False only with insecure-skip-tls-verify: true. */
  rejectUnauthorized: boolean;
  /** tls-server-name. */
  servername?: string;
}

export interface ClusterAccess {
  /** e.g. https://127.0.0.1:6443 — no trailing slash; may carry a path prefix (kept). */
  server: string;
  /** Namespace of the context (or the in-cluster namespace file), if any. */
  namespace?: string;
  /** Where this came from, for messages: 'in-cluster' or the kubeconfig path + context name. Never a secret. */
  source: string;
  /** Current TLS identity (an exec plugin may hand out a client cert that changes when it expires). */
  tls(): Promise<TlsIdentity>;
  /**
   * Value for the Authorization header right now ("Bearer …" or "Basic …"), or undefined. Token files are
   * re-read at most every 60 s; an exec plugin is re-run when its credential is within 10 s of its
   * expirationTimestamp (a credential without one is kept until invalidate()); concurrent callers share one run.
   */
  authorization(): Promise<string | undefined>;
  /** Forget a cached exec credential (call after a 401 so the next request re-runs the plugin); a token file is re-read. */
  invalidate(): void;
}

type Clock = () => number;

/** Bound service-account tokens rotate; client-go's cachingTokenSource re-reads the file once a minute. */
const TOKEN_FILE_REREAD_MS = 60_000;
/** client-go re-runs an exec plugin this long before the credential's expiry, so a request never carries a dead one. */
const EXEC_EXPIRY_MARGIN_MS = 10_000;
const DEFAULT_SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';
/** client-go dropped v1alpha1 in 1.24. */
const EXEC_API_VERSIONS = new Set(['client.authentication.k8s.io/v1', 'client.authentication.k8s.io/v1beta1']);
/** Fields that change who the requests act as; ignoring them would connect as someone else than the config says. */
const IMPERSONATION_FIELDS = ['as', 'as-uid', 'as-groups', 'as-user-extra'];

/**
 * client-go's order: $KUBECONFIG (a ':'-separated list, merged: the first file that defines a name wins;
 * current-context from the first that sets it; files that do not exist are skipped), else ~/.kube/config if it
 * exists, else in-cluster when KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are set, else KubeConfigError.
 */
export function loadClusterAccess(
  options: { env?: NodeJS.ProcessEnv; home?: string; serviceAccountDir?: string; now?: () => number } = {},
): ClusterAccess {
  const env = options.env ?? process.env;
  const now = options.now ?? Date.now;
  const listed = [...new Set((env.KUBECONFIG ?? '').split(path.delimiter).filter((p) => p !== '').map((p) => path.resolve(p)))];
  if (listed.length > 0) {
    const files = listed.filter((file) => existsSync(file));
    // client-go would fall through to in-cluster here; a KUBECONFIG that names nothing is a mistake worth saying.
    if (files.length === 0) throw new KubeConfigError(`none of the files in $KUBECONFIG exists: ${listed.join(', ')}`);
    return accessFromKubeconfig(mergeKubeconfigs(files), undefined, now);
  }
  const defaultFile = path.join(options.home ?? homedir(), '.kube', 'config');
  if (existsSync(defaultFile)) return clusterAccessFromFile(defaultFile, undefined, { now });
  if (env.KUBERNETES_SERVICE_HOST && env.KUBERNETES_SERVICE_PORT) return inClusterAccess(env, options.serviceAccountDir, { now });
  throw new KubeConfigError(
    `no cluster configuration: $KUBECONFIG is unset, ${defaultFile} does not exist, and KUBERNETES_SERVICE_HOST/KUBERNETES_SERVICE_PORT are unset (not in a pod)`,
  );
}

/** From one kubeconfig file (used by tests and tools). context: defaults to current-context. */
export function clusterAccessFromFile(file: string, context?: string, options: { now?: () => number } = {}): ClusterAccess {
  return accessFromKubeconfig(mergeKubeconfigs([path.resolve(file)]), context, options.now ?? Date.now);
}

/**
 * In-cluster: https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT (an IPv6 host in brackets), the
 * service account's token (re-read at most every 60 s: bound tokens rotate), ca.crt and namespace file.
 */
export function inClusterAccess(
  env: NodeJS.ProcessEnv = process.env,
  serviceAccountDir: string = DEFAULT_SERVICE_ACCOUNT_DIR,
  options: { now?: () => number } = {},
): ClusterAccess {
  const where = 'in-cluster config';
  const host = env.KUBERNETES_SERVICE_HOST;
  const port = env.KUBERNETES_SERVICE_PORT;
  if (!host || !port) throw new KubeConfigError(`${where}: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must both be set`);
  const bracketed = host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
  const server = parseServer(`https://${bracketed}:${port}`, where);
  const ca = readPemFile(path.join(serviceAccountDir, 'ca.crt'), 'ca.crt', where);
  const tokenFile = new TokenFile(path.join(serviceAccountDir, 'token'), options.now ?? Date.now, where);
  const namespace = readOptional(path.join(serviceAccountDir, 'namespace'));
  return new Access(server, namespace, 'in-cluster', { ca, rejectUnauthorized: true }, { kind: 'tokenFile', tokenFile });
}

// ---- reading and merging kubeconfig files ----

/** A named entry's body, with the file that defined it: its relative paths resolve against that file's folder. */
interface Named {
  body: Record<string, unknown>;
  file: string;
}

interface MergedKubeconfig {
  files: string[];
  clusters: Map<string, Named>;
  users: Map<string, Named>;
  contexts: Map<string, Named>;
  currentContext?: string;
}

/** client-go's merge: the first file that defines a name wins, current-context comes from the first file that sets it. */
function mergeKubeconfigs(files: string[]): MergedKubeconfig {
  const merged: MergedKubeconfig = { files, clusters: new Map(), users: new Map(), contexts: new Map() };
  for (const file of files) {
    const doc = readKubeconfig(file);
    const where = `kubeconfig ${file}`;
    addNamed(merged.clusters, doc, 'clusters', 'cluster', file);
    addNamed(merged.users, doc, 'users', 'user', file);
    addNamed(merged.contexts, doc, 'contexts', 'context', file);
    merged.currentContext ??= stringField(doc, 'current-context', where);
  }
  return merged;
}

function readKubeconfig(file: string): Record<string, unknown> {
  const where = `kubeconfig ${file}`;
  const text = readReferenced(file, 'the file', where);
  let doc: unknown;
  try {
    // CORE_SCHEMA: no timestamps or other YAML 1.1 types that client-go's YAML→JSON step would not produce either.
    doc = yaml.load(text, { schema: yaml.CORE_SCHEMA });
  } catch (err) {
    // js-yaml's own message quotes the offending lines, which may hold a token: keep the reason and position only.
    if (err instanceof yaml.YAMLException) {
      throw new KubeConfigError(`${where}: not valid YAML: ${err.reason} at line ${err.mark.line + 1}, column ${err.mark.column + 1}`);
    }
    throw new KubeConfigError(`${where}: not valid YAML`);
  }
  if (doc === undefined || doc === null) return {}; // an empty file is an empty config, as in client-go
  if (!isRecord(doc)) throw new KubeConfigError(`${where}: not a kubeconfig (the top level is not a mapping)`);
  return doc;
}

function addNamed(into: Map<string, Named>, doc: Record<string, unknown>, listKey: string, bodyKey: string, file: string): void {
  const list = doc[listKey];
  if (list === undefined || list === null) return;
  const where = `kubeconfig ${file}`;
  if (!Array.isArray(list)) throw new KubeConfigError(`${where}: ${listKey} is not a list`);
  list.forEach((item: unknown, i) => {
    if (!isRecord(item) || typeof item.name !== 'string' || item.name === '') {
      throw new KubeConfigError(`${where}: ${listKey}[${i}] has no name`);
    }
    const body = item[bodyKey] ?? {};
    if (!isRecord(body)) throw new KubeConfigError(`${where}: ${listKey}[${i}] ("${item.name}") has no ${bodyKey} mapping`);
    if (!into.has(item.name)) into.set(item.name, { body, file });
  });
}

function accessFromKubeconfig(merged: MergedKubeconfig, contextName: string | undefined, now: Clock): ClusterAccess {
  const label = `kubeconfig ${merged.files.join(', ')}`;
  const name = contextName || merged.currentContext;
  if (!name) throw new KubeConfigError(`${label}: no context given and no current-context set`);
  const context = merged.contexts.get(name);
  if (!context) throw new KubeConfigError(`${label}: context "${name}" not found`);
  const source = `${context.file} (context "${name}")`;
  const where = `kubeconfig ${source}`;

  const clusterName = stringField(context.body, 'cluster', where);
  if (!clusterName) throw new KubeConfigError(`${where}: the context names no cluster`);
  const cluster = merged.clusters.get(clusterName);
  if (!cluster) throw new KubeConfigError(`${where}: cluster "${clusterName}" not found`);
  // client-go allows a context without a user (no credentials); a named user must exist.
  const userName = stringField(context.body, 'user', where);
  const user = userName === undefined ? undefined : merged.users.get(userName);
  if (userName !== undefined && !user) throw new KubeConfigError(`${where}: user "${userName}" not found`);

  const endpoint = clusterEndpoint(cluster, `${where}, cluster "${clusterName}"`);
  const credentials: UserCredentials = user ? userCredentials(user, `${where}, user "${userName}"`, now) : { auth: { kind: 'none' } };
  const identity = definedOnly({ ...endpoint.tls, cert: credentials.cert, key: credentials.key });
  return new Access(endpoint.server, stringField(context.body, 'namespace', where), source, identity, credentials.auth);
}

function clusterEndpoint(cluster: Named, where: string): { server: string; tls: TlsIdentity } {
  const body = cluster.body;
  if (stringField(body, 'proxy-url', where)) throw new KubeConfigError(`${where}: proxy-url is not supported`);
  const server = parseServer(stringField(body, 'server', where), where);
  const insecure = booleanField(body, 'insecure-skip-tls-verify', where) ?? false;
  const ca = pemField(body, 'certificate-authority-data', 'certificate-authority', path.dirname(cluster.file), where);
  // client-go refuses this pair too: a CA that is then not checked is a config mistake, not a choice.
  if (insecure && ca) throw new KubeConfigError(`${where}: insecure-skip-tls-verify cannot be combined with a certificate authority`);
  return { server, tls: definedOnly({ ca, rejectUnauthorized: !insecure, servername: stringField(body, 'tls-server-name', where) }) };
}

/** The server URL as written, checked, without its trailing slash (a path prefix stays). */
function parseServer(raw: string | undefined, where: string): string {
  if (!raw) throw new KubeConfigError(`${where}: no server`);
  // The raw value is not quoted in messages: a URL can carry user:password@.
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new KubeConfigError(`${where}: server is not a URL`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new KubeConfigError(`${where}: server must start with https:// (or http:// for a plain local server)`);
  }
  if (url.username || url.password) throw new KubeConfigError(`${where}: server URL carries credentials; put them in the user entry`);
  if (url.search || url.hash) throw new KubeConfigError(`${where}: server URL has a query or fragment`);
  // The raw text rather than url.href: URL would drop an explicit default port (:443) and add a trailing slash.
  return raw.replace(/\/+$/, '');
}

type Auth =
  | { kind: 'none' }
  | { kind: 'header'; value: string }
  | { kind: 'tokenFile'; tokenFile: TokenFile }
  | { kind: 'exec'; plugin: ExecPlugin };

interface UserCredentials {
  cert?: string;
  key?: string;
  auth: Auth;
}

function userCredentials(user: Named, where: string, now: Clock): UserCredentials {
  const body = user.body;
  const dir = path.dirname(user.file);
  const provider = body['auth-provider'];
  if (provider !== undefined && provider !== null) {
    const providerName = isRecord(provider) && typeof provider.name === 'string' ? provider.name : 'unnamed';
    throw new KubeConfigError(
      `${where}: auth-provider "${providerName}" is not supported (a legacy plugin); use an exec credential plugin such as gke-gcloud-auth-plugin or kubelogin`,
    );
  }
  for (const field of IMPERSONATION_FIELDS) {
    const value = body[field];
    if (value !== undefined && value !== null && value !== '') throw new KubeConfigError(`${where}: impersonation (${field}) is not supported`);
  }
  const cert = pemField(body, 'client-certificate-data', 'client-certificate', dir, where);
  const key = pemField(body, 'client-key-data', 'client-key', dir, where);
  if (!cert !== !key) throw new KubeConfigError(`${where}: a client certificate and a client key must be given together`);

  const token = stringField(body, 'token', where);
  const tokenFile = stringField(body, 'tokenFile', where);
  const username = stringField(body, 'username', where);
  const password = stringField(body, 'password', where);
  const hasToken = token !== undefined || tokenFile !== undefined;
  const hasBasic = username !== undefined || password !== undefined;
  if (hasToken && hasBasic) throw new KubeConfigError(`${where}: more than one authentication method (token and username/password); keep one`);

  let auth: Auth = { kind: 'none' };
  // client-go: the last read of tokenFile takes precedence over token.
  if (tokenFile !== undefined) auth = { kind: 'tokenFile', tokenFile: new TokenFile(path.resolve(dir, tokenFile), now, where) };
  else if (token !== undefined) auth = { kind: 'header', value: `Bearer ${token}` };
  else if (hasBasic) auth = { kind: 'header', value: `Basic ${Buffer.from(`${username ?? ''}:${password ?? ''}`).toString('base64')}` };
  // client-go does not run the exec plugin when the user already has a token, basic auth or a client certificate.
  else if (!cert && body.exec !== undefined && body.exec !== null) auth = { kind: 'exec', plugin: new ExecPlugin(parseExec(body.exec, dir, where), now, where) };
  return { cert, key, auth };
}

/** A PEM from a base64 `*-data` field (which wins, as in client-go) or from a file path relative to the kubeconfig. */
function pemField(body: Record<string, unknown>, dataKey: string, fileKey: string, dir: string, where: string): string | undefined {
  const data = stringField(body, dataKey, where);
  if (data !== undefined) {
    const pem = Buffer.from(data, 'base64').toString('utf8');
    if (!isPem(pem)) throw new KubeConfigError(`${where}: ${dataKey} is not base64-encoded PEM`);
    return pem;
  }
  const file = stringField(body, fileKey, where);
  return file === undefined ? undefined : readPemFile(path.resolve(dir, file), fileKey, where);
}

function readPemFile(file: string, field: string, where: string): string {
  const pem = readReferenced(file, field, where);
  if (!isPem(pem)) throw new KubeConfigError(`${where}: ${field} ${file} holds no PEM`);
  return pem;
}

function isPem(text: string): boolean {
  return text.includes('-----BEGIN ');
}

function readReferenced(file: string, field: string, where: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new KubeConfigError(`${where}: cannot read ${field} ${file} (${errorCode(err)})`);
  }
}

function readOptional(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

/** A string field; absent, null and '' all mean unset, as Go's zero value does. */
function stringField(body: Record<string, unknown>, key: string, where: string): string | undefined {
  const value = body[key];
  if (value === undefined || value === null || value === '') return undefined;
  if (typeof value !== 'string') throw new KubeConfigError(`${where}: ${key} is not a string`);
  return value;
}

function booleanField(body: Record<string, unknown>, key: string, where: string): boolean | undefined {
  const value = body[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'boolean') throw new KubeConfigError(`${where}: ${key} is not true or false`);
  return value;
}

/** Drops keys whose value is undefined, so an identity lists only what the config gave. */
function definedOnly<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function errorCode(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' ? code : 'unreadable';
}

// ---- credentials that change over time ----

/** A bearer token read from a file, re-read at most once a minute so that a rotated (bound) token is picked up. */
class TokenFile {
  private token: string;
  private readAt: number;
  private rereading: Promise<string> | undefined;

  constructor(
    private readonly file: string,
    private readonly now: Clock,
    where: string,
  ) {
    const token = readReferenced(file, 'token file', where).trim();
    if (!token) throw new KubeConfigError(`${where}: token file ${file} is empty`);
    this.token = token;
    this.readAt = now();
  }

  current(): Promise<string> {
    if (this.now() - this.readAt < TOKEN_FILE_REREAD_MS) return Promise.resolve(this.token);
    this.rereading ??= this.reread().finally(() => (this.rereading = undefined));
    return this.rereading;
  }

  /** Re-read on the next call (after a 401 the token may have rotated already). */
  expire(): void {
    this.readAt = -Infinity;
  }

  private async reread(): Promise<string> {
    // As client-go's cachingTokenSource: a failed or empty read (a rotation half done) keeps the last token,
    // and the next call tries again.
    const token = (await readFile(this.file, 'utf8').catch(() => '')).trim();
    if (token) {
      this.token = token;
      this.readAt = this.now();
    }
    return this.token;
  }
}

interface ExecConfig {
  command: string;
  args: string[];
  env: Record<string, string>;
  apiVersion: string;
  installHint?: string;
}

interface ExecCredential {
  token?: string;
  cert?: string;
  key?: string;
  /** ms since the epoch; undefined: valid until invalidated. */
  expiresAt?: number;
}

function parseExec(raw: unknown, dir: string, where: string): ExecConfig {
  if (!isRecord(raw)) throw new KubeConfigError(`${where}: exec is not a mapping`);
  const apiVersion = stringField(raw, 'apiVersion', where);
  if (!apiVersion || !EXEC_API_VERSIONS.has(apiVersion)) {
    throw new KubeConfigError(`${where}: exec apiVersion "${apiVersion ?? ''}" is not supported (use ${[...EXEC_API_VERSIONS].join(' or ')})`);
  }
  let command = stringField(raw, 'command', where);
  if (!command) throw new KubeConfigError(`${where}: exec has no command`);
  // client-go resolves a command with a path separator against the kubeconfig's folder; a bare name goes to $PATH.
  if (command.includes('/')) command = path.resolve(dir, command);
  if (raw.interactiveMode === 'Always') throw new KubeConfigError(`${where}: exec plugin needs an interactive terminal (interactiveMode: Always), which the operator has not`);
  const args = raw.args ?? [];
  if (!Array.isArray(args) || !args.every((a) => typeof a === 'string')) throw new KubeConfigError(`${where}: exec args is not a list of strings`);
  const env: Record<string, string> = {};
  const envList = raw.env ?? [];
  if (!Array.isArray(envList)) throw new KubeConfigError(`${where}: exec env is not a list`);
  for (const entry of envList) {
    if (!isRecord(entry) || typeof entry.name !== 'string' || typeof entry.value !== 'string') {
      throw new KubeConfigError(`${where}: exec env entries need a name and a string value`);
    }
    env[entry.name] = entry.value;
  }
  return { command, args, env, apiVersion, installHint: stringField(raw, 'installHint', where) };
}

/** A client-go exec credential plugin: run on demand, its credential cached until shortly before it expires. */
class ExecPlugin {
  private cached: ExecCredential | undefined;
  private running: Promise<ExecCredential> | undefined;

  constructor(
    private readonly config: ExecConfig,
    private readonly now: Clock,
    private readonly where: string,
  ) {}

  credential(): Promise<ExecCredential> {
    const cached = this.cached;
    if (cached && (cached.expiresAt === undefined || this.now() < cached.expiresAt - EXEC_EXPIRY_MARGIN_MS)) return Promise.resolve(cached);
    // Concurrent callers share one run; a failed run is not cached, so the next call tries again.
    this.running ??= this.run()
      .then((credential) => (this.cached = credential))
      .finally(() => (this.running = undefined));
    return this.running;
  }

  invalidate(): void {
    this.cached = undefined;
  }

  private run(): Promise<ExecCredential> {
    const { command, args, env, apiVersion } = this.config;
    const execInfo = JSON.stringify({ apiVersion, kind: 'ExecCredential', spec: { interactive: false } });
    return new Promise((resolve, reject) => {
      const child = execFile(
        command,
        args,
        // A hung plugin must not hold every API request: it is killed after EXEC_TIMEOUT_MS.
        { env: { ...process.env, ...env, KUBERNETES_EXEC_INFO: execInfo }, encoding: 'utf8', maxBuffer: 1024 * 1024, timeout: EXEC_TIMEOUT_MS },
        (err, stdout, stderr) => {
          if (err) reject(this.failure(err, stderr));
          else {
            try {
              resolve(this.parse(stdout));
            } catch (parseErr) {
              reject(parseErr);
            }
          }
        },
      );
      child.stdin?.end(); // not interactive: a plugin that prompts gets end of input, not a hang
    });
  }

  /** Exit code and the first line of stderr; never stdout (it may hold a token) nor err.message (it quotes the args). */
  private failure(err: ExecFileException, stderr: string): KubeConfigError {
    const plugin = `${this.where}: exec plugin "${this.config.command}"`;
    if (err.code === 'ENOENT') {
      const hint = this.config.installHint ? `: ${this.config.installHint.trim()}` : '';
      return new KubeConfigError(`${plugin} not found${hint}`);
    }
    const firstLine = stderr.split('\n').map((line) => line.trim()).find((line) => line !== '') ?? '';
    const said = firstLine ? `: ${firstLine.slice(0, 300)}` : '';
    if (typeof err.code === 'number') return new KubeConfigError(`${plugin} failed with exit code ${err.code}${said}`);
    if (err.killed) return new KubeConfigError(`${plugin} did not finish within ${EXEC_TIMEOUT_MS / 1000} s${said}`);
    if (err.signal) return new KubeConfigError(`${plugin} was killed by ${err.signal}${said}`);
    return new KubeConfigError(`${plugin} could not run (${err.code ?? 'unknown error'})${said}`);
  }

  private parse(stdout: string): ExecCredential {
    const plugin = `${this.where}: exec plugin "${this.config.command}"`;
    let out: unknown;
    try {
      out = JSON.parse(stdout);
    } catch {
      throw new KubeConfigError(`${plugin} printed no valid JSON`);
    }
    if (!isRecord(out) || out.kind !== 'ExecCredential') throw new KubeConfigError(`${plugin} printed no ExecCredential`);
    if (out.apiVersion !== this.config.apiVersion) throw new KubeConfigError(`${plugin} answered with another apiVersion than ${this.config.apiVersion}`);
    const status = out.status;
    if (!isRecord(status)) throw new KubeConfigError(`${plugin} returned no status`);
    const token = optionalString(status.token);
    const cert = optionalString(status.clientCertificateData);
    const key = optionalString(status.clientKeyData);
    if (!cert !== !key) throw new KubeConfigError(`${plugin} returned only one of clientCertificateData and clientKeyData`);
    if (!token && !cert) throw new KubeConfigError(`${plugin} returned neither a token nor a client certificate`);
    const expiration = optionalString(status.expirationTimestamp);
    const expiresAt = expiration === undefined ? undefined : Date.parse(expiration);
    if (expiresAt !== undefined && Number.isNaN(expiresAt)) throw new KubeConfigError(`${plugin} returned an expirationTimestamp that is not RFC 3339`);
    return { token, cert, key, expiresAt };
  }
}

function optionalString(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined;
}

class Access implements ClusterAccess {
  constructor(
    readonly server: string,
    readonly namespace: string | undefined,
    readonly source: string,
    private readonly identity: TlsIdentity,
    private readonly auth: Auth,
  ) {}

  async tls(): Promise<TlsIdentity> {
    if (this.auth.kind !== 'exec') return { ...this.identity };
    const credential = await this.auth.plugin.credential();
    return credential.cert ? { ...this.identity, cert: credential.cert, key: credential.key } : { ...this.identity };
  }

  async authorization(): Promise<string | undefined> {
    switch (this.auth.kind) {
      case 'none':
        return undefined;
      case 'header':
        return this.auth.value;
      case 'tokenFile':
        return `Bearer ${await this.auth.tokenFile.current()}`;
      case 'exec': {
        const { token } = await this.auth.plugin.credential();
        return token === undefined ? undefined : `Bearer ${token}`;
      }
    }
  }

  invalidate(): void {
    if (this.auth.kind === 'exec') this.auth.plugin.invalidate();
    else if (this.auth.kind === 'tokenFile') this.auth.tokenFile.expire();
  }
}
