/**
 * Restarts on a running host: dockerd restarted under tsnet (containers with
 * --restart always come back on their networks, with their ports), and tsnet
 * restarted under running containers (their traffic never stops).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CleanupStack, createDockerHost, type DockerHost, execInNetns, TEST_IMAGE, waitUntil } from '../harness/index.js';

let host: DockerHost;
const cleanup = new CleanupStack();

const WEB = 'mkdir -p /www && echo hello-from-$(hostname) > /www/index.html && httpd -p 80 -h /www && exec sleep 3600';

const ipOf = async (name: string) => (await host.dockerOk(['inspect', '-f', '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}', name])).stdout;

async function getFromHost(url: string): Promise<string | undefined> {
  const r = await execInNetns(host.netns, ['timeout', '3', 'busybox', 'wget', '-qO-', url]);
  return r.exitCode === 0 ? r.stdout : undefined;
}

/** tsnet's endpoint records, read through its admin API (`tsnet port ls` lists those with ports). */
const publishedEndpoints = async () => (await host.tsnet.runCli(['port', 'ls'])).stdout.split('\n').filter(Boolean);

describe('restarts', () => {
  beforeAll(async () => {
    host = await createDockerHost({ dockerdArgs: ['--bridge=none'] });
    cleanup.defer('destroy docker host', () => host.destroy());
    await host.dockerOk(['network', 'create', '-d', host.driver, '--ipam-driver', host.driver, '--subnet', '10.214.0.0/24', 'apps']);
    await host.dockerOk(['run', '-d', '--pull=never', '--restart', 'always', '--name', 'web', '--hostname', 'web', '--network', 'apps', '-p', '8086:80', TEST_IMAGE, 'sh', '-c', WEB]);
    await host.dockerOk(['run', '-d', '--pull=never', '--restart', 'always', '--name', 'peer', '--network', 'apps', TEST_IMAGE, 'sleep', '3600']);
    expect(await waitUntil(() => getFromHost('http://127.0.0.1:8086/'), { timeoutMs: 15_000, what: 'port 8086' })).toBe('hello-from-web');
  });
  afterAll(async () => {
    await cleanup.run();
  });

  it('dockerd restarted: containers come back on their network with their ports, old endpoints released', async () => {
    const before = await ipOf('web');
    await host.dockerd.stop();
    await host.dockerd.start(60_000);
    await waitUntil(async () => (await host.dockerOk(['inspect', '-f', '{{.State.Running}}', 'web', 'peer'])).stdout === 'true\ntrue', { timeoutMs: 60_000, what: 'web and peer to run again' });
    expect(await waitUntil(() => getFromHost('http://127.0.0.1:8086/'), { timeoutMs: 20_000, what: 'port 8086 after the restart' })).toBe('hello-from-web');
    const web = await ipOf('web');
    expect((await host.execIn('peer', ['ping', '-c', '1', '-W', '2', web])).exitCode).toBe(0);
    // One endpoint with ports (web's new one): the old one went when dockerd stopped the container.
    expect(await publishedEndpoints()).toEqual([expect.stringMatching(new RegExp(`^${web.replace(/\./g, '\\.')}/24\t8086:80/tcp$`))]);
    expect(before).not.toBe('');
  });

  it('tsnet restarted (and killed) under running containers: not one packet or request is lost', async () => {
    const web = await ipOf('web');
    // For 8 s, while tsnet is stopped, started, killed and started: 10 pings a second between the
    // containers, and 5 requests a second from the host to the published port (DNAT, rebuilt by each start).
    const pinging = host.execIn('peer', ['ping', '-q', '-i', '0.1', '-c', '80', '-W', '1', web], { timeoutMs: 30_000 });
    const requests = execInNetns(host.netns, [process.execPath, '-e', `
      const http = require('http');
      let failed = 0, done = 0;
      const one = () => new Promise((resolve) => {
        const req = http.get('http://127.0.0.1:8086/', { timeout: 1000 }, (res) => { res.resume(); res.on('end', () => resolve(res.statusCode === 200)); });
        req.on('timeout', () => req.destroy()).on('error', () => resolve(false));
      });
      (async () => {
        for (let i = 0; i < 40; i++) { if (!(await one())) failed++; done++; await new Promise((r) => setTimeout(r, 200)); }
        console.log(done + ' ' + failed);
      })();`], { timeoutMs: 60_000 });
    await host.tsnet.restart();
    await host.tsnet.kill9();
    await host.tsnet.start();
    const summary = (await pinging).stdout;
    const [, sent, received] = /(\d+) packets transmitted, (\d+) packets received/.exec(summary) ?? [];
    expect(Number(sent)).toBe(80);
    expect(Number(received), summary).toBe(80);
    expect((await requests).stdout).toBe('40 0');
  });
});
