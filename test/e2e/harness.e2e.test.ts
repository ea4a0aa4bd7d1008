// Self-test of the e2e harness (test/harness/), independent of tsnet: a
// private dockerd in its own netns runs real containers, and tearing it down
// leaves no netns, directory, process, cgroup or mount behind — also after a
// dockerd crash.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  assertPreflight,
  CleanupStack,
  cgroupDirs,
  createDockerHost,
  createNetns,
  createVethPair,
  deleteNetns,
  type DockerHost,
  execInNetnsOk,
  importTestImage,
  isAlive,
  linkName,
  mountsBelow,
  netnsExists,
  newRunId,
  pidsReferencingDir,
  REPO_ROOT,
  socketAccepts,
  run,
  startDockerd,
  TEST_IMAGE,
  wireHosts,
} from '../harness/index.js';

// The test must fail, not skip, on a machine that cannot run it.
assertPreflight({ docker: true, tsnet: false });

interface Footprint {
  netns: string;
  dir: string;
  cgroupParent: string;
}

/** Asserts that nothing of a destroyed host is left on the machine. */
function expectNothingLeft(f: Footprint, pids: number[]): void {
  expect(netnsExists(f.netns), `netns ${f.netns}`).toBe(false);
  expect(existsSync(f.dir), `dir ${f.dir}`).toBe(false);
  expect(pidsReferencingDir(f.dir), `processes mentioning ${f.dir}`).toEqual([]);
  expect(pids.filter(isAlive), 'started pids still alive').toEqual([]);
  expect(cgroupDirs(f.cgroupParent), 'cgroup dirs').toEqual([]);
  expect(mountsBelow(f.dir), 'mounts').toEqual([]);
}

describe('CleanupStack', () => {
  it('runs every step in reverse order and reports all failures', async () => {
    const stack = new CleanupStack();
    const order: string[] = [];
    stack.defer('first', () => order.push('first'));
    stack.defer('second', () => {
      throw new Error('boom');
    });
    stack.defer('third', async () => order.push('third'));
    await expect(stack.run()).rejects.toThrow(/second: boom/);
    expect(order).toEqual(['third', 'first']);
    expect(stack.size).toBe(0);
    await stack.run(); // nothing left: a second run is a no-op
  });
});

describe('names', () => {
  it('makes unique ids that fit interface names', () => {
    const ids = new Set(Array.from({ length: 50 }, () => newRunId()));
    expect(ids.size).toBe(50);
    const id = [...ids][0] ?? '';
    expect(linkName(id, '-eth1')).toBe(`${id}-eth1`);
    expect(() => linkName(id, '-much-too-long')).toThrow(/invalid interface name/);
  });
});

describe('simulated docker host without tsnet', () => {
  let host: DockerHost;
  let footprint: Footprint;
  let dockerdPid: number;

  beforeAll(async () => {
    host = await createDockerHost({ tsnet: false });
    footprint = { netns: host.netns, dir: host.dir, cgroupParent: host.dockerd.cgroupParent };
    dockerdPid = host.dockerd.pid;
  });

  afterAll(async () => {
    await host?.destroy();
  });

  it('runs a container from the imported image', async () => {
    const r = await host.dockerOk(['run', '--rm', '--pull=never', TEST_IMAGE, 'echo', 'hi']);
    expect(r.stdout).toBe('hi');
  });

  it('refuses docker run without --pull=never', async () => {
    await expect(host.docker(['run', '--rm', TEST_IMAGE, 'true'])).rejects.toThrow(/--pull=never/);
  });

  it('puts Docker\'s default bridge inside the host netns, where containers reach each other and the host', async () => {
    await host.dockerOk(['run', '-d', '--pull=never', '--name', 'target', TEST_IMAGE, 'sleep', '600']);
    const ip = (await host.dockerOk(['inspect', '-f', '{{.NetworkSettings.IPAddress}}', 'target'])).stdout;
    expect(ip).toMatch(/^\d+\.\d+\.\d+\.\d+$/);

    const fromContainer = await host.docker(['run', '--rm', '--pull=never', TEST_IMAGE, 'ping', '-c', '1', '-W', '5', ip]);
    expect(fromContainer.exitCode, fromContainer.stderr).toBe(0);

    // The host side of the bridge lives in our netns, so the host netns reaches the container.
    await execInNetnsOk(host.netns, ['busybox', 'ping', '-c', '1', '-W', '5', ip]);
    const links = (await host.execInHost(['ip', '-o', 'link', 'show', 'docker0'])).stdout;
    expect(links).toContain('docker0');

    const inside = await host.execIn('target', ['cat', '/etc/hostname']);
    expect(inside.exitCode).toBe(0);
  });

  it('gives the dockerd a private /run/docker/plugins backed by the host\'s plugin dir', async () => {
    const marker = `probe-${host.id}`;
    await run('touch', [`${host.dockerd.pluginDir}/${marker}`]);
    const seen = await run('nsenter', ['-t', String(dockerdPid), '-m', 'ls', '/run/docker/plugins']);
    expect(seen.stdout.split('\n')).toContain(marker);
    // ... and the machine's own /run/docker/plugins does not see it.
    expect(existsSync(`/run/docker/plugins/${marker}`)).toBe(false);
  });

  it('destroy() leaves no netns, dir, process, cgroup or mount behind', async () => {
    await host.destroy();
    expectNothingLeft(footprint, [dockerdPid]);
  });
});

describe('simulated docker host with a plugin (a stand-in for tsnet)', () => {
  const standIn = join(REPO_ROOT, 'test/harness/fixtures/stand-in-plugin.mjs');
  let host: DockerHost;
  let footprint: Footprint;
  const pluginPids: number[] = [];
  const calls = (): string => readFileSync(join(host.tsnet.stateDir, 'calls.log'), 'utf8');

  beforeAll(async () => {
    host = await createDockerHost({ tsnetCli: standIn, driver: 'tsnstub', dockerdArgs: ['--bridge=none'] });
    footprint = { netns: host.netns, dir: host.dir, cgroupParent: host.dockerd.cgroupParent };
    pluginPids.push(host.tsnet.pid);
  });

  afterAll(async () => {
    await host?.destroy();
  });

  it('is discovered by this host\'s dockerd through its private plugin dir', async () => {
    expect(host.tsnet.socketPath).toBe(join(host.dockerd.pluginDir, 'tsnstub.sock'));
    await host.dockerOk(['network', 'create', '-d', host.driver, '--subnet', '10.231.0.0/24', 'stubnet']);
    expect(calls()).toContain('/NetworkDriver.CreateNetwork');
    await host.dockerOk(['network', 'rm', 'stubnet']);
    expect(calls()).toContain('/NetworkDriver.DeleteNetwork');
  });

  it('survives kill9() + restart() with the same state dir', async () => {
    await host.tsnet.kill9();
    expect(isAlive(pluginPids[0] ?? 0)).toBe(false);
    expect(await socketAccepts(host.tsnet.socketPath)).toBe(false);
    await host.tsnet.restart();
    pluginPids.push(host.tsnet.pid);
    expect(await socketAccepts(host.tsnet.socketPath)).toBe(true);
    expect(calls()).toContain('/NetworkDriver.DeleteNetwork'); // written before the crash
    await host.dockerOk(['network', 'create', '-d', host.driver, '--subnet', '10.231.1.0/24', 'stubnet2']);
  });

  it('stop() ends the plugin with SIGTERM and start() brings it back', async () => {
    await host.tsnet.stop();
    expect(host.tsnet.running).toBe(false);
    await host.tsnet.start();
    pluginPids.push(host.tsnet.pid);
    expect(host.tsnet.logTail()).toContain('SIGTERM');
  });

  it('destroy() leaves nothing behind, plugin included', async () => {
    await host.destroy();
    expectNothingLeft(footprint, pluginPids);
  });
});

describe('dockerd killed with SIGKILL while a container runs', () => {
  it('destroy() still removes containerd, the shim, the container and everything else', async () => {
    const dockerd = await startDockerd({ extraArgs: ['--bridge=none'] });
    const footprint = { netns: dockerd.netns, dir: dockerd.dir, cgroupParent: dockerd.cgroupParent };
    try {
      await importTestImage(dockerd);
      await dockerd.dockerOk(['run', '-d', '--pull=never', '--network', 'none', TEST_IMAGE, 'sleep', '600']);
      const survivors = pidsReferencingDir(dockerd.dir).filter((p) => p !== dockerd.pid);
      expect(survivors.length).toBeGreaterThan(0); // containerd + shim at least

      process.kill(dockerd.pid, 'SIGKILL');
      const report = await dockerd.destroy();
      expect(report?.killedPids.length).toBeGreaterThan(0);
      expectNothingLeft(footprint, survivors);
    } finally {
      await dockerd.destroy();
    }
  });
});

describe('two netns joined by a veth', () => {
  it('exchange packets over the wire', async () => {
    const cleanup = new CleanupStack();
    try {
      const a = newRunId();
      const b = newRunId();
      await createNetns(a);
      cleanup.defer(`delete netns ${a}`, () => deleteNetns(a));
      await createNetns(b);
      cleanup.defer(`delete netns ${b}`, () => deleteNetns(b));
      await createVethPair({ netns: a, name: 'eth1', address: '198.51.100.1/24' }, { netns: b, name: 'eth1', address: '198.51.100.2/24' });
      await execInNetnsOk(a, ['busybox', 'ping', '-c', '1', '-W', '5', '198.51.100.2']);
    } finally {
      await cleanup.run();
    }
  });
});

describe('two simulated hosts on one wire', () => {
  const hosts: DockerHost[] = [];

  afterAll(async () => {
    for (const h of hosts) await h.destroy();
  });

  it('carry Docker\'s built-in macvlan traffic from a container on A to a container on B', async () => {
    for (let i = 0; i < 2; i++) hosts.push(await createDockerHost({ tsnet: false, dockerdArgs: ['--bridge=none'] }));
    const [a, b] = hosts as [DockerHost, DockerHost];
    await wireHosts(a, b);
    for (const h of hosts) {
      await h.dockerOk(['network', 'create', '-d', 'macvlan', '--subnet', '10.77.0.0/24', '-o', 'parent=eth1', 'mv']);
    }
    await b.dockerOk(['run', '-d', '--pull=never', '--name', 'cb', '--network', 'mv', '--ip', '10.77.0.20', TEST_IMAGE, 'sleep', '600']);
    const ping = await a.docker(['run', '--rm', '--pull=never', '--network', 'mv', '--ip', '10.77.0.10', TEST_IMAGE, 'ping', '-c', '1', '-W', '5', '10.77.0.20']);
    expect(ping.exitCode, ping.stdout + ping.stderr).toBe(0);
  });
});
