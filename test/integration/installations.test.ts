// Two installations on one PostgreSQL server (issue 8, finding 1): blue/green, disaster recovery, staging pointed at
// production. Two real control planes, each with its own operator, both issuing roles for a credential of the same
// namespace and name on the same server, both sweeping orphans every second. Each marker names its installation (by
// default the kube-system namespace UID, which differs between the two clusters), so neither sweeps the other's
// live roles; a role marked in the format before installations is never swept on doubt, and is re-marked by the
// installation whose credential holds it.
//
// The second cluster is a second local control plane, so this file needs the embedded environment's binaries; with
// USE_EXISTING_CLUSTER=true and no binaries it is skipped, and says so.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as k8s from '@kubernetes/client-node';
import pg from 'pg';
import type { DatabaseCredential, DatabaseRole } from '../../src/api/types.js';
import { ControlPlane, REPO_ROOT, controlPlaneBinDir, httpGet } from '../env/controlplane.js';
import { freePort, removeOnExit, runCommand } from '../env/processes.js';
import { installationOf, loginError, sweptTwice as sweptTwiceOn, markerComment, queryAs, roleExists as roleExistsOn, testEnv, waitFor, type TestEnv } from './harness.js';
import { OperatorProcess, apply, connectionFromSecret, credentialObject, getObject, platformObjects, readSecretData, waitForCondition } from './operator.js';

describe('two installations on one PostgreSQL server (issue 8)', function () {
  this.timeout(120_000);
  let blue: TestEnv;
  let green: TestEnv;
  let greenPlane: ControlPlane | undefined;
  let tmp = '';
  const operators: Array<{ op: OperatorProcess; healthPort: number }> = [];
  const ns = `inst-${process.pid}`;
  let ids: { blue: string; green: string };

  const q = (sql: string) => queryAs(blue.postgres.connection, sql);
  const ident = (name: string) => pg.escapeIdentifier(name);
  const literal = (text: string) => pg.escapeLiteral(text);
  const roleExists = (username: string) => roleExistsOn(blue.postgres.connection, username);
  const comment = async (username: string) =>
    (await q(`SELECT pg_catalog.shobj_description(oid, 'pg_authid') AS c FROM pg_roles WHERE rolname = ${literal(username)}`)).rows[0]?.c as string | null | undefined;

  before(async function () {
    this.timeout(600_000);
    blue = await testEnv();
    const bin = controlPlaneBinDir();
    if (!existsSync(path.join(bin, 'kube-apiserver'))) {
      console.log(`      skipped: a second cluster needs the local control-plane binaries (${bin}); run make control-plane`);
      this.skip();
    }
    tmp = mkdtempSync(path.join(os.tmpdir(), 'dbcred-green-'));
    removeOnExit(tmp);
    greenPlane = new ControlPlane({ baseDir: tmp, binDir: bin, crdDir: path.join(REPO_ROOT, 'crds') });
    await greenPlane.start();
    const kc = new k8s.KubeConfig();
    kc.loadFromFile(greenPlane.kubeconfigPath);
    const plane = greenPlane;
    green = {
      ...blue,
      kubeconfigPath: plane.kubeconfigPath,
      kc,
      core: kc.makeApiClient(k8s.CoreV1Api),
      apps: kc.makeApiClient(k8s.AppsV1Api),
      custom: kc.makeApiClient(k8s.CustomObjectsApi),
      restartApiServer: undefined,
      signalApiServer: undefined,
      kubectl: (args, input) => runCommand(plane.bin('kubectl'), ['--kubeconfig', plane.kubeconfigPath, ...args], { input }),
    };
    ids = { blue: await installationOf(blue), green: await installationOf(green) };
    assert.notEqual(ids.blue, ids.green, 'two clusters, two kube-system UIDs');
    // The same namespace, platform objects and credential name in both clusters, against the same server.
    for (const env of [blue, green]) {
      await env.core.createNamespace({ body: { metadata: { name: ns } } });
      const healthPort = await freePort();
      const op = new OperatorProcess(env, { ORPHAN_SWEEP_PERIOD: '1s', HEALTH_PORT: String(healthPort) });
      operators.push({ op, healthPort });
      op.start();
      await op.waitReady();
      await apply(env, ns, platformObjects(env));
      await waitForCondition<DatabaseRole>(env, 'databaseroles', ns, 'reader', 'Ready', 'True');
    }
  });

  after(async function () {
    this.timeout(180_000);
    try {
      for (const env of [blue, green]) {
        if (!env) continue;
        const list = (await env.custom.listNamespacedCustomObject({ group: 'dbcred.dev', version: 'v1alpha1', namespace: ns, plural: 'databasecredentials' }).catch(() => ({ items: [] }))) as { items: DatabaseCredential[] };
        for (const c of list.items) await env.kubectl(['-n', ns, 'delete', 'databasecredential', c.metadata.name, '--wait=true', '--timeout=60s']).catch(() => undefined);
      }
    } finally {
      for (const { op } of operators) await op.stop();
      await greenPlane?.stop();
      if (tmp) rmSync(tmp, { recursive: true, force: true });
    }
  });

  const [blueOp, greenOp] = [() => operators[0]!, () => operators[1]!];

  const sweptTwice = (installation: string) => sweptTwiceOn(blue.postgres.connection, installation, ns);

  async function issued(env: TestEnv, name: string): Promise<{ cred: DatabaseCredential; data: Record<string, string> }> {
    const cred = await waitForCondition<DatabaseCredential>(env, 'databasecredentials', ns, name, 'Ready', 'True');
    const data = await readSecretData(env, ns, name);
    assert.ok(data);
    return { cred, data };
  }

  it("neither sweeps the other's live roles, and each still sweeps its own orphans", async () => {
    for (const env of [blue, green]) await apply(env, ns, [credentialObject('app', { roleRef: { name: 'reader' } })]);
    const b = await issued(blue, 'app');
    const g = await issued(green, 'app');
    assert.notEqual(b.cred.metadata.uid, g.cred.metadata.uid);
    assert.notEqual(b.data.username, g.data.username);
    // Each role is marked with its own installation.
    assert.equal(await comment(b.data.username!), markerComment(ids.blue, ns, 'app', b.cred.metadata.uid ?? '', b.data.username!));
    assert.equal(await comment(g.data.username!), markerComment(ids.green, ns, 'app', g.cred.metadata.uid ?? '', g.data.username!));
    // Both sweep (each revokes an orphan of its own), more than once, while the other's live role is on the server.
    await sweptTwice(ids.blue);
    await sweptTwice(ids.green);
    for (const { data } of [b, g]) assert.equal(await loginError(connectionFromSecret(data)), undefined, `${data.username} still logs in`);
    // An orphan of one installation is revoked by that one; the other leaves it alone until then.
    assert.doesNotMatch(greenOp().op.output, new RegExp(`orphaned role revoked.*${b.data.username}`));
    assert.doesNotMatch(blueOp().op.output, new RegExp(`orphaned role revoked.*${g.data.username}`));
  });

  it('never sweeps a legacy-marked role whose credential it cannot find (no proof whose it is), and says so', async () => {
    const legacy = `v-legacy-${process.pid}`;
    await q(`DROP ROLE IF EXISTS ${ident(legacy)}; CREATE ROLE ${ident(legacy)} LOGIN PASSWORD 'legacy-pw'`);
    await q(`COMMENT ON ROLE ${ident(legacy)} IS ${literal(`dbcred:${JSON.stringify({ namespace: ns, name: 'gone', uid: '00000000-0000-0000-0000-000000000000' })}`)}`);
    try {
      await sweptTwice(ids.blue);
      await sweptTwice(ids.green);
      assert.equal(await loginError({ ...blue.postgres.connection, user: legacy, password: 'legacy-pw' }), undefined, 'the legacy-marked role is untouched');
      for (const { op, healthPort } of operators) {
        const metrics = (await httpGet(`http://127.0.0.1:${healthPort}/metrics`)).body;
        const gauge = Number(/^dbcred_orphan_sweep_unproven_roles (\d+)/m.exec(metrics)?.[1] ?? 'NaN');
        assert.ok(gauge >= 1, `the gauge counts it (got ${gauge})`);
        assert.match(op.output, new RegExp(`cannot prove are its own; not swept.*${legacy}`));
      }
    } finally {
      await q(`DROP ROLE IF EXISTS ${ident(legacy)}`);
    }
  });

  it('keeps a legacy-marked role working for the credential that holds it: re-marked by its own installation, revoked on delete', async () => {
    await apply(blue, ns, [credentialObject('old', { roleRef: { name: 'reader' } })]);
    const { cred, data } = await issued(blue, 'old');
    const username = data.username!;
    // What an operator before installation ids wrote on the role it issued.
    const legacy = `dbcred:${JSON.stringify({ namespace: ns, name: 'old', uid: cred.metadata.uid })}`;
    await q(`COMMENT ON ROLE ${ident(username)} IS ${literal(legacy)}`);
    await waitFor('blue to re-mark the role it holds', async () => (await comment(username)) !== legacy, { timeoutMs: 30_000, intervalMs: 200 });
    assert.equal(await comment(username), markerComment(ids.blue, ns, 'old', cred.metadata.uid ?? '', username), 'the marker now names blue');
    assert.equal(await loginError(connectionFromSecret(data)), undefined, 'and the login works throughout');
    await sweptTwice(ids.green);
    assert.equal(await roleExists(username), true, 'green left it alone');
    await blue.kubectl(['-n', ns, 'delete', 'databasecredential', 'old', '--wait=true', '--timeout=60s']);
    assert.equal(await roleExists(username), false, 'revoked when its credential is deleted');
    assert.equal(await getObject(blue, 'databasecredentials', ns, 'old'), undefined);
  });
});
