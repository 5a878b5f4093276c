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
  it('reads host, port, database, sslmode and other parameters', () => {
    assert.deepEqual(
      parseConnectionURL('postgresql://{{username}}:{{password}}@pg.platform.svc:6432/app?sslmode=verify-full&application_name=dbcred'),
      { host: 'pg.platform.svc', port: 6432, database: 'app', sslmode: 'verify-full', params: { application_name: 'dbcred' } },
    );
  });

  it('applies defaults: port 5432, database postgres, sslmode prefer', () => {
    assert.deepEqual(parseConnectionURL('postgres://{{username}}:{{password}}@db'), {
      host: 'db',
      port: 5432,
      database: 'postgres',
      sslmode: 'prefer',
      params: {},
    });
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
