// The metrics are a contract (README "Metrics"): every dbcred_ metric is listed there with its type and labels, and
// no label can carry a username, a credential's name or any other value unbounded per credential.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { API_VERBS, CREDENTIAL_EVENTS, RECONCILE_RESULTS, observeCredentials, observeQueue, registry } from '../../src/metrics.js';
import { CREDENTIAL_STATES } from '../../src/credentialHealth.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
/** One of a fixed list of values. */
const oneOf = (values: readonly string[]) => new RegExp(`^(${values.join('|')})$`);
/** Every label the operator's own metrics may have, with all the values it may take. */
const BOUNDED_LABELS: Record<string, RegExp> = {
  verb: oneOf(API_VERBS),
  controller: oneOf(['databaseconfig', 'databaserole', 'databasecredential']),
  result: oneOf(RECONCILE_RESULTS),
  event: oneOf(CREDENTIAL_EVENTS),
  kind: oneOf(['issued', 'rotated']),
  state: oneOf(CREDENTIAL_STATES),
  le: /^([0-9.]+|\+Inf)$/,
};

/** Rows of the README's metrics table: | `name` | type | labels | ... */
function documented(): Map<string, { type: string; labels: string[] }> {
  const readme = readFileSync(path.join(root, 'README.md'), 'utf8');
  const rows = new Map<string, { type: string; labels: string[] }>();
  for (const m of readme.matchAll(/^\| `(dbcred_[a-z_]+)` \| (counter|gauge|histogram) \|([^|]*)\|/gm)) {
    const [, name = '', type = '', labelText = ''] = m;
    const labels = [...labelText.matchAll(/`([a-z_]+)`/g)].map((l) => l[1] ?? '').sort();
    rows.set(name, { type, labels });
  }
  return rows;
}

describe('metrics contract', () => {
  before(() => {
    for (const c of ['databaseconfig', 'databaserole', 'databasecredential']) observeQueue(c, { depth: () => 0, inFlight: () => 0 });
    observeCredentials(() => []);
  });
  after(() => observeCredentials(() => undefined));

  it('every dbcred_ metric is in the README with its type and labels, and nothing else is', async () => {
    const metrics = (await registry.getMetricsAsJSON()).filter((m) => m.name.startsWith('dbcred_'));
    const docs = documented();
    assert.ok(metrics.length >= 10, `found ${metrics.length} metrics`);
    for (const m of metrics) {
      const doc = docs.get(m.name);
      assert.ok(doc, `${m.name} is not documented in README.md's metrics table`);
      assert.equal(doc.type, String(m.type), `${m.name}: type`);
      const labels = new Set<string>();
      for (const v of m.values as { labels: Record<string, string | number> }[]) for (const l of Object.keys(v.labels)) if (l !== 'le') labels.add(l);
      assert.deepEqual([...labels].sort(), doc.labels, `${m.name}: labels`);
    }
    for (const name of docs.keys()) assert.ok(metrics.some((m) => m.name === name), `README documents ${name}, which does not exist`);
  });

  it('every label value is from a bounded set (no usernames, names or uids)', async () => {
    for (const m of await registry.getMetricsAsJSON()) {
      if (!m.name.startsWith('dbcred_')) continue;
      for (const v of m.values as { labels: Record<string, string | number> }[]) {
        for (const [label, value] of Object.entries(v.labels)) {
          const allowed = BOUNDED_LABELS[label];
          assert.ok(allowed, `${m.name} has label ${label}, which is not known to be bounded`);
          assert.match(String(value), allowed, `${m.name}{${label}="${value}"}`);
        }
      }
    }
  });

  it('counters start at zero for every known label value, so rate() has a series before the first event', async () => {
    const text = await registry.metrics();
    assert.match(text, /^dbcred_credential_events_total\{event="revocation_failed"\} 0$/m);
    assert.match(text, /^dbcred_credential_events_total\{event="orphan_revoked"\} 0$/m);
    assert.match(text, /^dbcred_reconcile_total\{controller="databasecredential",result="error"\} 0$/m);
    assert.match(text, /^dbcred_credentials\{state="not_ready"\} 0$/m);
  });

  it('the state gauges count the credentials on the leader and are 0 on a standby', async () => {
    const deleting = { apiVersion: 'dbcred.dev/v1alpha1', kind: 'DatabaseCredential', metadata: { name: 'a', namespace: 'n', deletionTimestamp: '2020-01-01T00:00:00Z' }, spec: { roleRef: { name: 'r' } }, status: { roles: [{ username: 'u', state: 'active', config: 'n/c', role: 'n/r' }] } } as const;
    observeCredentials(() => [structuredClone(deleting) as never]);
    let text = await registry.metrics();
    assert.match(text, /^dbcred_credentials\{state="deleting"\} 1$/m);
    assert.match(text, /^dbcred_revocations_overdue 1$/m);
    observeCredentials(() => undefined);
    text = await registry.metrics();
    assert.match(text, /^dbcred_credentials\{state="deleting"\} 0$/m);
    assert.match(text, /^dbcred_revocations_overdue 0$/m);
    observeCredentials(() => []);
  });
});
