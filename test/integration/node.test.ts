// Proof that the environment's node is real: a kubelet on containerd that registers as 127.0.0.1, runs pods
// (host network, Secret volumes, probes), keeps a mounted Secret current, runs what kube-scheduler places, and
// gives pods a ServiceAccount token and CA that an in-cluster client can use against the API server.
import type * as k8s from '@kubernetes/client-node';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import type { LocalNode } from '../env/node.js';
import { testboxImage, type OciImage } from '../env/ociImage.js';
import { freePort } from '../env/processes.js';
import { createNamespace, deleteNamespaceAndWait, testEnv, testNode, waitFor, type TestEnv } from './harness.js';

describe('local node', function () {
  this.timeout(180_000);
  let env: TestEnv;
  let node: LocalNode;
  let ns: string;
  let testbox: OciImage;

  before(async function () {
    this.timeout(900_000);
    env = await testEnv();
    try {
      testbox = await testboxImage();
    } catch (err) {
      console.log(`      skipped: no test image: ${err instanceof Error ? err.message : String(err)}`);
      this.skip();
    }
    node = await testNode(this, [testbox.archive]);
    ns = await createNamespace(env, 'node');
  });

  after(async function () {
    this.timeout(180_000);
    // The kubelet must really stop the pods for the namespace to go.
    if (ns) await deleteNamespaceAndWait(env, ns);
  });

  const readPod = (name: string) => env.core.readNamespacedPod({ namespace: ns, name });

  const podReady = (pod: k8s.V1Pod) => pod.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;

  /** A container's log as the kubelet wrote it under podLogsDir (CRI format: time stream tag message). */
  const logFileText = (pod: k8s.V1Pod, container: string): string => {
    const dir = path.join(node.podLogsDir, `${pod.metadata?.namespace}_${pod.metadata?.name}_${pod.metadata?.uid}`, container);
    if (!existsSync(dir)) return '';
    return readdirSync(dir).sort().map((f) => readFileSync(path.join(dir, f), 'utf8')).join('');
  };

  const testboxContainer = (name: string, script: string): k8s.V1Container => ({
    name,
    image: testbox.ref,
    imagePullPolicy: 'Never',
    command: ['/bin/sh', '-c', script],
  });

  it('registers Ready and schedulable as 127.0.0.1, with the kubelet reachable on the loopback address', async () => {
    const n = await env.core.readNode({ name: node.name });
    assert.equal(n.status?.conditions?.find((c) => c.type === 'Ready')?.status, 'True');
    assert.deepEqual(n.status?.addresses?.find((a) => a.type === 'InternalIP')?.address, '127.0.0.1');
    assert.equal(n.metadata?.labels?.['kubernetes.io/os'], 'linux');
    assert.ok(!n.spec?.unschedulable);
    await waitFor('the not-ready taint to be lifted', async () => {
      const taints = (await env.core.readNode({ name: node.name })).spec?.taints ?? [];
      return !taints.some((t) => t.effect === 'NoSchedule' || t.effect === 'NoExecute');
    }, { timeoutMs: 60_000, intervalMs: 500 });
    assert.equal(n.status?.daemonEndpoints?.kubeletEndpoint?.Port, node.kubeletPort);
  });

  it('runs a hostNetwork pod with a Secret volume and an exec readiness probe; kubectl logs and exec work', async () => {
    await env.core.createNamespacedSecret({ namespace: ns, body: { metadata: { name: 'greeting' }, stringData: { text: 'hello' } } });
    await env.core.createNamespacedPod({
      namespace: ns,
      body: {
        metadata: { name: 'reader' },
        spec: {
          nodeName: node.name,
          hostNetwork: true,
          terminationGracePeriodSeconds: 1,
          containers: [{
            ...testboxContainer('reader', 'while true; do echo "greeting=$(cat /etc/greeting/text)"; sleep 1; done'),
            readinessProbe: { exec: { command: ['test', '-s', '/etc/greeting/text'] }, periodSeconds: 1 },
            volumeMounts: [{ name: 'greeting', mountPath: '/etc/greeting', readOnly: true }],
          }],
          volumes: [{ name: 'greeting', secret: { secretName: 'greeting' } }],
        },
      },
    });
    await waitFor('pod reader to be Ready', async () => podReady(await readPod('reader')), { timeoutMs: 90_000, intervalMs: 500 });
    const pod = await readPod('reader');
    assert.equal(pod.status?.podIP, '127.0.0.1');
    assert.match(logFileText(pod, 'reader'), /stdout F greeting=hello\n/);
    assert.match(await env.kubectl(['-n', ns, 'logs', 'reader', '--tail', '1']), /^greeting=hello\n$/);
    assert.equal(await env.kubectl(['-n', ns, 'exec', 'reader', '--', 'cat', '/etc/greeting/text']), 'hello');
  });

  it('updates a mounted Secret in place', async () => {
    await env.kubectl(['-n', ns, 'patch', 'secret', 'greeting', '--type=merge', '-p', JSON.stringify({ stringData: { text: 'changed' } })]);
    const pod = await readPod('reader');
    await waitFor('the pod to see the new Secret value', async () => /greeting=changed\n/.test(logFileText(pod, 'reader')),
      { timeoutMs: 60_000, intervalMs: 500 });
  });

  it('runs a Deployment placed by kube-scheduler, ready by an httpGet probe on 127.0.0.1', async () => {
    const port = await freePort();
    await env.apps.createNamespacedDeployment({
      namespace: ns,
      body: {
        metadata: { name: 'web' },
        spec: {
          replicas: 1,
          selector: { matchLabels: { app: 'web' } },
          template: {
            metadata: { labels: { app: 'web' } },
            spec: {
              hostNetwork: true,
              terminationGracePeriodSeconds: 1,
              containers: [{
                ...testboxContainer('web', `mkdir -p /tmp/www && echo ok > /tmp/www/index.html && exec httpd -f -p 127.0.0.1:${port} -h /tmp/www`),
                readinessProbe: { httpGet: { path: '/index.html', port }, periodSeconds: 1 },
              }],
            },
          },
        },
      },
    });
    await waitFor('deployment web to have a ready replica', async () =>
      ((await env.apps.readNamespacedDeployment({ namespace: ns, name: 'web' })).status?.readyReplicas ?? 0) === 1,
    { timeoutMs: 90_000, intervalMs: 500 });
    const pods = await env.core.listNamespacedPod({ namespace: ns, labelSelector: 'app=web' });
    assert.equal(pods.items.length, 1);
    assert.equal(pods.items[0]?.spec?.nodeName, node.name, 'kube-scheduler bound it to the node');
    const res = await fetch(`http://127.0.0.1:${port}/index.html`);
    assert.equal((await res.text()).trim(), 'ok');
  });

  it("gives pods a ServiceAccount token and ca.crt that an in-cluster client uses against the API server", async () => {
    await env.core.createNamespacedPod({
      namespace: ns,
      body: {
        metadata: { name: 'incluster' },
        spec: {
          hostNetwork: true,
          restartPolicy: 'Never',
          containers: [{ ...testboxContainer('incluster', 'exec /bin/incluster'), env: node.inClusterEnv() }],
        },
      },
    });
    await waitFor('pod incluster to finish', async () => {
      const phase = (await readPod('incluster')).status?.phase;
      return phase === 'Succeeded' || phase === 'Failed';
    }, { timeoutMs: 90_000, intervalMs: 500 });
    const pod = await readPod('incluster');
    const log = logFileText(pod, 'incluster');
    assert.equal(pod.status?.phase, 'Succeeded', log);
    assert.match(log, new RegExp(`stdout F system:serviceaccount:${ns}:default\\n`));
  });
});
