/**
 * The managed plugin's entrypoint (packaging/plugin-entry.sh) run as Docker
 * runs a plugin, without building the rootfs (the managed-plugin e2e test
 * does that): in a test netns, in a private mount namespace whose /proc/sys
 * is read-only and whose /opt/tsnet is this checkout, with Docker's default
 * capabilities plus the manifest's (plugin.json) in every set. The daemon it
 * becomes holds net_admin, net_raw and net_bind_service only (CAP_SYS_ADMIN
 * served the entrypoint's umount of /proc/sys alone), and still writes the
 * net.* sysctls a bridge network needs.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CleanupStack, createNetnsCleanedUp, execInNetns, httpPostUnix, newRunId, procStatus, REPO_ROOT, run, runDir, socketAccepts, terminate, waitUntil } from '../harness/index.js';

const id = newRunId();
const netns = `${id}p`;
const dir = runDir(id);
const cleanup = new CleanupStack();
const socket = join(dir, 'plugins', 'tsnet.sock');

/** moby's oci.DefaultCapabilities(): what every plugin gets before the manifest's own. */
const DOCKER_DEFAULT_CAPS = ['CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FSETID', 'CAP_FOWNER', 'CAP_MKNOD', 'CAP_NET_RAW', 'CAP_SETGID', 'CAP_SETUID', 'CAP_SETFCAP', 'CAP_SETPCAP', 'CAP_NET_BIND_SERVICE', 'CAP_SYS_CHROOT', 'CAP_KILL', 'CAP_AUDIT_WRITE'];
const CAP_SYS_ADMIN = 21n;
/** CAP_NET_BIND_SERVICE (10), CAP_NET_ADMIN (12), CAP_NET_RAW (13). */
const TSNET_CAPS = (1n << 10n) | (1n << 12n) | (1n << 13n);

/** The capability sets of a process (Inh, Prm, Eff, Bnd, Amb). */
const capabilities = (pid: number): Record<string, bigint> =>
  Object.fromEntries(Object.entries(procStatus(pid)).filter(([key]) => key.startsWith('Cap')).map(([key, hex]) => [key.slice(3), BigInt(`0x${hex}`)]));

let daemon: number;

describe('the managed plugin\'s entrypoint', () => {
  beforeAll(async () => {
    cleanup.defer(`remove ${dir}`, () => run('rm', ['-rf', dir]));
    await createNetnsCleanedUp(cleanup, netns);
    const manifest = JSON.parse(readFileSync(join(REPO_ROOT, 'plugin.json'), 'utf8')) as { linux: { capabilities: string[] } };
    const caps = [...new Set([...DOCKER_DEFAULT_CAPS, ...manifest.linux.capabilities])].map((c) => `+${c.replace(/^CAP_/, '').toLowerCase()}`).join(',');
    // What runc sets up for a plugin, as far as the entrypoint can tell: its mounts, then its capabilities.
    const plugin = [
      'set -e',
      'mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys',
      `mount -t tmpfs tmpfs /opt && mkdir /opt/tsnet && mount --bind "${REPO_ROOT}" /opt/tsnet`,
      `exec setpriv --bounding-set -all,${caps} --inh-caps -all,${caps} busybox sh "${join(REPO_ROOT, 'packaging/plugin-entry.sh')}" "$@"`,
    ].join('\n');
    const flags = ['--name', 'tsnet', '--socket-dir', join(dir, 'plugins'), '--state-dir', join(dir, 'state'), '--admin-socket', join(dir, 'admin', 'tsnet.admin.sock'), '--firewall', 'nftables'];
    const log = { file: join(dir, 'plugin.log') } as const;
    const child = execa('ip', ['netns', 'exec', netns, 'unshare', '--mount', '--propagation', 'private', 'sh', '-c', plugin, 'sh', ...flags], { reject: false, stdin: 'ignore', stdout: log, stderr: log });
    // ip netns exec, unshare, sh, setpriv, busybox sh and setpriv all exec: the PID is the daemon's.
    daemon = child.pid!;
    cleanup.defer('stop the plugin\'s daemon', async () => {
      await terminate(daemon, 15_000);
      await child;
    });
    await waitUntil(() => socketAccepts(socket), { timeoutMs: 60_000, what: 'the daemon started by the entrypoint to serve', diagnostics: () => readFileSync(log.file, 'utf8') });
  });
  afterAll(async () => {
    await cleanup.run();
  });

  it('leaves the daemon without CAP_SYS_ADMIN: only net_admin, net_raw and net_bind_service, nothing inheritable', () => {
    expect(readFileSync(`/proc/${daemon}/cmdline`, 'utf8')).toContain('/opt/tsnet/dist/src/cli.js\0daemon\0');
    const sets = capabilities(daemon);
    for (const set of ['Bnd', 'Prm', 'Eff', 'Inh', 'Amb']) expect((sets[set]! >> CAP_SYS_ADMIN) & 1n, `Cap${set}`).toBe(0n);
    expect(sets).toEqual({ Inh: 0n, Prm: TSNET_CAPS, Eff: TSNET_CAPS, Bnd: TSNET_CAPS, Amb: 0n });
  });

  it('still writes the net.* sysctls of a bridge network (the read-only /proc/sys is gone)', async () => {
    const network = JSON.stringify({ NetworkID: 'a1'.repeat(32), Options: { 'com.docker.network.generic': {} }, IPv4Data: [{ AddressSpace: 'x', Pool: '10.178.0.0/24', Gateway: '10.178.0.1/24' }], IPv6Data: [] });
    const created = await httpPostUnix(socket, '/NetworkDriver.CreateNetwork', network);
    expect(created.status, created.body).toBe(200);
    expect((await execInNetns(netns, ['sysctl', '-n', 'net.ipv4.ip_forward', 'net.ipv4.conf.tsbr-a1a1a1a1a1.route_localnet'])).stdout).toBe('1\n1');
  });
});
