// The test image, made without any registry: Debian's static busybox plus one
// symlink per applet the tests use, imported into a private dockerd with
// `docker import` (recipe: reference/harness/mkimage.sh).
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runOk } from './exec.js';
import { BASE_DIR } from './names.js';

export const BUSYBOX = '/bin/busybox';
export const TEST_IMAGE = 'tsn-busybox:latest';

/** Applets linked into /bin of the image (busybox must provide each; checked at build time). */
export const IMAGE_APPLETS = [
  'sh', 'ip', 'ping', 'ping6', 'nc', 'wget', 'nslookup', 'sleep', 'cat', 'echo', 'ls', 'timeout',
  'httpd', 'udhcpc', 'arping', 'hostname', 'ifconfig', 'route', 'netstat', 'grep', 'sed', 'awk',
  'head', 'tail', 'wc', 'tr', 'id', 'true', 'false', 'env', 'kill', 'ps', 'mkdir', 'rm',
] as const;

let tarball: Promise<string> | undefined;

/**
 * Path of the rootfs tarball. It is a cache keyed by the busybox binary and
 * the applet list (`/tmp/tsn/image/rootfs-<hash>.tar`, about 2 MB): built once,
 * then reused by every daemon, test file and later run. Built under a temp
 * name and renamed, so parallel builders never see a half-written file.
 */
export function rootfsTarball(): Promise<string> {
  tarball ??= cachedTarball().catch((err: unknown) => {
    tarball = undefined; // let a later call retry instead of caching the failure
    throw err;
  });
  return tarball;
}

async function cachedTarball(): Promise<string> {
  const bb = statSync(BUSYBOX);
  const key = createHash('sha256').update(`${bb.size}:${bb.mtimeMs}:${IMAGE_APPLETS.join(',')}`).digest('hex').slice(0, 16);
  const cacheDir = join(BASE_DIR, 'image');
  const out = join(cacheDir, `rootfs-${key}.tar`);
  if (existsSync(out)) return out;
  mkdirSync(cacheDir, { recursive: true });
  const work = mkdtempSync(join(cacheDir, 'build-'));
  try {
    await buildRootfsTarball(join(work, 'rootfs'), join(work, 'rootfs.tar'));
    renameSync(join(work, 'rootfs.tar'), out);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return out;
}

async function buildRootfsTarball(root: string, out: string): Promise<void> {
  for (const d of ['bin', 'etc', 'tmp', 'proc', 'sys', 'dev', 'root', 'www']) mkdirSync(join(root, d), { recursive: true });
  chmodSync(join(root, 'tmp'), 0o1777);

  await assertAppletsAvailable();
  copyFileSync(BUSYBOX, join(root, 'bin/busybox'));
  chmodSync(join(root, 'bin/busybox'), 0o755);
  for (const applet of IMAGE_APPLETS) symlinkSync('busybox', join(root, 'bin', applet));
  writeFileSync(join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
  writeFileSync(join(root, 'etc/group'), 'root:x:0:\n');
  writeFileSync(join(root, 'etc/nsswitch.conf'), 'hosts: files dns\n');
  // --numeric-owner: the image must not depend on this machine's user names.
  await runOk('tar', ['-C', root, '--numeric-owner', '-cf', out, '.']);
}

async function assertAppletsAvailable(): Promise<void> {
  const available = new Set((await runOk(BUSYBOX, ['--list'])).stdout.split('\n'));
  const missing = IMAGE_APPLETS.filter((a) => !available.has(a));
  if (missing.length > 0) throw new Error(`${BUSYBOX} lacks applets the test image needs: ${missing.join(' ')}`);
}

/** Anything with a `dockerOk` (a Dockerd or a DockerHost). */
export interface ImportTarget {
  dockerOk(args: readonly string[]): Promise<unknown>;
}

/** Imports the test image into a daemon as `tsn-busybox:latest` (PATH=/bin, CMD /bin/sh). */
export async function importTestImage(target: ImportTarget, tag: string = TEST_IMAGE): Promise<void> {
  const tar = await rootfsTarball();
  await target.dockerOk(['import', '-c', 'CMD ["/bin/sh"]', '-c', 'ENV PATH=/bin', tar, tag]);
}
