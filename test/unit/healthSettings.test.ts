import assert from 'node:assert/strict';
import { ConfigError, loadConfig } from '../../src/config.js';

describe('health server settings', () => {
  it('are off by default, and the port is not shared', () => {
    const c = loadConfig({});
    assert.equal(c.healthPort, 0);
    assert.equal(c.healthReusePort, false);
  });

  it('HEALTH_REUSE_PORT lets replicas on one host network share the port', () => {
    const c = loadConfig({ HEALTH_PORT: '8081', HEALTH_REUSE_PORT: 'true' });
    assert.deepEqual([c.healthPort, c.healthReusePort], [8081, true]);
  });

  it('refuse anything but a boolean', () => {
    assert.throws(() => loadConfig({ HEALTH_REUSE_PORT: 'yes' }), ConfigError);
  });
});
