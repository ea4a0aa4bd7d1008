/**
 * What a real host does to tsnet, with a real dockerd: containers removed
 * while tsnet is down, host services listening on ports users publish, the
 * admin CLI beside dockerd's plugin directory. Each case failed before its
 * fix (issue "Defects a careful user hits").
 */
import { readdirSync, readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CleanupStack, type CommandResult, createDockerHost, type DockerHost, execInNetns, netnsPath, nodeInNetns, run, TEST_IMAGE, TSNET_CLI, waitUntil } from '../harness/index.js';

let host: DockerHost;
const cleanup = new CleanupStack();

const WEB = 'mkdir -p /www && echo hello-from-$(hostname) > /www/index.html && httpd -p 80 -h /www && exec sleep 3600';

async function runWeb(name: string, ...args: string[]): Promise<string> {
  await host.dockerOk(['run', '-d', '--pull=never', '--name', name, '--hostname', name, ...args, TEST_IMAGE, 'sh', '-c', WEB]);
  return (await host.dockerOk(['inspect', '-f', '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}', name])).stdout;
}

/** HTTP GET from the host's netns; the body, or undefined when nothing answered. */
async function getFromHost(url: string): Promise<string | undefined> {
  const r = await execInNetns(host.netns, ['timeout', '3', 'busybox', 'wget', '-qO-', url]);
  return r.exitCode === 0 ? r.stdout : undefined;
}

const tsnetCli = (...args: string[]) => run(process.execPath, [TSNET_CLI, ...args, '--name', host.driver, '--socket-dir', host.dockerd.pluginDir]);

describe('tsnet on a host that looks like a real one', () => {
  beforeAll(async () => {
    host = await createDockerHost({ dockerdArgs: ['--bridge=none'] });
    cleanup.defer('destroy docker host', () => host.destroy());
    await host.dockerOk(['network', 'create', '-d', host.driver, '--subnet', '10.131.0.0/24', 'web']);
    await host.dockerOk(['network', 'create', '-d', host.driver, '--ipam-driver', host.driver, '--subnet', '10.132.0.0/24', 'own']);
  });
  afterAll(async () => {
    await cleanup.run();
  });

  describe('host services and published ports', () => {
    /** A host service on 127.0.0.1:5432 and one on every address :2222 (think postgres and sshd). */
    beforeAll(async () => {
      const listen = (host: string, port: number) => `require('net').createServer((c) => c.end('host-service\\n')).listen(${port}, '${host}', () => console.log('ready'));`;
      await nodeInNetns(netnsPath(host.netns), listen('127.0.0.1', 5432), cleanup);
      await nodeInNetns(netnsPath(host.netns), listen('::', 2222), cleanup);
    });

    it('refuses to publish a port a host service listens on, naming port and address; the service keeps its traffic', async () => {
      for (const [spec, message] of [
        ['127.0.0.1:5432:80', /HostPort: host port 5432\/tcp on 127\.0\.0\.1 is in use by a host process/],
        ['5432:80', /HostPort: host port 5432\/tcp on all addresses is in use by a host process/],
        ['127.0.0.1:2222:80', /HostPort: host port 2222\/tcp on 127\.0\.0\.1 is in use by a host process/],
      ] as const) {
        const r = await host.docker(['run', '-d', '--pull=never', '--network', 'web', '-p', spec, TEST_IMAGE, 'sleep', '600']);
        expect(r.exitCode, spec).not.toBe(0);
        expect(r.stderr).toMatch(message);
      }
      const raw = await execInNetns(host.netns, ['timeout', '3', 'busybox', 'nc', '127.0.0.1', '5432']);
      expect(raw.stdout).toBe('host-service');
      // Nothing of the refused requests stayed behind.
      expect((await tsnetCli('port', 'ls')).stdout).not.toMatch(/5432|2222/);
      // udp on the same port is free.
      await host.dockerOk(['run', '-d', '--pull=never', '--name', 'udp5432', '--network', 'web', '-p', '127.0.0.1:5432:53/udp', TEST_IMAGE, 'sleep', '600']);
    });

    it('holds a published port on the host, so no host service can take it until the container goes', async () => {
      await runWeb('holder', '--network', 'web', '-p', '8085:80');
      const bind = () => execInNetns(host.netns, [process.execPath, '-e', "require('net').createServer().listen(8085, () => process.exit(0)).on('error', (e) => { console.log(e.code); process.exit(3); })"]);
      const taken = await bind();
      expect(taken.stdout).toBe('EADDRINUSE');
      await host.dockerOk(['rm', '-f', 'holder']);
      expect((await bind()).exitCode).toBe(0);
    });
  });

  it('keeps its admin socket out of dockerd\'s plugin directory, and the CLI still finds it from --name and --socket-dir', async () => {
    // dockerd takes every socket there for a plugin: an admin socket would show up as plugin "<name>.admin".
    expect(readdirSync(host.dockerd.pluginDir)).toEqual([`${host.driver}.sock`]);
    const ls = await tsnetCli('port', 'ls');
    expect(ls.exitCode, ls.stderr).toBe(0);
  });

  it('tsnet port ls shows the host ports containers got, and tsnet port rm takes exactly those', async () => {
    const ip = await runWeb('auto', '--network', 'web', '-p', '80', '-p', '9100-9110:80');
    const listed = async () => (await tsnetCli('port', 'ls')).stdout.split('\n').find((l) => l.startsWith(`${ip}/`))?.split('\t')[1]?.split(' ') ?? [];
    const ports = await listed();
    expect(ports).toHaveLength(2);
    expect(ports).toContain('9100:80/tcp');
    const hostPort = Number(/^(\d+):80\/tcp$/.exec(ports.find((p) => p !== '9100:80/tcp')!)?.[1]);
    expect(hostPort).toBeGreaterThan(0);
    expect(await waitUntil(() => getFromHost(`http://127.0.0.1:${hostPort}/`), { timeoutMs: 15_000, what: `port ${hostPort}` })).toBe('hello-from-auto');

    const removed = await tsnetCli('port', 'rm', ip, `${hostPort}:80`);
    expect(removed.exitCode, removed.stderr).toBe(0);
    expect(await getFromHost(`http://127.0.0.1:${hostPort}/`)).toBeUndefined();
    expect(await listed()).toEqual(['9100:80/tcp']);
    expect(await getFromHost('http://127.0.0.1:9100/')).toBe('hello-from-auto');
  });

  it('connects a container with published ports to a second tsnet network; the ports stay with its gateway network', async () => {
    // dockerd sends a remote driver the container's -p list on every network it joins.
    await runWeb('twonets', '--network', 'web', '-p', '8087:80');
    await host.dockerOk(['network', 'connect', 'own', 'twonets']);
    expect(await waitUntil(() => getFromHost('http://127.0.0.1:8087/'), { timeoutMs: 15_000, what: 'port 8087' })).toBe('hello-from-twonets');
    // The gateway network goes: the second network takes the ports over.
    await host.dockerOk(['network', 'disconnect', 'web', 'twonets']);
    expect(await waitUntil(() => getFromHost('http://127.0.0.1:8087/'), { timeoutMs: 15_000, what: 'port 8087 through the second network' })).toBe('hello-from-twonets');
    await host.dockerOk(['rm', '-f', 'twonets']);
  });

  describe('containers removed while tsnet is down', () => {
    let quick: CommandResult | undefined;
    // dockerd retries DeleteEndpoint and ReleaseAddress for 15 s each, then gives up and forgets
    // the endpoint: the three removals run at once so the file pays that only once.
    beforeAll(async () => {
      await host.execInHost(['ip', 'link', 'add', 'mvwire0', 'type', 'veth', 'peer', 'name', 'mvwire1']);
      await host.execInHost(['ip', 'link', 'set', 'mvwire0', 'up']);
      await host.dockerOk(['network', 'create', '-d', host.driver, '--ipam-driver', host.driver, '-o', 'parent=mvwire0', '-o', 'tsnet.host_shim=10.133.0.254', '--subnet', '10.133.0.0/24', 'lan']);
      await runWeb('gone', '--network', 'web', '-p', '8080:80');
      expect(await waitUntil(() => getFromHost('http://127.0.0.1:8080/'), { timeoutMs: 15_000, what: 'port 8080' })).toBe('hello-from-gone');
      await host.dockerOk(['run', '-d', '--pull=never', '--name', 'gone2', '--network', 'own', '--ip', '10.132.0.50', TEST_IMAGE, 'sleep', '3600']);
      await host.dockerOk(['run', '-d', '--pull=never', '--name', 'gone3', '--network', 'lan', '--ip', '10.133.0.60', TEST_IMAGE, 'sleep', '3600']);
      expect((await host.execInHost(['ip', 'route', 'show', '10.133.0.60'])).stdout).toContain('dev tss');
      await runWeb('gone4', '--network', 'web', '-p', '8086:80');
      expect(await waitUntil(() => getFromHost('http://127.0.0.1:8086/'), { timeoutMs: 15_000, what: 'port 8086' })).toBe('hello-from-gone4');
      await host.tsnet.kill9();
      await Promise.all(['gone', 'gone2', 'gone3', 'gone4'].map((name) => host.dockerOk(['rm', '-f', name], { timeoutMs: 120_000 })));
      await host.tsnet.start();
      // Right away, well before the second look: the port of a container removed meanwhile is not held against it.
      quick = await host.docker(['run', '-d', '--pull=never', '--name', 'quick', '--hostname', 'quick', '--network', 'web', '-p', '8086:80', TEST_IMAGE, 'sh', '-c', WEB]);
      // tsnet takes a second look a few seconds after its start before it drops the others (a starting container looks gone for a moment too).
      const dropped = () => readFileSync(host.tsnet.logFile, 'utf8').split('dropped an endpoint whose container went away while tsnet was down').length - 1;
      await waitUntil(() => dropped() >= 4, { timeoutMs: 30_000, what: 'tsnet to drop the four endpoints', diagnostics: () => host.tsnet.logTail() });
    });

    it('gives a container asking right after the restart the host port of one removed meanwhile, at once', async () => {
      expect(quick?.exitCode, `${quick?.stderr}\n${host.tsnet.logTail()}`).toBe(0);
      expect(await waitUntil(() => getFromHost('http://127.0.0.1:8086/'), { timeoutMs: 15_000, what: 'port 8086' })).toBe('hello-from-quick');
    });

    it('frees a published port: the next container gets it and answers on it', async () => {
      await runWeb('next', '--network', 'web', '-p', '8080:80');
      expect(await waitUntil(() => getFromHost('http://127.0.0.1:8080/'), { timeoutMs: 15_000, what: 'port 8080' })).toBe('hello-from-next');
      expect((await tsnetCli('port', 'ls')).stdout.split('\n').filter((l) => l.includes('8080'))).toHaveLength(1);
    });

    it('gives a tsnet IPAM address back (dockerd tried to release it once, failed, and forgot it), and only once', async () => {
      await host.dockerOk(['run', '-d', '--pull=never', '--name', 'again', '--network', 'own', '--ip', '10.132.0.50', TEST_IMAGE, 'sleep', '3600']);
      const twice = await host.docker(['run', '-d', '--pull=never', '--name', 'twice', '--network', 'own', '--ip', '10.132.0.50', TEST_IMAGE, 'sleep', '3600']);
      expect(twice.stderr).toMatch(/10\.132\.0\.50 is already allocated/);
    });

    it('on macvlan: its link and host-shim route go, its address comes back', async () => {
      expect((await host.execInHost(['ip', 'route', 'show', '10.133.0.60'])).stdout).toBe('');
      expect((await host.execInHost(['ip', '-o', 'link', 'show'])).stdout).not.toMatch(/ tsm[0-9a-f]{12}[@:]/);
      await host.dockerOk(['run', '-d', '--pull=never', '--name', 'again3', '--network', 'lan', '--ip', '10.133.0.60', TEST_IMAGE, 'sleep', '3600']);
    });
  });
});
