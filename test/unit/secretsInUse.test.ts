// When a DatabaseConfig needs the dbcred.dev/in-use finalizer kept on a Secret it references.
import assert from 'node:assert/strict';
import type { DatabaseConfig } from '../../src/api/types.js';
import { needsSecret, referencedSecrets } from '../../src/reconcilers/databaseconfig.js';

function config(opts: { ca?: string; deleting?: boolean } = {}): DatabaseConfig {
  return {
    apiVersion: 'dbcred.dev/v1alpha1',
    kind: 'DatabaseConfig',
    metadata: { name: 'pg', namespace: 'platform', ...(opts.deleting ? { deletionTimestamp: '2030-01-01T00:00:00Z' } : {}) },
    spec: {
      plugin: 'postgresql',
      connectionURL: 'postgresql://{{username}}:{{password}}@pg:5432/app',
      rootCredentialsSecretRef: { name: 'pg-root' },
      ...(opts.ca ? { caSecretRef: { name: opts.ca } } : {}),
    },
  };
}

describe('Secrets a DatabaseConfig holds with the in-use finalizer', () => {
  it('references the root Secret, and the CA Secret when set (once if they are the same)', () => {
    assert.deepEqual(referencedSecrets(config()), ['pg-root']);
    assert.deepEqual(referencedSecrets(config({ ca: 'pg-ca' })), ['pg-root', 'pg-ca']);
    assert.deepEqual(referencedSecrets(config({ ca: 'pg-root' })), ['pg-root']);
  });

  it('never needs a Secret it does not reference', () => {
    for (const holders of [0, 3]) for (const deleting of [false, true]) {
      assert.equal(needsSecret(config({ ca: 'pg-ca' }), 'unrelated', holders, deleting), false);
      assert.equal(needsSecret(config({ deleting: true }), 'pg-ca', holders, deleting), false);
    }
  });

  it('needs its Secrets while a credential holds a role through it, whatever is being deleted', () => {
    for (const deletingConfig of [false, true]) for (const deletingSecret of [false, true]) {
      assert.equal(needsSecret(config({ ca: 'pg-ca', deleting: deletingConfig }), 'pg-ca', 1, deletingSecret), true);
      assert.equal(needsSecret(config({ deleting: deletingConfig }), 'pg-root', 2, deletingSecret), true);
    }
  });

  it('without held roles: needs them while it lives, lets go once it is deleted or the Secret is', () => {
    assert.equal(needsSecret(config(), 'pg-root', 0, false), true, 'alive: a role may be issued any moment');
    assert.equal(needsSecret(config(), 'pg-root', 0, true), false, 'the user deletes the Secret: nothing depends on it');
    assert.equal(needsSecret(config({ deleting: true }), 'pg-root', 0, false), false, 'config deleted, nothing held');
  });
});
