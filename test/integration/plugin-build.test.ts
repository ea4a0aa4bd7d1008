/**
 * `npm run plugin:build` on a machine that lacks one of the programs the
 * rootfs carries: it names the program and the Debian package to install,
 * and builds nothing. (A full build is what the managed-plugin e2e test runs.)
 */
import { existsSync, mkdirSync, readdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { newRunId, REPO_ROOT, run, runDir } from '../harness/index.js';

const dir = runDir(newRunId());

/** A PATH with every program of /usr/bin and /usr/sbin but `missing`. */
function pathWithout(missing: string): string {
  const bin = join(dir, `without-${missing}`);
  mkdirSync(bin, { recursive: true });
  for (const from of ['/usr/bin', '/usr/sbin']) {
    for (const name of readdirSync(from)) if (name !== missing && !existsSync(join(bin, name))) symlinkSync(join(from, name), join(bin, name));
  }
  return bin;
}

describe('plugin:build', () => {
  afterAll(async () => {
    await run('rm', ['-rf', dir]);
  });

  it.each([
    ['nft', 'nftables'],
    ['xtables-nft-multi', 'iptables'],
    ['busybox', 'busybox-static'],
  ])('without %s: names it and the package to install, builds nothing', async (tool, pkg) => {
    const out = join(dir, `plugin-${tool}`);
    const r = await run(join(REPO_ROOT, 'packaging/build-plugin.sh'), [out], { env: { PATH: pathWithout(tool) } });
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toBe(`plugin:build: ${tool} is missing on this machine: install it with \`apt-get install ${pkg}\``);
    expect(existsSync(out)).toBe(false);
  });
});
