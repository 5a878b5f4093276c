import assert from 'node:assert/strict';
import type { RoleAttributes, StaticUserFacts } from '../../src/postgres/roleAdmin.js';
import { allowanceOf, claimRefusal, compareClaims, staticUserRefusal, type StaticAllowance } from '../../src/reconcilers/staticPolicy.js';

const plainRole = (name: string, extra: Partial<RoleAttributes> = {}): RoleAttributes => ({
  name,
  superuser: false,
  createRole: false,
  replication: false,
  bypassRLS: false,
  predefined: name.startsWith('pg_'),
  memberOf: [],
  ...extra,
});

function facts(user: Partial<RoleAttributes> & { comment?: string | null } = {}, reachable: RoleAttributes[] = []): StaticUserFacts {
  return { user: { ...plainRole('app'), comment: null, ...user }, reachable, connectedAs: ['admin'] };
}

const none: StaticAllowance = allowanceOf({ plugin: 'postgresql', connectionURL: '', rootCredentialsSecretRef: { name: 'r' } });
const refusal = (f: StaticUserFacts | undefined, allow = none, admins = ['admin']) => staticUserRefusal('app', f, admins, allow);

describe('staticUserRefusal', () => {
  it('accepts an ordinary login', () => {
    assert.equal(refusal(facts({}, [plainRole('readers')])), undefined);
  });

  const cases: Array<[string, StaticUserFacts | undefined, string[], string, RegExp]> = [
    ['a user that does not exist', undefined, ['admin'], 'StaticUserNotFound', /does not exist/],
    ['the user the connection runs as', { ...facts(), connectedAs: ['app'] }, ['admin'], 'StaticUserIsAdmin', /is the admin this DatabaseConfig connects as/],
    ["the root Secret's username", facts(), ['app'], 'StaticUserIsAdmin', /is the admin/],
    ['a member of the admin, through a group', facts({ memberOf: ['grp'] }, [plainRole('grp', { memberOf: ['admin'] }), plainRole('admin')]), ['admin'], 'StaticUserIsAdmin', /member of the admin role/],
    ['a role the operator issued', facts({ comment: 'dbcred:{"namespace":"a","name":"b","uid":"c"}' }), ['admin'], 'StaticUserIsDynamic', /issued by the operator/],
    ['a role with any dbcred: marker, even one this version cannot parse', facts({ comment: 'dbcred:v2 something' }), ['admin'], 'StaticUserIsDynamic', /issued by the operator/],
    ['a superuser', facts({ superuser: true }), ['admin'], 'StaticUserIsSuperuser', /is a superuser; /],
    ['a member of a superuser role', facts({}, [plainRole('root_group', { superuser: true })]), ['admin'], 'StaticUserIsSuperuser', /superuser through role "root_group"/],
    ['CREATEROLE', facts({ createRole: true }), ['admin'], 'StaticUserPrivileged', /powers .*: CREATEROLE \(the platform may allow them in the DatabaseConfig's spec.staticRoles\)/],
    ['REPLICATION and BYPASSRLS through a group', facts({ replication: true }, [plainRole('g', { bypassRLS: true })]), ['admin'], 'StaticUserPrivileged', /REPLICATION; BYPASSRLS through role "g"/],
    ['membership in pg_signal_backend', facts({}, [plainRole('pg_signal_backend')]), ['admin'], 'StaticUserPrivileged', /membership in pg_signal_backend/],
    ['inherited membership in pg_read_server_files and pg_execute_server_program', facts({}, [plainRole('ops', { memberOf: ['pg_execute_server_program', 'pg_read_server_files'] }), plainRole('pg_read_server_files'), plainRole('pg_execute_server_program')]), ['admin'], 'StaticUserPrivileged', /membership in pg_execute_server_program, pg_read_server_files/],
  ];
  for (const [what, f, admins, reason, message] of cases) {
    it(`refuses ${what} (${reason})`, () => {
      const r = refusal(f, none, admins);
      assert.equal(r?.reason, reason);
      assert.match(r?.message ?? '', message);
    });
  }

  it('does not say who the admin is (the message reaches the namespaces using the role)', () => {
    assert.doesNotMatch(refusal(facts(), none, ['app'])?.message ?? '', /"app"/);
    assert.doesNotMatch(refusal(facts({}, [plainRole('admin')]))?.message ?? '', /"admin"|"app"/);
  });

  it('the admin and superusers stay refused whatever the config allows', () => {
    const all = allowanceOf({ plugin: 'postgresql', connectionURL: '', rootCredentialsSecretRef: { name: 'r' }, staticRoles: { allowedAttributes: ['CREATEROLE', 'REPLICATION', 'BYPASSRLS'], allowedPredefinedRoles: ['pg_monitor'] } });
    assert.equal(refusal(facts(), all, ['app'])?.reason, 'StaticUserIsAdmin');
    assert.equal(refusal(facts({ superuser: true }), all)?.reason, 'StaticUserIsSuperuser');
    assert.equal(refusal(facts({ comment: 'dbcred:{}' }), all)?.reason, 'StaticUserIsDynamic');
  });

  it('allows what the config allows, and only that', () => {
    const allow = allowanceOf({ plugin: 'postgresql', connectionURL: '', rootCredentialsSecretRef: { name: 'r' }, staticRoles: { allowedAttributes: ['CREATEROLE'], allowedPredefinedRoles: ['pg_monitor'] } });
    const monitor = [plainRole('pg_monitor', { memberOf: ['pg_read_all_settings', 'pg_read_all_stats'] }), plainRole('pg_read_all_settings'), plainRole('pg_read_all_stats')];
    assert.equal(refusal(facts({ createRole: true, memberOf: ['pg_monitor'] }, monitor), allow), undefined, 'pg_monitor brings its own memberships');
    const r = refusal(facts({ createRole: true, replication: true }, [...monitor, plainRole('pg_write_server_files')]), allow);
    assert.equal(r?.reason, 'StaticUserPrivileged');
    assert.match(r?.message ?? '', /: REPLICATION; membership in pg_write_server_files \(/);
  });
});

describe('static claims', () => {
  const a = { namespace: 'platform', name: 'a', creationTimestamp: '2026-01-01T00:00:00Z' };
  const b = { namespace: 'platform', name: 'b', creationTimestamp: '2026-01-02T00:00:00Z' };
  const sameTime = { namespace: 'other', name: 'z', creationTimestamp: '2026-01-01T00:00:00Z' };

  it('the oldest wins, then namespace/name; every claimant agrees', () => {
    assert.deepEqual([b, sameTime, a].sort(compareClaims), [sameTime, a, b]);
    assert.equal(claimRefusal(sameTime, 'u', [a, b]), undefined);
    assert.equal(claimRefusal(a, 'u', [b, sameTime])?.reason, 'StaticUserClaimed');
    assert.equal(claimRefusal(b, 'u', [a, sameTime])?.reason, 'StaticUserClaimed');
  });

  it('names the winner only when it lives in the same namespace', () => {
    assert.match(claimRefusal(b, 'u', [a])?.message ?? '', /already managed by DatabaseRole platform\/a /);
    const message = claimRefusal(a, 'u', [sameTime])?.message ?? '';
    assert.match(message, /already managed by a static DatabaseRole in another namespace/);
    assert.doesNotMatch(message, /other\/z|"z"|\bz\b/, 'the winner in another namespace is not named');
  });

  it('a role alone has no rival', () => assert.equal(claimRefusal(a, 'u', []), undefined));
});
