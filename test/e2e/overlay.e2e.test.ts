/**
 * Overlay networks with real dockerds: three hosts in their own subnets, joined
 * only through a router netns (no shared L2: macvlan could not work here),
 * etcd on the router, each host a private dockerd with tsnet started with
 * --cluster-store. The same `docker network create -o tsnet.mode=overlay` on
 * each host; containers reach each other across hosts by address and by
 * tsnet's DNS name (ping and HTTP), with the underlay's MTU − 50 (a full-size
 * packet crosses); 60 concurrent runs get distinct addresses and reach every
 * container of the other hosts; traffic keeps flowing
 * while a host's tsnet is SIGKILLed and while etcd is down, and new runs on
 * it are refused naming the store; a removed container's entries leave the
 * other host; a host where Docker's swarm overlay holds the port is refused.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CleanupStack, createClusterHosts, type DockerHost, type EtcdServer, newRunId, raiseNeighbourLimits, TEST_IMAGE, waitUntil } from '../harness/index.js';

const id = newRunId();
const SUBNET = '10.93.0.0/24';
const cleanup = new CleanupStack();
let hosts: DockerHost[] = [];
let etcd: EtcdServer;
const HOST_IDS = ['ova', 'ovb', 'ovc'];
/** Host C's underlay address (createClusterHosts, routed: 10.252.<index>.1). */
const C_UNDERLAY = '10.252.2.1';
/** Every host's gateway on the network (the same on each): where tsnet's DNS answers its containers. */
const GATEWAY = '10.93.0.1';

const pings = async (host: DockerHost, from: string, to: string) => (await host.docker(['exec', from, 'ping', '-c', '1', '-W', '2', to])).exitCode === 0;

const addressOf = async (host: DockerHost, name: string) =>
  (await host.dockerOk(['inspect', '-f', '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}', name])).stdout.trim();

describe('overlay networks across routed Docker hosts', () => {
  beforeAll(async () => {
    // The three hosts share this VM's one ARP table: 60 containers × 40 peers would overflow its default limit (harness/neighbour-limits.ts).
    raiseNeighbourLimits(cleanup);
    ({ hosts, etcd } = await createClusterHosts({ id, net: '10.250.9', hostIds: HOST_IDS, wire: 'wire', routed: true }, cleanup));
    for (const host of hosts) {
      await host.dockerOk(['network', 'create', '-d', host.driver, '-o', 'tsnet.mode=overlay', '--ipam-driver', host.driver, '--ipam-opt', 'tsnet.pool=ov', '--subnet', SUBNET, 'ov']);
    }
  }, 300_000);
  afterAll(async () => {
    await cleanup.run();
  });

  it('lets containers on different hosts reach each other, at the underlay\'s MTU − 50', async () => {
    const [a, b] = hosts as [DockerHost, DockerHost];
    await a.dockerOk(['run', '-d', '--pull=never', '--name', 'a1', '--network', 'ov', '--dns', GATEWAY, TEST_IMAGE, 'sleep', '600']);
    await b.dockerOk(['run', '-d', '--pull=never', '--name', 'b1', '--network', 'ov', '--dns', GATEWAY, TEST_IMAGE, 'sleep', '600']);
    const [onA, onB] = [await addressOf(a, 'a1'), await addressOf(b, 'b1')];
    expect(onA).not.toBe(onB);
    await waitUntil(async () => (await a.docker(['exec', 'a1', 'ping', '-c', '1', '-W', '1', onB])).exitCode === 0, {
      timeoutMs: 15_000,
      what: `a1 (${onA}) on host A to reach b1 (${onB}) on host B`,
      diagnostics: () => a.tsnet.logTail(20) + b.tsnet.logTail(20),
    });
    expect((await b.docker(['exec', 'b1', 'ping', '-c', '1', '-W', '2', onA])).exitCode).toBe(0);
    expect((await a.dockerOk(['exec', 'a1', 'cat', '/sys/class/net/eth0/mtu'])).stdout.trim()).toBe('1450');
    // A full-size packet (1422 bytes of ICMP data + 28 of headers = the MTU) crosses: VXLAN's 50 bytes still fit the underlay.
    expect((await a.docker(['exec', 'a1', 'ping', '-c', '1', '-W', '2', '-s', '1422', onB])).exitCode).toBe(0);
    expect((await a.tsnet.runCli(['ls'])).stdout).toMatch(/ov +\w{12} +overlay \(VNI \d+\)/);
  });

  it('gives 60 concurrent runs over three hosts 60 distinct addresses, every container reaching every container of the other hosts, and cluster ls counts them', async () => {
    const names = Array.from({ length: 60 }, (_, i) => `m${i}`);
    const hostOf = (i: number) => hosts[i % hosts.length]!;
    const started = await Promise.all(names.map((name, i) => hostOf(i).docker(['run', '-d', '--pull=never', '--name', name, '--network', 'ov', TEST_IMAGE, 'sleep', '600'], { timeoutMs: 240_000 })));
    expect(started.filter((r) => r.exitCode !== 0).map((r) => r.stderr)).toEqual([]);
    const addresses = await Promise.all(names.map((name, i) => addressOf(hostOf(i), name)));
    expect(new Set(addresses).size).toBe(names.length);
    // One exec per container pings the 40 containers of the other hosts (a second try for a lost first packet): 2400 pairs.
    const unreached = await Promise.all(names.map(async (name, i) => {
      const targets = addresses.filter((_, j) => j % hosts.length !== i % hosts.length);
      const script = `for t in ${targets.join(' ')}; do ping -c 1 -W 2 $t >/dev/null || ping -c 1 -W 2 $t >/dev/null || echo $t; done`;
      const result = await hostOf(i).docker(['exec', name, 'sh', '-c', script], { timeoutMs: 240_000 });
      return result.stdout.split(/\s+/).filter(Boolean).map((t) => `${name} → ${t}`);
    }));
    expect(unreached.flat()).toEqual([]);
    // Every host sees the segment with the three hosts and their containers (a1 and b1 of the first case too).
    const counts = async () => {
      const view = JSON.parse((await hosts[2]!.tsnet.runCli(['cluster', 'ls', '--json'])).stdout) as { segments: Array<{ pool: string; hosts: Array<{ id: string; alive: boolean; containers: number }> }> };
      return view.segments.find((s) => s.pool === 'ov')?.hosts.map((h) => `${h.id} ${h.alive} ${h.containers}`).sort();
    };
    expect(await counts()).toEqual(['ova true 21', 'ovb true 21', 'ovc true 20']);
    await Promise.all(names.map((name, i) => hostOf(i).dockerOk(['rm', '-f', name])));
  });

  it('answers a container of the other host by name from each host\'s own DNS, for ping and HTTP', async () => {
    const [a, b] = hosts as [DockerHost, DockerHost];
    const onB = await addressOf(b, 'b1');
    await waitUntil(async () => (await a.docker(['exec', 'a1', 'nslookup', 'b1.ov.tsnet', GATEWAY])).stdout.includes(onB), { timeoutMs: 15_000, what: 'b1.ov.tsnet to be answered on host A' });
    expect(await pings(a, 'a1', 'b1.ov.tsnet')).toBe(true);
    // HTTP by name across the hosts: a web server in b1, fetched from a1.
    await b.dockerOk(['exec', '-d', 'b1', 'sh', '-c', 'mkdir -p /www && echo served-by-b1 > /www/index.html && httpd -f -p 8080 -h /www']);
    await waitUntil(async () => (await a.docker(['exec', 'a1', 'timeout', '3', 'wget', '-qO-', 'http://b1.ov.tsnet:8080/'])).stdout.includes('served-by-b1'), { timeoutMs: 15_000, what: 'a1 on host A to fetch http://b1.ov.tsnet:8080/ from b1 on host B' });
  });

  it('keeps traffic flowing while a host\'s tsnet is SIGKILLed, and follows again after its restart', async () => {
    const [a, b] = hosts as [DockerHost, DockerHost];
    const onB = await addressOf(b, 'b1');
    await a.tsnet.kill9();
    try {
      expect(await pings(a, 'a1', onB)).toBe(true);
    } finally {
      await a.tsnet.restart();
    }
    // A container started on B while A's tsnet was away, or after: reached from A once it follows again.
    await b.dockerOk(['run', '-d', '--pull=never', '--name', 'b2', '--network', 'ov', TEST_IMAGE, 'sleep', '600']);
    const onB2 = await addressOf(b, 'b2');
    await waitUntil(() => pings(a, 'a1', onB2), { timeoutMs: 15_000, what: `a1 to reach b2 (${onB2}) after A's tsnet restarted`, diagnostics: () => a.tsnet.logTail(20) });
  });

  it('keeps traffic flowing while etcd is down, refuses new runs naming the store, and works again once it is back', async () => {
    const [a, b] = hosts as [DockerHost, DockerHost];
    const onB = await addressOf(b, 'b1');
    await etcd.kill9();
    try {
      expect(await pings(a, 'a1', onB)).toBe(true);
      const refused = await a.docker(['run', '--rm', '--pull=never', '--network', 'ov', TEST_IMAGE, 'true'], { timeoutMs: 60_000 });
      expect(refused.exitCode).not.toBe(0);
      expect(refused.stderr).toMatch(/cluster store: etcd:\/\/10\.250\.9\.1:2379 is unreachable/);
    } finally {
      await etcd.start();
    }
    await waitUntil(async () => (await a.docker(['run', '--rm', '--pull=never', '--network', 'ov', TEST_IMAGE, 'ping', '-c', '1', '-W', '2', onB], { timeoutMs: 60_000 })).exitCode === 0, {
      timeoutMs: 30_000,
      what: 'a new run on A to reach b1 once etcd is back',
    });
  });

  it('puts back a peer entry someone deletes by hand, at once: the drift watcher follows the overlay\'s neighbour and forwarding entries', async () => {
    const [a, b] = hosts as [DockerHost, DockerHost];
    const onB = await addressOf(b, 'b1');
    const mac = (await b.dockerOk(['inspect', '-f', '{{range .NetworkSettings.Networks}}{{.MacAddress}}{{end}}', 'b1'])).stdout.trim();
    const device = /tsx[0-9a-f]{12}/.exec((await a.execInHost(['ip', '-o', 'link', 'show', 'type', 'vxlan'])).stdout)![0];
    const neighbours = async () => (await a.execInHost(['ip', 'neigh', 'show', 'dev', device, 'nud', 'permanent'])).stdout;
    const forwarding = async () => (await a.execInHost(['bridge', 'fdb', 'show', 'dev', device])).stdout;
    await a.execInHost(['ip', 'neigh', 'del', onB, 'dev', device]);
    // The periodic look comes every 2 minutes: back within seconds means the watcher saw the event.
    await waitUntil(async () => (await neighbours()).includes(`${onB} lladdr ${mac}`), { timeoutMs: 10_000, what: `${onB}'s neighbour entry to come back on host A`, diagnostics: () => a.tsnet.logTail(20) });
    // A change to the device within 300 ms of tsnet's own write passes for tsnet's until the periodic look (repair/own-changes.ts).
    await new Promise((resolve) => setTimeout(resolve, 1000));
    await a.execInHost(['bridge', 'fdb', 'del', mac, 'dev', device, 'self']);
    await waitUntil(async () => (await forwarding()).includes(`${mac} dst `), { timeoutMs: 10_000, what: `${mac}'s forwarding entry to come back on host A`, diagnostics: () => a.tsnet.logTail(20) });
    expect(await pings(a, 'a1', onB)).toBe(true);
  });

  it('takes a removed container off the other host', async () => {
    const [a, b] = hosts as [DockerHost, DockerHost];
    const onB = await addressOf(b, 'b1');
    const mac = (await b.dockerOk(['inspect', '-f', '{{range .NetworkSettings.Networks}}{{.MacAddress}}{{end}}', 'b1'])).stdout.trim();
    await b.dockerOk(['rm', '-f', 'b1']);
    await waitUntil(async () => !(await a.execInHost(['bridge', 'fdb', 'show'])).stdout.includes(`${mac} dst`), { timeoutMs: 10_000, what: `${mac} (${onB}) to leave host A's forwarding table` });
  });
  it('refuses an overlay where Docker\'s swarm overlay holds the VXLAN port from a netns of its own, naming it', async () => {
    const c = hosts[2]!;
    await c.dockerOk(['network', 'rm', 'ov']);
    await c.dockerOk(['swarm', 'init', '--advertise-addr', C_UNDERLAY]);
    try {
      await c.dockerOk(['network', 'create', '-d', 'overlay', '--attachable', '--subnet', '10.96.0.0/24', 'swarmov']);
      // Swarm makes its VXLAN device, in a netns of its own, for the first container on the network.
      await c.dockerOk(['run', '-d', '--pull=never', '--name', 'sw1', '--network', 'swarmov', TEST_IMAGE, 'sleep', '600'], { timeoutMs: 60_000 });
      const refused = await c.docker(['network', 'create', '-d', c.driver, '-o', 'tsnet.mode=overlay', '--ipam-driver', c.driver, '--ipam-opt', 'tsnet.pool=ov', '--subnet', SUBNET, 'ov']);
      expect(refused.exitCode).not.toBe(0);
      expect(refused.stderr).toContain('tsnet.mode: UDP port 4789 is taken by another program (Docker\'s swarm overlay, in a netns of its own, holds it so); run tsnet daemon with another --vxlan-port');
      expect((await c.execInHost(['ip', '-d', 'link', 'show', 'type', 'vxlan'])).stdout).not.toContain('tsx');
    } finally {
      await c.docker(['rm', '-f', 'sw1']);
      await c.docker(['swarm', 'leave', '--force']);
    }
  });
});
