// Issue 11: the Helm chart (deploy/chart). helm lint; helm template of each documented values combination, checked
// for its shape and then accepted by the real kube-apiserver (server-side apply, dry run), with prometheus-operator's
// real CRDs for the ServiceMonitor and PrometheusRule; the same RBAC as the kustomize installs; and, where the
// environment has a node, a real helm install → issue → upgrade (a new ReplicaSet) → issue → uninstall.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import yaml from 'js-yaml';
import pg from 'pg';
import type * as k8s from '@kubernetes/client-node';
import type { DatabaseCredential } from '../../src/api/types.js';
import { assertNoViolations } from '../audit/auditor.js';
import { REPO_ROOT } from '../env/controlplane.js';
import { CHART_DIR, chartTools, runHelm } from '../env/helm.js';
import { buildImages } from '../env/images.js';
import { diagnostics, splitImage } from '../env/incluster.js';
import { PrometheusServer, compressRuleTimes, prometheusMissing } from '../env/prometheus.js';
import { freePort, removeOnExit } from '../env/processes.js';
import {
  createNamespace,
  deleteNamespaceAndWait,
  loginError,
  markerComment,
  queryAs,
  roleExists,
  testEnv,
  testNode,
  waitFor,
  type TestEnv,
} from './harness.js';
import { apply, connectionFromSecret, credentialObject, getObject, platformObjects, readSecretData, waitForCondition } from './operator.js';

interface Obj {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [field: string]: unknown;
}
type Container = k8s.V1Container;
type Rule = { apiGroups?: string[]; resources?: string[]; resourceNames?: string[]; verbs?: string[] };

const STANDARD_LABELS = ['app.kubernetes.io/name', 'app.kubernetes.io/instance', 'app.kubernetes.io/version', 'app.kubernetes.io/managed-by', 'app.kubernetes.io/part-of', 'helm.sh/chart'];
const ALERTS = readFileSync(path.join(REPO_ROOT, 'deploy', 'monitoring', 'alerts.yaml'), 'utf8');
const PROMETHEUS_CRDS = ['monitoring.coreos.com_servicemonitors.yaml', 'monitoring.coreos.com_prometheusrules.yaml'];

let valuesDir = '';
/** values as a file for -f (JSON is YAML). */
function valuesFile(name: string, values: object): string {
  if (!valuesDir) {
    valuesDir = mkdtempSync(path.join(os.tmpdir(), 'dbcred-chart-values-'));
    removeOnExit(valuesDir);
  }
  const file = path.join(valuesDir, `${name}.json`);
  writeFileSync(file, JSON.stringify(values, null, 2));
  return file;
}

/** What a ServiceMonitor scrapes: the pods its Service selects, on the port the Service targets, at its path. */
interface MonitoredService {
  service: string;
  namespaces: string[];
  selector: Record<string, string>;
  targetPort: number;
  path: string;
}

/** The Service the rendered ServiceMonitor selects, and the pods' port behind the endpoint port it names. */
function monitoredService(monitor: Obj, docs: Obj[]): MonitoredService {
  const spec = monitor.spec as { selector: { matchLabels: Record<string, string> }; namespaceSelector: { matchNames: string[] }; endpoints: { port: string; path: string }[] };
  const services = ofKind(docs, 'Service').filter((svc) =>
    spec.namespaceSelector.matchNames.includes(svc.metadata.namespace ?? '') && Object.entries(spec.selector.matchLabels).every(([k, v]) => svc.metadata.labels?.[k] === v));
  assert.equal(services.length, 1, 'the ServiceMonitor selects exactly one Service of the release');
  const service = services[0] as Obj & { spec: { selector: Record<string, string>; ports: { name: string; targetPort: number | string }[] } };
  const [endpoint] = spec.endpoints;
  const port = service.spec.ports.find((p) => p.name === endpoint?.port);
  assert.ok(endpoint && port, `the Service has the port the ServiceMonitor names (${endpoint?.port})`);
  assert.equal(typeof port.targetPort, 'number', 'the chart targets the health port by number');
  return { service: service.metadata.name, namespaces: spec.namespaceSelector.matchNames, selector: service.spec.selector, targetPort: Number(port.targetPort), path: endpoint.path };
}

/**
 * The targets prometheus-operator's endpoints discovery would give for that Service, in file_sd form, with the labels
 * it sets (namespace, pod, service, job): its Ready pods on the target port. Debian's Prometheus is built without
 * Kubernetes service discovery, and the local node's pods have the loopback address, which Endpoints refuse; so the
 * test lists what the Endpoints would hold and Prometheus reads it from a file.
 */
async function discoverTargets(env: TestEnv, m: MonitoredService): Promise<object[]> {
  const selector = Object.entries(m.selector).map(([k, v]) => `${k}=${v}`).join(',');
  const groups: object[] = [];
  for (const namespace of m.namespaces) {
    for (const pod of (await env.core.listNamespacedPod({ namespace, labelSelector: selector })).items) {
      const ready = pod.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True');
      if (!ready || pod.metadata?.deletionTimestamp || !pod.status?.podIP) continue;
      groups.push({ targets: [`${pod.status.podIP}:${m.targetPort}`], labels: { namespace, pod: pod.metadata?.name ?? '', service: m.service, job: m.service } });
    }
  }
  return groups;
}

function parseDocs(text: string): Obj[] {
  return yaml.loadAll(text).filter((d): d is Obj => d !== null && typeof d === 'object');
}

const template = (release: string, namespace: string, values: object, extra: string[] = []): Promise<string> =>
  runHelm(['template', release, CHART_DIR, '--namespace', namespace, '-f', valuesFile(release, values), ...extra]);

const ofKind = (docs: Obj[], kind: string): Obj[] => docs.filter((d) => d.kind === kind);
const named = (docs: Obj[], kind: string, name: string): Obj | undefined => docs.find((d) => d.kind === kind && d.metadata.name === name);
function deploymentOf(docs: Obj[]): k8s.V1Deployment {
  const [d, ...more] = ofKind(docs, 'Deployment');
  assert.ok(d && more.length === 0, 'exactly one Deployment');
  return d as unknown as k8s.V1Deployment;
}
function containerOf(docs: Obj[]): Container {
  const c = deploymentOf(docs).spec?.template.spec?.containers[0];
  assert.ok(c);
  return c;
}
const envOf = (c: Container): Record<string, string | undefined> => Object.fromEntries((c.env ?? []).map((e) => [e.name, e.value]));

/** The documented values combinations, each with what its rendering must show. */
interface Combination {
  name: string;
  values: (ctx: { watched: string[] }) => object;
  check: (docs: Obj[], ctx: { release: string; namespace: string; watched: string[] }) => void;
}

const COMBINATIONS: Combination[] = [
  {
    name: 'default',
    values: () => ({}),
    check: (docs, { release, namespace }) => {
      const full = `${release}-dbcred-operator`;
      assert.deepEqual(docs.map((d) => `${d.kind}/${d.metadata.name}`).sort(), [
        `ClusterRole/${full}`,
        `ClusterRole/${full}-cluster-identity`,
        `ClusterRole/${full}-credential-editor`,
        `ClusterRole/${full}-platform-admin`,
        `ClusterRole/${full}-viewer`,
        `ClusterRoleBinding/${full}`,
        `ClusterRoleBinding/${full}-cluster-identity`,
        `Deployment/${full}`,
        `Role/${full}-leader-election`,
        `RoleBinding/${full}-leader-election`,
        `Service/${full}-metrics`,
        `ServiceAccount/${full}`,
      ]);
      for (const d of docs) {
        for (const l of STANDARD_LABELS) assert.ok(d.metadata.labels?.[l], `${d.kind}/${d.metadata.name} has the label ${l}`);
        if (!d.kind.startsWith('Cluster')) assert.equal(d.metadata.namespace, namespace, `${d.kind}/${d.metadata.name} is in the release namespace`);
      }
      const dep = deploymentOf(docs);
      assert.equal(dep.spec?.replicas, 1);
      assert.equal(dep.spec?.strategy, undefined, "Kubernetes' default rolling update");
      const c = containerOf(docs);
      assert.equal(c.image, 'dbcred-operator:0.1.0', 'the tag defaults to the appVersion');
      assert.equal(c.imagePullPolicy, 'IfNotPresent');
      const env = envOf(c);
      assert.equal(env.LEADER_ELECT, 'true');
      assert.equal(env.HEALTH_PORT, '8081');
      assert.equal(env.NODE_OPTIONS, '--max-old-space-size=192 --max-semi-space-size=4');
      assert.equal(env.WATCH_NAMESPACES, undefined, 'the whole cluster');
      assert.equal(env.CLUSTER_ID, undefined);
      assert.equal(c.env?.find((e) => e.name === 'POD_NAMESPACE')?.valueFrom?.fieldRef?.fieldPath, 'metadata.namespace');
      assert.deepEqual(c.ports, [{ name: 'health', containerPort: 8081, protocol: 'TCP' }]);
      assert.equal(dep.spec?.template.spec?.hostNetwork, undefined);
      const svc = named(docs, 'Service', `${full}-metrics`) as unknown as k8s.V1Service;
      assert.deepEqual(svc.spec?.ports, [{ name: 'metrics', port: 8081, targetPort: 8081, protocol: 'TCP' }]);
      assert.deepEqual(svc.spec?.selector, dep.spec?.selector.matchLabels, 'the Service selects the operator pods');
    },
  },
  {
    name: 'namespaced',
    values: ({ watched }) => ({ watchNamespaces: watched }),
    check: (docs, { release, watched }) => {
      const full = `${release}-dbcred-operator`;
      assert.equal(named(docs, 'ClusterRoleBinding', full), undefined, 'no cluster-wide grant of the operator role');
      const bindings = ofKind(docs, 'RoleBinding').filter((b) => b.metadata.name === full);
      assert.deepEqual(bindings.map((b) => b.metadata.namespace).sort(), [...watched].sort(), 'one RoleBinding per watched namespace');
      for (const b of bindings) assert.deepEqual(b.roleRef, { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: full });
      assert.equal(envOf(containerOf(docs)).WATCH_NAMESPACES, watched.join(','));
    },
  },
  {
    name: 'ha',
    values: () => ({ replicas: 2 }),
    check: (docs, { release }) => {
      const dep = deploymentOf(docs);
      assert.equal(dep.spec?.replicas, 2);
      const pdb = named(docs, 'PodDisruptionBudget', `${release}-dbcred-operator`) as unknown as k8s.V1PodDisruptionBudget;
      assert.ok(pdb, 'a PodDisruptionBudget with two replicas');
      assert.equal(pdb.spec?.minAvailable, 1);
      assert.deepEqual(pdb.spec?.selector?.matchLabels, dep.spec?.selector.matchLabels);
    },
  },
  {
    name: 'monitoring',
    values: () => ({
      serviceMonitor: { enabled: true, interval: '15s', additionalLabels: { release: 'kube-prometheus' } },
      prometheusRule: { enabled: true, additionalLabels: { role: 'alert-rules' } },
      grafanaDashboard: { enabled: true },
    }),
    check: (docs, { release, namespace }) => {
      const full = `${release}-dbcred-operator`;
      const sm = named(docs, 'ServiceMonitor', full) as Obj & { spec: { selector: { matchLabels: Record<string, string> }; endpoints: object[]; namespaceSelector: object } };
      assert.ok(sm);
      assert.equal(sm.metadata.labels?.release, 'kube-prometheus');
      const svc = named(docs, 'Service', `${full}-metrics`);
      for (const [k, v] of Object.entries(sm.spec.selector.matchLabels)) assert.equal(svc?.metadata.labels?.[k], v, `the ServiceMonitor selects the metrics Service (${k})`);
      assert.deepEqual(sm.spec.endpoints, [{ port: 'metrics', path: '/metrics', interval: '15s' }]);
      assert.deepEqual(sm.spec.namespaceSelector, { matchNames: [namespace] });
      const rule = named(docs, 'PrometheusRule', full) as Obj & { spec: { groups: unknown } };
      assert.ok(rule);
      assert.equal(rule.metadata.labels?.role, 'alert-rules');
      assert.deepEqual(rule.spec.groups, (yaml.load(ALERTS) as { groups: unknown }).groups, 'the groups of deploy/monitoring/alerts.yaml');
      // Prometheus's own templates reach the rule as text, not evaluated (or emptied) by Helm.
      const annotations = JSON.stringify(rule.spec.groups);
      for (const t of ['{{ $labels.namespace }}', '{{ $value }}', '{{ $labels.controller }}', '{{ $value | humanizePercentage }}']) {
        assert.ok(annotations.includes(t), `the rendered rule keeps ${t}`);
      }
      const dashboard = named(docs, 'ConfigMap', `${full}-dashboard`) as Obj & { data: Record<string, string> };
      assert.ok(dashboard, 'the Grafana dashboard ConfigMap');
      assert.equal(dashboard.metadata.labels?.grafana_dashboard, '1', "the label Grafana's sidecar looks for");
      assert.equal(dashboard.metadata.namespace, namespace);
      assert.deepEqual(JSON.parse(dashboard.data['dbcred-operator.json'] ?? ''), JSON.parse(readFileSync(path.join(REPO_ROOT, 'deploy', 'monitoring', 'dashboard.json'), 'utf8')), 'deploy/monitoring/dashboard.json, unchanged by Helm');
    },
  },
  {
    name: 'hostnet',
    values: () => ({ hostNetwork: true, healthReusePort: true, replicas: 2, healthPort: 18181 }),
    check: (docs) => {
      const spec = deploymentOf(docs).spec?.template.spec;
      assert.equal(spec?.hostNetwork, true);
      assert.equal(spec?.dnsPolicy, 'ClusterFirstWithHostNet');
      const c = containerOf(docs);
      assert.equal(c.ports, undefined, 'no declared port: it would become a hostPort and keep the second replica off the node');
      assert.equal(envOf(c).HEALTH_REUSE_PORT, 'true');
      assert.equal(envOf(c).HEALTH_PORT, '18181');
      assert.equal(c.readinessProbe?.httpGet?.port, 18181);
      assert.equal(deploymentOf(docs).spec?.strategy, undefined, 'a surge pod can bind the shared port');
      assert.equal(c.livenessProbe?.httpGet?.port, 18181);
    },
  },
  {
    name: 'clusterid',
    values: () => ({ clusterId: 'prod-eu-1' }),
    check: (docs, { release }) => {
      assert.equal(envOf(containerOf(docs)).CLUSTER_ID, 'prod-eu-1');
      assert.equal(named(docs, 'ClusterRole', `${release}-dbcred-operator-cluster-identity`), undefined, 'no read of kube-system needed');
      assert.equal(named(docs, 'ClusterRoleBinding', `${release}-dbcred-operator-cluster-identity`), undefined);
    },
  },
  {
    name: 'nouserroles',
    values: () => ({ userRoles: { enabled: false } }),
    check: (docs, { release }) => {
      const full = `${release}-dbcred-operator`;
      assert.deepEqual(ofKind(docs, 'ClusterRole').map((r) => r.metadata.name).sort(), [full, `${full}-cluster-identity`]);
    },
  },
];

/** RBAC objects reduced to what grants something: kinds, rules, aggregation, roleRef and subjects; names without their prefix. */
function rbacShape(docs: Obj[], operatorNamespace: string): string[] {
  const role = (name: string): string => name.replace(/^dbcred(-operator)?/, '');
  const ns = (n: string | undefined): string | undefined => (n === operatorNamespace ? '<operator namespace>' : n);
  const sortRule = (r: Rule): Rule => Object.fromEntries(Object.entries(r).sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => [k, [...(v as string[])].sort()]));
  return docs
    .filter((d) => ['ServiceAccount', 'ClusterRole', 'ClusterRoleBinding', 'Role', 'RoleBinding'].includes(d.kind))
    .map((d) => {
      const roleRef = d.roleRef as { kind: string; name: string } | undefined;
      const subjects = d.subjects as Array<{ kind: string; name: string; namespace?: string }> | undefined;
      return JSON.stringify({
        kind: d.kind,
        name: role(d.metadata.name),
        namespace: ns(d.metadata.namespace),
        aggregation: Object.entries(d.metadata.labels ?? {}).filter(([k]) => k.startsWith('rbac.authorization.k8s.io/aggregate-to-')).sort(),
        rules: ((d.rules as Rule[] | undefined) ?? []).map(sortRule).map((r) => JSON.stringify(r)).sort(),
        roleRef: roleRef && { kind: roleRef.kind, name: role(roleRef.name) },
        subjects: subjects?.map((s) => ({ kind: s.kind, name: role(s.name), namespace: ns(s.namespace) })),
      });
    })
    .sort();
}

describe('the Helm chart (deploy/chart, issue 11)', function () {
  this.timeout(300_000);
  let env: TestEnv;
  let releaseNs: string;
  let watched: string[];
  const installedPrometheusCrds: string[] = [];

  before(async function () {
    this.timeout(900_000);
    env = await testEnv();
    chartTools(); // builds or finds helm and the CRDs once, before the first test's clock starts
    releaseNs = await createNamespace(env, 'chart-release');
    watched = [await createNamespace(env, 'chart-platform'), await createNamespace(env, 'chart-team')];
  });

  after(async function () {
    this.timeout(120_000);
    // Only what this file installed: an existing cluster may have its own prometheus-operator CRDs.
    for (const file of installedPrometheusCrds) await env.kubectl(['delete', '--ignore-not-found', '-f', file]).catch(() => undefined);
  });

  it('passes helm lint, also --strict, with every documented values combination', async () => {
    await runHelm(['lint', CHART_DIR]);
    await runHelm(['lint', '--strict', CHART_DIR]);
    for (const c of COMBINATIONS) await runHelm(['lint', '--strict', CHART_DIR, '-f', valuesFile(`lint-${c.name}`, c.values({ watched }))]);
  });

  it('refuses a misspelt or malformed value with a message that names it (template, lint and install)', async () => {
    const refusals: Array<[string[], RegExp]> = [
      [['--set', 'workrs=3'], /workrs/],
      [['--set', 'leaderElection.leaseDurration=20s'], /leaseDurration/],
      [['--set', 'logLevel=loud'], /logLevel/],
      [['--set', 'workers=0'], /workers/],
      [['--set', 'resyncPeriod=10d'], /resyncPeriod/],
      [['--set', 'watchNamespaces={Team_A}'], /watchNamespaces/],
      [['--set', 'clusterId=has space'], /clusterId/],
      [['--set', 'image.pullPolicy=Sometimes'], /pullPolicy/],
      [['--set', 'replicas=2', '--set', 'leaderElection.enabled=false'], /leaderElection\.enabled/],
      [['--set', 'serviceMonitor.enabled=true', '--set', 'metricsService.enabled=false'], /metricsService\.enabled/],
    ];
    for (const [args, message] of refusals) {
      await assert.rejects(runHelm(['template', 'bad', CHART_DIR, ...args]), message, `helm template ${args.join(' ')}`);
    }
    await assert.rejects(runHelm(['lint', CHART_DIR, '--set', 'workrs=3']), /workrs/);
    // Against the cluster: refused before anything is created, no release recorded.
    await assert.rejects(runHelm(['install', 'bad', CHART_DIR, '-n', releaseNs, '--set', 'workrs=3'], { kubeconfig: env.kubeconfigPath }), /workrs/);
    assert.equal((await runHelm(['list', '-n', releaseNs, '-q'], { kubeconfig: env.kubeconfigPath })).trim(), '');
  });

  it('renders every documented combination as documented, and the kube-apiserver accepts each (server-side dry run)', async function () {
    this.timeout(600_000);
    const { prometheusOperatorCrds } = chartTools();
    for (const file of PROMETHEUS_CRDS.map((f) => path.join(prometheusOperatorCrds, f))) {
      const name = (yaml.load(readFileSync(file, 'utf8')) as Obj).metadata.name;
      if (await env.kubectl(['get', 'crd', name, '-o', 'name']).then(() => true, () => false)) continue;
      await env.kubectl(['apply', '--server-side', '-f', file]);
      installedPrometheusCrds.push(file);
      // Not kubectl wait: it fails while the new CRD has no conditions at all yet.
      await waitFor(`CRD ${name} Established`, async () =>
        (await env.kubectl(['get', 'crd', name, '-o', 'jsonpath={.status.conditions[?(@.type=="Established")].status}'])).trim() === 'True', { timeoutMs: 60_000, intervalMs: 250 });
    }
    // The API server warns of every pod template that the restricted Pod Security Standard would refuse.
    await env.kubectl(['label', 'namespace', releaseNs, 'pod-security.kubernetes.io/warn=restricted', 'pod-security.kubernetes.io/warn-version=latest']);
    for (const c of COMBINATIONS) {
      const release = `dry-${c.name}`;
      const docs = parseDocs(await template(release, releaseNs, c.values({ watched })));
      c.check(docs, { release, namespace: releaseNs, watched });
      // With the CRDs (crds/) as a user's first install sends them: they must apply over the ones in place.
      const withCrds = await template(release, releaseNs, c.values({ watched }), ['--include-crds']);
      const out = await env.kubectl(['apply', '--server-side', '--force-conflicts', '--dry-run=server', '-o', 'name', '-f', '-'], withCrds);
      const accepted = out.split('\n').filter((l) => /^[a-z0-9.-]+\/\S+$/.test(l));
      assert.equal(accepted.length, parseDocs(withCrds).length, `${c.name}: every object accepted:\n${out}`);
      // Only hostNetwork needs more than restricted (the namespace must then allow it, NOTES.txt says).
      const violations = out.split('\n').filter((l) => l.includes('would violate PodSecurity'));
      if (c.name === 'hostnet') assert.match(violations.join('\n'), /host namespaces \(hostNetwork=true\)/);
      else assert.deepEqual(violations, [], `${c.name}: the pod meets the restricted Pod Security Standard`);
    }
  });

  it('grants exactly the RBAC of the kustomize installs (deploy/ and deploy/namespaced/)', async () => {
    const kustomized = parseDocs(await env.kubectl(['kustomize', path.join(REPO_ROOT, 'deploy')]));
    const operatorNamespace = ofKind(kustomized, 'Namespace')[0]?.metadata.name ?? '';
    assert.equal(operatorNamespace, 'dbcred-system');
    const chart = parseDocs(await template('dbcred-operator', operatorNamespace, {}));
    assert.deepEqual(rbacShape(chart, operatorNamespace), rbacShape(kustomized, operatorNamespace));

    const kustomizedNs = parseDocs(await env.kubectl(['kustomize', path.join(REPO_ROOT, 'deploy', 'namespaced')]));
    const listed = ofKind(kustomizedNs, 'RoleBinding').filter((b) => (b.roleRef as { kind: string }).kind === 'ClusterRole').map((b) => b.metadata.namespace ?? '');
    assert.ok(listed.length >= 2, `deploy/namespaced binds in several namespaces: ${listed}`);
    const dep = kustomizedNs.find((d) => d.kind === 'Deployment') as unknown as k8s.V1Deployment;
    assert.equal(envOf(dep.spec?.template.spec?.containers[0] as Container).WATCH_NAMESPACES, listed.join(','), 'deploy/namespaced lists the same namespaces');
    const chartNs = parseDocs(await template('dbcred-operator', operatorNamespace, { watchNamespaces: listed }));
    assert.deepEqual(rbacShape(chartNs, operatorNamespace), rbacShape(kustomizedNs, operatorNamespace));
  });

  it('runs the pod as deploy/base does: security contexts, resources, probes, NODE_OPTIONS', async () => {
    const kustomized = parseDocs(await env.kubectl(['kustomize', path.join(REPO_ROOT, 'deploy')]));
    const chart = parseDocs(await template('dbcred-operator', 'dbcred-system', {}));
    const [k, c] = [deploymentOf(kustomized), deploymentOf(chart)];
    assert.deepEqual(c.spec?.template.spec?.securityContext, k.spec?.template.spec?.securityContext);
    assert.equal(c.spec?.replicas, k.spec?.replicas);
    const [kc, cc] = [containerOf(kustomized), containerOf(chart)];
    for (const field of ['securityContext', 'resources', 'volumeMounts', 'ports'] as const) assert.deepEqual(cc[field], kc[field], field);
    assert.deepEqual(c.spec?.template.spec?.volumes, k.spec?.template.spec?.volumes);
    for (const probe of ['livenessProbe', 'readinessProbe'] as const) {
      // The chart names the port by number (it is not always declared); the rest is the same.
      assert.deepEqual({ ...cc[probe], httpGet: { ...cc[probe]?.httpGet, port: 'health' } }, kc[probe], probe);
    }
    const kenv = envOf(kc);
    const cenv = envOf(cc);
    for (const [name, value] of Object.entries(kenv)) assert.equal(cenv[name], value, `env ${name}`);
  });

  describe('installed with helm on the local node: install, issue, upgrade, issue, uninstall', () => {
    const release = `chart-${Math.random().toString(36).slice(2, 6)}`;
    const fullname = `${release}-dbcred-operator`;
    const clusterId = `chart-test-${process.pid}`;
    let ns = '';
    let installNs = '';
    let installed = false;
    let installValues: Record<string, unknown> = {};
    const helm = (args: string[]): Promise<string> => runHelm(args, { kubeconfig: env.kubeconfigPath });

    before(async function () {
      this.timeout(1_200_000);
      // Skips, saying why, where no node can run (USE_EXISTING_CLUSTER=true too): the pod needs this machine's
      // containerd for its image and 127.0.0.1 for PostgreSQL, as in pods.test.ts.
      const node = await testNode(this);
      const images = await buildImages({ log: (line) => console.log(`    ${line}`) });
      await node.importImage(images.operator.tarFile);
      // The operator owns only this namespace (watchNamespaces) and marks roles with its own CLUSTER_ID, so its
      // orphan sweep never judges the roles of another operator of the run.
      ns = await createNamespace(env, 'chart-app');
      installNs = `chart-op-${process.pid}-${release.slice(6)}`;
      await apply(env, ns, platformObjects(env));
      const { newName, newTag } = splitImage(images.operator.ref);
      const values = {
        image: { repository: newName, tag: newTag, pullPolicy: 'Never' },
        // What the local node needs (test/deploy/local): host network, the kube-apiserver on 127.0.0.1, a free port.
        hostNetwork: true,
        healthPort: await freePort(),
        extraEnv: node.inClusterEnv(),
        watchNamespaces: [ns],
        clusterId,
      };
      installValues = values;
      installed = true;
      try {
        await helm(['install', release, CHART_DIR, '-n', installNs, '--create-namespace', '-f', valuesFile(release, values), '--wait', '--timeout', '180s']);
      } catch (err) {
        throw new Error(`${err instanceof Error ? err.message : String(err)}\n${await diagnostics(env.kubectl, installNs)}`);
      }
    });

    after(async function () {
      this.timeout(240_000);
      if (!installed) return;
      await helm(['uninstall', release, '-n', installNs, '--wait', '--timeout', '120s']).catch(() => undefined);
      // helm uninstall leaves the namespace that --create-namespace made.
      await deleteNamespaceAndWait(env, installNs).catch(() => undefined);
    });

    const operatorPods = async (): Promise<k8s.V1Pod[]> =>
      (await env.core.listNamespacedPod({ namespace: installNs, labelSelector: `app.kubernetes.io/instance=${release}` })).items.filter((p) => !p.metadata?.deletionTimestamp);
    const isReady = (p: k8s.V1Pod): boolean => p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') === true;

    /** A credential issued by the installed operator: Ready, its Secret logs in, its role carries this installation's marker. */
    const issues = async (name: string): Promise<void> => {
      await apply(env, ns, [credentialObject(name, { roleRef: { name: 'reader' } })]);
      const cred = await waitForCondition<DatabaseCredential>(env, 'databasecredentials', ns, name, 'Ready', 'True', undefined, 60_000);
      const data = await readSecretData(env, ns, name);
      assert.ok(data);
      assert.equal(await loginError(connectionFromSecret(data)), undefined, 'the issued login works');
      const username = cred.status?.username ?? '';
      const comment = await queryAs(env.postgres.connection, `SELECT shobj_description(oid, 'pg_authid') AS c FROM pg_roles WHERE rolname = ${pg.escapeLiteral(username)}`);
      assert.equal(comment.rows[0]?.c, markerComment(clusterId, ns, name, cred.metadata.uid ?? '', username), 'marked with the CLUSTER_ID of the values');
    };

    it('runs the Ready operator pod of the release, which issues a credential that logs in', async () => {
      await waitForCondition(env, 'databaseroles', ns, 'reader', 'Ready', 'True', undefined, 60_000);
      const pods = await operatorPods();
      assert.equal(pods.length, 1);
      const [pod] = pods;
      assert.ok(pod && isReady(pod), 'Ready: the kubelet probed /readyz');
      assert.equal(pod.spec?.serviceAccountName, fullname);
      assert.equal(pod.spec?.hostNetwork, true);
      const podEnv = Object.fromEntries((pod.spec?.containers[0]?.env ?? []).map((e) => [e.name, e.value]));
      assert.equal(podEnv.WATCH_NAMESPACES, ns);
      assert.equal(podEnv.LOG_LEVEL, 'info');
      await issues('first');
    });

    it('rolls the operator on helm upgrade with a changed value (a new ReplicaSet and pod), and issuing goes on', async function () {
      this.timeout(400_000);
      const [before] = await operatorPods();
      assert.ok(before);
      // hostNetwork without healthReusePort: the health port is a hostPort, so the old pod must go first.
      const strategy = (await env.apps.readNamespacedDeployment({ namespace: installNs, name: fullname })).spec?.strategy;
      assert.equal(strategy?.rollingUpdate?.maxSurge, 0);
      const oldReplicaSet = before.metadata?.ownerReferences?.[0]?.name;
      try {
        await helm(['upgrade', release, CHART_DIR, '-n', installNs, '--reuse-values', '--set', 'logLevel=debug', '--set', 'workers=4', '--wait', '--timeout', '180s']);
      } catch (err) {
        throw new Error(`${err instanceof Error ? err.message : String(err)}\n${await diagnostics(env.kubectl, installNs)}`);
      }
      await waitFor('one Ready pod of a new ReplicaSet, the old pod gone', async () => {
        const pods = await operatorPods();
        return pods.length === 1 && pods[0] !== undefined && isReady(pods[0]) && pods[0].metadata?.ownerReferences?.[0]?.name !== oldReplicaSet;
      }, { timeoutMs: 120_000, intervalMs: 500 });
      const [after] = await operatorPods();
      const podEnv = Object.fromEntries((after?.spec?.containers[0]?.env ?? []).map((e) => [e.name, e.value]));
      assert.equal(podEnv.LOG_LEVEL, 'debug');
      assert.equal(podEnv.WORKERS, '4');
      assert.equal(podEnv.WATCH_NAMESPACES, ns, '--reuse-values kept the rest');
      const dep = await env.apps.readNamespacedDeployment({ namespace: installNs, name: fullname });
      assert.equal(dep.metadata?.annotations?.['deployment.kubernetes.io/revision'], '2');
      const history = JSON.parse(await helm(['history', release, '-n', installNs, '-o', 'json'])) as Array<{ revision: number; status: string }>;
      assert.deepEqual(history.map((h) => [h.revision, h.status]), [[1, 'superseded'], [2, 'deployed']]);
      await issues('after-upgrade');
    });

    it('is scraped by a real Prometheus as its ServiceMonitor says; its PrometheusRule evaluates there, and DbcredNoLeader fires at 0 replicas', async function () {
      this.timeout(300_000);
      if (prometheusMissing()) this.skip();
      const docs = parseDocs(await template(release, installNs, { ...installValues, serviceMonitor: { enabled: true }, prometheusRule: { enabled: true } }));
      const [monitor] = ofKind(docs, 'ServiceMonitor');
      const [rule] = ofKind(docs, 'PrometheusRule');
      assert.ok(monitor && rule);
      const groups = (rule.spec as { groups: { rules: { alert: string }[] }[] }).groups;
      const monitored = monitoredService(monitor, docs);
      const targetsFile = path.join(mkdtempSync(path.join(os.tmpdir(), 'dbcred-chart-sd-')), 'targets.json');
      removeOnExit(path.dirname(targetsFile));
      const discover = async () => {
        writeFileSync(`${targetsFile}.tmp`, JSON.stringify(await discoverTargets(env, monitored)));
        renameSync(`${targetsFile}.tmp`, targetsFile); // whole, never half written
      };
      await discover();
      let discovering = true;
      const discovery = (async () => {
        while (discovering) {
          await new Promise((r) => setTimeout(r, 1_000));
          await discover().catch(() => undefined);
        }
      })();
      // The shipped durations divided by 30, as in monitoring.test.ts: a test cannot wait minutes.
      const prometheus = new PrometheusServer({
        scrapeConfigs: [{ job_name: `serviceMonitor/${installNs}/${monitor.metadata.name}/0`, metrics_path: monitored.path, file_sd_configs: [{ files: [targetsFile], refresh_interval: '1s' }] }],
        ruleFiles: { 'prometheusrule.yaml': compressRuleTimes(yaml.dump({ groups }), 30) },
      });
      try {
        await prometheus.start();
        await waitFor('Prometheus to discover and scrape the operator pod', async () => {
          const up = await prometheus.query(`up{namespace="${installNs}"}`);
          return up.length === 1 && up[0]?.value[1] === '1';
        }, { timeoutMs: 60_000, intervalMs: 500 });
        const [leader] = await prometheus.query(`dbcred_leader{namespace="${installNs}"}`);
        assert.equal(leader?.value[1], '1', 'the pod leads');
        assert.match(leader?.metric.pod ?? '', new RegExp(`^${fullname}-`), 'labelled with its pod');
        assert.equal(leader?.metric.service, `${fullname}-metrics`);
        const [ready] = await prometheus.query(`dbcred_credentials{namespace="${installNs}",state="ready"}`);
        assert.ok(Number(ready?.value[1]) >= 1, 'the credential issued after the upgrade is counted Ready');

        const shipped = groups.flatMap((g) => g.rules.map((r) => r.alert)).sort();
        // Rules evaluated before the first scrape saw no dbcred_leader at all (absent: DbcredNoLeader, whose `for` is
        // 4 s here): judge them only on evaluations that came after samples were there.
        const scrapedAt = Date.now();
        await waitFor('every rule of the PrometheusRule evaluated without error since the first scrape', async () => {
          const rules = await prometheus.rules();
          return rules.length === shipped.length && rules.every((r) => r.health === 'ok' && Date.parse(r.lastEvaluation) > scrapedAt + 1_000);
        }, { timeoutMs: 30_000, intervalMs: 500 });
        assert.deepEqual((await prometheus.rules()).map((r) => r.name).sort(), shipped);
        const firing = (await prometheus.alerts()).filter((a) => a.state === 'firing');
        assert.deepEqual(firing.map((a) => a.labels.alertname), [], `nothing fires on a working install: ${JSON.stringify(firing)}`);

        await env.kubectl(['-n', installNs, 'scale', `deployment/${fullname}`, '--replicas=0']);
        await prometheus.waitFiring('DbcredNoLeader', 90_000);
        await env.kubectl(['-n', installNs, 'scale', `deployment/${fullname}`, '--replicas=1']);
        await prometheus.waitResolved('DbcredNoLeader', 120_000);
        const [back] = await prometheus.query(`sum(dbcred_leader{namespace="${installNs}"})`);
        assert.equal(back?.value[1], '1');
      } finally {
        discovering = false;
        await discovery;
        await prometheus.stop();
      }
    });

    it('revokes on delete while installed; leaves no object of the release after helm uninstall (CRDs stay)', async function () {
      this.timeout(400_000);
      const usernames: string[] = [];
      for (const name of ['first', 'after-upgrade']) {
        const cred = await getObject<DatabaseCredential>(env, 'databasecredentials', ns, name);
        usernames.push(cred?.status?.username ?? '');
      }
      await env.kubectl(['-n', ns, 'delete', 'databasecredentials', '--all', '--wait', '--timeout', '60s']);
      for (const u of usernames) assert.equal(await roleExists(env.postgres.connection, u), false, `${u} revoked`);
      await assertNoViolations(env, { namespaces: [ns] });

      await helm(['uninstall', release, '-n', installNs, '--wait', '--timeout', '120s']);
      installed = false;
      const byRelease = `app.kubernetes.io/instance=${release}`;
      const types = (await env.kubectl(['api-resources', '--verbs=list', '--namespaced', '-o', 'name'])).trim().split('\n').filter((t) => !/^events(\.events\.k8s\.io)?$/.test(t));
      // Only kind/name lines: kubectl's stderr (here with stdout) warns that v1 Endpoints are deprecated.
      const leftIn = async (namespace: string, selector?: string): Promise<string[]> =>
        (await env.kubectl(['-n', namespace, 'get', types.join(','), ...(selector ? ['-l', selector] : []), '-o', 'name', '--ignore-not-found']))
          .split('\n')
          .filter((l) => /^[a-z0-9.-]+\/\S+$/.test(l))
          .sort();
      await waitFor('the release pods to be gone', async () => (await leftIn(installNs, byRelease)).length === 0, { timeoutMs: 90_000, intervalMs: 500 });
      assert.deepEqual(await leftIn(ns, byRelease), [], 'no RoleBinding left in the watched namespace');
      assert.deepEqual((await env.kubectl(['get', 'clusterroles,clusterrolebindings', '-l', byRelease, '-o', 'name'])).trim(), '', 'no cluster-scoped RBAC left');
      // Everything else in the release namespace is what Kubernetes puts in every namespace, plus the Lease the
      // operator wrote (not a chart object: it goes with the namespace).
      assert.deepEqual(await leftIn(installNs), ['configmap/kube-root-ca.crt', 'lease.coordination.k8s.io/dbcred-operator-leader', 'serviceaccount/default']);
      // Helm never deletes what crds/ installed (nor did this install create them: they were there).
      for (const crd of ['databaseconfigs.dbcred.dev', 'databaseroles.dbcred.dev', 'databasecredentials.dbcred.dev']) await env.kubectl(['get', 'crd', crd, '-o', 'name']);
    });
  });
});
