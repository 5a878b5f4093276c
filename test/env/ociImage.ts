// Container images for the local node, built without Docker: a root filesystem in a directory, one
// uncompressed layer, and the OCI image layout (oci-layout, index.json, manifest, config, layer) in one tar that
// `ctr images import` takes. Cached by a hash of everything that goes into them, outside the work tree.
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { REPO_ROOT } from './controlplane.js';
import { runCommand } from './processes.js';

/** Bump when the layout written below changes, so that cached archives are rebuilt. */
const FORMAT_VERSION = '1';

export interface OciImage {
  /** The image reference the archive carries and pods name (`image:`), e.g. `dbcred.local/pause:3f2a…`. */
  ref: string;
  /** The OCI image layout tar, for `ctr images import` (LocalNode.importImage). */
  archive: string;
}

export interface OciImageSpec {
  /** Repository part of the reference; the tag is the content key. */
  repository: string;
  /** Everything that determines the content (sources, tool versions): the cache key is its hash. */
  inputs: Array<string | Buffer>;
  /** Fills the (empty) root filesystem directory. */
  populate(rootfs: string): Promise<void>;
  entrypoint: string[];
  cmd?: string[];
  env?: string[];
}

/** The cache root outside the work tree (as test/cluster/build.sh and scripts/node.sh): DBCRED_CACHE_DIR overrides. */
export function cacheRoot(): string {
  return process.env.DBCRED_CACHE_DIR ?? path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'dbcred-operator');
}

export function imageCacheDir(): string {
  return path.join(cacheRoot(), 'images');
}

function sha256(data: string | Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

const GOARCH: Record<string, string> = { x64: 'amd64', arm64: 'arm64' };

/** Builds the image (or finds it in the cache) and returns its reference and archive. */
export async function buildOciImage(spec: OciImageSpec): Promise<OciImage> {
  const key = createHash('sha256');
  for (const part of [FORMAT_VERSION, spec.repository, ...spec.inputs, JSON.stringify([spec.entrypoint, spec.cmd, spec.env])]) {
    key.update(sha256(part));
  }
  const tag = key.digest('hex').slice(0, 16);
  const ref = `${spec.repository}:${tag}`;
  const dir = imageCacheDir();
  const archive = path.join(dir, `${spec.repository.replace(/[^a-zA-Z0-9.-]+/g, '_')}-${tag}.tar`);
  if (existsSync(archive)) return { ref, archive };

  mkdirSync(dir, { recursive: true });
  const work = mkdtempSync(path.join(dir, '.build-'));
  try {
    const rootfs = path.join(work, 'rootfs');
    mkdirSync(rootfs);
    await spec.populate(rootfs);
    const layout = path.join(work, 'layout');
    const blobs = path.join(layout, 'blobs', 'sha256');
    mkdirSync(blobs, { recursive: true });
    // Reproducible layer: sorted names, fixed owner and time.
    const layerFile = path.join(work, 'layer.tar');
    await runCommand('tar', ['--sort=name', '--owner=0', '--group=0', '--numeric-owner', '--mtime=@0', '--format=gnu',
      '-C', rootfs, '-cf', layerFile, '.']);
    const layer = readFileSync(layerFile);
    const layerDigest = sha256(layer);
    renameSync(layerFile, path.join(blobs, layerDigest));
    const blob = (json: unknown): { digest: string; size: number } => {
      const data = Buffer.from(JSON.stringify(json));
      const digest = sha256(data);
      writeFileSync(path.join(blobs, digest), data);
      return { digest: `sha256:${digest}`, size: data.length };
    };
    const config = blob({
      architecture: GOARCH[process.arch] ?? process.arch,
      os: 'linux',
      created: '1970-01-01T00:00:00Z',
      config: { Entrypoint: spec.entrypoint, Cmd: spec.cmd, Env: spec.env ?? ['PATH=/bin:/usr/bin'], WorkingDir: '/' },
      rootfs: { type: 'layers', diff_ids: [`sha256:${layerDigest}`] },
      history: [{ created: '1970-01-01T00:00:00Z', created_by: 'dbcred test/env/ociImage.ts' }],
    });
    const manifest = blob({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: `sha256:${layerDigest}`, size: layer.length }],
    });
    writeFileSync(path.join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
    writeFileSync(path.join(layout, 'index.json'), JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [{
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        ...manifest,
        // containerd names the imported image after io.containerd.image.name; the OCI ref name is the tag.
        annotations: { 'io.containerd.image.name': ref, 'org.opencontainers.image.ref.name': tag },
      }],
    }));
    const tmp = `${archive}.tmp`;
    await runCommand('tar', ['--sort=name', '--owner=0', '--group=0', '--numeric-owner', '--mtime=@0',
      '-C', layout, '-cf', tmp, 'oci-layout', 'index.json', 'blobs']);
    renameSync(tmp, archive); // atomic: a half-written archive never sits in the cache
    return { ref, archive };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

const IMAGES_DIR = path.join(REPO_ROOT, 'test', 'images');

async function toolVersion(command: string, args: string[]): Promise<string> {
  return (await runCommand(command, args)).split('\n')[0] ?? '';
}

/**
 * The sandbox image of the local node's pods: test/images/pause/pause.c compiled static, alone in the image.
 */
export async function pauseImage(): Promise<OciImage> {
  const source = path.join(IMAGES_DIR, 'pause', 'pause.c');
  return buildOciImage({
    repository: 'dbcred.local/pause',
    inputs: [readFileSync(source), await toolVersion('gcc', ['--version'])],
    populate: async (rootfs) => {
      await runCommand('gcc', ['-static', '-Os', '-s', '-Wall', '-Wextra', '-o', path.join(rootfs, 'pause'), source]);
    },
    entrypoint: ['/pause'],
  });
}

const BUSYBOX = process.env.BUSYBOX ?? '/bin/busybox';

/**
 * A small image for tests of pods: Debian's static busybox (a shell, cat, sleep, …) and `incluster`
 * (test/images/testbox/main.go, static Go), a client that calls the API server with the pod's ServiceAccount
 * token and ca.crt. Needs busybox-static and Go; throws with the reason when either is missing.
 */
export async function testboxImage(): Promise<OciImage> {
  if (!existsSync(BUSYBOX)) throw new Error(`${BUSYBOX} not found: install Debian's busybox-static (or set BUSYBOX to a static busybox)`);
  const srcDir = path.join(IMAGES_DIR, 'testbox');
  const busybox = readFileSync(BUSYBOX);
  return buildOciImage({
    repository: 'dbcred.local/testbox',
    inputs: [busybox, readFileSync(path.join(srcDir, 'main.go')), readFileSync(path.join(srcDir, 'go.mod')), await toolVersion('go', ['version'])],
    populate: async (rootfs) => {
      const bin = path.join(rootfs, 'bin');
      mkdirSync(bin);
      for (const d of ['tmp', 'etc', 'proc', 'sys', 'dev', 'var/run']) mkdirSync(path.join(rootfs, d), { recursive: true });
      chmodSync(path.join(rootfs, 'tmp'), 0o1777);
      copyFileSync(BUSYBOX, path.join(bin, 'busybox'));
      chmodSync(path.join(bin, 'busybox'), 0o755);
      const applets = (await runCommand(BUSYBOX, ['--list'])).split('\n').map((s) => s.trim()).filter((s) => /^[a-z0-9_.[-]+$/.test(s) && s !== 'busybox');
      for (const applet of applets) symlinkSync('busybox', path.join(bin, applet));
      await runCommand('go', ['build', '-trimpath', '-ldflags', '-s -w', '-o', path.join(bin, 'incluster'), '.'], {
        cwd: srcDir,
        env: { ...process.env, CGO_ENABLED: '0', GOFLAGS: '-mod=mod' },
      });
    },
    entrypoint: ['/bin/sh'],
  });
}
