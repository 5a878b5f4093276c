// The credential lifecycle where it used to break (issue 7): an interrupted rotation, a role or config that goes
// away past renewAt, a role dropped behind the operator's back, a switch to a static role or to another server,
// a bad Secret template, a rollout restart that fails, and a server that is gone for good. Real API server, real
// PostgreSQL (two of them where a server moves), the operator as a real process.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import type { DatabaseCredential, DatabaseRole } from '../../src/api/types.js';
import { httpGet } from '../env/controlplane.js';
import { PostgresServer } from '../env/postgres.js';
import { freePort } from '../env/processes.js';
import { installationOf, markerComment, loginError, queryAs, waitFor, type TestEnv, markedRolesOf as markedRolesOfOn, roleExists as roleExistsOn } from './harness.js';
import { operatorSuite } from './suite.js';
import {
  OperatorProcess,
  apply,
  condition,
  connectionFromSecret,
  credentialObject,
  getObject,
  platformObjects,
  readSecretData,
  waitForCondition,
} from './operator.js';

describe('credential lifecycle under faults', function () {
  this.timeout(180_000);
  let env: TestEnv;
  let ns: string;
  let operator: OperatorProcess;
  let metricsPort: number;
  const extraServers: Array<{ server: PostgresServer; dir: string }> = [];

  const q = (sql: string, conn = env.postgres.connection) => queryAs(conn, sql);
  const roleExists = (username: string, conn = env.postgres.connection) => roleExistsOn(conn, username);
  const markedRolesOf = (name: string) => markedRolesOfOn(env.postgres.connection, ns, name);
  const credential = (name: string) => getObject<DatabaseCredential>(env, 'databasecredentials', ns, name);
  const kubectl = (...args: string[]) => env.kubectl(['-n', ns, ...args]);

  async function issued(name: string, timeoutMs = 60_000): Promise<{ cred: DatabaseCredential; data: Record<string, string> }> {
    const cred = await waitForCondition<DatabaseCredential>(env, 'databasecredentials', ns, name, 'Ready', 'True', undefined, timeoutMs);
    const data = await readSecretData(env, ns, cred.status?.secretName ?? name);
    assert.ok(data, `Secret of ${name} exists`);
    return { cred, data };
  }

  /** A Ready credential whose Secret holds a different login than before, and that login works. */
  async function reissued(name: string, oldUser: string, timeoutMs = 60_000): Promise<Record<string, string>> {
    let data: Record<string, string> | undefined;
    await waitFor(`${name} to hold a new working login`, async () => {
      const c = await credential(name);
      data = await readSecretData(env, ns, name);
      return condition(c, 'Ready')?.status === 'True' && data?.username !== undefined && data.username !== oldUser && c?.status?.username === data.username;
    }, { timeoutMs, intervalMs: 200 });
    assert.equal(await loginError(connectionFromSecret(data!)), undefined, 'the new login works');
    return data!;
  }

  async function reconcileCount(): Promise<number> {
    const text = (await httpGet(`http://127.0.0.1:${metricsPort}/metrics`)).body;
    let n = 0;
    for (const m of text.matchAll(/^dbcred_reconcile_total\{controller="databasecredential",result="[a-z]+"\} (\d+)/gm)) n += Number(m[1]);
    return n;
  }

  async function secondServer(): Promise<PostgresServer> {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'dbcred-test-pg2-'));
    const server = new PostgresServer(dir);
    await server.init();
    await server.start();
    extraServers.push({ server, dir });
    // The same root login as the first server, so that one root Secret works on both.
    await q(`ALTER ROLE postgres PASSWORD '${env.postgres.password}'`, server.connection);
    return server;
  }

  operatorSuite('lcfaults', async () => {
    metricsPort = await freePort();
    return { HEALTH_PORT: String(metricsPort) };
  }, (suite) => ({ env, ns, operator } = suite));

  after(async () => {
    for (const { server, dir } of extraServers) {
      await server.stop().catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('finishes a rotation interrupted after the Secret write: one entry per login, the old one kept through its grace period', async () => {
    await apply(env, ns, [credentialObject('interrupted', { roleRef: { name: 'reader' }, rotation: { gracePeriod: '6s' } })]);
    const { cred, data: old } = await issued('interrupted');
    const oldUser = old.username!;
    await operator.stop();
    // The state a crash (or a 409 on the last status write) leaves: the new role exists and is in the Secret,
    // status still lists it as pending next to the old active one.
    const newUser = `v-interrupted-${Date.now()}`;
    const newPassword = `pw-${Math.random().toString(36).slice(2)}-Ab1`;
    const expires = new Date(Date.now() + 3600_000).toISOString().replace(/\.\d+Z$/, 'Z');
    await q(`CREATE ROLE "${newUser}" LOGIN PASSWORD '${newPassword}' VALID UNTIL '${expires}';
             COMMENT ON ROLE "${newUser}" IS ${pg.escapeLiteral(markerComment(await installationOf(env), ns, 'interrupted', cred.metadata.uid ?? '', newUser))}`);
    const roles = [...(cred.status?.roles ?? []), { username: newUser, state: 'pending', config: `${ns}/pg`, role: `${ns}/reader`, issuedAt: new Date().toISOString(), expiresAt: expires }];
    await kubectl('patch', 'databasecredential', 'interrupted', '--subresource=status', '--type=merge', '-p', JSON.stringify({ status: { roles } }));
    await kubectl('patch', 'secret', 'interrupted', '--type=merge', '-p', JSON.stringify({ stringData: { username: newUser, password: newPassword } }));
    const promotedAt = Date.now();
    operator.start();
    await operator.waitReady();

    await waitFor('the pending role to be promoted', async () => (await credential('interrupted'))?.status?.username === newUser, { timeoutMs: 30_000, intervalMs: 200 });
    const after = await credential('interrupted');
    const listed = after?.status?.roles ?? [];
    assert.deepEqual(listed.map((r) => r.username).sort(), [newUser, oldUser].sort(), 'each login listed once');
    const retiring = listed.find((r) => r.username === oldUser);
    assert.equal(retiring?.state, 'retiring');
    assert.ok(Date.parse(retiring!.revokeAfter!) >= Math.floor(promotedAt / 1000) * 1000 + 5_000, 'the old login keeps its grace period');
    assert.equal(condition(after, 'Ready')?.status, 'True');
    assert.equal(await loginError(connectionFromSecret({ ...old, username: newUser, password: newPassword })), undefined);
    assert.equal(await loginError(connectionFromSecret(old)), undefined, 'the old login works during the grace period');
    await waitFor('the old login to be revoked after its grace period', async () => !(await roleExists(oldUser)), { timeoutMs: 30_000, intervalMs: 250 });
    assert.deepEqual((await credential('interrupted'))?.status?.roles?.map((r) => [r.username, r.state]), [[newUser, 'active']]);
  });

  it('rotates on a rotate annotation of any length, and keeps writing status', async () => {
    const { data: old } = await issued('interrupted');
    await kubectl('annotate', '--overwrite', 'databasecredential', 'interrupted', `dbcred.dev/rotate=${'r'.repeat(1500)}`);
    await reissued('interrupted', old.username!);
    const after = await credential('interrupted');
    assert.ok((after?.status?.rotateRequest ?? '').length < 100, 'the request is stored as a short hash');
  });

  it('with rotation on, rides out a role that is unavailable past renewAt without a hot loop, never expires, and re-issues when it is back', async () => {
    await apply(env, ns, platformObjects(env, { config: 'pg-lapse', role: 'lapse' }));
    await waitForCondition<DatabaseRole>(env, 'databaseroles', ns, 'lapse', 'Ready', 'True');
    await apply(env, ns, [credentialObject('lapsing', { roleRef: { name: 'lapse' }, ttl: '4s' })]);
    const { data: old } = await issued('lapsing');
    await kubectl('patch', 'databaseconfig', 'pg-lapse', '--type=merge', '-p', JSON.stringify({ spec: { allowedRoles: ['someone-else'] } }));
    await waitForCondition(env, 'databasecredentials', ns, 'lapsing', 'Ready', 'False', 'RoleNotReady', 30_000);
    const before = await reconcileCount();
    await new Promise((r) => setTimeout(r, 6_000)); // past renewAt and expiresAt
    const during = (await reconcileCount()) - before;
    assert.ok(during < 40, `no hot loop while blocked (${during} credential reconciles in 6 s)`);
    const blocked = await credential('lapsing');
    assert.notEqual(condition(blocked, 'Expired')?.status, 'True', 'a credential with rotation on never expires');
    assert.equal(condition(blocked, 'Ready')?.status, 'False');
    await waitFor('the lapsed login to be revoked', async () => !(await roleExists(old.username!)), { timeoutMs: 20_000, intervalMs: 250 });
    await kubectl('patch', 'databaseconfig', 'pg-lapse', '--type=merge', '-p', JSON.stringify({ spec: { allowedRoles: ['*'] } }));
    await reissued('lapsing', old.username!);
  });

  it('replaces a role dropped outside the operator: Ready=False until a new login exists', async () => {
    await apply(env, ns, [credentialObject('dropped', { roleRef: { name: 'reader' }, ttl: '6s' })]);
    const { data: old } = await issued('dropped');
    await q(`REASSIGN OWNED BY "${old.username}" TO postgres; DROP OWNED BY "${old.username}"; DROP ROLE "${old.username}"`);
    assert.equal(await loginError(connectionFromSecret(old)), '28P01');
    await reissued('dropped', old.username!, 30_000);
  });

  it('switching roleRef from a dynamic to a static role revokes the dynamic login after its grace period', async () => {
    const user = `static_sw_${process.pid}`;
    await q(`CREATE ROLE "${user}" LOGIN PASSWORD 'initial-password-1'`);
    await apply(env, ns, [{ apiVersion: 'dbcred.dev/v1alpha1', kind: 'DatabaseRole', metadata: { name: 'static-sw' }, spec: { configRef: { name: 'pg' }, static: { username: user } } }]);
    await waitForCondition<DatabaseRole>(env, 'databaseroles', ns, 'static-sw', 'Ready', 'True');
    await apply(env, ns, [credentialObject('switcher', { roleRef: { name: 'reader' }, rotation: { gracePeriod: '3s' } })]);
    const { data: dynamic } = await issued('switcher');
    await apply(env, ns, [credentialObject('switcher', { roleRef: { name: 'static-sw' }, rotation: { gracePeriod: '3s' } })]);
    await waitFor('the Secret to hold the static user', async () => (await readSecretData(env, ns, 'switcher'))?.username === user, { timeoutMs: 30_000, intervalMs: 200 });
    assert.equal(await loginError(connectionFromSecret((await readSecretData(env, ns, 'switcher'))!)), undefined);
    await waitFor('the dynamic role to be revoked', async () => !(await roleExists(dynamic.username!)), { timeoutMs: 30_000, intervalMs: 250 });
    await waitFor('status to list no dynamic role', async () => ((await credential('switcher'))?.status?.roles ?? []).length === 0, { timeoutMs: 10_000, intervalMs: 200 });
  });

  it('a config moved to another server rotates the login there and revokes the old one on the old server', async () => {
    const server2 = await secondServer();
    await apply(env, ns, platformObjects(env, { config: 'pg-move', role: 'mover' }));
    await waitForCondition<DatabaseRole>(env, 'databaseroles', ns, 'mover', 'Ready', 'True');
    await apply(env, ns, [credentialObject('moved', { roleRef: { name: 'mover' }, rotation: { gracePeriod: '3s' } })]);
    const { data: old } = await issued('moved');
    assert.equal(Number(old.port), env.postgres.port);
    const pg = env.postgres.connection;
    await kubectl('patch', 'databaseconfig', 'pg-move', '--type=merge', '-p', JSON.stringify({
      spec: { connectionURL: `postgresql://{{username}}:{{password}}@${pg.host}:${server2.port}/${pg.database}?sslmode=disable` },
    }));
    const moved = await reissued('moved', old.username!);
    assert.equal(Number(moved.port), server2.port, 'the Secret points at the new server');
    assert.equal(await roleExists(moved.username!, { ...server2.connection, password: env.postgres.password }), true);
    await waitFor('the old role to be revoked on the old server', async () => !(await roleExists(old.username!)), { timeoutMs: 30_000, intervalMs: 250 });
  });

  it('lets go of roles on a server gone for good only when the admin says so, naming every abandoned username', async () => {
    // pg-move now points at the second server; stop it for good.
    await apply(env, ns, [credentialObject('doomed', { roleRef: { name: 'mover' } })]);
    const { data } = await issued('doomed');
    // The login of 'moved' lives on that server too: let it go normally first.
    await kubectl('delete', 'databasecredential', 'moved', '--wait=true', '--timeout=60s');
    const gone = extraServers[0]!.server;
    await gone.stop();
    await kubectl('delete', 'databasecredential', 'doomed', '--wait=false');
    await waitForCondition(env, 'databasecredentials', ns, 'doomed', 'Ready', 'False', 'RevocationFailed', 60_000);
    await new Promise((r) => setTimeout(r, 2000));
    assert.ok(await credential('doomed'), 'the finalizer holds while revocation fails');
    await kubectl('annotate', 'databaseconfig', 'pg-move', 'dbcred.dev/abandon-roles=true');
    await waitFor('the credential to be released', async () => (await credential('doomed')) === undefined, { timeoutMs: 60_000, intervalMs: 250 });
    const events = await kubectl('get', 'events', '--field-selector', 'reason=RolesAbandoned', '-o', 'jsonpath={.items[*].message}');
    assert.match(events, new RegExp(data.username!.replace(/[.*+?^${}()|[\]\\-]/g, '\\$&')), 'the Event names the abandoned username');
    assert.match(operator.output, /roles abandoned without revocation/);
  });

  it('refuses an invalid Secret template annotation before any SQL runs', async () => {
    await apply(env, ns, [credentialObject('badtpl', { roleRef: { name: 'reader' }, secretTemplate: { annotations: { 'not a valid key!': 'x' } } })]);
    const cred = await waitForCondition<DatabaseCredential>(env, 'databasecredentials', ns, 'badtpl', 'Ready', 'False', 'InvalidSecretTemplate');
    assert.match(condition(cred, 'Ready')?.message ?? '', /secretTemplate\.annotations key/);
    await new Promise((r) => setTimeout(r, 2000));
    assert.deepEqual(await markedRolesOf('badtpl'), [], 'no role was created');
    assert.equal(await readSecretData(env, ns, 'badtpl'), undefined);
  });

  it('retries a rollout restart that the API refused, instead of recording it as done', async () => {
    const policy = `deny-restarts-${ns}`;
    await env.kubectl(['apply', '-f', '-'], JSON.stringify({
      apiVersion: 'v1',
      kind: 'List',
      items: [
        {
          apiVersion: 'admissionregistration.k8s.io/v1', kind: 'ValidatingAdmissionPolicy', metadata: { name: policy },
          spec: {
            failurePolicy: 'Fail',
            matchConstraints: { resourceRules: [{ apiGroups: ['apps'], apiVersions: ['v1'], operations: ['UPDATE'], resources: ['deployments'] }] },
            validations: [{ expression: "!has(object.metadata.labels) || !('deny-restart' in object.metadata.labels)", message: 'restarts are frozen' }],
          },
        },
        {
          apiVersion: 'admissionregistration.k8s.io/v1', kind: 'ValidatingAdmissionPolicyBinding', metadata: { name: policy },
          spec: { policyName: policy, validationActions: ['Deny'], matchResources: { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': ns } } } },
        },
      ],
    }));
    try {
      await apply(env, ns, [{
        apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'frozen', labels: { 'deny-restart': 'true' } },
        spec: { replicas: 0, selector: { matchLabels: { app: 'frozen' } }, template: { metadata: { labels: { app: 'frozen' } }, spec: { containers: [{ name: 'c', image: 'none' }] } } },
      }]);
      await apply(env, ns, [credentialObject('restarter', { roleRef: { name: 'reader' }, rolloutRestartTargets: [{ kind: 'Deployment', name: 'frozen' }] })]);
      const { data: old } = await issued('restarter');
      // The policy is enforced once the API server has loaded it: wait until an update is refused.
      await waitFor('the admission policy to refuse updates', async () => {
        try {
          await kubectl('annotate', '--overwrite', 'deployment', 'frozen', `probe=${Date.now()}`);
          return false;
        } catch {
          return true;
        }
      }, { timeoutMs: 30_000, intervalMs: 500 });
      await kubectl('annotate', '--overwrite', 'databasecredential', 'restarter', 'dbcred.dev/rotate=1');
      await reissued('restarter', old.username!);
      await waitFor('a RolloutRestartFailed event', async () => (await kubectl('get', 'events', '--field-selector', 'reason=RolloutRestartFailed', '-o', 'name')).trim() !== '', { timeoutMs: 20_000, intervalMs: 500 });
      const stuck = await credential('restarter');
      const stamp = stuck?.status?.roles?.find((r) => r.state === 'active')?.issuedAt;
      assert.notEqual(stuck?.status?.restartedFor, stamp, 'a refused restart is not recorded as done');
      await kubectl('label', 'deployment', 'frozen', 'deny-restart-');
      await waitFor('the restart to be retried and to reach the Deployment', async () => {
        const out = await kubectl('get', 'deployment', 'frozen', '-o', 'jsonpath={.spec.template.metadata.annotations.dbcred\\.dev/restartedAt}');
        return out.trim() === stamp;
      }, { timeoutMs: 60_000, intervalMs: 500 });
      await waitFor('restartedFor to be recorded', async () => (await credential('restarter'))?.status?.restartedFor === stamp, { timeoutMs: 20_000, intervalMs: 250 });
    } finally {
      await env.kubectl(['delete', 'validatingadmissionpolicybinding,validatingadmissionpolicy', policy, '--ignore-not-found']);
    }
  });
});
