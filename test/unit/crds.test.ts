// Cheap structural checks of the CustomResourceDefinitions in crds/. The real proof that the schemas and their
// CEL rules are accepted, default and refuse as intended is a run against a real kube-apiserver; these tests
// catch regressions in names, documentation and the duration pattern without one.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import yaml from 'js-yaml';

type Schema = {
  type?: string;
  description?: string;
  properties?: Record<string, Schema>;
  items?: Schema;
  additionalProperties?: Schema | boolean;
  required?: string[];
  pattern?: string;
  default?: unknown;
  enum?: unknown[];
  'x-kubernetes-preserve-unknown-fields'?: boolean;
  'x-kubernetes-validations'?: { rule: string; message?: string; messageExpression?: string }[];
  'x-kubernetes-list-type'?: string;
  'x-kubernetes-list-map-keys'?: string[];
};

interface Crd {
  apiVersion: string;
  kind: string;
  metadata: { name: string };
  spec: {
    group: string;
    scope: string;
    names: { kind: string; plural: string; singular: string; shortNames?: string[]; categories?: string[] };
    versions: {
      name: string;
      served: boolean;
      storage: boolean;
      subresources?: { status?: object };
      additionalPrinterColumns?: { name: string; type: string; jsonPath: string; priority?: number }[];
      schema: { openAPIV3Schema: Schema };
    }[];
  };
}

const GROUP = 'dbcred.dev';
const CRD_DIR = path.join(process.cwd(), 'crds');
const EXPECTED = [
  { file: 'databaseconfigs.yaml', kind: 'DatabaseConfig', plural: 'databaseconfigs', short: 'dbconfig' },
  { file: 'databaseroles.yaml', kind: 'DatabaseRole', plural: 'databaseroles', short: 'dbrole' },
  { file: 'databasecredentials.yaml', kind: 'DatabaseCredential', plural: 'databasecredentials', short: 'dbcred' },
] as const;

function loadCrd(file: string): Crd {
  const docs = yaml.loadAll(readFileSync(path.join(CRD_DIR, file), 'utf8')).filter((d) => d != null);
  assert.equal(docs.length, 1, `${file} holds exactly one document`);
  return docs[0] as Crd;
}

function version(crd: Crd) {
  const v = crd.spec.versions.find((x) => x.name === 'v1alpha1');
  assert.ok(v, `${crd.metadata.name} has version v1alpha1`);
  return v;
}

function rootSchema(crd: Crd): Schema {
  return version(crd).schema.openAPIV3Schema;
}

/** Every node below the root, with its JSON-ish path, visiting properties, items and additionalProperties. */
function walk(schema: Schema, at: string, visit: (node: Schema, at: string) => void): void {
  visit(schema, at);
  for (const [name, child] of Object.entries(schema.properties ?? {})) walk(child, `${at}.${name}`, visit);
  if (schema.items) walk(schema.items, `${at}[]`, visit);
  if (schema.additionalProperties && typeof schema.additionalProperties === 'object') {
    walk(schema.additionalProperties, `${at}{}`, visit);
  }
}

function at(schema: Schema, dotted: string): Schema {
  let node = schema;
  for (const part of dotted.split('.')) {
    const next = node.properties?.[part];
    assert.ok(next, `schema has ${dotted} (missing ${part})`);
    node = next;
  }
  return node;
}

/** All distinct duration patterns used in a schema (every field documented as a Go duration). */
function durationPatterns(schema: Schema): string[] {
  const found = new Set<string>();
  walk(schema, '', (node) => {
    if (node.pattern && node.pattern.includes('(ns|us|')) found.add(node.pattern);
  });
  return [...found];
}

describe('CRDs (crds/*.yaml)', () => {
  for (const want of EXPECTED) {
    describe(want.kind, () => {
      const crd = loadCrd(want.file);

      it('is an apiextensions.k8s.io/v1 CRD with the contract names', () => {
        assert.equal(crd.apiVersion, 'apiextensions.k8s.io/v1');
        assert.equal(crd.kind, 'CustomResourceDefinition');
        assert.equal(crd.metadata.name, `${want.plural}.${GROUP}`);
        assert.equal(crd.spec.group, GROUP);
        assert.equal(crd.spec.scope, 'Namespaced');
        assert.equal(crd.spec.names.kind, want.kind);
        assert.equal(crd.spec.names.plural, want.plural);
        assert.equal(crd.spec.names.singular, want.kind.toLowerCase());
        assert.deepEqual(crd.spec.names.shortNames, [want.short]);
        assert.deepEqual(crd.spec.names.categories, ['dbcred-all']);
      });

      it('serves and stores v1alpha1 only, with a status subresource', () => {
        assert.equal(crd.spec.versions.length, 1);
        const v = version(crd);
        assert.equal(v.served, true);
        assert.equal(v.storage, true);
        assert.deepEqual(v.subresources?.status, {});
      });

      it('has the printer columns Ready, Reason and Age (plus Username and Expires for credentials)', () => {
        const cols = version(crd).additionalPrinterColumns ?? [];
        const byName = new Map(cols.map((c) => [c.name, c]));
        assert.equal(byName.get('Ready')?.jsonPath, '.status.conditions[?(@.type=="Ready")].status');
        assert.equal(byName.get('Reason')?.jsonPath, '.status.conditions[?(@.type=="Ready")].reason');
        assert.equal(byName.get('Age')?.jsonPath, '.metadata.creationTimestamp');
        assert.equal(byName.get('Age')?.type, 'date');
        if (want.kind === 'DatabaseCredential') {
          assert.equal(byName.get('Username')?.jsonPath, '.status.username');
          assert.equal(byName.get('Expires')?.jsonPath, '.status.expiresAt');
        }
      });

      it('documents every field at every depth (kubectl explain teaches the API)', () => {
        const undocumented: string[] = [];
        walk(rootSchema(crd), want.kind, (node, where) => {
          // The apiserver forbids anything but type on the root metadata (its doc comes from ObjectMeta).
          if (where === `${want.kind}.metadata`) return;
          if (typeof node.description !== 'string' || node.description.trim() === '') undocumented.push(where);
        });
        assert.deepEqual(undocumented, []);
      });

      it('mentions the full group in the top-level description', () => {
        assert.match(rootSchema(crd).description ?? '', /dbcred\.dev/);
      });

      it('never preserves unknown fields (they are pruned or refused)', () => {
        const preserving: string[] = [];
        walk(rootSchema(crd), want.kind, (node, where) => {
          if (node['x-kubernetes-preserve-unknown-fields']) preserving.push(where);
        });
        assert.deepEqual(preserving, []);
      });

      it('gives every node a type (structural schema)', () => {
        const untyped: string[] = [];
        walk(rootSchema(crd), want.kind, (node, where) => {
          if (typeof node.type !== 'string') untyped.push(where);
        });
        assert.deepEqual(untyped, []);
      });

      it('has status.observedGeneration and status.conditions in the metav1.Condition shape', () => {
        const status = at(rootSchema(crd), 'status');
        assert.equal(at(status, 'observedGeneration').type, 'integer');
        const conditions = at(status, 'conditions');
        assert.equal(conditions.type, 'array');
        assert.equal(conditions['x-kubernetes-list-type'], 'map');
        assert.deepEqual(conditions['x-kubernetes-list-map-keys'], ['type']);
        const item = conditions.items;
        assert.ok(item);
        assert.deepEqual(
          Object.keys(item.properties ?? {}).sort(),
          ['lastTransitionTime', 'message', 'observedGeneration', 'reason', 'status', 'type'],
        );
        assert.deepEqual([...(item.required ?? [])].sort(), ['lastTransitionTime', 'message', 'reason', 'status', 'type']);
        assert.deepEqual(at(item, 'status').enum, ['True', 'False', 'Unknown']);
      });

      it('uses one Go-duration pattern that accepts 30s/90m/1h30m/1.5h and refuses 1d/abc/empty', () => {
        const patterns = durationPatterns(rootSchema(crd));
        assert.ok(patterns.length >= 1, 'at least one duration field');
        assert.equal(patterns.length, 1, `one duration pattern, got ${JSON.stringify(patterns)}`);
        const re = new RegExp(patterns[0] ?? '', 'u');
        for (const ok of ['30s', '90m', '1h', '24h', '1h30m', '1.5h', '500ms', '0s', '720h', '10us', '10µs']) {
          assert.ok(re.test(ok), `${ok} is a duration`);
        }
        for (const bad of ['1d', 'abc', '', '10', '-1h', '1h ', 'h', '1.h', '.5h', '1w']) {
          assert.ok(!re.test(bad), `${JSON.stringify(bad)} is not a duration`);
        }
      });
    });
  }

  describe('CEL rules (regexes evaluated with JS RegExp; the apiserver run is the real check)', () => {
    /** The first regex literal inside self.matches('...') of the rules of a node. */
    function celRegex(node: Schema): RegExp {
      for (const v of node['x-kubernetes-validations'] ?? []) {
        const m = /self\.matches\('((?:[^'\\]|\\.)*)'\)/.exec(v.rule);
        if (m?.[1] !== undefined) return new RegExp(m[1].replace(/\\\\/g, '\\'), 'u');
      }
      throw new Error('no self.matches rule');
    }

    it('usernameTemplate accepts the known placeholders and refuses others', () => {
      const tpl = at(at(rootSchema(loadCrd('databaseconfigs.yaml')), 'spec'), 'usernameTemplate');
      const re = celRegex(tpl);
      for (const ok of [
        String(tpl.default),
        'v-{{role|truncate 8}}-{{credential|truncate 8}}-{{random 20}}-{{unix_time}}',
        '{{namespace}}_{{config|lowercase}}_{{role|lowercase|truncate 8}}',
        'static-name',
        '{{ role | truncate 8 }}-{{random  5}}',
      ]) {
        assert.ok(re.test(ok), `${ok} is a valid template`);
      }
      for (const bad of ['v-{{bogus}}', '{{role|upper}}', '{{ rolex }}', '{{random}}', '{{random5}}', '{{roletruncate 8}}', 'a{b',
        '{{role}', 'x}}']) {
        assert.ok(!re.test(bad), `${bad} is refused`);
      }
    });

    it('statement fields refuse placeholders that make no sense for their kind, and require {{name}}', () => {
      const spec = at(rootSchema(loadCrd('databaseroles.yaml')), 'spec');
      /** Every regex in .matches('...') of the rules of a node, in order. */
      const regexes = (node: Schema) =>
        (node['x-kubernetes-validations'] ?? []).flatMap((v) =>
          [...v.rule.matchAll(/\.matches\('((?:[^'\\]|\\.)*)'\)/g)].map((m) => new RegExp((m[1] ?? '').replace(/\\\\/g, '\\'), 'u')));
      const refusedInItems = (field: string) => {
        const [re] = regexes(at(spec, field).items ?? {});
        assert.ok(re, `${field} items have a rule`);
        return (text: string) => re.test(text); // the rule is !self.matches(re)
      };
      for (const field of ['renewStatements', 'revocationStatements', 'rollbackStatements']) {
        const refused = refusedInItems(field);
        assert.ok(refused(`ALTER ROLE "{{name}}" PASSWORD '{{password}}'`), `${field}: {{password}} refused`);
        assert.ok(refused(`SELECT '{{ password }}'`), `${field}: {{ password }} refused`);
        assert.ok(!refused(`ALTER ROLE "{{name}}" VALID UNTIL '{{expiration}}';`), `${field}: {{name}} and {{expiration}} accepted`);
        assert.ok(!refused('DROP ROLE IF EXISTS "{{username}}"; -- the password stays unknown'));
      }
      const rotation = at(spec, 'static.rotationStatements');
      assert.ok(refusedInItems('static.rotationStatements')(`ALTER ROLE "{{name}}" VALID UNTIL '{{expiration}}'`), 'rotation: {{expiration}} refused');
      assert.ok(!refusedInItems('static.rotationStatements')(`ALTER ROLE "{{name}}" WITH PASSWORD '{{password}}';`));
      const [usesName, usesPassword] = regexes(rotation);
      assert.ok(usesName && usesPassword);
      assert.ok(usesPassword.test(`ALTER ROLE "{{name}}" WITH PASSWORD '{{ password }}'`) && !usesPassword.test('ALTER ROLE "{{name}}" NOLOGIN'));
      for (const field of ['creationStatements', 'renewStatements', 'revocationStatements', 'static.rotationStatements']) {
        const [nameRule] = regexes(at(spec, field));
        assert.ok(nameRule, `${field} requires {{name}}`);
        assert.ok(nameRule.test('CREATE ROLE "{{name}}"') && nameRule.test('DROP ROLE {{ username }}'), `${field}: {{name}} found`);
        assert.ok(!nameRule.test(`SELECT '{{password}}', '{{expiration}}'`), `${field}: without {{name}} refused`);
      }
    });

    it('secretTemplate.data refuses the standard Secret keys of the contract', () => {
      const data = at(at(rootSchema(loadCrd('databasecredentials.yaml')), 'spec'), 'secretTemplate.data');
      const rules = (data['x-kubernetes-validations'] ?? []).map((v) => v.rule).join('\n');
      for (const key of ['type', 'provider', 'host', 'port', 'database', 'username', 'password', 'sslmode', 'uri',
        'jdbc-url', 'expires-at']) {
        assert.ok(rules.includes(`'${key}'`), `reserved key ${key}`);
      }
    });
  });

  describe('defaults from the contract', () => {
    it('DatabaseConfig', () => {
      const spec = at(rootSchema(loadCrd('databaseconfigs.yaml')), 'spec');
      assert.equal(at(spec, 'plugin').default, 'postgresql');
      assert.deepEqual(at(spec, 'plugin').enum, ['postgresql']);
      assert.equal(at(spec, 'rootCredentialsSecretRef.usernameKey').default, 'username');
      assert.equal(at(spec, 'rootCredentialsSecretRef.passwordKey').default, 'password');
      assert.equal(at(spec, 'verifyConnection').default, true);
      assert.equal(at(spec, 'maxOpenConnections').default, 4);
      assert.equal(
        at(spec, 'usernameTemplate').default,
        'v-{{role|truncate 8}}-{{credential|truncate 8}}-{{random 20}}-{{unix_time}}',
      );
      assert.deepEqual(at(spec, 'passwordPolicy').default, {});
      assert.equal(at(spec, 'passwordPolicy.length').default, 32);
      assert.equal(at(spec, 'passwordAuthentication').default, 'scram-sha-256');
      assert.equal(at(spec, 'caSecretRef.key').default, 'ca.crt');
    });

    it('DatabaseRole', () => {
      const spec = at(rootSchema(loadCrd('databaseroles.yaml')), 'spec');
      assert.equal(at(spec, 'defaultTTL').default, '1h');
      assert.equal(at(spec, 'maxTTL').default, '24h');
    });

    it('DatabaseCredential', () => {
      const spec = at(rootSchema(loadCrd('databasecredentials.yaml')), 'spec');
      assert.deepEqual(at(spec, 'rotation').default, {});
      assert.equal(at(spec, 'rotation.enabled').default, true);
      assert.equal(at(spec, 'rotation.renewalPercent').default, 67);
      assert.equal(at(spec, 'rotation.gracePeriod').default, '5m');
      assert.deepEqual(at(spec, 'rolloutRestartTargets').items?.properties?.kind?.enum, [
        'Deployment',
        'StatefulSet',
        'DaemonSet',
      ]);
    });
  });
});
