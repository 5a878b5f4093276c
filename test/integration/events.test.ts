// Events that do not flood, against the real kube-apiserver: a repeated Event is one events.k8s.io Event object
// whose series counts the occurrences, it shows in the core/v1 Event list and in kubectl describe, and an Event
// that is gone is created again. Then the same through the operator: a credential that rotates every few seconds.
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import winston from 'winston';
import type { DatabaseConfig, DatabaseCredential, DatabaseRole } from '../../src/api/types.js';
import { KubeClient } from '../../src/k8s/client.js';
import { EventRecorder, REPORTING_CONTROLLER, type EventsV1Event } from '../../src/k8s/events.js';
import { clusterAccessFromFile } from '../../src/k8s/kubeconfig.js';
import { apiRequests } from '../../src/metrics.js';
import { MERGE_PATCH } from '../../src/k8s/rest.js';
import { createNamespace, testEnv, waitFor, type TestEnv } from './harness.js';
import { OperatorProcess, apply, credentialObject, getObject, platformObjects, waitForCondition } from './operator.js';

interface CoreEvent {
  metadata: { name: string };
  involvedObject: { uid?: string; kind?: string; name?: string };
  reason?: string;
  message?: string;
  reportingComponent?: string;
  series?: { count: number; lastObservedTime: string };
}

/** The Events of a namespace as both APIs list them. */
async function eventsV1(env: TestEnv, ns: string): Promise<EventsV1Event[]> {
  return (JSON.parse(await env.kubectl(['-n', ns, 'get', 'events.v1.events.k8s.io', '-o', 'json'])) as { items: EventsV1Event[] }).items;
}
async function coreEvents(env: TestEnv, ns: string): Promise<CoreEvent[]> {
  return (JSON.parse(await env.kubectl(['-n', ns, 'get', 'events', '-o', 'json'])) as { items: CoreEvent[] }).items;
}

async function requests(verb: string): Promise<number> {
  return (await apiRequests.get()).values.find((v) => v.labels.verb === verb)?.value ?? 0;
}

describe('Events: one object per repeated Event', function () {
  this.timeout(120_000);
  let env: TestEnv;
  let ns: string;
  let client: KubeClient;
  let recorder: EventRecorder;
  let cred: DatabaseCredential;
  const logLines: string[] = [];

  const of = (events: Array<EventsV1Event>, reason: string) => events.filter((e) => e.regarding.uid === cred.metadata.uid && e.reason === reason);

  before(async function () {
    this.timeout(600_000);
    env = await testEnv();
    ns = await createNamespace(env, 'events');
    client = new KubeClient(clusterAccessFromFile(env.kubeconfigPath));
    const stream = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        logLines.push(chunk.toString());
        callback();
      },
    });
    const logger = winston.createLogger({ level: 'debug', format: winston.format.json(), transports: [new winston.transports.Stream({ stream })] });
    recorder = new EventRecorder(client, logger, { instance: 'events-test' });
    // No operator runs in this suite: the object is only something for the Events to be about.
    await apply(env, ns, [credentialObject('app', { roleRef: { name: 'reader' } })]);
    const obj = await getObject<DatabaseCredential>(env, 'databasecredentials', ns, 'app');
    assert.ok(obj?.metadata.uid);
    cred = obj;
  });

  after(() => client?.rest.close());

  afterEach(() => {
    // Events are best effort and failures only logged: a test must see them.
    assert.deepEqual(logLines.filter((l) => l.includes('recording event failed')), []);
  });

  it('records the same Event 50 times, at once, as one Event with series.count 50: one create, 49 patches', async () => {
    const creates = await requests('create');
    const patches = await requests('patch');
    await Promise.all(Array.from({ length: 50 }, (_, i) => recorder.record(cred, 'Normal', 'Rotated', `rotation ${i + 1}`)));
    assert.equal((await requests('create')) - creates, 1, 'dbcred_api_requests_total{verb="create"}');
    assert.equal((await requests('patch')) - patches, 49, 'dbcred_api_requests_total{verb="patch"}');

    const rotated = of(await eventsV1(env, ns), 'Rotated');
    assert.equal(rotated.length, 1, 'exactly one Event object');
    const [event] = rotated;
    assert.equal(event?.series?.count, 50);
    assert.equal(event?.note, 'rotation 50', 'the note of the latest occurrence');
    assert.equal(event?.reportingController, REPORTING_CONTROLLER);
    assert.equal(event?.reportingInstance, 'events-test');
    assert.equal(event?.action, 'Reconcile');
    assert.equal(event?.type, 'Normal');
    assert.deepEqual(event?.regarding, { apiVersion: 'dbcred.dev/v1alpha1', kind: 'DatabaseCredential', name: 'app', namespace: ns, uid: cred.metadata.uid, resourceVersion: cred.metadata.resourceVersion });
    assert.ok(Date.parse(event?.series?.lastObservedTime ?? '') >= Date.parse(event?.eventTime ?? ''));
  });

  it('shows it in the core/v1 Event list and in kubectl describe, with its count', async () => {
    const core = (await coreEvents(env, ns)).filter((e) => e.involvedObject.uid === cred.metadata.uid && e.reason === 'Rotated');
    assert.equal(core.length, 1);
    assert.equal(core[0]?.series?.count, 50);
    assert.equal(core[0]?.message, 'rotation 50');
    assert.equal(core[0]?.reportingComponent, REPORTING_CONTROLLER);
    const table = await env.kubectl(['-n', ns, 'get', 'events', '--field-selector', `involvedObject.uid=${cred.metadata.uid},reason=Rotated`]);
    assert.match(table, /Normal\s+Rotated\s+databasecredential\/app\s+rotation 50/);
    const described = await env.kubectl(['-n', ns, 'describe', 'databasecredential', 'app']);
    const line = described.split('\n').find((l) => /\bRotated\b/.test(l));
    assert.ok(line, `kubectl describe lists the Event:\n${described}`);
    assert.match(line, /Normal\s+Rotated\s+.*\(x50 over .*\)\s+dbcred\.dev\/operator\s+rotation 50/);
  });

  it('events.k8s.io refuses a new note on an existing Event: why repeats are patched through core/v1', async () => {
    const [event] = of(await eventsV1(env, ns), 'Rotated');
    assert.ok(event);
    await assert.rejects(
      client.rest.request('PATCH', `/apis/events.k8s.io/v1/namespaces/${ns}/events/${event.metadata.name}`, { body: { note: 'rotation 51' }, contentType: MERGE_PATCH }),
      (err: { code?: number }) => err.code === 422,
    );
  });

  it('makes a second object for another reason, with a series of its own', async () => {
    for (let i = 0; i < 3; i++) await recorder.record(cred, 'Warning', 'RevocationFailed', `attempt ${i + 1}`);
    const events = await eventsV1(env, ns);
    assert.equal(of(events, 'Rotated').length, 1);
    assert.equal(of(events, 'Rotated')[0]?.series?.count, 50, 'untouched');
    const failed = of(events, 'RevocationFailed');
    assert.equal(failed.length, 1);
    assert.equal(failed[0]?.type, 'Warning');
    assert.equal(failed[0]?.series?.count, 3);
  });

  it('creates a new Event once the old one is gone (404 on the patch), and counts from there', async () => {
    const [old] = of(await eventsV1(env, ns), 'Rotated');
    assert.ok(old);
    await env.kubectl(['-n', ns, 'delete', 'events.v1.events.k8s.io', old.metadata.name]);
    const creates = await requests('create');
    await recorder.record(cred, 'Normal', 'Rotated', 'after the old one expired');
    assert.equal((await requests('create')) - creates, 1);
    let rotated = of(await eventsV1(env, ns), 'Rotated');
    assert.equal(rotated.length, 1);
    assert.notEqual(rotated[0]?.metadata.name, old.metadata.name);
    assert.equal(rotated[0]?.note, 'after the old one expired');
    assert.equal(rotated[0]?.series, undefined, 'a new Event, a single occurrence so far');
    await recorder.record(cred, 'Normal', 'Rotated', 'and again');
    rotated = of(await eventsV1(env, ns), 'Rotated');
    assert.equal(rotated.length, 1);
    assert.equal(rotated[0]?.series?.count, 2);
    assert.equal(rotated[0]?.note, 'and again');
  });
});

describe('Events: a credential that rotates every few seconds, through the operator', function () {
  this.timeout(120_000);
  let env: TestEnv;
  let ns: string;
  let operator: OperatorProcess;

  before(async function () {
    this.timeout(600_000);
    env = await testEnv();
    ns = await createNamespace(env, 'events-op');
    operator = new OperatorProcess(env);
    operator.start();
    await operator.waitReady();
    // maxTTL 4s stops renewal: every lease ends in a rotation (a new login), each one a Normal Rotated Event.
    await apply(env, ns, platformObjects(env, { role: 'capped', roleExtra: { defaultTTL: '3s', maxTTL: '4s' } }));
    await waitForCondition<DatabaseConfig>(env, 'databaseconfigs', ns, 'pg', 'Ready', 'True');
    await waitForCondition<DatabaseRole>(env, 'databaseroles', ns, 'capped', 'Ready', 'True');
  });

  after(async function () {
    this.timeout(120_000);
    await operator?.stop();
  });

  it('ends with one Event object per reason, whose count grows with each rotation', async () => {
    await apply(env, ns, [credentialObject('churn', { roleRef: { name: 'capped' }, rotation: { renewalPercent: 50, gracePeriod: '1s' } })]);
    const cred = await waitForCondition<DatabaseCredential>(env, 'databasecredentials', ns, 'churn', 'Ready', 'True');
    const uid = cred.metadata.uid;
    const usernames = new Set<string>();
    const mine = async () => (await coreEvents(env, ns)).filter((e) => e.involvedObject.uid === uid);
    const rotatedCount = async () => {
      const username = (await getObject<DatabaseCredential>(env, 'databasecredentials', ns, 'churn'))?.status?.username;
      if (username) usernames.add(username);
      return (await mine()).filter((e) => e.reason === 'Rotated').reduce((n, e) => n + (e.series?.count ?? 1), 0);
    };
    await waitFor('four rotations', async () => (await rotatedCount()) >= 4, { timeoutMs: 60_000, intervalMs: 250 });
    const first = await mine();
    const countOf = (events: CoreEvent[], reason: string) => events.find((e) => e.reason === reason)?.series?.count ?? 1;
    const before = countOf(first, 'Rotated');
    await waitFor('more rotations', async () => (await rotatedCount()) >= before + 2, { timeoutMs: 60_000, intervalMs: 250 });
    const events = await mine();

    const byReason = new Map<string, number>();
    for (const e of events) byReason.set(e.reason ?? '', (byReason.get(e.reason ?? '') ?? 0) + 1);
    assert.deepEqual([...byReason].filter(([, n]) => n > 1), [], `one Event object per reason: ${JSON.stringify([...byReason])}`);
    assert.equal(byReason.get('Issued'), 1);
    assert.equal(byReason.get('Rotated'), 1);
    const after = countOf(events, 'Rotated');
    assert.ok(after >= before + 2, `the count grew: ${before} → ${after}`);
    // Each rotation issued a new login; every one the test saw is counted (the first login came from Issued).
    assert.ok(after >= usernames.size - 1, `${after} Rotated occurrences, ${usernames.size} logins seen`);
    assert.equal(events.find((e) => e.reason === 'Rotated')?.reportingComponent, REPORTING_CONTROLLER);
  });
});
