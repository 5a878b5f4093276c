// The alerts and the dashboard of deploy/monitoring, for real: promtool checks the rules and runs their unit tests; then a real
// Prometheus (Debian's package, on loopback) scrapes the running operator every second while this suite causes each
// alert's condition against the real control plane and a PostgreSQL of its own (stopped during a deletion, a renewal
// and an issue; a planted orphan; a Lease held by someone else), and each alert fires, then resolves once the cause
// is gone. The shipped expressions are used as they are; only their durations are divided by 30 (a `for: 15m`
// becomes 30 s, a [10m] window 20 s), because a test cannot wait a quarter of an hour. After that workload every
// query of every dashboard panel runs against the same Prometheus and must return a series.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import type { DatabaseCredential, DatabaseRole } from '../../src/api/types.js';
import { REPO_ROOT } from '../env/controlplane.js';
import { PostgresServer } from '../env/postgres.js';
import { PrometheusServer, compressRuleTimes, prometheusMissing, promtool } from '../env/prometheus.js';
import { freePort } from '../env/processes.js';
import { createNamespace, installationOf, markerComment, queryAs, roleExists, waitFor, type TestEnv } from './harness.js';
import { OperatorProcess, apply, credentialObject, platformObjects, waitForCondition } from './operator.js';
import { operatorSuite } from './suite.js';

const MONITORING = path.join(REPO_ROOT, 'deploy', 'monitoring');
const FACTOR = 30;
const ALERTS = [
  'DbcredRevocationFailing',
  'DbcredCredentialsNotReady',
  'DbcredLeaseRenewalOverdue',
  'DbcredOrphanRolesRevoked',
  'DbcredUnprovenRoleMarkers',
  'DbcredNoLeader',
  'DbcredReconcileErrors',
];

function compressedRules(): string {
  return compressRuleTimes(readFileSync(path.join(MONITORING, 'alerts.yaml'), 'utf8'), FACTOR);
}

interface Dashboard {
  panels: { id: number; title: string; type: string; gridPos: object; targets: { expr: string; refId: string }[] }[];
  templating: { list: { name: string }[] };
}

function dashboard(): Dashboard {
  return JSON.parse(readFileSync(path.join(MONITORING, 'dashboard.json'), 'utf8')) as Dashboard;
}

/** A panel query as Grafana sends it with "All" selected and a 1m rate interval. */
function grafanaExpr(expr: string): string {
  return expr.replaceAll('$__rate_interval', '1m').replaceAll('$namespace', '.*').replaceAll('$job', '.*');
}

describe('monitoring: alerts (promtool, a real Prometheus scraping the operator) and the dashboard', function () {
  this.timeout(300_000);
  before(function () {
    const missing = prometheusMissing();
    if (missing) this.skip();
  });

  it('promtool: the rules are valid and their unit tests pass (deploy/monitoring/alerts.test.yaml)', async () => {
    assert.match(await promtool(['check', 'rules', 'alerts.yaml'], MONITORING), /SUCCESS: 7 rules found/);
    assert.match(await promtool(['test', 'rules', 'alerts.test.yaml'], MONITORING), /SUCCESS/);
    const rules = readFileSync(path.join(MONITORING, 'alerts.yaml'), 'utf8');
    for (const name of ALERTS) assert.match(rules, new RegExp(`alert: ${name}$`, 'm'), `${name} is shipped`);
  });

  it('the compressed rules keep every expression and shorten only durations', () => {
    const text = compressedRules();
    assert.match(text, /for: 10s$/m, '5m / 30');
    assert.match(text, /\[20s\]/, '[10m] / 30');
    assert.doesNotMatch(text, /for: \d+m|\[\d+m\]/);
    const strip = (t: string) => t.replace(/\[\d+[smhd]\]/g, '[]').replace(/for: \d+[smhd]/g, 'for:');
    assert.equal(strip(text), strip(readFileSync(path.join(MONITORING, 'alerts.yaml'), 'utf8')));
  });

  describe('end to end', function () {
    let env: TestEnv;
    let ns: string;
    let metricsPort = 0;
    let prometheus: PrometheusServer;
    let server: PostgresServer;
    let serverDir = '';
    const q = (sql: string) => queryAs(server.connection, sql);

    // Its own namespace only: what other suites left in theirs (credentials not Ready by design, reconciles of
    // their objects) must not fire or dilute the alerts here.
    operatorSuite('alerts', async (own) => {
      metricsPort = await freePort();
      return { HEALTH_PORT: String(metricsPort), ORPHAN_SWEEP_PERIOD: '2s', WATCH_NAMESPACES: own };
    }, (suite) => ({ env, ns } = suite));

    before(async function () {
      if (prometheusMissing()) this.skip();
      serverDir = mkdtempSync(path.join(os.tmpdir(), 'dbcred-test-pg-alerts-'));
      server = new PostgresServer(serverDir);
      await server.init();
      await server.start();
      await apply(env, ns, platformObjects({ ...env, postgres: server } as TestEnv, { config: 'pg2', role: 'reader2' }));
      await waitForCondition<DatabaseRole>(env, 'databaseroles', ns, 'reader2', 'Ready', 'True');
      prometheus = new PrometheusServer({ targets: [`127.0.0.1:${metricsPort}`], ruleFiles: { 'alerts.yaml': compressedRules() } });
      await prometheus.start();
      await waitFor('Prometheus to scrape the operator', () => prometheus.targetsUp(), { timeoutMs: 30_000 });
    });

    // Runs after the suite's own after hook (registered first: the auditor, then the operator's stop).
    after(async () => {
      await prometheus?.stop();
      await server?.stop().catch(() => undefined);
      if (serverDir) rmSync(serverDir, { recursive: true, force: true });
    });

    it('fires nothing while everything works', async () => {
      await apply(env, ns, [credentialObject('healthy', { roleRef: { name: 'reader2' }, ttl: '1h' })]);
      await waitForCondition(env, 'databasecredentials', ns, 'healthy', 'Ready', 'True');
      // Long enough for every compressed `for` but the longest (30 s) to pass twice over, with a credential Ready.
      await new Promise((r) => setTimeout(r, 25_000));
      const alerts = await prometheus.alerts();
      assert.deepEqual(alerts.map((a) => `${a.labels.alertname}:${a.state}`), []);
      const [states] = await prometheus.query('sum(dbcred_credentials{state="ready"})');
      assert.ok(Number(states?.value[1]) >= 1, 'the ready credential is counted');
    });

    it('PostgreSQL stopped: a deletion cannot revoke, an issue and a renewal fail, reconciles error; all resolve when it is back', async () => {
      // A lease of 60 s renews at 40 s; with the server down it is overdue 30 s later.
      await apply(env, ns, [credentialObject('to-delete', { roleRef: { name: 'reader2' }, ttl: '1h' }), credentialObject('short', { roleRef: { name: 'reader2' }, ttl: '60s' })]);
      await waitForCondition(env, 'databasecredentials', ns, 'to-delete', 'Ready', 'True');
      await waitForCondition(env, 'databasecredentials', ns, 'short', 'Ready', 'True');
      const causes = ['DbcredRevocationFailing', 'DbcredCredentialsNotReady', 'DbcredLeaseRenewalOverdue', 'DbcredReconcileErrors'];
      await server.stop();
      try {
        await env.kubectl(['-n', ns, 'delete', 'databasecredential', 'to-delete', '--wait=false']);
        await apply(env, ns, [credentialObject('while-down', { roleRef: { name: 'reader2' }, ttl: '1h' })]);

        await Promise.all(causes.map((name) => prometheus.waitFiring(name, 150_000)));
        const [revoking] = await prometheus.firing('DbcredRevocationFailing');
        assert.equal(Number(revoking?.value), 1, 'one role (to-delete\'s) is overdue');
        assert.match(revoking?.annotations.description ?? '', /^1 role\(s\) held by DatabaseCredentials/);
        for (const a of await prometheus.alerts()) {
          assert.doesNotMatch(JSON.stringify(a), /v-reader2|to-delete|while-down|password/i, 'no username or credential name in an alert');
        }
      } finally {
        await server.start();
      }
      await Promise.all(causes.map((name) => prometheus.waitResolved(name, 90_000)));
      await waitFor('to-delete to be gone', async () => (await env.kubectl(['-n', ns, 'get', 'databasecredentials', '-o', 'name'])).includes('to-delete') === false, { timeoutMs: 30_000 });
      await waitForCondition(env, 'databasecredentials', ns, 'while-down', 'Ready', 'True');
    });

    it('the dashboard: every panel query returns a series after that workload', async () => {
      const d = dashboard();
      const ids = d.panels.map((p) => p.id);
      assert.equal(new Set(ids).size, ids.length, 'panel ids are unique');
      const exprs = d.panels.flatMap((p) => p.targets.map((t) => ({ panel: p.title, expr: t.expr })));
      const all = exprs.map((e) => e.expr).join('\n');
      // What the issue asks the dashboard to show, by the metric each needs.
      for (const metric of ['dbcred_credential_events_total', 'dbcred_issue_duration_seconds_bucket', 'dbcred_credentials', 'dbcred_reconcile_duration_seconds_bucket', 'dbcred_workqueue_depth', 'dbcred_api_requests_total', 'process_resident_memory_bytes']) {
        assert.ok(all.includes(metric), `a panel shows ${metric}`);
      }
      for (const v of all.matchAll(/\$(\w+)/g)) assert.ok(['__rate_interval', 'namespace', 'job'].includes(v[1] ?? ''), `unknown variable $${v[1]}`);
      const empty: string[] = [];
      for (const { panel, expr } of exprs) {
        const result = await prometheus.query(grafanaExpr(expr));
        if (result.length === 0) empty.push(`${panel}: ${expr}`);
      }
      assert.deepEqual(empty, [], 'queries without a series');
      const [issued] = await prometheus.query('sum(dbcred_credential_events_total{event="issued"})');
      assert.ok(Number(issued?.value[1]) >= 3, 'the workload issued credentials');
    });

    it('the orphan sweep revokes a role: DbcredOrphanRolesRevoked fires, and ends when its window has passed', async () => {
      const orphan = `v-alerts-orphan-${Date.now()}`;
      const marker = markerComment(await installationOf(env), ns, 'never-existed', '00000000-0000-0000-0000-000000000001', orphan);
      await q(`CREATE ROLE ${pg.escapeIdentifier(orphan)} LOGIN; COMMENT ON ROLE ${pg.escapeIdentifier(orphan)} IS ${pg.escapeLiteral(marker)}`);
      await waitFor('the sweep to revoke the orphan', async () => !(await roleExists(server.connection, orphan)), { timeoutMs: 60_000, intervalMs: 500 });
      await prometheus.waitFiring('DbcredOrphanRolesRevoked', 30_000);
      await prometheus.waitResolved('DbcredOrphanRolesRevoked', 90_000);
    });

    it('a role with an old-format marker the sweep cannot prove is ours, or a refused revocation: DbcredUnprovenRoleMarkers fires', async () => {
      const legacy = `v-alerts-legacy-${Date.now()}`;
      const marker = `dbcred:${JSON.stringify({ namespace: ns, name: 'gone', uid: '00000000-0000-0000-0000-000000000000' })}`;
      await q(`CREATE ROLE ${pg.escapeIdentifier(legacy)} LOGIN; COMMENT ON ROLE ${pg.escapeIdentifier(legacy)} IS ${pg.escapeLiteral(marker)}`);
      try {
        await prometheus.waitFiring('DbcredUnprovenRoleMarkers', 60_000);
        const [alert] = await prometheus.firing('DbcredUnprovenRoleMarkers');
        assert.equal(Number(alert?.value), 1, 'one unproven role');
        assert.equal(await roleExists(server.connection, legacy), true, 'never swept: no proof whose it is');
      } finally {
        await q(`DROP ROLE IF EXISTS ${pg.escapeIdentifier(legacy)}`);
      }
      await prometheus.waitResolved('DbcredUnprovenRoleMarkers', 60_000);

      // The other branch: a credential whose status names a role that is not its own (an unmarked bystander) as
      // due for revocation. The operator refuses and forgets it; the alert stays for the hour of its window (here 2
      // minutes, not waited for: the orphan case above shows a window ending).
      const bystander = `v-alerts-bystander-${Date.now()}`;
      await q(`CREATE ROLE ${pg.escapeIdentifier(bystander)} LOGIN`);
      try {
        await apply(env, ns, [credentialObject('holder', { roleRef: { name: 'reader2' }, ttl: '1h' })]);
        const cred = await waitForCondition<DatabaseCredential>(env, 'databasecredentials', ns, 'holder', 'Ready', 'True');
        const past = new Date(Date.now() - 5_000).toISOString().replace(/\.\d+Z$/, 'Z');
        const retiring = { username: bystander, state: 'retiring', config: `${ns}/pg2`, role: `${ns}/reader2`, issuedAt: past, expiresAt: past, revokeAfter: past };
        await env.kubectl(['-n', ns, 'patch', 'databasecredential', 'holder', '--subresource=status', '--type=merge', '-p',
          JSON.stringify({ status: { roles: [...(cred.status?.roles ?? []), retiring] } })]);
        await env.kubectl(['-n', ns, 'annotate', '--overwrite', 'databasecredential', 'holder', 'test.dbcred.dev/poke=1']);
        await prometheus.waitFiring('DbcredUnprovenRoleMarkers', 60_000);
        assert.equal(await roleExists(server.connection, bystander), true, 'the bystander is untouched');
        const [refused] = await prometheus.query('sum(dbcred_credential_events_total{event="revocation_refused"})');
        assert.equal(Number(refused?.value[1]), 1);
      } finally {
        await q(`DROP ROLE IF EXISTS ${pg.escapeIdentifier(bystander)}`);
      }
    });

    it('a replica that is up but cannot take the Lease fires DbcredNoLeader; it resolves once it leads', async () => {
      // A replica of its own (its own empty namespace to watch, its own Lease and Prometheus), so the suite's
      // operator, which runs without leader election, is not in the sum.
      const watched = await createNamespace(env, 'alerts-standby');
      const lease = `alerts-lease-${Date.now()}`;
      const now = new Date().toISOString().replace(/Z$/, '000Z'); // MicroTime
      await env.kubectl(['apply', '-f', '-'], JSON.stringify({
        apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: lease, namespace: watched },
        spec: { holderIdentity: 'someone-else', leaseDurationSeconds: 3600, acquireTime: now, renewTime: now },
      }));
      const port = await freePort();
      const standby = new OperatorProcess(env, { HEALTH_PORT: String(port), LEADER_ELECT: 'true', POD_NAMESPACE: watched, POD_NAME: 'standby', LEASE_NAME: lease, WATCH_NAMESPACES: watched });
      const own = new PrometheusServer({ targets: [`127.0.0.1:${port}`], ruleFiles: { 'alerts.yaml': compressedRules() } });
      try {
        standby.start();
        await waitFor('the replica to wait as a standby', async () => standby.output.includes('waiting for leadership'), { timeoutMs: 30_000 });
        await own.start();
        await waitFor('the standby to be scraped', () => own.targetsUp(), { timeoutMs: 30_000 });
        await own.waitFiring('DbcredNoLeader', 60_000);
        await env.kubectl(['-n', watched, 'delete', 'lease', lease]);
        await waitFor('the replica to lead', async () => standby.output.includes('became leader'), { timeoutMs: 30_000 });
        await own.waitResolved('DbcredNoLeader', 60_000);
        // And with nothing left to scrape, absent() fires it again.
        await standby.stop();
        await own.waitFiring('DbcredNoLeader', 120_000);
      } finally {
        await standby.stop();
        await own.stop();
      }
    });
  });
});
