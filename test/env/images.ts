// The operator image (deploy/Dockerfile) and the test workload image (test/images/workload), built on this machine
// and saved as docker-save archives for `ctr -n k8s.io images import`. Each image is named by the hash of what goes
// into it, so it is rebuilt only when that changes; the heavy steps are test/images/build.sh and base.sh.
//   node dist/test/env/images.js      builds what is missing; prints each image's ref and archive
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { REPO_ROOT } from './controlplane.js';
import { cacheRoot, imageCacheDir } from './ociImage.js';

export interface ImageArchive {
  /** The image reference a pod spec names (containerd and the kubelet read it as docker.io/library/<ref>). */
  ref: string;
  /** A docker-save archive of the image. */
  tarFile: string;
}

/** What makes each image, as paths relative to the repository root (directories: every file below them). */
export const IMAGE_INPUTS = {
  base: ['test/images/base.sh', 'scripts/node.sh'],
  operator: ['deploy/Dockerfile', 'deploy/Dockerfile.dockerignore', 'package.json', 'package-lock.json', 'tsconfig.json', 'src'],
  workload: ['test/images/workload/Dockerfile', 'test/images/workload/login.mjs', 'test/images/workload/serve.mjs'],
} as const;

export const BASE_REF = 'dbcred-local/node:24-bookworm-slim';
const LOCAL_CA_DIR = '/usr/local/share/ca-certificates';

/** The files an input names: itself, or every file below it (paths relative to root, '/'-separated). */
function inputFiles(root: string, rel: string): string[] {
  const abs = path.join(root, rel);
  if (!statSync(abs).isDirectory()) return [rel];
  return readdirSync(abs, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile())
    .map((e) => path.relative(root, path.join(e.parentPath, e.name)).split(path.sep).join('/'));
}

/**
 * A content hash (16 hex digits) of the given inputs: each file's path relative to root and its bytes, in path
 * order, after the hashes of what the image is built on. Timestamps and the checkout's location do not count.
 */
export function inputsHash(root: string, inputs: readonly string[], dependsOn: readonly string[] = []): string {
  const h = createHash('sha256');
  for (const dep of dependsOn) h.update(`dep\0${dep}\0`);
  for (const rel of inputs.flatMap((input) => inputFiles(root, input)).sort()) {
    const bytes = readFileSync(path.join(root, rel));
    h.update(`file\0${rel}\0${bytes.length}\0`);
    h.update(bytes);
  }
  return h.digest('hex').slice(0, 16);
}

/** The refs and archive paths the current sources would give (nothing is built). */
export function plannedImages(root = REPO_ROOT, imagesDir = imageCacheDir()): {
  baseKey: string;
  operator: ImageArchive;
  workload: ImageArchive;
} {
  // base.sh adds the machine's local certificate authorities (see there): they are part of its recipe.
  const localCas = existsSync(LOCAL_CA_DIR) ? inputsHash(LOCAL_CA_DIR, ['.']) : 'none';
  const baseKey = inputsHash(root, IMAGE_INPUTS.base, [localCas]);
  const operatorKey = inputsHash(root, IMAGE_INPUTS.operator, [baseKey]);
  const workloadKey = inputsHash(root, IMAGE_INPUTS.workload, [operatorKey]);
  return {
    baseKey,
    operator: { ref: `dbcred-operator:${operatorKey}`, tarFile: path.join(imagesDir, `operator-${operatorKey}.tar`) },
    workload: { ref: `dbcred-workload:${workloadKey}`, tarFile: path.join(imagesDir, `workload-${workloadKey}.tar`) },
  };
}

/**
 * Builds the operator and workload images unless their archives are already in the cache, and returns them. Two
 * callers at once are serialized by a lock in the cache; the second finds the first one's archives.
 */
export async function buildImages(opts?: { log?: (line: string) => void }): Promise<{ operator: ImageArchive; workload: ImageArchive }> {
  const log = opts?.log ?? (() => {});
  const imagesDir = imageCacheDir();
  const { baseKey, operator, workload } = plannedImages(REPO_ROOT, imagesDir);
  if (existsSync(operator.tarFile) && existsSync(workload.tarFile)) {
    log(`images: cached ${operator.ref} (${operator.tarFile}), ${workload.ref} (${workload.tarFile})`);
    return { operator, workload };
  }
  mkdirSync(imagesDir, { recursive: true });
  await runBuildScript(
    {
      REPO_ROOT,
      CACHE_ROOT: cacheRoot(),
      IMAGES_DIR: imagesDir,
      BASE_REF,
      BASE_KEY: baseKey,
      OPERATOR_REF: operator.ref,
      OPERATOR_TAR: operator.tarFile,
      WORKLOAD_REF: workload.ref,
      WORKLOAD_TAR: workload.tarFile,
    },
    log,
  );
  for (const image of [operator, workload]) {
    if (!existsSync(image.tarFile)) throw new Error(`image build finished without ${image.tarFile}`);
  }
  return { operator, workload };
}

function runBuildScript(env: Record<string, string>, log: (line: string) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [path.join(REPO_ROOT, 'test', 'images', 'build.sh')], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const tail: string[] = [];
    const onData = (stream: NodeJS.ReadableStream) => {
      let partial = '';
      stream.on('data', (d: Buffer) => {
        const lines = (partial + d.toString()).split('\n');
        partial = lines.pop() ?? '';
        for (const line of lines) {
          log(line);
          tail.push(line);
          if (tail.length > 20) tail.shift();
        }
      });
      stream.on('end', () => partial && log(partial));
    };
    onData(child.stdout);
    onData(child.stderr);
    child.once('error', reject);
    child.once('close', (code, signal) => {
      if (code === 0) resolve();
      else reject(new Error(`test/images/build.sh exited ${code ?? signal}:\n${tail.join('\n')}`));
    });
  });
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const started = Date.now();
  buildImages({ log: (line) => console.error(line) }).then(
    ({ operator, workload }) => {
      console.error(`images: ready in ${((Date.now() - started) / 1000).toFixed(1)}s`);
      for (const [name, image] of Object.entries({ operator, workload })) console.log(`${name}\t${image.ref}\t${image.tarFile}`);
    },
    (err: unknown) => {
      // The build's output went through the log already: its first line is enough here.
      console.error((err instanceof Error ? err.message : String(err)).split('\n')[0]);
      process.exit(1);
    },
  );
}
