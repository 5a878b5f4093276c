// Issue 8, finding 9 (third item): a tenant whose DatabaseCredential points at a platform DatabaseRole in another
// namespace learns that the platform side is broken and where the details are — not the admin username, the root
// Secret's name or PostgreSQL's error text. Those stay on the platform's objects.
import assert from 'node:assert/strict';
import type { DatabaseConfig, DatabaseCredential, DatabaseRole } from '../../src/api/types.js';
import { createNamespace, queryAs, type TestEnv } from './harness.js';
import { operatorSuite } from './suite.js';
import { apply, condition, credentialObject, platformObjects, waitForCondition } from './operator.js';

describe('tenants see platform problems in their own terms (issue 8, finding 9)', function () {
  this.timeout(120_000);
  let env: TestEnv;
  let platform: string;
  let tenant: string;

  operatorSuite('tenantmsg', {}, (suite) => ({ env, ns: platform } = suite));

  /** Platform objects: a config "name" and a role "name-role" that the tenant namespace may use. */
  const sharedRole = (config: string, opts: { creationStatements?: string[] } = {}) => {
    const [secret, cfg, role] = platformObjects(env, { config, role: `${config}-role`, allowedNamespaces: [tenant, platform], ...opts }) as [
      { stringData: Record<string, string> },
      DatabaseConfig,
      DatabaseRole,
    ];
    return { secret, cfg, role };
  };

  before(async () => {
    tenant = await createNamespace(env, 'tenant');
  });

  const tenantEvents = async () => env.kubectl(['-n', tenant, 'get', 'events', '-o', 'json']);

  it('a config whose admin cannot log in: the tenant sees RoleNotReady, not the admin user', async () => {
    const { secret, cfg, role } = sharedRole('pgbadauth');
    secret.stringData.password = 'not-the-password';
    await apply(env, platform, [secret, cfg, role]);
    const config = await waitForCondition<DatabaseConfig>(env, 'databaseconfigs', platform, 'pgbadauth', 'Ready', 'False');
    assert.match(condition(config, 'Ready')?.message ?? '', /user "postgres"/, 'the platform sees the details on the config');

    await apply(env, tenant, [credentialObject('badauth', { roleRef: { name: 'pgbadauth-role', namespace: platform } })]);
    const cred = await waitForCondition<DatabaseCredential>(env, 'databasecredentials', tenant, 'badauth', 'Ready', 'False', 'RoleNotReady');
    const message = condition(cred, 'Ready')?.message ?? '';
    assert.match(message, new RegExp(`DatabaseRole ${platform}/pgbadauth-role`), 'names where to look');
    assert.doesNotMatch(message, /postgres"|pgbadauth-root|password authentication/);

    // The platform's own credential (same namespace as the role) keeps the full message.
    await apply(env, platform, [credentialObject('badauth-own', { roleRef: { name: 'pgbadauth-role' } })]);
    const own = await waitForCondition<DatabaseCredential>(env, 'databasecredentials', platform, 'badauth-own', 'Ready', 'False', 'RoleNotReady');
    assert.match(condition(own, 'Ready')?.message ?? '', /password authentication failed for user "postgres"/);
  });

  it('a config whose root Secret is missing: the tenant does not learn its name', async () => {
    const { cfg, role } = sharedRole('pgnosecret');
    await apply(env, platform, [cfg, role]);
    await waitForCondition<DatabaseConfig>(env, 'databaseconfigs', platform, 'pgnosecret', 'Ready', 'False', 'SecretNotFound');
    await apply(env, tenant, [credentialObject('nosecret', { roleRef: { name: 'pgnosecret-role', namespace: platform } })]);
    const cred = await waitForCondition<DatabaseCredential>(env, 'databasecredentials', tenant, 'nosecret', 'Ready', 'False', 'RoleNotReady');
    assert.doesNotMatch(condition(cred, 'Ready')?.message ?? '', /pgnosecret-root|SecretNotFound/);
  });

  it("an issue the server refuses: the tenant sees IssueFailed, the DatabaseRole gets PostgreSQL's error", async () => {
    await queryAs(env.postgres.connection, 'CREATE TABLE public.tenant_fragile (id int)');
    const { secret, cfg, role } = sharedRole('pgfragile', {
      creationStatements: [`CREATE ROLE "{{name}}" LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'; GRANT SELECT ON public.tenant_fragile TO "{{name}}";`],
    });
    await apply(env, platform, [secret, cfg, role]);
    await waitForCondition<DatabaseRole>(env, 'databaseroles', platform, 'pgfragile-role', 'Ready', 'True');
    await queryAs(env.postgres.connection, 'DROP TABLE public.tenant_fragile');
    await apply(env, tenant, [credentialObject('fragile', { roleRef: { name: 'pgfragile-role', namespace: platform } })]);
    const cred = await waitForCondition<DatabaseCredential>(env, 'databasecredentials', tenant, 'fragile', 'Ready', 'False', 'IssueFailed');
    const message = condition(cred, 'Ready')?.message ?? '';
    assert.match(message, /the database refused to create the login/);
    assert.doesNotMatch(message, /tenant_fragile|does not exist/);

    const platformEvents = await env.kubectl(['-n', platform, 'get', 'events', '--field-selector', 'involvedObject.name=pgfragile-role', '-o', 'json']);
    assert.match(platformEvents, new RegExp(`DatabaseCredential ${tenant}/fragile: creating role: .*tenant_fragile.* does not exist`), 'the details are on the DatabaseRole');
  });

  it("no Event in the tenant's namespace carries the platform's details", async () => {
    const events = await tenantEvents();
    assert.match(events, /RoleNotReady/, "the tenant's credentials recorded events");
    assert.doesNotMatch(events, /postgres"|pgbadauth-root|pgnosecret-root|tenant_fragile|password authentication/);
  });
});
