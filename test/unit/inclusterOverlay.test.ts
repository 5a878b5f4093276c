import assert from 'node:assert/strict';
import path from 'node:path';
import { LOCAL_OVERLAY, environmentOverlay, splitImage } from '../../test/env/incluster.js';

describe('the in-cluster install overlay (test/env/incluster.ts)', () => {
  it('splits an image reference into kustomize name and tag, a registry port included', () => {
    assert.deepEqual(splitImage('dbcred-operator:3f2a91c0'), { newName: 'dbcred-operator', newTag: '3f2a91c0' });
    assert.deepEqual(splitImage('localhost:5000/dbcred-operator:v1'), { newName: 'localhost:5000/dbcred-operator', newTag: 'v1' });
    assert.throws(() => splitImage('localhost:5000/dbcred-operator'), /has no tag/);
    assert.throws(() => splitImage('dbcred-operator:'), /has no tag/);
  });

  it('names the base relative to its own directory and sets only what the environment knows', () => {
    const dir = '/tmp/some-overlay';
    const apiServerEnv = [{ name: 'KUBERNETES_SERVICE_HOST', value: '127.0.0.1' }, { name: 'KUBERNETES_SERVICE_PORT', value: '6443' }];
    const o = environmentOverlay({ dir, image: 'dbcred-operator:abc', apiServerEnv, healthPort: 18081, watchNamespaces: ['a', 'b'] });
    const k = JSON.parse(o.kustomization);
    assert.equal(path.resolve(dir, k.resources[0]), LOCAL_OVERLAY);
    assert.deepEqual(k.images, [{ name: 'dbcred-operator', newName: 'dbcred-operator', newTag: 'abc' }]);
    const c = JSON.parse(o.patch).spec.template.spec.containers[0];
    assert.deepEqual(c.env, [
      { name: 'KUBERNETES_SERVICE_HOST', value: '127.0.0.1' },
      { name: 'KUBERNETES_SERVICE_PORT', value: '6443' },
      { name: 'HEALTH_PORT', value: '18081' },
      { name: 'WATCH_NAMESPACES', value: 'a,b' },
    ]);
    assert.equal(c.livenessProbe.httpGet.port, 18081);
    assert.equal(c.readinessProbe.httpGet.port, 18081);
  });
});
