// Image names are content hashes of their inputs (test/env/images.ts): what the caching of images relies on.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { IMAGE_INPUTS, inputsHash, plannedImages } from '../env/images.js';
import { REPO_ROOT } from '../env/controlplane.js';

describe('image input hashes', () => {
  const dirs: string[] = [];
  function tree(files: Record<string, string>): string {
    const root = mkdtempSync(path.join(os.tmpdir(), 'dbcred-inputs-'));
    dirs.push(root);
    for (const [rel, text] of Object.entries(files)) {
      mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
      writeFileSync(path.join(root, rel), text);
    }
    return root;
  }
  after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

  const files = { 'Dockerfile': 'FROM x\n', 'src/a.ts': 'a', 'src/sub/b.ts': 'b' };

  it('depends on contents and relative paths only, not on where the tree is or when it was written', () => {
    const one = tree(files);
    const two = tree(Object.fromEntries(Object.entries(files).reverse()));
    utimesSync(path.join(two, 'src/a.ts'), new Date(0), new Date(0));
    assert.equal(inputsHash(one, ['Dockerfile', 'src']), inputsHash(two, ['src', 'Dockerfile']));
    assert.match(inputsHash(one, ['Dockerfile', 'src']), /^[0-9a-f]{16}$/);
  });

  it('changes with any byte, any new file below a directory, a renamed file, or what the image is built on', () => {
    const base = inputsHash(tree(files), ['Dockerfile', 'src']);
    const variants = [
      inputsHash(tree({ ...files, 'src/sub/b.ts': 'B' }), ['Dockerfile', 'src']),
      inputsHash(tree({ ...files, 'src/c.ts': '' }), ['Dockerfile', 'src']),
      inputsHash(tree({ 'Dockerfile': 'FROM x\n', 'src/a2.ts': 'a', 'src/sub/b.ts': 'b' }), ['Dockerfile', 'src']),
      inputsHash(tree(files), ['Dockerfile', 'src'], ['another-base']),
    ];
    assert.equal(new Set([base, ...variants]).size, variants.length + 1);
  });

  it('names the images of this checkout by those hashes, the workload after the operator', () => {
    const planned = plannedImages(REPO_ROOT, '/cache/images');
    const operatorKey = inputsHash(REPO_ROOT, IMAGE_INPUTS.operator, [planned.baseKey]);
    assert.deepEqual(planned.operator, { ref: `dbcred-operator:${operatorKey}`, tarFile: `/cache/images/operator-${operatorKey}.tar` });
    const workloadKey = inputsHash(REPO_ROOT, IMAGE_INPUTS.workload, [operatorKey]);
    assert.deepEqual(planned.workload, { ref: `dbcred-workload:${workloadKey}`, tarFile: `/cache/images/workload-${workloadKey}.tar` });
  });

  it('refuses an input that does not exist (a renamed file must not silently drop out of the hash)', () => {
    assert.throws(() => inputsHash(tree(files), ['Dockerfile', 'missing.json']), /ENOENT/);
  });
});
