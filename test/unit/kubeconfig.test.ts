// The kubeconfig loader that replaces @kubernetes/client-node's KubeConfig: real files in a temporary folder,
// real exec plugins (small shell scripts), an injected clock for the token-file and exec-credential caches.
// Every error is also checked for the fixture's secrets: a message or a source must never carry one.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { KubeConfigError, clusterAccessFromFile, inClusterAccess, loadClusterAccess, type ClusterAccess } from '../../src/k8s/kubeconfig.js';

const TOKEN = 'tok-3f9a-must-stay-home';
const PASSWORD = 'pw-77c1-must-stay-home';
const EXEC_TOKEN = 'exec-tok-must-stay-home';
const CA_PEM = '-----BEGIN CERTIFICATE-----\nCA-BODY-one\n-----END CERTIFICATE-----\n';
const CA2_PEM = '-----BEGIN CERTIFICATE-----\nCA-BODY-two\n-----END CERTIFICATE-----\n';
const CERT_PEM = '-----BEGIN CERTIFICATE-----\nCERT-BODY-must-stay-home\n-----END CERTIFICATE-----\n';
const KEY_PEM = '-----BEGIN PRIVATE KEY-----\nKEY-BODY-must-stay-home\n-----END PRIVATE KEY-----\n';
const SECRETS = [TOKEN, PASSWORD, EXEC_TOKEN, 'CERT-BODY', 'KEY-BODY', b64(CERT_PEM), b64(KEY_PEM), b64(`admin:${PASSWORD}`)];
const EXEC_V1 = 'client.authentication.k8s.io/v1';
const EXPIRES = '2030-01-01T00:00:00Z';

function b64(text: string): string {
  return Buffer.from(text).toString('base64');
}

function assertNoSecret(text: string): void {
  for (const secret of SECRETS) assert.equal(text.includes(secret), false, `a fixture secret leaked into: ${text.replaceAll(secret, '<secret>')}`);
}

function configError(fn: () => unknown, pattern: RegExp): KubeConfigError {
  let thrown: unknown;
  try {
    fn();
  } catch (err) {
    thrown = err;
  }
  assert.ok(thrown instanceof KubeConfigError, `expected a KubeConfigError, got ${String(thrown)}`);
  assert.match(thrown.message, pattern);
  assertNoSecret(thrown.message);
  return thrown;
}

async function configRejection(promise: Promise<unknown>, pattern: RegExp): Promise<KubeConfigError> {
  const thrown = await promise.then(
    () => undefined,
    (err: unknown) => err,
  );
  assert.ok(thrown instanceof KubeConfigError, `expected a KubeConfigError, got ${String(thrown)}`);
  assert.match(thrown.message, pattern);
  assertNoSecret(thrown.message);
  return thrown;
}

/** A fresh temporary folder per test (the hooks are inside the describes below, not at the root). */
let dir: string;

function write(rel: string, content: string, mode = 0o600): string {
  const file = path.join(dir, rel);
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, content, { mode });
  return file;
}

/** JSON is YAML: most fixtures are written as objects. */
function writeConfig(rel: string, doc: object): string {
  return write(rel, JSON.stringify(doc, null, 2));
}

/** A kubeconfig with one context "ctx" → cluster "c" (+ user "u" when given). */
function oneContext(cluster: object, user?: object, namespace?: string): object {
  return {
    apiVersion: 'v1',
    kind: 'Config',
    'current-context': 'ctx',
    clusters: [{ name: 'c', cluster }],
    users: user ? [{ name: 'u', user }] : [],
    contexts: [{ name: 'ctx', context: { cluster: 'c', user: user ? 'u' : undefined, namespace } }],
  };
}

const SERVER = { server: 'https://127.0.0.1:6443' };

function fromConfig(cluster: object, user?: object, now?: () => number): ClusterAccess {
  return clusterAccessFromFile(writeConfig('config', oneContext(cluster, user)), undefined, { now });
}

describe('kubeconfig loader', () => {
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'kubeconfig-test-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  describe('the TLS identity and server', () => {
    it('reads *-data fields as base64 and file fields relative to the kubeconfig folder', async () => {
      write('conf/ca.pem', CA_PEM);
      write('pki/client.crt', CERT_PEM);
      const keyFile = write('pki/client.key', KEY_PEM);
      const file = write(
        'conf/config',
        `apiVersion: v1
kind: Config
current-context: files
clusters:
- name: file-cluster
  cluster:
    server: https://k8s.example:6443
    certificate-authority: ca.pem
- name: data-cluster
  cluster:
    server: https://k8s.example:6443
    certificate-authority-data: ${b64(CA2_PEM)}
users:
- name: file-user
  user:
    client-certificate: ../pki/client.crt
    client-key: ${keyFile}
- name: data-user
  user:
    client-certificate-data: ${b64(CERT_PEM)}
    client-key-data: ${b64(KEY_PEM)}
contexts:
- name: files
  context: {cluster: file-cluster, user: file-user}
- name: data
  context: {cluster: data-cluster, user: data-user, namespace: team-a}
`,
      );
      const files = clusterAccessFromFile(file);
      assert.deepEqual(await files.tls(), { ca: CA_PEM, cert: CERT_PEM, key: KEY_PEM, rejectUnauthorized: true });
      assert.equal(files.server, 'https://k8s.example:6443');
      assert.equal(files.namespace, undefined);
      assert.equal(files.source, `${file} (context "files")`);
      assert.equal(await files.authorization(), undefined);

      const data = clusterAccessFromFile(file, 'data');
      assert.deepEqual(await data.tls(), { ca: CA2_PEM, cert: CERT_PEM, key: KEY_PEM, rejectUnauthorized: true });
      assert.equal(data.namespace, 'team-a');
      assertNoSecret(data.source);
    });

    it('lets a *-data field win over its file field, as client-go does', async () => {
      write('ca.pem', CA_PEM);
      const access = fromConfig({ ...SERVER, 'certificate-authority': 'ca.pem', 'certificate-authority-data': b64(CA2_PEM) });
      assert.equal((await access.tls()).ca, CA2_PEM);
    });

    it('uses the system CAs and verifies when the cluster names no CA', async () => {
      assert.deepEqual(await fromConfig(SERVER).tls(), { rejectUnauthorized: true });
    });

    it('turns verification off only with insecure-skip-tls-verify: true, and refuses it beside a CA', async () => {
      assert.deepEqual(await fromConfig({ ...SERVER, 'insecure-skip-tls-verify': true }).tls(), { rejectUnauthorized: false });
      assert.deepEqual(await fromConfig({ ...SERVER, 'insecure-skip-tls-verify': false }).tls(), { rejectUnauthorized: true });
      configError(
        () => fromConfig({ ...SERVER, 'insecure-skip-tls-verify': true, 'certificate-authority-data': b64(CA_PEM) }),
        /cluster "c": insecure-skip-tls-verify cannot be combined with a certificate authority/,
      );
    });

    it('passes tls-server-name as servername', async () => {
      const access = fromConfig({ ...SERVER, 'tls-server-name': 'kubernetes.default.svc', 'certificate-authority-data': b64(CA_PEM) });
      assert.deepEqual(await access.tls(), { ca: CA_PEM, rejectUnauthorized: true, servername: 'kubernetes.default.svc' });
    });

    it('drops the trailing slash of the server, keeps a path prefix, and allows http:// and IPv6 literals', () => {
      const cases: Array<[string, string]> = [
        ['https://k8s.example:6443/', 'https://k8s.example:6443'],
        ['https://rancher.example/k8s/clusters/c-42/', 'https://rancher.example/k8s/clusters/c-42'],
        ['http://127.0.0.1:8080', 'http://127.0.0.1:8080'],
        ['https://[::1]:6443/', 'https://[::1]:6443'],
      ];
      for (const [server, expected] of cases) assert.equal(fromConfig({ server }).server, expected, server);
    });
  });

  describe('the Authorization header', () => {
    it('sends a static token as Bearer', async () => {
      const access = fromConfig(SERVER, { token: TOKEN });
      assert.equal(await access.authorization(), `Bearer ${TOKEN}`);
      assertNoSecret(access.source);
    });

    it('re-reads tokenFile (relative to the kubeconfig) only once 60 s have passed, or after invalidate()', async () => {
      write('secrets/token', 'first-token\n');
      let t = 5_000_000;
      const access = fromConfig(SERVER, { tokenFile: 'secrets/token', token: 'ignored-static-token' }, () => t);
      assert.equal(await access.authorization(), 'Bearer first-token', 'tokenFile wins over token, trimmed');

      write('secrets/token', 'second-token\n');
      t += 59_999;
      assert.equal(await access.authorization(), 'Bearer first-token', 'not re-read within 60 s');
      t += 1;
      assert.equal(await access.authorization(), 'Bearer second-token', 're-read at 60 s');

      write('secrets/token', 'third-token');
      assert.equal(await access.authorization(), 'Bearer second-token');
      access.invalidate();
      assert.equal(await access.authorization(), 'Bearer third-token', 're-read right after invalidate()');
    });

    it('keeps the last token when a re-read finds the file empty (a rotation half done)', async () => {
      write('token', 'first-token');
      let t = 0;
      const access = fromConfig(SERVER, { tokenFile: 'token' }, () => t);
      write('token', '');
      t += 60_000;
      assert.equal(await access.authorization(), 'Bearer first-token');
      write('token', 'second-token');
      assert.equal(await access.authorization(), 'Bearer second-token', 'the failed re-read is retried on the next call');
    });

    it('sends username and password as Basic', async () => {
      const access = fromConfig(SERVER, { username: 'admin', password: PASSWORD });
      assert.equal(await access.authorization(), `Basic ${b64(`admin:${PASSWORD}`)}`);
      assert.equal(Buffer.from((await access.authorization())!.slice('Basic '.length), 'base64').toString(), `admin:${PASSWORD}`);
    });

    it('sends nothing for a context without a user', async () => {
      assert.equal(await fromConfig(SERVER).authorization(), undefined);
    });

    it('does not run the exec plugin when the user already has a token (client-go)', async () => {
      const access = fromConfig(SERVER, { token: TOKEN, exec: { apiVersion: EXEC_V1, command: './no-such-plugin' } });
      assert.equal(await access.authorization(), `Bearer ${TOKEN}`);
      assert.deepEqual(await access.tls(), { rejectUnauthorized: true });
    });
  });

  describe('loadClusterAccess finds the config as client-go does', () => {
    it('merges the $KUBECONFIG list: the first file that defines a name wins, current-context from the first that sets it', async () => {
      const home = path.join(dir, 'home-without-config');
      const a = writeConfig('a/config', {
        clusters: [{ name: 'shared', cluster: { server: 'https://a.example' } }],
        users: [{ name: 'shared', user: { token: TOKEN } }],
      });
      write('b/ca.pem', CA_PEM);
      const b = writeConfig('b/config', {
        'current-context': 'ctx-b',
        clusters: [
          { name: 'shared', cluster: { server: 'https://b.example' } },
          { name: 'b-only', cluster: { server: 'https://b-only.example', 'certificate-authority': 'ca.pem' } },
        ],
        users: [{ name: 'shared', user: { username: 'admin', password: PASSWORD } }],
        contexts: [
          { name: 'ctx-b', context: { cluster: 'shared', user: 'shared', namespace: 'from-b' } },
          { name: 'ctx-other', context: { cluster: 'b-only' } },
        ],
      });
      const c = writeConfig('c/config', {
        'current-context': 'ctx-c',
        contexts: [{ name: 'ctx-b', context: { cluster: 'shared', namespace: 'from-c' } }],
      });
      const missing = path.join(dir, 'missing/config');

      const access = loadClusterAccess({ env: { KUBECONFIG: [a, missing, b, c].join(':') }, home });
      assert.equal(access.server, 'https://a.example', 'cluster "shared" from a, the first file defining it');
      assert.equal(await access.authorization(), `Bearer ${TOKEN}`, 'user "shared" from a');
      assert.equal(access.namespace, 'from-b', 'context "ctx-b" from b');
      assert.equal(access.source, `${b} (context "ctx-b")`);

      // A file that only sets current-context; b's relative CA path resolves against b's folder, not the first file's.
      const pick = writeConfig('pick/config', { 'current-context': 'ctx-other' });
      const other = loadClusterAccess({ env: { KUBECONFIG: `${pick}:${a}:${b}` }, home });
      assert.equal(other.server, 'https://b-only.example');
      assert.equal((await other.tls()).ca, CA_PEM);
      assert.equal(await other.authorization(), undefined);
    });

    it('refuses a $KUBECONFIG whose files do not exist', () => {
      const missing = path.join(dir, 'nowhere/config');
      configError(() => loadClusterAccess({ env: { KUBECONFIG: missing }, home: dir }), /none of the files in \$KUBECONFIG exists: .*nowhere\/config/);
    });

    it('falls back to ~/.kube/config (an empty $KUBECONFIG counts as unset), even inside a pod', () => {
      const home = path.join(dir, 'home');
      writeConfig('home/.kube/config', oneContext({ server: 'https://from-home.example' }));
      const env = { KUBECONFIG: '', KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443' };
      const access = loadClusterAccess({ env, home, serviceAccountDir: path.join(dir, 'sa') });
      assert.equal(access.server, 'https://from-home.example');
      assert.equal(access.source, `${path.join(home, '.kube/config')} (context "ctx")`);
    });

    it('falls back to in-cluster without a kubeconfig, and otherwise says what it looked for', async () => {
      const serviceAccountDir = path.join(dir, 'sa');
      write('sa/token', TOKEN);
      write('sa/ca.crt', CA_PEM);
      const env = { KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443' };
      const access = loadClusterAccess({ env, home: dir, serviceAccountDir });
      assert.equal(access.source, 'in-cluster');
      assert.equal(access.server, 'https://10.96.0.1:443');
      assert.equal(await access.authorization(), `Bearer ${TOKEN}`);

      configError(() => loadClusterAccess({ env: {}, home: dir, serviceAccountDir }), /no cluster configuration: \$KUBECONFIG is unset, .*\.kube\/config does not exist/);
    });
  });

  describe('in-cluster', () => {
    it('brackets an IPv6 service host, reads ca.crt and the namespace, and picks up a rotated token after 60 s', async () => {
      const serviceAccountDir = path.join(dir, 'sa');
      write('sa/token', 'bound-token-1\n');
      write('sa/ca.crt', CA_PEM);
      write('sa/namespace', 'dbcred-system\n');
      let t = 1_000;
      const access = inClusterAccess({ KUBERNETES_SERVICE_HOST: 'fd00:10:96::1', KUBERNETES_SERVICE_PORT: '443' }, serviceAccountDir, { now: () => t });
      assert.equal(access.server, 'https://[fd00:10:96::1]:443');
      assert.equal(access.namespace, 'dbcred-system');
      assert.equal(access.source, 'in-cluster');
      assert.deepEqual(await access.tls(), { ca: CA_PEM, rejectUnauthorized: true });
      assert.equal(await access.authorization(), 'Bearer bound-token-1');

      write('sa/token', 'bound-token-2\n');
      t += 30_000;
      assert.equal(await access.authorization(), 'Bearer bound-token-1');
      t += 30_000;
      assert.equal(await access.authorization(), 'Bearer bound-token-2');
    });

    it('has no namespace without the namespace file', () => {
      write('sa/token', TOKEN);
      write('sa/ca.crt', CA_PEM);
      const access = inClusterAccess({ KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443' }, path.join(dir, 'sa'));
      assert.equal(access.namespace, undefined);
      assert.equal(access.server, 'https://10.96.0.1:443');
    });

    it('refuses a missing token file, a missing ca.crt, or missing service variables', () => {
      const serviceAccountDir = path.join(dir, 'sa');
      const env = { KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443' };
      write('sa/ca.crt', CA_PEM);
      configError(() => inClusterAccess(env, serviceAccountDir), /^in-cluster config: cannot read token file .*sa\/token \(ENOENT\)$/);
      write('sa/token', TOKEN);
      rmSync(path.join(serviceAccountDir, 'ca.crt'));
      configError(() => inClusterAccess(env, serviceAccountDir), /cannot read ca\.crt .*\(ENOENT\)/);
      configError(() => inClusterAccess({ KUBERNETES_SERVICE_HOST: '10.96.0.1' }, serviceAccountDir), /KUBERNETES_SERVICE_PORT must both be set/);
    });
  });

  describe('exec credential plugins', function () {
    this.timeout(20_000);

    function plugin(body: string): void {
      write('plugin.sh', `#!/bin/sh\n${body}\n`, 0o755);
    }

    /** Each run appends a line to $RUNS; the token says which run made it. */
    function countingPlugin(status: string): void {
      plugin(`echo run >> "$RUNS"
n=$(wc -l < "$RUNS"); n=$((n))
printf '{"apiVersion":"${EXEC_V1}","kind":"ExecCredential","status":${status}}' "$n"`);
    }

    function runs(): number {
      const file = path.join(dir, 'runs');
      return existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean).length : 0;
    }

    function execUser(extra: object = {}): object {
      return { exec: { apiVersion: EXEC_V1, command: './plugin.sh', env: [{ name: 'RUNS', value: path.join(dir, 'runs') }], ...extra } };
    }

    it('sends the token and caches it until 10 s before expirationTimestamp', async () => {
      countingPlugin(`{"token":"exec-tok-%s","expirationTimestamp":"${EXPIRES}"}`);
      const expires = Date.parse(EXPIRES);
      let t = expires - 60_000;
      const access = fromConfig(SERVER, execUser(), () => t);
      assert.equal(runs(), 0, 'nothing runs at load time');
      assert.equal(await access.authorization(), 'Bearer exec-tok-1');
      t = expires - 10_001;
      assert.equal(await access.authorization(), 'Bearer exec-tok-1');
      assert.deepEqual(await access.tls(), { rejectUnauthorized: true }, 'a token-only credential adds no client cert');
      assert.equal(runs(), 1);
      t = expires - 10_000;
      assert.equal(await access.authorization(), 'Bearer exec-tok-2', 're-run 10 s before expiry');
      assert.equal(runs(), 2);
    });

    it('lets concurrent callers share one run', async () => {
      countingPlugin(`{"token":"exec-tok-%s","expirationTimestamp":"${EXPIRES}"}`);
      const access = fromConfig(SERVER, execUser(), () => Date.parse(EXPIRES) - 60_000);
      const headers = await Promise.all([access.authorization(), access.authorization(), access.tls(), access.authorization()]);
      assert.deepEqual([headers[0], headers[1], headers[3]], ['Bearer exec-tok-1', 'Bearer exec-tok-1', 'Bearer exec-tok-1']);
      assert.equal(runs(), 1);
    });

    it('keeps a credential without expirationTimestamp until invalidate()', async () => {
      countingPlugin('{"token":"exec-tok-%s"}');
      let t = 0;
      const access = fromConfig(SERVER, execUser(), () => t);
      assert.equal(await access.authorization(), 'Bearer exec-tok-1');
      t += 365 * 24 * 3600 * 1000;
      assert.equal(await access.authorization(), 'Bearer exec-tok-1');
      access.invalidate();
      assert.equal(await access.authorization(), 'Bearer exec-tok-2', 'after a 401 the plugin runs again');
      assert.equal(runs(), 2);
    });

    it('hands a client certificate to tls() and sends no Authorization header', async () => {
      plugin(`cat <<'EOF'
{"apiVersion":"${EXEC_V1}","kind":"ExecCredential","status":{
 "clientCertificateData":${JSON.stringify(CERT_PEM)},
 "clientKeyData":${JSON.stringify(KEY_PEM)}}}
EOF`);
      const access = fromConfig({ ...SERVER, 'certificate-authority-data': b64(CA_PEM) }, execUser());
      assert.deepEqual(await access.tls(), { ca: CA_PEM, cert: CERT_PEM, key: KEY_PEM, rejectUnauthorized: true });
      assert.equal(await access.authorization(), undefined);
    });

    it('passes process.env, exec.env, args and KUBERNETES_EXEC_INFO; a bare command is found on $PATH', async () => {
      const out = path.join(dir, 'seen');
      plugin(`printf '%s\\n%s\\n%s\\n%s\\n' "$KUBERNETES_EXEC_INFO" "$FROM_KUBECONFIG" "$DBCRED_TEST_FROM_PROCESS" "$1|$2" > "${out}"
printf '{"apiVersion":"client.authentication.k8s.io/v1beta1","kind":"ExecCredential","status":{"token":"t"}}'`);
      process.env.DBCRED_TEST_FROM_PROCESS = 'inherited';
      try {
        const exec = {
          apiVersion: 'client.authentication.k8s.io/v1beta1',
          command: 'sh',
          args: [path.join(dir, 'plugin.sh'), 'get-token', '--cluster=dev'],
          env: [{ name: 'FROM_KUBECONFIG', value: 'configured' }],
        };
        assert.equal(await fromConfig(SERVER, { exec }).authorization(), 'Bearer t');
      } finally {
        delete process.env.DBCRED_TEST_FROM_PROCESS;
      }
      const [execInfo, fromKubeconfig, fromProcess, args] = readFileSync(out, 'utf8').split('\n');
      assert.equal(execInfo, '{"apiVersion":"client.authentication.k8s.io/v1beta1","kind":"ExecCredential","spec":{"interactive":false}}');
      assert.equal(fromKubeconfig, 'configured');
      assert.equal(fromProcess, 'inherited');
      assert.equal(args, 'get-token|--cluster=dev');
    });

    it('names the exit code and the first line of stderr when the plugin fails, never its stdout, and retries next time', async () => {
      plugin(`echo run >> "$RUNS"
echo '{"apiVersion":"${EXEC_V1}","kind":"ExecCredential","status":{"token":"${EXEC_TOKEN}"}}'
echo "" >&2
echo "error: login expired, run 'tool login'" >&2
echo "second line with detail" >&2
exit 3`);
      const file = writeConfig('config', oneContext(SERVER, execUser()));
      const access = clusterAccessFromFile(file);
      const err = await configRejection(access.authorization(), /exec plugin ".*plugin\.sh" failed with exit code 3: error: login expired, run 'tool login'$/);
      assert.ok(err.message.startsWith(`kubeconfig ${file} (context "ctx"), user "u": `), err.message);
      assert.doesNotMatch(err.message, /second line/);
      await configRejection(access.tls(), /exit code 3/);
      assert.equal(runs(), 2, 'a failure is not cached');
    });

    it('names a missing command with its installHint', async () => {
      const access = fromConfig(SERVER, execUser({ command: './not-installed', installHint: 'Install it with: apt-get install not-installed' }));
      await configRejection(access.authorization(), /exec plugin ".*\/not-installed" not found: Install it with: apt-get install not-installed$/);
    });

    it('refuses output that is not an ExecCredential with a token or a certificate, without quoting it', async () => {
      const cases: Array<[string, RegExp]> = [
        [`token=${EXEC_TOKEN}`, /printed no valid JSON$/],
        [`{"kind":"Other","status":{"token":"${EXEC_TOKEN}"}}`, /printed no ExecCredential$/],
        [`{"apiVersion":"client.authentication.k8s.io/v1beta1","kind":"ExecCredential","status":{"token":"${EXEC_TOKEN}"}}`, /answered with another apiVersion than client\.authentication\.k8s\.io\/v1$/],
        [`{"apiVersion":"${EXEC_V1}","kind":"ExecCredential","status":{}}`, /returned neither a token nor a client certificate$/],
        [`{"apiVersion":"${EXEC_V1}","kind":"ExecCredential","status":{"clientKeyData":"k"}}`, /returned only one of clientCertificateData and clientKeyData$/],
        [`{"apiVersion":"${EXEC_V1}","kind":"ExecCredential","status":{"token":"${EXEC_TOKEN}","expirationTimestamp":"soon"}}`, /expirationTimestamp that is not RFC 3339$/],
      ];
      for (const [stdout, pattern] of cases) {
        write('stdout.txt', stdout);
        plugin(`cat "${path.join(dir, 'stdout.txt')}"`);
        await configRejection(fromConfig(SERVER, execUser()).authorization(), pattern);
      }
    });
  });

  describe('unsupported and broken configs get a clear error that leaks nothing', () => {
    /** The error must name the file and the context, besides matching. */
    function refused(doc: object, pattern: RegExp, context?: string): KubeConfigError {
      const file = writeConfig('config', doc);
      const err = configError(() => clusterAccessFromFile(file, context), pattern);
      assert.ok(err.message.includes(file), `names the file: ${err.message}`);
      return err;
    }

    function refusedInContext(cluster: object, user: object | undefined, pattern: RegExp): void {
      const err = refused(oneContext(cluster, user), pattern);
      assert.match(err.message, /\(context "ctx"\)/);
    }

    it('auth-provider (the legacy gcp/azure/oidc plugins)', () => {
      const user = { 'auth-provider': { name: 'gcp', config: { 'access-token': TOKEN } } };
      refusedInContext(SERVER, user, /user "u": auth-provider "gcp" is not supported .*use an exec credential plugin/);
    });

    it('proxy-url', () => {
      refusedInContext({ ...SERVER, 'proxy-url': `http://proxy:${PASSWORD}@10.0.0.1:3128` }, { token: TOKEN }, /cluster "c": proxy-url is not supported$/);
    });

    it('impersonation', () => {
      refusedInContext(SERVER, { token: TOKEN, as: 'system:admin' }, /impersonation \(as\) is not supported$/);
    });

    it('a missing context, cluster or user, or no context at all', () => {
      const doc = oneContext(SERVER, { token: TOKEN });
      refused(doc, /context "nope" not found$/, 'nope');
      refused({ ...doc, 'current-context': undefined }, /no context given and no current-context set$/);
      refused({ ...doc, contexts: [{ name: 'ctx', context: { cluster: 'gone', user: 'u' } }] }, /\(context "ctx"\): cluster "gone" not found$/);
      refused({ ...doc, contexts: [{ name: 'ctx', context: { cluster: 'c', user: 'gone' } }] }, /\(context "ctx"\): user "gone" not found$/);
      refused({ ...doc, contexts: [{ name: 'ctx', context: { user: 'u' } }] }, /\(context "ctx"\): the context names no cluster$/);
    });

    it('a server that is missing, not https:// or http://, or carries credentials', () => {
      refusedInContext({}, { token: TOKEN }, /cluster "c": no server$/);
      for (const server of ['ftp://k8s.example', '127.0.0.1:6443', 'k8s.example']) {
        refusedInContext({ server }, { token: TOKEN }, /cluster "c": (server must start with https:\/\/ \(or http:\/\/ for a plain local server\)|server is not a URL)$/);
      }
      refusedInContext({ server: `https://admin:${PASSWORD}@k8s.example` }, undefined, /server URL carries credentials/);
    });

    it('an unreadable referenced file', () => {
      mkdirSync(path.join(dir, 'a-folder'));
      write('key.pem', KEY_PEM);
      write('not-pem', 'just text');
      refusedInContext({ ...SERVER, 'certificate-authority': 'missing-ca.pem' }, undefined, /cluster "c": cannot read certificate-authority .*\/missing-ca\.pem \(ENOENT\)$/);
      refusedInContext(SERVER, { 'client-certificate': 'a-folder', 'client-key': 'key.pem' }, /user "u": cannot read client-certificate .*\/a-folder \(EISDIR\)$/);
      refusedInContext(SERVER, { tokenFile: 'missing-token' }, /user "u": cannot read token file .*\/missing-token \(ENOENT\)$/);
      refusedInContext({ ...SERVER, 'certificate-authority': 'not-pem' }, undefined, /certificate-authority .*\/not-pem holds no PEM$/);
      configError(() => clusterAccessFromFile(path.join(dir, 'no-kubeconfig')), /^kubeconfig .*\/no-kubeconfig: cannot read the file .* \(ENOENT\)$/);
    });

    it('a key or certificate that is not base64 PEM, or one without the other', () => {
      refusedInContext(SERVER, { 'client-certificate-data': b64(CERT_PEM), 'client-key-data': b64('KEY-BODY-must-stay-home') }, /client-key-data is not base64-encoded PEM$/);
      refusedInContext(SERVER, { 'client-certificate-data': b64(CERT_PEM) }, /a client certificate and a client key must be given together$/);
    });

    it('both a token and a password', () => {
      refusedInContext(SERVER, { token: TOKEN, username: 'admin', password: PASSWORD }, /more than one authentication method/);
    });

    it('an exec plugin with an unsupported apiVersion or one that needs a terminal', () => {
      refusedInContext(SERVER, { exec: { apiVersion: 'client.authentication.k8s.io/v1alpha1', command: 'x' } }, /exec apiVersion "client\.authentication\.k8s\.io\/v1alpha1" is not supported/);
      refusedInContext(SERVER, { exec: { apiVersion: EXEC_V1, command: 'x', interactiveMode: 'Always' } }, /needs an interactive terminal/);
    });

    it('invalid YAML, without quoting the line (it may hold the token)', () => {
      const file = write('config', `users:\n- name: u\n  user:\n    token: ${TOKEN}\n   broken: [\n`);
      const err = configError(() => clusterAccessFromFile(file), /^kubeconfig .*\/config: not valid YAML: .* at line \d+, column \d+$/);
      assert.doesNotMatch(err.message, /\n/);
    });

    it('fields of the wrong type', () => {
      refusedInContext({ ...SERVER, 'insecure-skip-tls-verify': 'yes please' }, undefined, /insecure-skip-tls-verify is not true or false$/);
      refusedInContext(SERVER, { token: 12345 }, /user "u": token is not a string$/);
      refused({ clusters: { c: SERVER } }, /clusters is not a list$/);
    });
  });
});
