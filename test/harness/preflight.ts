// Checks that this machine can run the integration/e2e suites, and fails LOUDLY
// if not. These suites must never skip silently: a CI run that "passes"
// because dockerd was missing would hide every regression.
import { accessSync, closeSync, constants, type Dirent, existsSync, openSync, readdirSync, readSync, statSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { DOCKER_CLIENT } from './docker-client.js';
import { DOCKERD_BINARY } from './dockerd.js';
import { BUSYBOX } from './image.js';
import { REPO_ROOT, TSNET_CLI } from './tsnet.js';

export interface PreflightOptions {
  /** Also require the built tsnet CLI (dist/src/cli.js). */
  tsnet?: boolean;
  /** Also require dockerd, the docker client and busybox-static. Default true. */
  docker?: boolean;
  /** Also require dig and dnsmasq (the DNS suites). */
  dns?: boolean;
}

const FIX = 'Fix: run as root, `sudo scripts/install-test-deps.sh` to install the packages, `npm run build` to build tsnet.';

/** Throws one error listing every missing prerequisite. */
export function assertPreflight(opts: PreflightOptions = {}): void {
  const problems = findProblems(opts);
  if (problems.length > 0) {
    throw new Error(
      `\n${'='.repeat(72)}\nE2E PREREQUISITES MISSING — these tests cannot run on this machine:\n` +
        problems.map((p) => `  ✗ ${p}`).join('\n') +
        `\n${FIX}\n${'='.repeat(72)}`,
    );
  }
}

export function findProblems(opts: PreflightOptions = {}): string[] {
  const problems: string[] = [];
  if (process.getuid?.() !== 0) problems.push('not running as root (netns, dockerd and iptables need root)');
  for (const tool of ['ip', 'nsenter', 'unshare', 'tar', 'iptables', 'umount']) {
    if (!onPath(tool)) problems.push(`\`${tool}\` not found on PATH (packages iproute2 / util-linux / tar / iptables)`);
  }
  if (opts.docker ?? true) {
    if (!isExecutable(DOCKERD_BINARY)) problems.push(`${DOCKERD_BINARY} missing (package docker.io)`);
    if (!onPath('containerd')) problems.push('containerd missing (package docker.io pulls it in)');
    if (DOCKER_CLIENT !== '/usr/bin/docker' && !onPath('docker')) problems.push('no docker client (package docker.io)');
    if (!isExecutable(BUSYBOX)) problems.push(`${BUSYBOX} missing (package busybox-static)`);
    else if (!isStaticElf(BUSYBOX)) problems.push(`${BUSYBOX} is dynamically linked: the test image needs package busybox-static`);
  }
  if (opts.dns) {
    if (!onPath('dig')) problems.push('`dig` not found (package bind9-dnsutils)');
    if (!onPath('dnsmasq')) problems.push('`dnsmasq` not found (package dnsmasq-base)');
  }
  if (opts.tsnet) {
    if (!existsSync(TSNET_CLI)) problems.push(`${TSNET_CLI} missing: run \`npm run build\``);
    else {
      const stale = newerSource(statSync(TSNET_CLI).mtimeMs);
      if (stale) problems.push(`${TSNET_CLI} is older than ${stale}: run \`npm run build\` (e2e tests run the build, not the sources)`);
    }
  }
  return problems;
}

/** A .ts file under src/ or drivers/ modified after `builtAtMs`, if any. */
function newerSource(builtAtMs: number): string | undefined {
  const walk = (dir: string): string | undefined => {
    let entries: Dirent[];
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return undefined;
    }
    for (const e of entries) {
      const p = join(dir, e.name);
      if (e.isDirectory()) {
        const found = walk(p);
        if (found) return found;
      } else if (e.name.endsWith('.ts') && statSync(p).mtimeMs > builtAtMs) {
        return p;
      }
    }
    return undefined;
  };
  return walk(join(REPO_ROOT, 'src')) ?? walk(join(REPO_ROOT, 'drivers'));
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function onPath(tool: string): boolean {
  const dirs = (process.env.PATH ?? '').split(delimiter).concat(['/usr/sbin', '/sbin']);
  return dirs.some((d) => d && isExecutable(join(d, tool)));
}

/**
 * True for an ELF file without a PT_INTERP program header, i.e. one that
 * needs no dynamic loader (it will run inside an image that has no libc).
 */
export function isStaticElf(path: string): boolean {
  const fd = openSync(path, 'r');
  try {
    const header = Buffer.alloc(64);
    readSync(fd, header, 0, 64, 0);
    if (header.toString('latin1', 0, 4) !== '\x7fELF' || header[4] !== 2) return false; // 64-bit ELF only
    const phoff = Number(header.readBigUInt64LE(0x20));
    const phentsize = header.readUInt16LE(0x36);
    const phnum = header.readUInt16LE(0x38);
    const table = Buffer.alloc(phentsize * phnum);
    readSync(fd, table, 0, table.length, phoff);
    const PT_INTERP = 3;
    for (let i = 0; i < phnum; i++) if (table.readUInt32LE(i * phentsize) === PT_INTERP) return false;
    return true;
  } finally {
    closeSync(fd);
  }
}
