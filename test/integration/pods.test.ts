// Issue 9: run it the way users run it. The operator's image, built from deploy/Dockerfile, runs as two pods on a
// real kubelet (containerd + runc) of the local environment, installed with `kubectl apply -k` (test/deploy/local),
// and workloads mount the Secrets it writes: as a volume and as environment variables, logging in to PostgreSQL in
// their readiness probes. Nothing here is simulated: the kubelet probes, the kube-scheduler places the pods, the
// deployment controller rolls them, and the kubelet updates the mounted Secret files.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import type * as k8s from '@kubernetes/client-node';
import type { DatabaseCredential } from '../../src/api/types.js';
import { assertNoViolations } from '../audit/auditor.js';
import { buildImages, type ImageArchive } from '../env/images.js';
import { OPERATOR_NAMESPACE, installOperator, uninstallOperator } from '../env/incluster.js';
import type { LocalNode } from '../env/node.js';
import { freePort } from '../env/processes.js';
import {
  createNamespace,
  loginError,
  queryAs,
  roleExists,
  testEnv,
  testNode,
  waitFor,
  type TestEnv,
} from './harness.js';
import { apply, connectionFromSecret, credentialObject, getObject, platformObjects, readSecretData, waitForCondition } from './operator.js';

const OPERATOR_SELECTOR = 'app.kubernetes.io/name=dbcred-operator';
const LEASE = 'dbcred-operator-leader';

describe('in pods: the operator image on a real kubelet, and workloads that mount its Secrets (issue 9)', function () {
  let env: TestEnv;
  let ns: string;
  let node: LocalNode;
  let images: { operator: ImageArchive; workload: ImageArchive };
  let overlayDir = '';
  let installed = false;

  before(async function () {
    this.timeout(1_200_000);
    env = await testEnv();
    // Skips, saying why, where no node can run, and with USE_EXISTING_CLUSTER=true: the pods reach PostgreSQL on
    // 127.0.0.1 with host networking and their images are only in this machine's containerd (README).
    node = await testNode(this);
    images = await buildImages({ log: (line) => console.log(`    ${line}`) });
    for (const image of [images.operator, images.workload]) await node.importImage(image.tarFile);
    ns = await createNamespace(env, 'pods');
    await apply(env, ns, platformObjects(env));
    overlayDir = mkdtempSync(path.join(os.tmpdir(), 'dbcred-overlay-'));
    await installOperator({
      kubectl: env.kubectl,
      dir: overlayDir,
      image: images.operator.ref,
      apiServerEnv: node.inClusterEnv(),
      healthPort: await freePort(),
      watchNamespaces: [ns],
    });
    installed = true;
    await waitForCondition(env, 'databaseroles', ns, 'reader', 'Ready', 'True', undefined, 60_000);
  });

  after(async function () {
    this.timeout(240_000);
    if (!overlayDir) return;
    try {
      if (installed) await assertNoViolations(env, { namespaces: [ns] });
    } finally {
      // Also after a failed install: whatever of it was applied goes, and so does the overlay.
      await uninstallOperator({ kubectl: env.kubectl, dir: overlayDir });
      rmSync(overlayDir, { recursive: true, force: true });
    }
  });

  const operatorPods = async (): Promise<k8s.V1Pod[]> =>
    (await env.core.listNamespacedPod({ namespace: OPERATOR_NAMESPACE, labelSelector: OPERATOR_SELECTOR })).items;
  const isReady = (p: k8s.V1Pod | undefined): boolean =>
    !!p && !p.metadata?.deletionTimestamp && p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') === true;
  const leaseHolder = async (): Promise<string | undefined> => {
    const lease = await env.kubectl(['-n', OPERATOR_NAMESPACE, 'get', 'lease', LEASE, '-o', 'jsonpath={.spec.holderIdentity}']).catch(() => '');
    return lease.trim() || undefined;
  };
  const podsOf = async (app: string): Promise<k8s.V1Pod[]> =>
    (await env.core.listNamespacedPod({ namespace: ns, labelSelector: `app=${app}` })).items;
  /** What the container printed (the kubelet's log files for the pod, every restart). */
  const podLog = (pod: k8s.V1Pod): string => {
    const dir = path.join(node.podLogsDir, `${pod.metadata?.namespace}_${pod.metadata?.name}_${pod.metadata?.uid}`);
    let out = '';
    for (const container of safeReaddir(dir)) for (const f of safeReaddir(path.join(dir, container))) out += readFileSync(path.join(dir, container, f), 'utf8');
    return out;
  };

  /** A workload of the workload image: serve.mjs logs in once at start; the readiness probe logs in every 2 s. */
  const workload = (name: string, secret: string, mode: 'env' | 'files'): object => {
    const source = mode === 'env' ? ['env', 'DB_'] : ['files', '/etc/db'];
    return {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name },
      spec: {
        replicas: 1,
        selector: { matchLabels: { app: name } },
        // The new pod must be Ready before the old one goes: no moment without a working pod.
        strategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } },
        template: {
          metadata: { labels: { app: name } },
          spec: {
            hostNetwork: true,
            enableServiceLinks: false,
            terminationGracePeriodSeconds: 5,
            securityContext: { runAsNonRoot: true, runAsUser: 1000, runAsGroup: 1000 },
            containers: [
              {
                name: 'app',
                image: images.workload.ref,
                imagePullPolicy: 'Never',
                command: ['node', '/app/serve.mjs', ...source],
                envFrom: [{ prefix: 'DB_', secretRef: { name: secret } }],
                volumeMounts: [{ name: 'db', mountPath: '/etc/db', readOnly: true }],
                readinessProbe: { exec: { command: ['node', '/app/login.mjs', ...source] }, periodSeconds: 2, timeoutSeconds: 8, failureThreshold: 1 },
                securityContext: { readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } },
              },
            ],
            volumes: [{ name: 'db', secret: { secretName: secret } }],
          },
        },
      },
    };
  };

  const readyPodOf = async (app: string, not?: string): Promise<k8s.V1Pod> => {
    let pod: k8s.V1Pod | undefined;
    await waitFor(`a Ready pod of ${app}${not ? ` other than ${not}` : ''}`, async () => {
      pod = (await podsOf(app)).find((p) => isReady(p) && p.metadata?.uid !== not);
      return pod !== undefined;
    }, { timeoutMs: 120_000, intervalMs: 250 });
    return pod as k8s.V1Pod;
  };

  const rotate = async (plural: 'databasecredentials' | 'databaseroles', name: string): Promise<void> => {
    await env.kubectl(['-n', ns, 'annotate', '--overwrite', plural, name, `dbcred.dev/rotate=${Date.now()}`]);
  };

  const restartedAt = async (deployment: string): Promise<string | undefined> =>
    (await env.apps.readNamespacedDeployment({ namespace: ns, name: deployment })).spec?.template.metadata?.annotations?.['dbcred.dev/restartedAt'];

  it('runs as two non-root pods with a read-only root filesystem, probed by the kubelet, one of them leading', async () => {
    const pods = await operatorPods();
    assert.equal(pods.length, 2, 'two replicas');
    const names = pods.map((p) => p.metadata?.name ?? '');
    for (const p of pods) {
      assert.ok(isReady(p), `${p.metadata?.name} is Ready (its readiness probe answered)`);
      assert.equal(p.spec?.serviceAccountName, 'dbcred-operator');
      assert.equal(p.spec?.nodeName, node.name, 'placed on the local node by the kube-scheduler');
      assert.equal(p.spec?.containers[0]?.image, images.operator.ref);
      // The process itself, seen from the host: uid 1000 and a read-only root mount, whatever the spec says.
      const pid = operatorPid(p.metadata?.name ?? '');
      assert.ok(pid, `the operator process of ${p.metadata?.name} runs on this machine`);
      assert.match(readFileSync(`/proc/${pid}/status`, 'utf8'), /^Uid:\s+1000\s+1000\s+1000\s+1000$/m, 'runs as uid 1000');
      const rootMount = readFileSync(`/proc/${pid}/mountinfo`, 'utf8').split('\n').find((l) => l.split(' ')[4] === '/');
      assert.match(rootMount?.split(' ')[5] ?? '', /^ro(,|$)/, `its root filesystem is read-only: ${rootMount}`);
    }
    const holder = await leaseHolder();
    assert.ok(holder && names.includes(holder), `the Lease is held by one of the pods (${holder})`);
  });

  it('issues a credential whose Secret logs in', async () => {
    await apply(env, ns, [credentialObject('first', { roleRef: { name: 'reader' } })]);
    const cred = await waitForCondition<DatabaseCredential>(env, 'databasecredentials', ns, 'first', 'Ready', 'True');
    const data = await readSecretData(env, ns, 'first');
    assert.ok(data);
    const res = await queryAs(connectionFromSecret(data), 'SELECT current_user AS u');
    assert.equal(res.rows[0]?.u, cred.status?.username);
  });

  it('fails over when the leader pod is deleted, and issuing goes on', async function () {
    this.timeout(240_000);
    const leader = await leaseHolder();
    assert.ok(leader);
    await env.core.deleteNamespacedPod({ namespace: OPERATOR_NAMESPACE, name: leader });
    let next: string | undefined;
    await waitFor('the standby pod to take the Lease', async () => {
      next = await leaseHolder();
      return next !== undefined && next !== leader;
    }, { timeoutMs: 60_000, intervalMs: 250 });
    assert.ok((await operatorPods()).some((p) => p.metadata?.name === next), `the new holder ${next} is a pod of the Deployment`);
    await apply(env, ns, [credentialObject('after-failover', { roleRef: { name: 'reader' } })]);
    const cred = await waitForCondition<DatabaseCredential>(env, 'databasecredentials', ns, 'after-failover', 'Ready', 'True', undefined, 60_000);
    const data = await readSecretData(env, ns, 'after-failover');
    assert.ok(data);
    assert.equal((await queryAs(connectionFromSecret(data), 'SELECT current_user AS u')).rows[0]?.u, cred.status?.username);
    // The Deployment replaces the deleted pod: two Ready replicas again, none of them the old leader.
    await waitFor('two Ready operator pods again', async () => {
      const pods = await operatorPods();
      return pods.filter(isReady).length === 2 && !pods.some((p) => p.metadata?.name === leader);
    }, { timeoutMs: 120_000, intervalMs: 500 });
  });

  it('goes on when the leader process is killed (SIGKILL, no lease release): the kubelet restarts it, issuing resumes', async function () {
    this.timeout(240_000);
    const leader = await leaseHolder();
    assert.ok(leader);
    const pid = operatorPid(leader);
    assert.ok(pid, `the leader ${leader} runs on this machine`);
    process.kill(pid, 'SIGKILL');
    await apply(env, ns, [credentialObject('after-kill', { roleRef: { name: 'reader' } })]);
    // Either the standby takes the Lease once it expires, or the restarted container (same identity) renews it.
    const cred = await waitForCondition<DatabaseCredential>(env, 'databasecredentials', ns, 'after-kill', 'Ready', 'True', undefined, 90_000);
    const data = await readSecretData(env, ns, 'after-kill');
    assert.ok(data);
    assert.equal((await queryAs(connectionFromSecret(data), 'SELECT current_user AS u')).rows[0]?.u, cred.status?.username);
    await waitFor('the kubelet to restart the killed container, Ready again', async () => {
      const p = (await operatorPods()).find((x) => x.metadata?.name === leader);
      return (p?.status?.containerStatuses?.[0]?.restartCount ?? 0) >= 1 && isReady(p);
    }, { timeoutMs: 120_000, intervalMs: 500 });
  });

  describe('workloads that mount the Secret', () => {
    it('a Deployment mounting the Secret (volume and env) becomes Ready: its probe logs in with the issued credential', async function () {
      this.timeout(240_000);
      await apply(env, ns, [
        credentialObject('app-db', {
          roleRef: { name: 'reader' },
          rotation: { enabled: true, gracePeriod: '2m' },
          rolloutRestartTargets: [{ kind: 'Deployment', name: 'app' }],
        }),
      ]);
      const cred = await waitForCondition<DatabaseCredential>(env, 'databasecredentials', ns, 'app-db', 'Ready', 'True');
      await apply(env, ns, [workload('app', 'app-db', 'env')]);
      const pod = await readyPodOf('app');
      await waitFor('the workload to say whom it logged in as', async () => podLog(pod).includes(`logged in as ${cred.status?.username}`), { timeoutMs: 30_000 });
    });

    it('a rotation replaces the pods through the rollout restart; the new pod logs in with the new password while the old one keeps working', async function () {
      this.timeout(300_000);
      const [oldPod] = (await podsOf('app')).filter(isReady);
      assert.ok(oldPod);
      const oldUid = oldPod.metadata?.uid ?? '';
      const before = await readSecretData(env, ns, 'app-db');
      assert.ok(before);
      // Watch the old pod through the whole rollout: it must stay Ready until it is being deleted (its probe logs in
      // with the old password from its environment, which the grace period keeps valid).
      const notReadyWhileServing: string[] = [];
      let watching = true;
      const watcher = (async () => {
        while (watching) {
          const p = (await podsOf('app')).find((x) => x.metadata?.uid === oldUid);
          if (!p || p.metadata?.deletionTimestamp) break;
          if (!isReady(p)) notReadyWhileServing.push(new Date().toISOString());
          await new Promise((r) => setTimeout(r, 250));
        }
      })();
      try {
        await rotate('databasecredentials', 'app-db');
        let cred: DatabaseCredential | undefined;
        await waitFor('the credential to rotate onto a new user', async () => {
          cred = await getObject<DatabaseCredential>(env, 'databasecredentials', ns, 'app-db');
          return !!cred?.status?.username && cred.status.username !== before.username;
        }, { timeoutMs: 60_000 });
        await waitFor('the rollout restart annotation on the Deployment', async () => (await restartedAt('app')) !== undefined, { timeoutMs: 30_000 });
        const newPod = await readyPodOf('app', oldUid);
        await waitFor('the new pod to say whom it logged in as', async () => podLog(newPod).includes(`logged in as ${cred?.status?.username}`), { timeoutMs: 30_000 });
        assert.equal(await loginError(connectionFromSecret(before)), undefined, 'the old login still works within the grace period');
        await waitFor('the old pod to be gone', async () => !(await podsOf('app')).some((p) => p.metadata?.uid === oldUid), { timeoutMs: 120_000, intervalMs: 500 });
      } finally {
        watching = false;
        await watcher;
      }
      assert.deepEqual(notReadyWhileServing, [], 'the old pod stayed Ready until it was replaced');
    });

    it('the kubelet updates the mounted file in place: a pod that rereads it logs in with the new password, no restart', async function () {
      this.timeout(300_000);
      await apply(env, ns, [credentialObject('files-db', { roleRef: { name: 'reader' }, rotation: { enabled: true, gracePeriod: '5s' } })]);
      await waitForCondition<DatabaseCredential>(env, 'databasecredentials', ns, 'files-db', 'Ready', 'True');
      await apply(env, ns, [workload('reader', 'files-db', 'files')]);
      const pod = await readyPodOf('reader');
      const uid = pod.metadata?.uid;
      const before = await readSecretData(env, ns, 'files-db');
      assert.ok(before);
      await rotate('databasecredentials', 'files-db');
      let after: Record<string, string> | undefined;
      await waitFor('the Secret to carry the new login', async () => {
        after = await readSecretData(env, ns, 'files-db');
        return !!after?.username && after.username !== before.username;
      }, { timeoutMs: 60_000 });
      // After the grace period the old role is revoked: from then on only the new password from the file logs in.
      await waitFor('the old role to be revoked', async () => !(await roleExists(env.postgres.connection, before.username ?? '')), { timeoutMs: 60_000, intervalMs: 250 });
      assert.notEqual(await loginError(connectionFromSecret(before)), undefined, 'the old password no longer logs in');
      // Ready over three probe periods in a row (failureThreshold 1) after the revocation: the probe read the new
      // password from the mounted file.
      let streak = 0;
      await waitFor('the pod to be Ready on the new password for three probe periods', async () => {
        const p = (await podsOf('reader')).find((x) => x.metadata?.uid === uid);
        assert.ok(p, 'the same pod: not replaced');
        streak = isReady(p) ? streak + 1 : 0;
        return streak >= 4;
      }, { timeoutMs: 90_000, intervalMs: 2_000 });
      const p = (await podsOf('reader')).find((x) => x.metadata?.uid === uid);
      assert.equal(p?.status?.containerStatuses?.[0]?.restartCount, 0, 'not restarted');
      assert.equal(await loginError(connectionFromSecret(after ?? {})), undefined);
    });

    it("a pod mounting a static role's Secret follows its rotation", async function () {
      this.timeout(300_000);
      const user = `static_app_${process.pid}_${Math.random().toString(36).slice(2, 6)}`;
      await queryAs(env.postgres.connection, `CREATE ROLE ${pg.escapeIdentifier(user)} LOGIN`);
      await apply(env, ns, [
        { apiVersion: 'dbcred.dev/v1alpha1', kind: 'DatabaseRole', metadata: { name: 'app-static' }, spec: { configRef: { name: 'pg' }, static: { username: user } } },
        credentialObject('static-db', { roleRef: { name: 'app-static' }, rolloutRestartTargets: [{ kind: 'Deployment', name: 'static-app' }] }),
      ]);
      await waitForCondition<DatabaseCredential>(env, 'databasecredentials', ns, 'static-db', 'Ready', 'True', undefined, 60_000);
      await apply(env, ns, [workload('static-app', 'static-db', 'files')]);
      const first = await readyPodOf('static-app');
      await waitFor('the static workload to log in', async () => podLog(first).includes(`logged in as ${user}`), { timeoutMs: 30_000 });
      const before = await readSecretData(env, ns, 'static-db');
      assert.ok(before);
      const restartBefore = await restartedAt('static-app');
      await rotate('databaseroles', 'app-static');
      await waitFor('the static password to rotate', async () => (await readSecretData(env, ns, 'static-db'))?.password !== before.password, { timeoutMs: 60_000 });
      assert.notEqual(await loginError(connectionFromSecret(before)), undefined, 'a static user has one password: the old one fails');
      await waitFor('the rollout restart of static-app', async () => (await restartedAt('static-app')) !== restartBefore, { timeoutMs: 30_000 });
      const second = await readyPodOf('static-app', first.metadata?.uid);
      await waitFor('the new pod to log in as the static user', async () => podLog(second).includes(`logged in as ${user}`), { timeoutMs: 30_000 });
    });
  });
});

function safeReaddir(dir: string): string[] {
  try {
    return readdirSync(dir).sort();
  } catch {
    return [];
  }
}

/** The host pid of the operator process whose POD_NAME is this pod (root reads every process's environment). */
function operatorPid(podName: string): number | undefined {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
      if (!cmdline.includes('dist/src/main.js')) continue;
      if (readFileSync(`/proc/${entry}/environ`, 'utf8').split('\0').includes(`POD_NAME=${podName}`)) return Number(entry);
    } catch {
      // the process ended while we looked
    }
  }
  return undefined;
}
