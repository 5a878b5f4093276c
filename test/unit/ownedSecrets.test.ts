// The Secret cache holds metadata only, and only of Secrets our kinds control; their data is read when needed and
// remembered for exactly the resourceVersion it was read or written at. Plus the settings of a namespaced install.
import assert from 'node:assert/strict';
import type * as k8s from '@kubernetes/client-node';
import winston from 'winston';
import { ConfigError, loadConfig } from '../../src/config.js';
import { KubeClient } from '../../src/k8s/client.js';
import { testAccess } from './testAccess.js';
import { NamespacedInformers, ResilientInformer, objectKey, type Cache, type InformerHandler, type WatchFn } from '../../src/k8s/informer.js';
import { SecretContents, ownedSecretMeta, type SecretMeta } from '../../src/secrets/ownedSecret.js';

const OURS = { apiVersion: 'dbcred.dev/v1alpha1', kind: 'DatabaseCredential', name: 'app', uid: 'u-1', controller: true };

function secret(name: string, rv: string, opts: { owner?: k8s.V1OwnerReference; data?: Record<string, string> } = {}): k8s.V1Secret {
  return {
    metadata: {
      name,
      namespace: 'ns',
      uid: `uid-${name}`,
      resourceVersion: rv,
      labels: { 'app.kubernetes.io/managed-by': 'dbcred-operator' },
      annotations: { big: 'x'.repeat(1000) },
      managedFields: [{ manager: 'kubectl', operation: 'Apply' }],
      ownerReferences: opts.owner ? [opts.owner] : undefined,
    },
    data: opts.data ?? { username: Buffer.from('alice').toString('base64') },
  };
}

describe('owned Secrets: what the cache keeps', () => {
  it('keeps identity, version and the controller reference of a Secret our kinds control, never data or annotations', () => {
    const kept = ownedSecretMeta(secret('a', '7', { owner: OURS }));
    assert.deepEqual(kept, {
      metadata: { name: 'a', namespace: 'ns', uid: 'uid-a', resourceVersion: '7', ownerReferences: [{ apiVersion: 'dbcred.dev/v1alpha1', kind: 'DatabaseCredential', name: 'app', uid: 'u-1', controller: true }] },
    });
    assert.deepEqual(ownedSecretMeta(kept!), kept, 'idempotent');
    assert.ok(ownedSecretMeta(secret('r', '1', { owner: { ...OURS, kind: 'DatabaseRole' } })));
  });

  it('ignores labelled Secrets that none of our kinds control', () => {
    assert.equal(ownedSecretMeta(secret('none', '1')), undefined, 'no owner');
    assert.equal(ownedSecretMeta(secret('notctl', '1', { owner: { ...OURS, controller: false } })), undefined, 'owner, not controller');
    assert.equal(ownedSecretMeta(secret('cm', '1', { owner: { ...OURS, apiVersion: 'v1', kind: 'ConfigMap' } })), undefined, 'another kind');
    assert.equal(ownedSecretMeta(secret('cfg', '1', { owner: { ...OURS, kind: 'DatabaseConfig' } })), undefined, 'a kind of ours that owns no Secret');
    assert.equal(ownedSecretMeta(secret('grp', '1', { owner: { ...OURS, apiVersion: 'evil.dev/v1alpha1' } })), undefined, 'same kind, other group');
  });
});


describe('informer transform: objects it does not keep are not cached', () => {
  it('drops them from a list and from watch events, and an object that stops qualifying leaves with DELETED', async () => {
    let onEvent: ((type: string, obj: unknown) => void) | undefined;
    const watch: WatchFn = async (_path, _query, cb, done) => {
      onEvent = cb;
      const ac = new AbortController();
      ac.signal.addEventListener('abort', () => done(null));
      return ac;
    };
    const informer = new ResilientInformer<SecretMeta>({
      name: 'secrets',
      client: new KubeClient(testAccess()),
      path: '/api/v1/secrets',
      list: async () => ({ items: [secret('ours', '1', { owner: OURS }), secret('theirs', '2')] as unknown as SecretMeta[], resourceVersion: '2' }),
      transform: ownedSecretMeta,
      resyncPeriodMs: 3_600_000,
      logger: winston.createLogger({ silent: true }),
      watch,
    });
    const events: string[] = [];
    informer.on((obj, event) => events.push(`${event} ${obj.metadata.name}`));
    try {
      await informer.start();
      assert.deepEqual(informer.list().map((s) => s.metadata.name), ['ours']);
      assert.equal((informer.get('ns/ours') as unknown as k8s.V1Secret).data, undefined, 'no data cached');
      await new Promise((r) => setImmediate(r));
      onEvent!('ADDED', secret('big', '3', { data: { blob: 'A'.repeat(100_000) } }));
      onEvent!('MODIFIED', secret('ours', '4')); // its owner reference was removed
      onEvent!('DELETED', secret('never-seen', '5'));
      assert.equal(informer.get('ns/big'), undefined);
      assert.equal(informer.get('ns/ours'), undefined);
      assert.deepEqual(events, ['ADDED ours', 'DELETED ours']);
    } finally {
      informer.stop();
    }
  });
});

/** A cache we drive by hand, as the informer would. */
class FakeCache implements Cache<SecretMeta> {
  readonly store = new Map<string, SecretMeta>();
  private readonly handlers: InformerHandler<SecretMeta>[] = [];
  get(key: string) {
    return this.store.get(key);
  }
  list() {
    return [...this.store.values()];
  }
  on(h: InformerHandler<SecretMeta>) {
    this.handlers.push(h);
  }
  covers() {
    return true;
  }
  set(s: k8s.V1Secret) {
    const m = ownedSecretMeta(s)!;
    this.store.set(objectKey(m), m);
    for (const h of this.handlers) h(m, 'MODIFIED');
  }
  delete(key: string) {
    const m = this.store.get(key)!;
    this.store.delete(key);
    for (const h of this.handlers) h(m, 'DELETED');
  }
}

function contentsWith(live: Map<string, k8s.V1Secret>): { contents: SecretContents; cache: FakeCache; gets: string[] } {
  const gets: string[] = [];
  const client = {
    getSecret: async (namespace: string, name: string) => {
      gets.push(`${namespace}/${name}`);
      await new Promise((r) => setImmediate(r));
      return live.get(`${namespace}/${name}`);
    },
    // One list of every live Secret (the prefill), handed to keep() item by item as pages would be.
    // Pages of one Secret, asking more() after each, as listPaged does after each page.
    listPaged: async (path: string, _query: unknown, _limit: number, keep: (s: k8s.V1Secret) => unknown, _accept?: string, more: () => boolean = () => true) => {
      gets.push(`list ${path}`);
      for (const s of live.values()) {
        keep(s);
        if (!more()) break;
      }
      return { items: [], resourceVersion: '1' };
    },
  } as unknown as KubeClient;
  const cache = new FakeCache();
  return { contents: new SecretContents(client, cache), cache, gets };
}

describe('SecretContents: data read when needed, once per resourceVersion', () => {
  it('reads a Secret once, then serves the copy while the cache shows that version; a new version is read again', async () => {
    const live = new Map([['ns/app', secret('app', '10', { owner: OURS })]]);
    const { contents, cache, gets } = contentsWith(live);
    cache.set(live.get('ns/app')!);
    assert.equal((await contents.read('ns', 'app'))?.metadata?.resourceVersion, '10');
    assert.equal((await contents.read('ns', 'app'))?.metadata?.resourceVersion, '10');
    assert.deepEqual(gets, ['ns/app'], 'steady state: no second GET');
    live.set('ns/app', secret('app', '11', { owner: OURS }));
    cache.set(live.get('ns/app')!);
    assert.equal((await contents.read('ns', 'app'))?.metadata?.resourceVersion, '11');
    assert.equal(gets.length, 2);
  });

  it('serves what was written without a read once the cache catches up; a copy the caller does not trust is read live', async () => {
    const live = new Map<string, k8s.V1Secret>();
    const { contents, cache, gets } = contentsWith(live);
    const written = secret('app', '20', { owner: OURS });
    contents.remember(written);
    live.set('ns/app', written);
    assert.equal(await contents.read('ns', 'app'), written, 'not in the cache yet: read live');
    assert.equal(gets.length, 1);
    cache.set(written);
    // The remembered copy: what reconcilers read of a Secret, without managedFields (memory per credential).
    const { managedFields, ...meta } = written.metadata ?? {};
    assert.ok(managedFields, 'the fixture has managedFields');
    assert.deepEqual(await contents.read('ns', 'app'), { type: written.type, data: written.data, metadata: { ...meta, labels: meta.labels, annotations: meta.annotations } });
    assert.equal(gets.length, 1);
    await contents.read('ns', 'app', () => false);
    assert.equal(gets.length, 2, 'distrusted: read live');
  });

  it('shares one GET among concurrent reads, remembers only Secrets our kinds control, and forgets what left the cache', async () => {
    const live = new Map([
      ['ns/app', secret('app', '30', { owner: OURS })],
      ['ns/other', secret('other', '31')],
    ]);
    const { contents, cache, gets } = contentsWith(live);
    cache.set(live.get('ns/app')!);
    await Promise.all([contents.read('ns', 'app'), contents.read('ns', 'app'), contents.read('ns', 'app')]);
    assert.deepEqual(gets, ['ns/app']);
    await contents.read('ns', 'other');
    await contents.read('ns', 'other');
    assert.equal(gets.filter((g) => g === 'ns/other').length, 2, 'not ours: never remembered');
    cache.delete('ns/app');
    cache.set(live.get('ns/app')!); // same version back in the cache: the copy was dropped with the DELETED
    await contents.read('ns', 'app');
    assert.equal(gets.filter((g) => g === 'ns/app').length, 2);
    contents.remember(secret('gone', '40', { owner: OURS }));
    contents.prune();
    cache.set(secret('gone', '40', { owner: OURS }));
    await contents.read('ns', 'gone');
    assert.ok(gets.includes('ns/gone'), 'pruned: a copy whose Secret was not in the cache is not served');
  });
});

describe('namespaced caches', () => {
  it('cover only the watched namespaces and route each key to its namespace', () => {
    const made: string[] = [];
    const make = (ns: string) => {
      made.push(ns);
      return { get: (key: string) => (key.startsWith(`${ns}/`) ? ({ metadata: { name: key, namespace: ns } }) : undefined), list: () => [], on: () => undefined } as unknown as ResilientInformer<SecretMeta>;
    };
    const two = new NamespacedInformers<SecretMeta>(['a', 'b'], make);
    assert.deepEqual(made, ['a', 'b']);
    assert.equal(two.covers('a'), true);
    assert.equal(two.covers('c'), false);
    assert.ok(two.get('b/x'));
    assert.equal(two.get('c/x'), undefined);
    const all = new NamespacedInformers<SecretMeta>([], make);
    assert.equal(all.covers('anything'), true);
    assert.deepEqual(made, ['a', 'b', ''], 'one informer for all namespaces');
  });

  it('WATCH_NAMESPACES takes a list; WATCH_NAMESPACE still works; bad names and both at once are refused', () => {
    assert.deepEqual(loadConfig({}).watchNamespaces, []);
    assert.deepEqual(loadConfig({ WATCH_NAMESPACE: 'team-a' }).watchNamespaces, ['team-a']);
    assert.deepEqual(loadConfig({ WATCH_NAMESPACES: 'platform, team-a,team-b,team-a' }).watchNamespaces, ['platform', 'team-a', 'team-b']);
    assert.deepEqual(loadConfig({ WATCH_NAMESPACES: '' }).watchNamespaces, []);
    assert.throws(() => loadConfig({ WATCH_NAMESPACES: 'a', WATCH_NAMESPACE: 'b' }), ConfigError);
    assert.throws(() => loadConfig({ WATCH_NAMESPACES: 'Team_A' }), /not a namespace name/);
  });
});

describe('SecretContents.prefill', () => {
  it('remembers the data of the Secrets the cache holds from one list, so the reads that follow need no GET', async () => {
    const live = new Map([
      ['ns/a', secret('a', '5', { owner: OURS, data: { username: 'YQ==' } })],
      ['ns/b', secret('b', '6', { owner: OURS, data: { username: 'Yg==' } })],
      ['ns/theirs', secret('theirs', '7', { data: { username: 'eA==' } })],
    ]);
    const { contents, cache, gets } = contentsWith(live);
    cache.set(live.get('ns/a')!);
    cache.set(live.get('ns/b')!);
    assert.equal(await contents.prefill([], 'app.kubernetes.io/managed-by=dbcred-operator'), 2);
    assert.deepEqual(gets, ['list /api/v1/secrets']);
    assert.equal((await contents.read('ns', 'a'))?.data?.username, 'YQ==');
    assert.equal((await contents.read('ns', 'b'))?.data?.username, 'Yg==');
    assert.deepEqual(gets, ['list /api/v1/secrets'], 'no GET after the prefill');
    await contents.read('ns', 'theirs');
    assert.deepEqual(gets, ['list /api/v1/secrets', 'ns/theirs'], 'a Secret the cache does not hold was not remembered: read live');
  });

  it('stops at the first labelled Secret that is not ours (a flood of them is not downloaded)', async () => {
    const live = new Map([
      ['ns/flood-1', secret('flood-1', '1', { data: { blob: 'eA==' } })],
      ['ns/a', secret('a', '5', { owner: OURS, data: { username: 'YQ==' } })],
    ]);
    const { contents, cache, gets } = contentsWith(live);
    cache.set(live.get('ns/a')!);
    assert.equal(await contents.prefill(['ns', 'other'], 'x=y'), 0);
    assert.deepEqual(gets, ['list /api/v1/namespaces/ns/secrets'], 'one page, and no other namespace');
    assert.equal((await contents.read('ns', 'a'))?.data?.username, 'YQ==');
    assert.deepEqual(gets, ['list /api/v1/namespaces/ns/secrets', 'ns/a'], 'read when needed instead');
  });

  it('lists each watched namespace on its own', async () => {
    const { contents, gets } = contentsWith(new Map());
    await contents.prefill(['team-a', 'team-b'], 'x=y');
    assert.deepEqual(gets, ['list /api/v1/namespaces/team-a/secrets', 'list /api/v1/namespaces/team-b/secrets']);
  });
});
