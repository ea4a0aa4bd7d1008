// The guest can host the VLAN e2e tests: dockerd 20.10 starts with its data
// root on tmpfs, a registry-free busybox image imports and runs, and Docker's
// own macvlan driver on parent=<wire>.30 creates the 8021q link itself and
// reaches a peer on VLAN 30 — the reference behaviour for tsnet's VLAN parents.
// Runs INSIDE the guest only (it uses the guest's root netns, as dockerd
// must run there: `ip netns exec dockerd` hides /sys/fs/cgroup).
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, copyFileSync, mkdirSync, openSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { IN_VM, must, requireVlanKernel, run, uniq } from './guest.js';

const dir = `/tmp/${uniq('d')}`; // /tmp is tmpfs in the guest: overlay2 works there
const sock = join(dir, 'docker.sock');
const docker = (...args: string[]) => run('docker', '-H', `unix://${sock}`, ...args);
const image = `${uniq('bb')}:latest`;
const net = uniq('mv30');
const wire = uniq('w'); // in the guest's root netns (dockerd's); <= 15 chars
const peer = uniq('p'); // netns playing the remote host on the wire

function ping(): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request({ socketPath: sock, path: '/_ping', timeout: 2000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => req.destroy());
    req.end();
  });
}

/** busybox-static rootfs tarball: no registry needed. */
function makeRootfsTar(): string {
  const root = join(dir, 'rootfs');
  for (const d of ['bin', 'etc', 'tmp']) mkdirSync(join(root, d), { recursive: true });
  copyFileSync(must('sh', '-c', 'command -v busybox').trim(), join(root, 'bin/busybox'));
  for (const a of ['sh', 'ip', 'ping', 'sleep']) symlinkSync('busybox', join(root, 'bin', a));
  writeFileSync(join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
  const tar = join(dir, 'rootfs.tar');
  must('tar', '-C', root, '--numeric-owner', '-cf', tar, '.');
  return tar;
}

describe('dockerd inside the guest', () => {
  let dockerd: ChildProcess | undefined;

  beforeAll(async () => {
    requireVlanKernel();
    if (!IN_VM) throw new Error('refusing to start dockerd and add links outside the guest (TSN_IN_VM unset): run scripts/vm-test.sh');
    mkdirSync(join(dir, 'data'), { recursive: true });
    const logPath = join(process.env.TSN_VM_ARTIFACTS ?? dir, 'dockerd-in-guest.log');
    const log = openSync(logPath, 'w');
    dockerd = spawn(
      'dockerd',
      ['--bridge=none', '--data-root', join(dir, 'data'), '--exec-root', join(dir, 'exec'),
        '--pidfile', join(dir, 'docker.pid'), '-H', `unix://${sock}`],
      { stdio: ['ignore', log, log] },
    );
    closeSync(log);
    while (!(await ping())) {
      if (dockerd.exitCode !== null) throw new Error(`dockerd exited ${dockerd.exitCode}; see ${logPath}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  });

  afterAll(async () => {
    docker('network', 'rm', net);
    run('ip', 'link', 'del', wire);
    run('ip', 'netns', 'del', peer);
    if (dockerd && dockerd.exitCode === null) {
      const gone = new Promise((r) => dockerd!.once('exit', r));
      dockerd.kill('SIGTERM'); // dockerd stops its own containerd
      await gone;
    }
    run('umount', '-R', join(dir, 'data')); // stray overlay mounts would block rm
    rmSync(dir, { recursive: true, force: true });
  });

  test('dockerd 20.10 runs with overlay2 on tmpfs', () => {
    const r = docker('info', '--format', '{{.ServerVersion}} {{.Driver}}');
    expect(r.code, r.out).toBe(0);
    expect(r.out).toMatch(/^20\.10\.\S+ overlay2/);
  });

  test('a registry-free busybox image imports', () => {
    const imp = docker('import', '-c', 'CMD ["/bin/sh"]', makeRootfsTar(), image);
    expect(imp.code, imp.out).toBe(0);
  });

  // One container only: each `docker run` costs 5-60 s in the emulated guest.
  test('macvlan on parent <wire>.30: docker creates the VLAN link, a container reaches the VLAN 30 peer', () => {
    must('ip', 'netns', 'add', peer);
    must('ip', 'link', 'add', wire, 'type', 'veth', 'peer', 'name', 'wire', 'netns', peer);
    must('ip', 'link', 'set', wire, 'up');
    must('ip', '-n', peer, 'link', 'set', 'wire', 'up');
    must('ip', '-n', peer, 'link', 'add', 'link', 'wire', 'name', 'wire.30', 'type', 'vlan', 'id', '30');
    must('ip', '-n', peer, 'addr', 'add', '10.230.0.2/24', 'dev', 'wire.30');
    must('ip', '-n', peer, 'link', 'set', 'wire.30', 'up');

    const parent = `${wire}.30`;
    const create = docker('network', 'create', '-d', 'macvlan', '--subnet', '10.230.0.0/24', '-o', `parent=${parent}`, net);
    expect(create.code, create.out).toBe(0);
    expect(must('ip', '-d', 'link', 'show', parent)).toMatch(/vlan protocol 802\.1Q id 30/);

    const r = docker('run', '--rm', '--pull=never', '--network', net, '--ip', '10.230.0.10', image,
      'ping', '-c', '1', '-W', '5', '10.230.0.2');
    expect(r.code, r.out).toBe(0);

    expect(docker('network', 'rm', net).code).toBe(0);
    expect(run('ip', 'link', 'show', parent).code, 'docker should delete the VLAN link it created').not.toBe(0);
  });
});
