// Every kind of statement a DatabaseRole carries is checked before the role is Ready: placeholders that make no
// sense for the kind are refused (at admission where the schema can tell), and creation, renew, revocation and
// rollback statements run in rolled-back transactions against a sample role. A role whose revocation would fail
// never issues a credential that could then never be deleted.
import assert from 'node:assert/strict';
import type { DatabaseCredential, DatabaseRole } from '../../src/api/types.js';
import { loginError, queryAs, waitFor, type TestEnv, roleExists as roleExistsOn } from './harness.js';
import { operatorSuite } from './suite.js';
import {
  OperatorProcess,
  apply,
  condition,
  connectionFromSecret,
  credentialObject,
  getObject,
  platformObjects,
  readSecretData,
  waitForCondition,
} from './operator.js';

describe('DatabaseRole statements are checked before Ready', function () {
  this.timeout(120_000);
  let env: TestEnv;
  let ns: string;
  let operator: OperatorProcess;

  const roleExists = (username: string) => roleExistsOn(env.postgres.connection, username);
  const dryRunLeftovers = async () =>
    (await queryAs(env.postgres.connection, "SELECT rolname FROM pg_roles WHERE rolname LIKE 'dbcred_dryrun_%'")).rows.map((r) => r.rolname as string);
  /** A DatabaseRole "name" on config pg, with extra spec fields. */
  const roleObject = (name: string, extra: object) => {
    const role = platformObjects(env, { role: name })[2] as DatabaseRole;
    return { ...role, spec: { ...role.spec, ...extra } };
  };

  operatorSuite('stmts', {}, (suite) => ({ env, ns, operator } = suite));

  it('refuses a role whose revocationStatements fail, and issues no credential from it', async () => {
    await apply(env, ns, [roleObject('badrevoke', { revocationStatements: ['DROP TABLE no_such_table_for_revocation; DROP ROLE "{{name}}";'] })]);
    const role = await waitForCondition<DatabaseRole>(env, 'databaseroles', ns, 'badrevoke', 'Ready', 'False', 'RevocationStatementsFailed');
    assert.match(condition(role, 'Ready')?.message ?? '', /^revocationStatements failed in a rolled-back dry run: .*no_such_table_for_revocation/);

    await apply(env, ns, [credentialObject('from-badrevoke', { roleRef: { name: 'badrevoke' } })]);
    const cred = await waitForCondition<DatabaseCredential>(env, 'databasecredentials', ns, 'from-badrevoke', 'Ready', 'False', 'RoleNotReady');
    assert.equal(cred.status?.username, undefined, 'no role was issued');
    assert.equal(await readSecretData(env, ns, 'from-badrevoke'), undefined, 'no Secret was written');
    assert.deepEqual(await dryRunLeftovers(), [], 'the dry run left no role behind');
    // Nothing was issued, so the credential goes away at once.
    await env.kubectl(['-n', ns, 'delete', 'databasecredential', 'from-badrevoke', '--wait=true', '--timeout=60s']);
  });

  it('refuses {{password}} in renewStatements at admission, naming the field', async () => {
    await assert.rejects(
      apply(env, ns, [roleObject('pwrenew', { renewStatements: [`ALTER ROLE "{{name}}" PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';`] })]),
      /renewStatements cannot use \{\{password\}\}/,
    );
    assert.equal(await getObject(env, 'databaseroles', ns, 'pwrenew'), undefined);
  });

  it('refuses renew and rollback statements that fail, each with its own reason', async () => {
    await apply(env, ns, [
      roleObject('badrenew', { renewStatements: [`ALTER ROLE "{{name}}" VALID UNTIL '{{expiration}}'; SELECT no_such_function_for_renewal();`] }),
      roleObject('badrollback', { rollbackStatements: ['REVOKE ALL ON no_such_table_for_rollback FROM "{{name}}";'] }),
    ]);
    const renew = await waitForCondition<DatabaseRole>(env, 'databaseroles', ns, 'badrenew', 'Ready', 'False', 'RenewStatementsFailed');
    assert.match(condition(renew, 'Ready')?.message ?? '', /^renewStatements failed .*no_such_function_for_renewal/);
    const rollback = await waitForCondition<DatabaseRole>(env, 'databaseroles', ns, 'badrollback', 'Ready', 'False', 'RollbackStatementsFailed');
    assert.match(condition(rollback, 'Ready')?.message ?? '', /^rollbackStatements failed .*no_such_table_for_rollback/);
  });

  it('accepts a valid custom revocation, and it revokes for real', async () => {
    await apply(env, ns, [roleObject('customrevoke', {
      renewStatements: [`ALTER ROLE "{{username}}" VALID UNTIL '{{expiration}}';`],
      revocationStatements: ['REVOKE ALL ON ALL TABLES IN SCHEMA public FROM "{{name}}"; DROP ROLE IF EXISTS "{{name}}";'],
    })]);
    await waitForCondition<DatabaseRole>(env, 'databaseroles', ns, 'customrevoke', 'Ready', 'True');
    assert.deepEqual(await dryRunLeftovers(), []);
    await apply(env, ns, [credentialObject('from-custom', { roleRef: { name: 'customrevoke' } })]);
    const cred = await waitForCondition<DatabaseCredential>(env, 'databasecredentials', ns, 'from-custom', 'Ready', 'True');
    const data = await readSecretData(env, ns, 'from-custom');
    assert.ok(data);
    assert.equal(await loginError(connectionFromSecret(data)), undefined);
    await env.kubectl(['-n', ns, 'delete', 'databasecredential', 'from-custom', '--wait=true', '--timeout=60s']);
    assert.equal(await roleExists(cred.status?.username ?? ''), false, 'the custom revocation dropped the role');
  });

  it('refuses static rotationStatements that fail, and leaves the user\'s password as it was', async () => {
    await queryAs(env.postgres.connection, "DROP ROLE IF EXISTS stmts_static; CREATE ROLE stmts_static LOGIN PASSWORD 'before-dry-run'");
    const before = { ...env.postgres.connection, user: 'stmts_static', password: 'before-dry-run' };
    assert.equal(await loginError(before), undefined);
    await apply(env, ns, [{
      apiVersion: 'dbcred.dev/v1alpha1',
      kind: 'DatabaseRole',
      metadata: { name: 'badstatic' },
      spec: {
        configRef: { name: 'pg' },
        static: { username: 'stmts_static', rotationStatements: [`ALTER ROLE "{{name}}" WITH PASSWORD '{{password}}'; SELECT no_such_function_for_rotation();`] },
      },
    }]);
    const role = await waitForCondition<DatabaseRole>(env, 'databaseroles', ns, 'badstatic', 'Ready', 'False', 'RotationStatementsFailed');
    assert.match(condition(role, 'Ready')?.message ?? '', /^static\.rotationStatements failed .*no_such_function_for_rotation/);
    assert.doesNotMatch(condition(role, 'Ready')?.message ?? '', /PASSWORD '[^*]/, 'no password in the condition');
    assert.equal(await loginError(before), undefined, 'the dry run was rolled back: the old password still works');
    await waitFor('the operator to stay up', async () => operator.exitCode === null, { timeoutMs: 1000 });
  });
});
