import assert from 'node:assert/strict';
import {
  buildSecretData,
  ConnectionURLError,
  fillConnectionURL,
  parseConnectionURL,
  SecretTemplateError,
  type SecretDataInput,
  validateSecretMetadata,
} from '../../src/secrets/secretData.js';

const input: SecretDataInput = {
  host: 'pg.platform.svc',
  port: 5432,
  database: 'app',
  sslmode: 'require',
  username: 'v-my-role-app-db-AbC-1714521600',
  password: 'aB3-xyz',
  expiresAt: new Date('2024-05-01T13:00:00.250Z'),
};

describe('buildSecretData', () => {
  it('writes exactly the binding keys', () => {
    assert.deepEqual(buildSecretData(input), {
      type: 'postgresql',
      provider: 'dbcred',
      host: 'pg.platform.svc',
      port: '5432',
      database: 'app',
      username: 'v-my-role-app-db-AbC-1714521600',
      password: 'aB3-xyz',
      sslmode: 'require',
      uri: 'postgresql://v-my-role-app-db-AbC-1714521600:aB3-xyz@pg.platform.svc:5432/app?sslmode=require',
      'jdbc-url': 'jdbc:postgresql://pg.platform.svc:5432/app?sslmode=require',
      'expires-at': '2024-05-01T13:00:00Z',
    });
  });

  it('URL-escapes user, password and database; brackets IPv6 hosts', () => {
    const data = buildSecretData({ ...input, host: '::1', database: 'my db', username: 'u@x:y', password: 'p/w?#%' });
    assert.equal(data.uri, 'postgresql://u%40x%3Ay:p%2Fw%3F%23%25@[::1]:5432/my%20db?sslmode=require');
    assert.equal(data['jdbc-url'], 'jdbc:postgresql://[::1]:5432/my%20db?sslmode=require');
    assert.equal(data.host, '::1');
  });

  it('renders template keys', () => {
    const data = buildSecretData({
      ...input,
      template: { DATABASE_URL: '{{uri}}', 'spring.datasource.url': '{{ jdbc-url }}', summary: '{{username}}@{{host}}:{{port}}/{{database}} until {{expires-at}} ({{sslmode}}) {"json":{"ok":1}}' },
    });
    assert.equal(data.DATABASE_URL, data.uri);
    assert.equal(data['spring.datasource.url'], 'jdbc:postgresql://pg.platform.svc:5432/app?sslmode=require');
    assert.equal(data.summary, 'v-my-role-app-db-AbC-1714521600@pg.platform.svc:5432/app until 2024-05-01T13:00:00Z (require) {"json":{"ok":1}}');
  });

  const ca = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';

  it('carries the CA under root.crt, named by sslrootcert (the Spring Cloud Bindings / Quarkus convention)', () => {
    const data = buildSecretData({ ...input, sslmode: 'verify-full', ca });
    assert.equal(data['root.crt'], ca);
    assert.equal(data.sslrootcert, 'root.crt');
    // uri and jdbc-url keep libpq's and pgjdbc's default root certificate location (~/.postgresql/root.crt).
    assert.equal(data.uri, 'postgresql://v-my-role-app-db-AbC-1714521600:aB3-xyz@pg.platform.svc:5432/app?sslmode=verify-full');
    assert.equal(data['jdbc-url'], 'jdbc:postgresql://pg.platform.svc:5432/app?sslmode=verify-full');
    assert.deepEqual(Object.keys(data).sort(), ['database', 'expires-at', 'host', 'jdbc-url', 'password', 'port', 'provider', 'root.crt', 'sslmode',
      'sslrootcert', 'type', 'uri', 'username']);
  });

  it('carries no CA without one, nor with sslmode=disable', () => {
    assert.equal('root.crt' in buildSecretData(input), false);
    const data = buildSecretData({ ...input, sslmode: 'disable', ca });
    assert.equal('root.crt' in data, false);
    assert.equal('sslrootcert' in data, false);
  });

  it('lets a template point a URI at the CA where the pod mounts it', () => {
    const data = buildSecretData({ ...input, sslmode: 'verify-full', ca, template: { PGURI: '{{uri}}&sslrootcert=/bindings/db/root.crt' } });
    assert.equal(data.PGURI, `${data.uri}&sslrootcert=/bindings/db/root.crt`);
  });

  it('refuses a template key that would replace the CA keys', () => {
    assert.throws(() => buildSecretData({ ...input, ca, template: { 'root.crt': 'x' } }), /key "root.crt" is set by the operator/);
    assert.throws(() => buildSecretData({ ...input, ca, template: { sslrootcert: '/x' } }), /key "sslrootcert" is set by the operator/);
  });

  const refused: Array<[Record<string, string>, RegExp]> = [
    [{ X: '{{pass}}' }, /secretTemplate.data\["X"\] uses unknown placeholder \{\{pass\}\}; known: \{\{uri\}\}/],
    [{ X: '{{DATABASE_URL}}', DATABASE_URL: 'x' }, /unknown placeholder \{\{DATABASE_URL\}\}/],
    [{ X: '{{constructor}}' }, /unknown placeholder \{\{constructor\}\}/],
    [{ X: '{{uri' }, /unclosed \{\{/],
    [{ password: 'x' }, /key "password" is set by the operator/],
    [{ 'bad key': 'x' }, /"bad key" is not a valid Secret key/],
  ];
  for (const [template, message] of refused) {
    it(`refuses template ${JSON.stringify(template)}`, () => {
      assert.throws(() => buildSecretData({ ...input, template }), (err: unknown) => err instanceof SecretTemplateError && message.test(err.message));
    });
  }
});

describe('parseConnectionURL', () => {
  it('reads host, port, database and sslmode', () => {
    assert.deepEqual(
      parseConnectionURL('postgresql://{{username}}:{{password}}@pg.platform.svc:6432/app?sslmode=verify-full'),
      { host: 'pg.platform.svc', port: 6432, database: 'app', sslmode: 'verify-full' },
    );
  });

  it('applies defaults: port 5432, database postgres, sslmode prefer (libpq default)', () => {
    assert.deepEqual(parseConnectionURL('postgres://{{username}}:{{password}}@db'), {
      host: 'db',
      port: 5432,
      database: 'postgres',
      sslmode: 'prefer',
    });
  });

  it('defaults to sslmode verify-full when the config has a CA, and keeps an explicit sslmode', () => {
    assert.equal(parseConnectionURL('postgres://{{username}}:{{password}}@db', true).sslmode, 'verify-full');
    assert.equal(parseConnectionURL('postgres://{{username}}:{{password}}@db?sslmode=require', true).sslmode, 'require');
    assert.equal(parseConnectionURL('postgres://{{username}}:{{password}}@db?sslmode=disable', true).sslmode, 'disable');
  });

  it('unbrackets IPv6 and decodes the database', () => {
    const target = parseConnectionURL('postgresql://{{username}}:{{password}}@[fd00::1]/my%20db');
    assert.equal(target.host, 'fd00::1');
    assert.equal(target.database, 'my db');
  });

  it('accepts a literal username or no credentials at all', () => {
    assert.equal(parseConnectionURL('postgresql://admin:{{password}}@db/app').host, 'db');
    assert.equal(parseConnectionURL('postgresql://db/app').database, 'app');
  });

  const refused: Array<[string, RegExp]> = [
    ['postgresql://admin:hunter2@db/app', /must not contain a password: write \{\{password\}\}/],
    ['mysql://{{username}}:{{password}}@db/app', /must start with postgresql:\/\/ or postgres:\/\/, not mysql:\/\//],
    ['postgresql://{{username}}:{{password}}@db/app?sslmode=sometimes', /sslmode=sometimes; use one of disable/],
    ['postgresql://{{username}}:{{password}}@db:0/app', /invalid port 0/],
    ['postgresql://{{username}}:{{password}}@h1:5432,h2:5432/app', /not a valid URL/],
    ['postgresql:///app', /no host/],
    ['postgresql://db/%zz', /malformed %-escape in its database/],
    ['not a url', /not a valid URL/],
    // Query parameters: sslmode only (issue 8, finding 9).
    ['postgresql://{{username}}:{{password}}@db/app?password=hunter2', /must not have the parameter password: it is a password/],
    ['postgresql://{{username}}:{{password}}@db/app?sslmode=require&password=hunter2', /must not have the parameter password/],
    ['postgresql://{{username}}:{{password}}@db/app?pass%77ord=hunter2', /must not have the parameter password/],
    ['postgresql://{{username}}:{{password}}@db/app?sslpassword=hunter2', /must not have the parameter sslpassword: it is a password/],
    ['postgresql://{{username}}:{{password}}@db/app?sslrootcert=/etc/ssl/ca.pem', /parameter sslrootcert: it names a file on the operator's machine.*caSecretRef/],
    ['postgresql://{{username}}:{{password}}@db/app?sslkey=/var/run/secrets/kubernetes.io/serviceaccount/token', /parameter sslkey: it names a file/],
    ['postgresql://{{username}}:{{password}}@db/app?sslcert=/x', /parameter sslcert: it names a file/],
    ['postgresql://{{username}}:{{password}}@db/app?sslcrl=/x', /parameter sslcrl: it names a file/],
    ['postgresql://{{username}}:{{password}}@db/app?passfile=/root/.pgpass', /parameter passfile: it names a file/],
    ['postgresql://{{username}}:{{password}}@db/app?service=prod', /parameter service: it names a file/],
    ['postgresql://{{username}}:{{password}}@db/app?host=evil.example', /parameter host: it would override the URL itself/],
    ['postgresql://{{username}}:{{password}}@db/app?user=postgres', /parameter user: it would override the URL itself/],
    ['postgresql://{{username}}:{{password}}@db/app?require_auth=password', /require_auth: it is spec.allowedAuthenticationMethods/],
    ['postgresql://{{username}}:{{password}}@db/app?application_name=x', /has the parameter application_name; the only parameter accepted is sslmode/],
    ['postgresql://{{username}}:{{password}}@db/app?hunter2', /an unknown query parameter \(its name is not shown/],
    ['postgresql://{{username}}:{{password}}@db/app?sslmode=disable&sslmode=verify-full', /sslmode twice/],
  ];
  for (const [url, message] of refused) {
    it(`refuses ${url}`, () => {
      assert.throws(
        () => parseConnectionURL(url),
        (err: unknown) => err instanceof ConnectionURLError && message.test(err.message) && !err.message.includes('hunter2'),
      );
    });
  }
});

describe('fillConnectionURL', () => {
  it('substitutes URL-escaped credentials', () => {
    assert.equal(
      fillConnectionURL('postgresql://{{username}}:{{password}}@db:5432/app?sslmode=require', 'ad@min', 'p:w/d%'),
      'postgresql://ad%40min:p%3Aw%2Fd%25@db:5432/app?sslmode=require',
    );
  });

  it('round-trips through the URL parser', () => {
    const url = new URL(fillConnectionURL('postgresql://{{username}}:{{password}}@db/app', 'ad@min', "p'w#?"));
    assert.equal(decodeURIComponent(url.username), 'ad@min');
    assert.equal(decodeURIComponent(url.password), "p'w#?");
  });

  it('refuses an unknown placeholder', () => {
    assert.throws(() => fillConnectionURL('postgresql://{{user}}@db', 'u', 'p'), /unknown placeholder \{\{user\}\}/);
  });
});

describe('validateSecretMetadata', () => {
  it('accepts ordinary labels and annotations', () => {
    assert.doesNotThrow(() => validateSecretMetadata({ app: 'api', 'example.com/tier': 'db' }, { 'example.com/owner': 'team a', note: '' }));
  });
  for (const [what, labels, annotations] of [
    ['an annotation key with a space', undefined, { 'bad key': 'x' }],
    ['an annotation key with two slashes', undefined, { 'a/b/c': 'x' }],
    ['an annotation prefix that is not a DNS name', undefined, { 'Example.com/x': 'x' }],
    ['an empty label key', { '': 'x' }, undefined],
    ['a label key over 63 characters', { ['k'.repeat(64)]: 'x' }, undefined],
    ['a label value with a space', { app: 'a b' }, undefined],
    ['a label value over 63 characters', { app: 'v'.repeat(64) }, undefined],
    ['annotations over 256 KiB', undefined, { big: 'x'.repeat(256 * 1024) }],
  ] as Array<[string, Record<string, string> | undefined, Record<string, string> | undefined]>) {
    it(`refuses ${what}`, () => {
      assert.throws(() => validateSecretMetadata(labels, annotations), SecretTemplateError);
    });
  }
});
