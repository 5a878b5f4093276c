// The Helm chart's files that have a source elsewhere (scripts/chart-sync.sh, make chart-sync) and its schema's
// coverage of values.yaml, without helm. Rendering, linting and installing it are test/integration/chart.test.ts.
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import yaml from 'js-yaml';
import { REPO_ROOT } from '../../test/env/controlplane.js';
import { CHART_DIR } from '../../test/env/helm.js';

interface JsonSchema {
  $ref?: string;
  type?: string;
  properties?: Record<string, JsonSchema>;
  additionalProperties?: boolean | JsonSchema;
  definitions?: Record<string, JsonSchema>;
}

const read = (...parts: string[]): Buffer => readFileSync(path.join(...parts));
const schema = JSON.parse(read(CHART_DIR, 'values.schema.json').toString()) as JsonSchema;
const values = yaml.load(read(CHART_DIR, 'values.yaml').toString()) as Record<string, unknown>;

function resolve(s: JsonSchema): JsonSchema {
  if (!s.$ref) return s;
  const name = s.$ref.replace('#/definitions/', '');
  const target = schema.definitions?.[name];
  if (!target) throw new Error(`unresolved ${s.$ref}`);
  return target;
}

/**
 * Each key of values.yaml that the schema does not name, and each key the schema names that values.yaml does not
 * show (an undocumented value), below objects whose schema lists its properties.
 */
function coverage(v: Record<string, unknown>, s: JsonSchema, at: string): string[] {
  const props = resolve(s).properties;
  if (!props) return [];
  const out: string[] = [];
  for (const key of Object.keys(v)) if (!(key in props)) out.push(`${at}${key}: in values.yaml, not in the schema`);
  for (const [key, sub] of Object.entries(props)) {
    if (!(key in v)) {
      out.push(`${at}${key}: in the schema, not in values.yaml`);
      continue;
    }
    const child = v[key];
    if (child && typeof child === 'object' && !Array.isArray(child)) out.push(...coverage(child as Record<string, unknown>, sub, `${at}${key}.`));
  }
  return out;
}

describe('the Helm chart (deploy/chart): copies and schema', () => {
  it('ships crds/ byte for byte (make chart-sync)', () => {
    const sources = readdirSync(path.join(REPO_ROOT, 'crds')).filter((f) => f.endsWith('.yaml')).sort();
    assert.deepEqual(readdirSync(path.join(CHART_DIR, 'crds')).sort(), sources, 'the same CRD files');
    for (const f of sources) {
      assert.ok(read(CHART_DIR, 'crds', f).equals(read(REPO_ROOT, 'crds', f)), `deploy/chart/crds/${f} differs from crds/${f}: run make chart-sync`);
    }
  });

  it('ships deploy/monitoring/alerts.yaml byte for byte as files/alerts.yaml', () => {
    assert.ok(
      read(CHART_DIR, 'files', 'alerts.yaml').equals(read(REPO_ROOT, 'deploy', 'monitoring', 'alerts.yaml')),
      'deploy/chart/files/alerts.yaml differs from deploy/monitoring/alerts.yaml: run make chart-sync',
    );
  });

  it('ships deploy/monitoring/dashboard.json byte for byte as files/dashboard.json', () => {
    assert.ok(
      read(CHART_DIR, 'files', 'dashboard.json').equals(read(REPO_ROOT, 'deploy', 'monitoring', 'dashboard.json')),
      'deploy/chart/files/dashboard.json differs from deploy/monitoring/dashboard.json: run make chart-sync',
    );
  });

  it("has package.json's version as appVersion", () => {
    const pkg = JSON.parse(read(REPO_ROOT, 'package.json').toString()) as { version: string };
    const chart = yaml.load(read(CHART_DIR, 'Chart.yaml').toString()) as { appVersion: string; apiVersion: string; name: string };
    assert.equal(chart.appVersion, pkg.version);
    assert.equal(chart.apiVersion, 'v2');
    assert.equal(chart.name, 'dbcred-operator');
  });

  it('has a schema that names every value of values.yaml, and values.yaml shows every value of the schema', () => {
    assert.equal(schema.additionalProperties, false, 'unknown top-level values are refused');
    assert.deepEqual(coverage(values, schema, ''), []);
  });

  it('refuses unknown keys in every object of the schema that lists its properties', () => {
    const open: string[] = [];
    const walk = (s: JsonSchema, at: string): void => {
      const r = resolve(s);
      if (!r.properties) return;
      if (r.additionalProperties !== false) open.push(at || '(top level)');
      for (const [k, sub] of Object.entries(r.properties)) walk(sub, `${at}${k}.`);
    };
    walk(schema, '');
    assert.deepEqual(open, []);
  });
});
