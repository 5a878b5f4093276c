// The EventRecorder's series bookkeeping against a fake events.k8s.io API: one Event object per object, type and
// reason, a series count that grows, a bound on what it remembers, and a new Event when the old one is gone.
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import winston from 'winston';
import type { DatabaseCredential } from '../../src/api/types.js';
import { FakeClock } from '../../src/controller/clock.js';
import { EVENT_TTL_MS, EventRecorder, NOTE_MAX_BYTES, REPORTING_CONTROLLER, truncateUTF8, type EventSeries, type EventsAPI, type EventsV1Event } from '../../src/k8s/events.js';
import { ApiError } from '../../src/k8s/rest.js';

/** The Events of one API server: 409 on a name taken, 404 on a patch of a missing Event. */
class FakeEventsServer implements EventsAPI {
  readonly events = new Map<string, EventsV1Event>();
  creates = 0;
  patches = 0;
  /** The status every request answers with while set (an API server that refuses). */
  failWith: number | undefined;
  /** Resolves each pending request when called: requests wait for it while `hold` is set. */
  private readonly held: Array<() => void> = [];
  hold = false;

  async createEvent(namespace: string, event: EventsV1Event): Promise<void> {
    await this.gate();
    this.creates++;
    const key = `${namespace}/${event.metadata.name}`;
    if (this.events.has(key)) throw new ApiError(409, { reason: 'AlreadyExists' });
    this.events.set(key, structuredClone(event));
  }

  async patchEventSeries(namespace: string, name: string, series: EventSeries, note: string): Promise<void> {
    await this.gate();
    this.patches++;
    const event = this.events.get(`${namespace}/${name}`);
    if (!event) throw new ApiError(404, { reason: 'NotFound' });
    event.series = { ...series };
    event.note = note;
  }

  release(): void {
    this.hold = false;
    for (const resolve of this.held.splice(0)) resolve();
  }

  of(uid: string, reason?: string): EventsV1Event[] {
    return [...this.events.values()].filter((e) => e.regarding.uid === uid && (reason === undefined || e.reason === reason));
  }

  private async gate(): Promise<void> {
    if (this.hold) await new Promise<void>((resolve) => this.held.push(resolve));
    if (this.failWith !== undefined) throw new ApiError(this.failWith, { reason: 'Refused' });
  }
}

function credential(name: string, uid = `uid-${name}`): DatabaseCredential {
  return {
    apiVersion: 'dbcred.dev/v1alpha1',
    kind: 'DatabaseCredential',
    metadata: { name, namespace: 'team-a', uid, resourceVersion: '7' },
    spec: { roleRef: { name: 'reader' } },
  } as DatabaseCredential;
}

function setup(capacity?: number) {
  const server = new FakeEventsServer();
  const clock = new FakeClock();
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      lines.push(chunk.toString());
      callback();
    },
  });
  const logger = winston.createLogger({ level: 'debug', format: winston.format.json(), transports: [new winston.transports.Stream({ stream })] });
  const recorder = new EventRecorder(server, logger, { instance: 'pod-1', clock, capacity });
  return { server, clock, lines, recorder };
}

describe('EventRecorder', () => {
  it('creates one events.k8s.io Event, then counts repeats in its series', async () => {
    const { server, clock, recorder } = setup();
    const cred = credential('app');
    await recorder.record(cred, 'Normal', 'Rotated', 'issued v-1');
    const [first] = server.of('uid-app');
    assert.ok(first);
    assert.equal(first.apiVersion, 'events.k8s.io/v1');
    assert.match(first.metadata.name, /^app\.[0-9a-f]{16}$/);
    assert.equal(first.metadata.namespace, 'team-a');
    assert.equal(first.reportingController, REPORTING_CONTROLLER);
    assert.equal(first.reportingInstance, 'pod-1');
    assert.equal(first.action, 'Reconcile');
    assert.equal(first.eventTime, '2025-01-01T00:00:00.000000Z');
    assert.deepEqual(first.regarding, { apiVersion: 'dbcred.dev/v1alpha1', kind: 'DatabaseCredential', name: 'app', namespace: 'team-a', uid: 'uid-app', resourceVersion: '7' });
    assert.equal(first.series, undefined, 'a single occurrence has no series');

    for (let i = 2; i <= 10; i++) {
      clock.advance(1000);
      await recorder.record(cred, 'Normal', 'Rotated', `issued v-${i}`);
    }
    assert.equal(server.of('uid-app').length, 1);
    const [stored] = server.of('uid-app');
    assert.deepEqual(stored?.series, { count: 10, lastObservedTime: '2025-01-01T00:00:09.000000Z' });
    assert.equal(stored?.note, 'issued v-10', 'the note is the latest occurrence');
    assert.equal(server.creates, 1);
    assert.equal(server.patches, 9);
  });

  it('keys series by object, type and reason, not by note', async () => {
    const { server, recorder } = setup();
    const a = credential('a');
    await recorder.record(a, 'Normal', 'Rotated', 'one');
    await recorder.record(a, 'Normal', 'Rotated', 'two');
    await recorder.record(a, 'Normal', 'Issued', 'one');
    await recorder.record(a, 'Warning', 'Rotated', 'one');
    await recorder.record(credential('b'), 'Normal', 'Rotated', 'one');
    // Same name, another object (deleted and created again): another uid, another series.
    await recorder.record(credential('a', 'uid-a2'), 'Normal', 'Rotated', 'one');
    assert.equal(server.events.size, 5);
    assert.equal(server.of('uid-a', 'Rotated').find((e) => e.type === 'Normal')?.series?.count, 2);
    assert.equal(recorder.size, 5);
  });

  it('serializes records of one key: records at once still make one Event', async () => {
    const { server, recorder } = setup();
    const cred = credential('app');
    server.hold = true;
    const pending = Array.from({ length: 5 }, (_, i) => recorder.record(cred, 'Warning', 'RevocationFailed', `attempt ${i}`));
    server.release();
    // Each request of the chain waits on the gate only while `hold` is set; it is released now.
    await Promise.all(pending);
    assert.equal(server.of('uid-app').length, 1);
    assert.equal(server.of('uid-app')[0]?.series?.count, 5);
    assert.equal(server.creates, 1);
  });

  it('creates a new Event and restarts the series when the old one is gone (404)', async () => {
    const { server, clock, recorder } = setup();
    const cred = credential('app');
    await recorder.record(cred, 'Normal', 'Rotated', 'one');
    await recorder.record(cred, 'Normal', 'Rotated', 'two');
    const [old] = server.events.keys();
    server.events.clear(); // expired by the API server's --event-ttl, or deleted by someone
    clock.advance(1000);
    await recorder.record(cred, 'Normal', 'Rotated', 'three');
    const [renewed] = server.of('uid-app');
    assert.ok(renewed);
    assert.notEqual(`team-a/${renewed.metadata.name}`, old);
    assert.equal(renewed.note, 'three');
    assert.equal(renewed.series, undefined);
    await recorder.record(cred, 'Normal', 'Rotated', 'four');
    assert.equal(server.of('uid-app')[0]?.series?.count, 2, 'the new series counts from the new Event');
  });

  it('does not patch an Event older than the event TTL: it creates a new one', async () => {
    const { server, clock, recorder } = setup();
    const cred = credential('app');
    await recorder.record(cred, 'Normal', 'Rotated', 'one');
    clock.advance(EVENT_TTL_MS);
    await recorder.record(cred, 'Normal', 'Rotated', 'two');
    assert.equal(server.patches, 0);
    assert.equal(server.creates, 2);
    assert.equal(server.events.size, 2, 'the fake keeps the first; a real API server has deleted it by then');
  });

  it('remembers at most its capacity, least recently used out first', async () => {
    const { server, recorder } = setup(3);
    for (const name of ['a', 'b', 'c']) await recorder.record(credential(name), 'Normal', 'Issued', name);
    await recorder.record(credential('a'), 'Normal', 'Issued', 'a'); // a is now the most recent
    await recorder.record(credential('d'), 'Normal', 'Issued', 'd'); // pushes out b
    assert.equal(recorder.size, 3);
    await recorder.record(credential('a'), 'Normal', 'Issued', 'a');
    assert.equal(server.of('uid-a').length, 1, 'a is still remembered');
    assert.equal(server.of('uid-a')[0]?.series?.count, 3);
    await recorder.record(credential('b'), 'Normal', 'Issued', 'b');
    assert.equal(server.of('uid-b').length, 2, 'b was forgotten: its repeat is a new Event');
    assert.equal(recorder.size, 3);
  });

  it('is best effort: a refused write is logged without the note, and the next record tries again', async () => {
    const { server, lines, recorder } = setup();
    const cred = credential('app');
    server.failWith = 500;
    await recorder.record(cred, 'Warning', 'IssueFailed', 'a secret detail');
    assert.equal(server.events.size, 0);
    assert.equal(lines.length, 1);
    assert.match(lines[0] ?? '', /recording event failed/);
    assert.match(lines[0] ?? '', /API 500/);
    assert.doesNotMatch(lines[0] ?? '', /secret detail/);
    server.failWith = undefined;
    await recorder.record(cred, 'Warning', 'IssueFailed', 'a secret detail');
    assert.equal(server.of('uid-app').length, 1);
    assert.equal(server.of('uid-app')[0]?.series, undefined, 'the refused occurrence is not counted');
    // A refused patch does not count either; the series goes on from what the API server holds.
    server.failWith = 503;
    await recorder.record(cred, 'Warning', 'IssueFailed', 'again');
    server.failWith = undefined;
    await recorder.record(cred, 'Warning', 'IssueFailed', 'again');
    assert.equal(server.of('uid-app')[0]?.series?.count, 2);
  });

  it('treats a 409 on create as the Event being there, and patches it next time', async () => {
    const { server, recorder } = setup();
    const cred = credential('app');
    // The first create is answered 409 although nothing was stored (as if an earlier attempt got through).
    const create = server.createEvent.bind(server);
    let first = true;
    server.createEvent = async (ns, event) => {
      await create(ns, event);
      if (first) {
        first = false;
        throw new ApiError(409, { reason: 'AlreadyExists' });
      }
    };
    await recorder.record(cred, 'Normal', 'Issued', 'one');
    await recorder.record(cred, 'Normal', 'Issued', 'two');
    assert.equal(server.creates, 1);
    assert.equal(server.of('uid-app')[0]?.series?.count, 2);
  });

  it('redacts the note and keeps it within the API limit, on create and on repeat', async () => {
    const { server, recorder } = setup();
    await recorder.record(credential('app'), 'Warning', 'IssueFailed', `connecting to postgres://root:hunter2@db:5432/x failed: ${'é'.repeat(2000)}`);
    const note = server.of('uid-app')[0]?.note ?? '';
    assert.doesNotMatch(note, /hunter2/);
    assert.match(note, /postgres:\/\/root:\*\*\*@db/);
    assert.ok(Buffer.byteLength(note) <= NOTE_MAX_BYTES);
    assert.ok(note.endsWith('…'));
    // And so is the note a repeat patches in.
    await recorder.record(credential('app'), 'Warning', 'IssueFailed', `retrying postgres://root:hunter3@db:5432/x: ${'x'.repeat(2000)}`);
    const patched = server.of('uid-app')[0]?.note ?? '';
    assert.match(patched, /^retrying postgres:\/\/root:\*\*\*@db/);
    assert.ok(Buffer.byteLength(patched) <= NOTE_MAX_BYTES);
  });

  it('keeps the Event name a valid object name for a long object name', async () => {
    const { server, recorder } = setup();
    const long = `${'a'.repeat(235)}-bc`; // cut at 236 characters, it would end in '-'
    await recorder.record(credential(long), 'Normal', 'Issued', 'one');
    const name = server.of(`uid-${long}`)[0]?.metadata.name ?? '';
    assert.ok(name.length <= 253, `${name.length} characters`);
    assert.match(name, /^a+\.[0-9a-f]{16}$/);
  });
});

describe('truncateUTF8', () => {
  it('leaves short text alone and never cuts inside a character', () => {
    assert.equal(truncateUTF8('abc', 3), 'abc');
    assert.equal(truncateUTF8('abcd', 3), '…');
    assert.equal(truncateUTF8('abcdef', 5), 'ab…');
    assert.equal(truncateUTF8('ééé', 6), 'ééé');
    assert.equal(truncateUTF8('éééé', 6), 'é…', 'é is 2 bytes and … is 3');
    assert.equal(truncateUTF8('😀😀', 7), '😀…');
    for (const s of ['x'.repeat(2000), 'é'.repeat(700), '😀'.repeat(400)]) assert.ok(Buffer.byteLength(truncateUTF8(s, 1024)) <= 1024);
  });
});
