/**
 * The foundation scenario against a real dockerd: networks with Docker's IPAM
 * and with tsnet's, static addresses, name resolution, connect/disconnect,
 * stop/start, tsnet restarts (graceful and kill -9) and clean removal.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDockerHost, type DockerHost, TEST_IMAGE } from '../harness/index.js';

let host: DockerHost;

/** The host's links whose names tsnet generates. */
async function tsnetLinks(): Promise<string[]> {
  const links = JSON.parse((await host.execInHost(['ip', '-json', 'link', 'show'])).stdout) as Array<{ ifname: string }>;
  return links.map((l) => l.ifname).filter((name) => /^ts(br-|v|c)/.test(name));
}

async function inContainer(name: string, cmd: string[]): Promise<string> {
  const r = await host.execIn(name, cmd);
  expect(r.exitCode, `${cmd.join(' ')} in ${name}: ${r.stdout}${r.stderr}\n${host.tsnet.logTail()}`).toBe(0);
  return r.stdout;
}

const runDetached = (name: string, ...args: string[]) =>
  host.dockerOk(['run', '-d', '--pull=never', '--name', name, ...args, TEST_IMAGE, 'sleep', '3600']);

describe('bridge attach end to end with a real dockerd', () => {
  beforeAll(async () => {
    host = await createDockerHost({ dockerdArgs: ['--bridge=none'] });
  });
  afterAll(async () => {
    await host?.destroy();
  });

  it('creates a network with tsnet IPAM honouring --subnet, --gateway and --ip-range', async () => {
    await host.dockerOk([
      'network', 'create', '-d', host.driver, '--ipam-driver', host.driver,
      '--subnet', '10.31.0.0/24', '--gateway', '10.31.0.254', '--ip-range', '10.31.0.128/25', 'net-a',
    ]);
    const inspect = JSON.parse((await host.dockerOk(['network', 'inspect', 'net-a'])).stdout)[0];
    expect(inspect.IPAM.Config[0]).toMatchObject({ Subnet: '10.31.0.0/24', Gateway: '10.31.0.254', IPRange: '10.31.0.128/25' });
    expect(await host.execInHost(['ip', '-4', '-o', 'addr', 'show'])).toMatchObject({ stdout: expect.stringContaining('10.31.0.254/24') });
  });

  it('gives --ip its address and a default route via the gateway; two containers ping each other, the gateway and by name', async () => {
    await runDetached('c1', '--network', 'net-a', '--ip', '10.31.0.10');
    await runDetached('c2', '--network', 'net-a');
    expect(await inContainer('c1', ['ip', '-4', '-o', 'addr', 'show', 'eth0'])).toContain('10.31.0.10/24');
    expect(await inContainer('c1', ['ip', 'route'])).toMatch(/default via 10\.31\.0\.254 dev eth0/);
    // Automatic addresses come from the ip-range.
    expect(await inContainer('c2', ['ip', '-4', '-o', 'addr', 'show', 'eth0'])).toContain('10.31.0.128/24');
    await inContainer('c1', ['ping', '-c', '1', '-W', '5', '10.31.0.128']);
    await inContainer('c2', ['ping', '-c', '1', '-W', '5', '10.31.0.254']);
    await inContainer('c2', ['ping', '-c', '1', '-W', '5', 'c1']);
  });

  it('works with Docker\'s default IPAM too', async () => {
    await host.dockerOk(['network', 'create', '-d', host.driver, '--subnet', '10.32.0.0/24', 'net-b']);
    await runDetached('d1', '--network', 'net-b', '--ip', '10.32.0.7');
    expect(await inContainer('d1', ['ip', 'route'])).toMatch(/default via 10\.32\.0\.1 dev eth0/);
    await inContainer('d1', ['ping', '-c', '1', '-W', '5', '10.32.0.1']);
  });

  it('connects a second tsnet network as eth1 and disconnects it', async () => {
    await host.dockerOk(['network', 'connect', 'net-b', 'c1']);
    const eth1 = await inContainer('c1', ['ip', '-4', '-o', 'addr', 'show', 'eth1']);
    expect(eth1).toMatch(/10\.32\.0\.\d+\/24/);
    await inContainer('c1', ['ping', '-c', '1', '-W', '5', '10.32.0.7']);
    await host.dockerOk(['network', 'disconnect', 'net-b', 'c1']);
    expect((await host.execIn('c1', ['ip', 'link', 'show', 'eth1'])).exitCode).not.toBe(0);
  });

  it('keeps --ip across docker stop/start, with a graceful tsnet restart in between', async () => {
    await host.dockerOk(['stop', '-t', '1', 'c1']);
    await host.tsnet.restart();
    await host.dockerOk(['start', 'c1']);
    expect(await inContainer('c1', ['ip', '-4', '-o', 'addr', 'show', 'eth0'])).toContain('10.31.0.10/24');
    await inContainer('c1', ['ping', '-c', '1', '-W', '5', '10.31.0.254']);
  });

  it('serves the same networks after kill -9: a new container attaches with the right gateway', async () => {
    await host.tsnet.kill9();
    await host.tsnet.start();
    await runDetached('c3', '--network', 'net-a');
    expect(await inContainer('c3', ['ip', 'route'])).toMatch(/default via 10\.31\.0\.254 dev eth0/);
    // The IPAM remembered what it handed out: c3 gets a new address, not one in use.
    const c3 = await inContainer('c3', ['ip', '-4', '-o', 'addr', 'show', 'eth0']);
    expect(c3).toMatch(/10\.31\.0\.(1(29|[3-9]\d)|2\d\d)\/24/);
    await inContainer('c3', ['ping', '-c', '1', '-W', '5', 'c2']);
  });

  it('picks a pool itself when no --subnet is given', async () => {
    await host.dockerOk(['network', 'create', '-d', host.driver, '--ipam-driver', host.driver, 'net-auto']);
    const inspect = JSON.parse((await host.dockerOk(['network', 'inspect', 'net-auto'])).stdout)[0];
    expect(inspect.IPAM.Config[0].Subnet).toMatch(/^172\.(1[7-9]|2\d|3[01])\.0\.0\/16$/);
    await host.dockerOk(['run', '--rm', '--pull=never', '--network', 'net-auto', TEST_IMAGE, 'ping', '-c', '1', '-W', '5', inspect.IPAM.Config[0].Gateway]);
  });

  it('leaves no link behind after the containers and networks are removed', async () => {
    await host.removeAllContainers();
    for (const net of ['net-a', 'net-b', 'net-auto']) await host.dockerOk(['network', 'rm', net]);
    expect(await tsnetLinks()).toEqual([]);
  });
});
