// The shape most integration suites share: a fresh namespace, the operator as a real process, the platform objects
// (root Secret, DatabaseConfig "pg", DatabaseRole "reader") Ready; at the end the invariant auditor over the
// suite's namespace, before the operator stops.
import type { DatabaseRole } from '../../src/api/types.js';
import { assertNoViolations } from '../audit/auditor.js';
import { createNamespace, testEnv, type TestEnv } from './harness.js';
import { OperatorProcess, apply, platformObjects, waitForCondition } from './operator.js';

export interface OperatorSuite {
  env: TestEnv;
  ns: string;
  operator: OperatorProcess;
}

/**
 * Registers the suite's before/after hooks (call it inside describe). ready receives the suite once it stands, so
 * the test file can keep its own env/ns/operator variables.
 */
export function operatorSuite(
  prefix: string,
  extraEnv: Record<string, string> | ((ns: string) => Promise<Record<string, string>>),
  ready: (suite: OperatorSuite) => void,
): void {
  let suite: OperatorSuite | undefined;
  before(async function () {
    this.timeout(600_000);
    const env = await testEnv();
    const ns = await createNamespace(env, prefix);
    const operator = new OperatorProcess(env, typeof extraEnv === 'function' ? await extraEnv(ns) : extraEnv);
    suite = { env, ns, operator };
    operator.start();
    await operator.waitReady();
    await apply(env, ns, platformObjects(env));
    await waitForCondition<DatabaseRole>(env, 'databaseroles', ns, 'reader', 'Ready', 'True');
    ready(suite);
  });
  after(async function () {
    this.timeout(120_000);
    if (!suite) return;
    try {
      // Before the operator stops: everything this suite left must satisfy the invariants of issue 7.
      await assertNoViolations(suite.env, { namespaces: [suite.ns] });
    } finally {
      await suite.operator.stop();
    }
  });
}
