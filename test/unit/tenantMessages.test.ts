import assert from 'node:assert/strict';
import { tenantView } from '../../src/reconcilers/tenantMessages.js';

describe('tenantView: what a tenant sees of platform problems', () => {
  const detail = 'DatabaseRole platform/reader is not Ready: ConfigNotReady: DatabaseConfig platform/pg is not Ready: AuthFailed: password authentication failed for user "postgres"';

  it('the same namespace as the role sees the full message', () => {
    assert.deepEqual(tenantView('platform', 'platform', 'reader', 'RoleNotReady', detail), { message: detail, redacted: false });
  });

  it("another namespace sees the reason and where to look, never the platform's details", () => {
    for (const reason of ['RoleNotReady', 'ConfigNotReady', 'ConfigNotFound', 'IssueFailed', 'RevocationFailed', 'SecretNotFound', 'InvalidSecret', 'SomethingNew']) {
      const view = tenantView('team-a', 'platform', 'reader', reason, `${detail} root credentials Secret platform/pg-root`);
      assert.equal(view.redacted, true, reason);
      assert.ok(view.message.includes(`(${reason})`), view.message);
      assert.ok(view.message.includes('DatabaseRole platform/reader'), view.message);
      for (const secret of ['postgres', 'pg-root', 'password authentication', 'platform/pg ']) assert.equal(view.message.includes(secret), false, `${reason}: ${secret}`);
    }
  });

  it("reasons about the tenant's own request keep their message", () => {
    for (const reason of ['RoleNotFound', 'NamespaceNotWatched', 'NamespaceNotAllowed', 'InvalidTTL', 'InvalidSecretTemplate', 'SecretConflict', 'RoleDropped', 'Expired']) {
      assert.deepEqual(tenantView('team-a', 'platform', 'reader', reason, 'm'), { message: 'm', redacted: false }, reason);
    }
  });
});
