// Which placeholders each kind of DatabaseRole statement may and must use, and what the dry run executes, in
// which order, with which values.
import assert from 'node:assert/strict';
import type { DatabaseRoleSpec } from '../../src/api/types.js';
import { checkPlaceholders, dryRunPlan } from '../../src/reconcilers/databaserole.js';
import { NotReady } from '../../src/reconcilers/context.js';

const CREATE = `CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';`;
const dynamic = (extra: Partial<DatabaseRoleSpec> = {}): DatabaseRoleSpec => ({ configRef: { name: 'pg' }, creationStatements: [CREATE], ...extra });
const staticRole = (rotationStatements?: string[]): DatabaseRoleSpec => ({ configRef: { name: 'pg' }, static: { username: 'app', rotationStatements } });

/** The reason and message checkPlaceholders refuses with, or undefined when it accepts. */
function refusal(spec: DatabaseRoleSpec): { reason: string; message: string } | undefined {
  try {
    checkPlaceholders(spec);
    return undefined;
  } catch (err) {
    assert.ok(err instanceof NotReady, 'a refusal is a NotReady (Ready=False), never a crash');
    return { reason: err.reason, message: err.message };
  }
}

describe('DatabaseRole statement placeholders', () => {
  it('accepts the usual statements of every kind', () => {
    assert.equal(refusal(dynamic()), undefined);
    assert.equal(refusal(dynamic({
      renewStatements: [`ALTER ROLE "{{name}}" VALID UNTIL '{{expiration}}';`],
      revocationStatements: ['REASSIGN OWNED BY "{{name}}" TO postgres; DROP OWNED BY "{{name}}"; DROP ROLE "{{name}}";'],
      rollbackStatements: ['DROP ROLE IF EXISTS "{{username}}";'],
    })), undefined);
    assert.equal(refusal(staticRole()), undefined);
    assert.equal(refusal(staticRole([`ALTER ROLE "{{name}}" WITH PASSWORD '{{password}}';`])), undefined);
    assert.equal(refusal(dynamic({ revocationStatements: [`ALTER ROLE "{{name}}" VALID UNTIL '{{expiration}}'; DROP ROLE "{{name}}";`] })), undefined,
      'a revocation may use {{expiration}} (now)');
  });

  it('refuses {{password}} where no password exists: renew, revocation, rollback', () => {
    for (const field of ['renewStatements', 'revocationStatements', 'rollbackStatements'] as const) {
      const r = refusal(dynamic({ [field]: [`ALTER ROLE "{{name}}" PASSWORD '{{password}}';`] }));
      assert.equal(r?.reason, 'PlaceholderNotAllowed', field);
      assert.match(r?.message ?? '', new RegExp(`^${field} cannot use \\{\\{password\\}\\}`));
      assert.match(r?.message ?? '', /available there: \{\{name\}\}, \{\{expiration\}\}/);
    }
  });

  it('refuses {{expiration}} in static rotation statements (a static password has no expiry)', () => {
    const r = refusal(staticRole([`ALTER ROLE "{{name}}" PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';`]));
    assert.equal(r?.reason, 'PlaceholderNotAllowed');
    assert.match(r?.message ?? '', /^static\.rotationStatements cannot use \{\{expiration\}\}/);
  });

  it('requires {{name}} where the statements act on one role, and {{password}} in rotation', () => {
    for (const field of ['creationStatements', 'renewStatements', 'revocationStatements'] as const) {
      const r = refusal(dynamic({ [field]: ['SELECT 1;'] }));
      assert.equal(r?.reason, 'InvalidStatements', field);
      assert.match(r?.message ?? '', new RegExp(`^${field} must use \\{\\{name\\}\\}`));
    }
    assert.equal(refusal(dynamic({ rollbackStatements: ['SELECT 1;'] })), undefined, 'a rollback may be generic');
    const r = refusal(staticRole(['ALTER ROLE "{{name}}" NOLOGIN;']));
    assert.equal(r?.reason, 'InvalidStatements');
    assert.match(r?.message ?? '', /^static\.rotationStatements must use \{\{password\}\}/);
  });

  it('ignores placeholders in comments and refuses unknown ones with the field named', () => {
    assert.equal(refusal(dynamic({ renewStatements: [`-- never '{{password}}'\nALTER ROLE "{{name}}" VALID UNTIL '{{expiration}}';`] })), undefined);
    const r = refusal(dynamic({ revocationStatements: ['DROP ROLE "{{bogus}}";'] }));
    assert.equal(r?.reason, 'InvalidStatements');
    assert.match(r?.message ?? '', /^revocationStatements: unknown placeholder \{\{bogus\}\}/);
    const u = refusal(dynamic({ rollbackStatements: [`SELECT 'unterminated`] }));
    assert.equal(u?.reason, 'InvalidStatements');
    assert.match(u?.message ?? '', /^rollbackStatements: unterminated/);
  });
});

describe('dryRunPlan', () => {
  const sample = { name: 'dbcred_dryrun_x', password: 'sample-password', now: new Date('2030-01-01T00:00:00Z') };
  const shape = (plan: ReturnType<typeof dryRunPlan>) => plan.map((tx) => tx.map((step) => step.field));

  it('creates, renews (built-in when none given) and stops there without custom revocation', () => {
    const plan = dryRunPlan(dynamic(), sample);
    assert.deepEqual(shape(plan), [['creationStatements', 'renewStatements']]);
    const [create, renew] = plan[0] ?? [];
    assert.deepEqual(create?.values, { name: sample.name, password: sample.password, expiration: new Date('2030-01-01T01:00:00Z') });
    assert.deepEqual(renew?.statements, [`ALTER ROLE "{{name}}" VALID UNTIL '{{expiration}}';`]);
    assert.equal(renew?.values.password, undefined, 'a renewal gets no password, as for real');
  });

  it('runs custom revocation after renew in the same transaction, and rollback after creation in its own', () => {
    const spec = dynamic({ renewStatements: ['R "{{name}}"'], revocationStatements: ['DROP ROLE "{{name}}"'], rollbackStatements: ['RB "{{name}}"'] });
    const plan = dryRunPlan(spec, sample);
    assert.deepEqual(shape(plan), [['creationStatements', 'renewStatements', 'revocationStatements'], ['creationStatements', 'rollbackStatements']]);
    const revoke = plan[0]?.[2];
    assert.deepEqual(revoke?.values, { name: sample.name, expiration: sample.now });
    assert.equal(plan[1]?.[1]?.values.password, undefined);
  });

  it('static roles: the rotation statements (or the built-in one) against the static user', () => {
    assert.deepEqual(dryRunPlan(staticRole(), sample), [[{
      field: 'static.rotationStatements',
      statements: [`ALTER ROLE "{{name}}" WITH PASSWORD '{{password}}';`],
      values: { name: 'app', password: sample.password },
    }]]);
  });
});
