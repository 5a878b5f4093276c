// Issue 8, finding 8: a namespaced install. The RBAC of deploy/namespaced/ (built with kustomize, as a user would),
// bound in two namespaces of this test; the operator runs with a real ServiceAccount token and WATCH_NAMESPACES.
// It issues a credential end to end in its namespaces, and proves that it can do nothing elsewhere: a credential
// in another namespace is never touched, and the ServiceAccount cannot list Secrets across the cluster.
import assert from 'node:assert/strict';
import path from 'node:path';
import yaml from 'js-yaml';
import type { DatabaseCredential, DatabaseRole } from '../../src/api/types.js';
import { REPO_ROOT } from '../env/controlplane.js';
import { assertNoViolations } from '../audit/auditor.js';
import { createNamespace, loginError, markedRolesOf, serviceAccountKubeconfig, testEnv, type TestEnv } from './harness.js';
import { OperatorProcess, apply, connectionFromSecret, credentialObject, getObject, platformObjects, readSecretData, waitForCondition } from './operator.js';

interface K8sObject {
  kind: string;
  metadata: { name: string; namespace?: string };
}

describe('namespaced install: WATCH_NAMESPACES and RoleBindings only there (issue 8, finding 8)', function () {
  this.timeout(180_000);
  let env: TestEnv;
  let operatorNs: string;
  let platform: string;
  let team: string;
  let outside: string;
  let token: string;
  let operator: OperatorProcess;

  /** kubectl as the operator's ServiceAccount, with its own token (not impersonation); errors never show it. */
  async function asOperator(args: string[]): Promise<string> {
    try {
      return await env.kubectl(['--token', token, ...args]);
    } catch (err) {
      throw new Error(String(err instanceof Error ? err.message : err).replaceAll(token, '<token>'));
    }
  }

  /** `kubectl auth can-i` as the operator's ServiceAccount: its answer (exit status 1 and "no" for no). */
  async function canI(...args: string[]): Promise<boolean> {
    try {
      return /(^|\n)yes\s*$/.test(await asOperator(['auth', 'can-i', ...args]));
    } catch (err) {
      if (/exited 1:[\s\S]*\bno\s*$/.test(String(err))) return false;
      throw err;
    }
  }

  before(async function () {
    this.timeout(600_000);
    env = await testEnv();
    operatorNs = await createNamespace(env, 'dbcred-nsd');
    platform = await createNamespace(env, 'nsd-platform');
    team = await createNamespace(env, 'nsd-team');
    outside = await createNamespace(env, 'nsd-outside');
    // The overlay as kustomize builds it. Its objects in dbcred-system go to this test's own namespace (another
    // suite binds dbcred-system's account cluster-wide), and its example RoleBinding is made for each namespace
    // this operator watches.
    const built = (yaml.loadAll(await env.kubectl(['kustomize', path.join(REPO_ROOT, 'deploy', 'namespaced')])) as K8sObject[])
      .map((o) => JSON.parse(JSON.stringify(o).replaceAll('"dbcred-system"', JSON.stringify(operatorNs))) as K8sObject);
    const bindings = built.filter((o) => o.kind === 'RoleBinding' && o.metadata.name === 'dbcred-operator');
    assert.ok(bindings.length >= 1, 'the overlay has per-namespace RoleBindings');
    assert.ok(!built.some((o) => o.kind === 'ClusterRoleBinding' && o.metadata.name === 'dbcred-operator'), 'no cluster-wide binding');
    const deployment = JSON.stringify(built.find((o) => o.kind === 'Deployment'));
    assert.match(deployment, /WATCH_NAMESPACES/, 'the Deployment is told which namespaces to watch');
    const objects = [
      ...built.filter((o) => o.kind !== 'Namespace' && o.kind !== 'Deployment' && !bindings.includes(o)),
      ...[platform, team].map((ns) => ({ ...bindings[0]!, metadata: { ...bindings[0]!.metadata, namespace: ns } })),
    ];
    await env.kubectl(['apply', '-f', '-'], objects.map((o) => yaml.dump(o)).join('---\n'));
    const sa = await serviceAccountKubeconfig(env, operatorNs, 'dbcred-operator');
    token = sa.token;
    operator = new OperatorProcess({ ...env, kubeconfigPath: sa.path }, {
      WATCH_NAMESPACES: `${platform},${team}`,
      LEADER_ELECT: 'true',
      POD_NAMESPACE: operatorNs,
      POD_NAME: 'namespaced',
    });
    operator.start();
    await operator.waitReady();
  });

  after(async function () {
    this.timeout(120_000);
    try {
      if (env && platform) await assertNoViolations(env, { namespaces: [platform, team] });
    } finally {
      await operator?.stop();
    }
  });

  it('issues a credential end to end across its watched namespaces (role in one, credential in another)', async () => {
    await apply(env, platform, platformObjects(env, { allowedNamespaces: [team, outside] }));
    await waitForCondition<DatabaseRole>(env, 'databaseroles', platform, 'reader', 'Ready', 'True');
    await apply(env, team, [credentialObject('app', { roleRef: { name: 'reader', namespace: platform } })]);
    await waitForCondition<DatabaseCredential>(env, 'databasecredentials', team, 'app', 'Ready', 'True');
    const data = await readSecretData(env, team, 'app');
    assert.ok(data);
    assert.equal(await loginError(connectionFromSecret(data)), undefined);
    assert.doesNotMatch(operator.output, /API 403/, 'nothing it needed was forbidden');
  });

  it('never touches a credential in a namespace it does not watch', async () => {
    // Created first; a watched credential created after it is issued, so the operator has had its chance.
    await apply(env, outside, [credentialObject('stranger', { roleRef: { name: 'reader', namespace: platform } })]);
    await apply(env, team, [credentialObject('later', { roleRef: { name: 'reader', namespace: platform } })]);
    await waitForCondition(env, 'databasecredentials', team, 'later', 'Ready', 'True');
    await new Promise((r) => setTimeout(r, 2_000));
    const stranger = await getObject<DatabaseCredential>(env, 'databasecredentials', outside, 'stranger');
    assert.ok(stranger);
    assert.equal(stranger.status, undefined, 'no status written');
    assert.deepEqual(stranger.metadata.finalizers ?? [], [], 'no finalizer added');
    assert.equal(await readSecretData(env, outside, 'stranger'), undefined, 'no Secret written');
    assert.deepEqual(await markedRolesOf(env.postgres.connection, outside, 'stranger'), [], 'no role created');
    assert.doesNotMatch(operator.output, new RegExp(`"${outside}/`), 'not even looked at');
  });

  it('says Ready=False when a credential names a role in a namespace it does not watch', async () => {
    await apply(env, team, [credentialObject('elsewhere', { roleRef: { name: 'reader', namespace: outside } })]);
    const cred = await waitForCondition<DatabaseCredential>(env, 'databasecredentials', team, 'elsewhere', 'Ready', 'False', 'NamespaceNotWatched');
    const ready = cred.status?.conditions?.find((c) => c.type === 'Ready');
    assert.match(ready?.message ?? '', new RegExp(`namespace "${outside}", which this operator does not watch`));
  });

  it('holds permissions only in its namespaces: no Secret, credential or Event elsewhere, nothing cluster-wide', async () => {
    assert.equal(await canI('list', 'secrets', '--all-namespaces'), false, 'list secrets --all-namespaces');
    assert.equal(await canI('watch', 'secrets', '--all-namespaces'), false);
    assert.equal(await canI('get', 'secrets', '-n', outside), false);
    assert.equal(await canI('create', 'secrets', '-n', outside), false);
    assert.equal(await canI('patch', 'databasecredentials.dbcred.dev', '-n', outside), false);
    assert.equal(await canI('list', 'databasecredentials.dbcred.dev', '--all-namespaces'), false);
    assert.equal(await canI('create', 'events', '-n', outside), false);
    assert.equal(await canI('create', 'events.events.k8s.io', '-n', outside), false);
    assert.equal(await canI('patch', 'deployments.apps', '-n', outside), false);
    assert.equal(await canI('list', 'namespaces'), false);
    // ... and what it needs where it works.
    for (const ns of [platform, team]) {
      assert.equal(await canI('list', 'secrets', '-n', ns), true, `list secrets in ${ns}`);
      assert.equal(await canI('patch', 'databasecredentials.dbcred.dev/status', '-n', ns), true);
      // Events: created through events.k8s.io, a repeat patched through core/v1 (events.ts).
      assert.equal(await canI('create', 'events.events.k8s.io', '-n', ns), true);
      assert.equal(await canI('patch', 'events', '-n', ns), true);
    }
    // A real request with its token, not only the authorizer's answer.
    await assert.rejects(asOperator(['-n', outside, 'get', 'secrets']), /forbidden/i);
  });
});
