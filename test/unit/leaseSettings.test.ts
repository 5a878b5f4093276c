import assert from 'node:assert/strict';
import { ConfigError, loadConfig } from '../../src/config.js';

describe('lease settings', () => {
  it('default to client-go\'s 15s / 10s / 2s', () => {
    const c = loadConfig({});
    assert.deepEqual([c.leaseDurationMs, c.renewDeadlineMs, c.retryPeriodMs], [15_000, 10_000, 2_000]);
  });

  it('accept Go durations', () => {
    const c = loadConfig({ LEASE_DURATION: '4s', RENEW_DEADLINE: '3s', RETRY_PERIOD: '500ms' });
    assert.deepEqual([c.leaseDurationMs, c.renewDeadlineMs, c.retryPeriodMs], [4_000, 3_000, 500]);
  });

  it('refuse a leader that could still act after a standby took over, or a fractional lease', () => {
    assert.throws(() => loadConfig({ LEASE_DURATION: '10s', RENEW_DEADLINE: '10s' }), ConfigError);
    assert.throws(() => loadConfig({ RENEW_DEADLINE: '2s', RETRY_PERIOD: '2s' }), ConfigError);
    assert.throws(() => loadConfig({ RETRY_PERIOD: '0s', RENEW_DEADLINE: '1s', LEASE_DURATION: '2s' }), ConfigError);
    assert.throws(() => loadConfig({ LEASE_DURATION: '15500ms' }), ConfigError);
  });
});
