import assert from 'node:assert/strict';
import { ConfigError, clusterIdSetting, loadConfig } from '../../src/config.js';

describe('CLUSTER_ID', () => {
  it('is unset when absent or empty (the kube-system UID is used then)', () => {
    assert.equal(clusterIdSetting({}), undefined);
    assert.equal(clusterIdSetting({ CLUSTER_ID: '' }), undefined);
  });

  it('is part of the settings, so a bad one stops the start like any bad setting (exit 2)', () => {
    assert.equal(loadConfig({ CLUSTER_ID: 'prod-eu-1' }).clusterId, 'prod-eu-1');
    assert.throws(() => loadConfig({ CLUSTER_ID: 'bad id' }), ConfigError);
  });

  for (const id of ['prod-eu-1', 'b6c1f3a0-1c2d-4e5f-8a9b-0c1d2e3f4a5b', 'arn:aws:eks/eu-west-1/prod', 'a'.repeat(128)]) {
    it(`accepts ${JSON.stringify(id.length > 40 ? `${id.slice(0, 20)}…` : id)}`, () => assert.equal(clusterIdSetting({ CLUSTER_ID: id }), id));
  }

  for (const id of ['-leading-dash', 'has space', 'quote"s', "quote's", 'back\\slash', 'a'.repeat(129), 'nul\0', 'ünïcode']) {
    it(`refuses ${JSON.stringify(id.length > 40 ? `${id.slice(0, 20)}…` : id)} with a message naming the setting`, () => {
      assert.throws(() => clusterIdSetting({ CLUSTER_ID: id }), (err: unknown) => err instanceof ConfigError && /^CLUSTER_ID=/.test(err.message));
    });
  }
});
