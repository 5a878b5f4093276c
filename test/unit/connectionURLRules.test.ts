// The CEL rules of DatabaseConfig.spec that keep connectionURL's query to sslmode alone (issue 8, finding 9), run
// as JavaScript regular expressions (the rules use only RE2 syntax that means the same in both). The operator
// checks the same in parseConnectionURL (secretData.test.ts); the integration suite sees the API server refuse.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import yaml from 'js-yaml';

interface Rule {
  rule: string;
  message: string;
}

function specRules(): Rule[] {
  const crd = yaml.load(readFileSync(path.join(process.cwd(), 'crds', 'databaseconfigs.yaml'), 'utf8')) as {
    spec: { versions: { schema: { openAPIV3Schema: { properties: { spec: { 'x-kubernetes-validations': Rule[] } } } } }[] };
  };
  return crd.spec.versions[0]?.schema.openAPIV3Schema.properties.spec['x-kubernetes-validations'] ?? [];
}

/** Evaluates the connectionURL rules the way CEL would, for the shapes they use: contains() and matches(). */
function refusals(url: string): string[] {
  const out: string[] = [];
  for (const { rule, message } of specRules()) {
    if (!rule.includes('connectionURL')) continue;
    const terms = rule.split(' || ').filter((t) => t !== '!has(self.connectionURL)');
    const holds = terms.some((term) => {
      const negated = term.startsWith('!');
      const body = negated ? term.slice(1) : term;
      let value: boolean;
      const matches = /^self\.connectionURL\.matches\('((?:[^'\\]|\\.)*)'\)$/.exec(body);
      const contains = /^self\.connectionURL\.contains\('([^']*)'\)$/.exec(body);
      const startsWith = /^self\.connectionURL\.startsWith\('([^']*)'\)$/.exec(body);
      if (matches?.[1] !== undefined) value = new RegExp(matches[1].replace(/\\\\/g, '\\')).test(url);
      else if (contains?.[1] !== undefined) value = url.includes(contains[1]);
      else if (startsWith?.[1] !== undefined) value = url.startsWith(startsWith[1]);
      else throw new Error(`unexpected term ${term}`);
      return negated ? !value : value;
    });
    if (!holds) out.push(message);
  }
  return out;
}

describe('DatabaseConfig CRD: connectionURL query parameters', () => {
  const base = 'postgresql://{{username}}:{{password}}@pg.platform.svc:5432/app';

  it('accepts no query, or sslmode alone with a libpq value', () => {
    assert.deepEqual(refusals(base), []);
    for (const mode of ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full']) assert.deepEqual(refusals(`${base}?sslmode=${mode}`), [], mode);
  });

  it('refuses a password parameter with its own message', () => {
    for (const url of [`${base}?password=hunter2`, `${base}?sslmode=require&password=hunter2`, `${base}?sslpassword=x`]) {
      const messages = refusals(url);
      assert.ok(messages.some((m) => /must not have a password parameter/.test(m)), url);
      assert.ok(messages.every((m) => !m.includes('hunter2')), 'the message never echoes the URL');
    }
  });

  it('refuses parameters naming a local file with their own message', () => {
    for (const p of ['sslrootcert', 'sslcert', 'sslkey', 'sslcrl', 'sslcrldir', 'passfile', 'service']) {
      assert.ok(refusals(`${base}?sslmode=verify-full&${p}=/etc/x`).some((m) => /must not name a file/.test(m)), p);
    }
  });

  it('refuses anything else: other parameters, two sslmodes, a bad value, an escaped name', () => {
    for (const url of [`${base}?application_name=x`, `${base}?sslmode=require&sslmode=disable`, `${base}?sslmode=sometimes`,
      `${base}?pass%77ord=x`, `${base}?host=evil`, `${base}?`]) {
      assert.ok(refusals(url).some((m) => /accepts one query parameter only, sslmode/.test(m)), url);
    }
  });
});
