// Containers on a macvlan network with addresses from the LAN's DHCP server
// (--ipam-opt tsnet.dhcp=on), through a real dockerd: a LAN netns runs
// dnsmasq as the server; the first slice of issue 21 (docs/dhcp.md).
import { request } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CleanupStack, createDockerHost, createNetns, createVethPair, deleteNetns, type DhcpServer, dig, type DockerHost, newRunId, runDir, startDhcpServer, TEST_IMAGE } from '../harness/index.js';

const id = newRunId();
const LAN = `${id}lan`;
const SERVER = '10.97.0.1';
const ROUTER = '10.97.0.254';
/** The host's own address on the LAN (tsnet.host_shim), outside the server's range. */
const SHIM = '10.97.0.250';
const cleanup = new CleanupStack();
let host: DockerHost;
let server: DhcpServer;

const inspect = async (name: string, field: string) => (await host.dockerOk(['inspect', '-f', `{{range .NetworkSettings.Networks}}{{.${field}}}{{end}}`, name])).stdout.trim();
/** A raw Docker API call: the 28.x CLI refuses --mac-address against a 20.10 daemon (API 1.41). */
function api(path: string, body: object): Promise<number> {
  const payload = JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: host.host.replace(/^unix:\/\//, ''), path: `/v1.41${path}`, method: 'POST', headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(payload) } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode!));
    });
    req.on('error', reject);
    req.end(payload);
  });
}

const run = (name: string, ...args: string[]) => host.docker(['run', '-d', '--pull=never', '--name', name, '--network', 'dlan', ...args, TEST_IMAGE, 'sleep', '600'], { timeoutMs: 60_000 });

describe('macvlan with addresses from the LAN\'s DHCP server', () => {
  beforeAll(async () => {
    host = await createDockerHost({ dockerdArgs: ['--bridge=none'] });
    cleanup.defer('destroy host', () => host.destroy());
    await createNetns(LAN);
    cleanup.defer(`delete netns ${LAN}`, () => deleteNetns(LAN));
    await createVethPair({ netns: host.netns, name: 'lan0' }, { netns: LAN, name: 'wire', address: `${SERVER}/24` });
    // The LAN's router is not the network's first address, where the pool's placeholder gateway sits: Join must give the lease's.
    server = await startDhcpServer({ dir: join(runDir(id), 'dhcp'), netns: LAN, iface: 'wire', address: SERVER, range: '10.97.0.100,10.97.0.150', domain: 'lan', extraArgs: [`--dhcp-option=option:router,${ROUTER}`, '--dhcp-option=option:T1,3', '--dhcp-option=option:T2,6'] }, cleanup);
    // A lease outlives its container by 8 s here (60 s by default): long enough for a restart, short enough to see it released.
    // With the host shim and a promiscuous parent, as LAN setups often have them.
    await host.dockerOk(['network', 'create', '-d', host.driver, '-o', 'parent=lan0', '-o', 'tsnet.dhcp_hold=8', '-o', `tsnet.host_shim=${SHIM}`, '-o', 'tsnet.promisc=on', '--ipam-driver', host.driver, '--ipam-opt', 'tsnet.dhcp=on', '--subnet', '10.97.0.0/24', 'dlan']);
  }, 120_000);
  afterAll(() => cleanup.run(), 120_000);

  it('gives a container a lease from the server\'s range, with the MAC it was leased as, and the lease\'s router as gateway', async () => {
    expect((await run('c1')).exitCode).toBe(0);
    const [address, mac] = [await inspect('c1', 'IPAddress'), await inspect('c1', 'MacAddress')];
    expect(Number(address.split('.')[3])).toBeGreaterThanOrEqual(100);
    expect(Number(address.split('.')[3])).toBeLessThanOrEqual(150);
    expect(server.leases().find((l) => l.address === address)).toMatchObject({ mac, clientId: `01:${mac}` });
    expect((await host.docker(['exec', 'c1', 'ping', '-c', '1', '-W', '2', SERVER])).exitCode).toBe(0);
    // The host reaches its DHCP container through the shim, as on any macvlan network.
    expect((await host.execInHost(['busybox', 'ping', '-c', '1', '-W', '2', address])).exitCode).toBe(0);
    // /proc/net/route: the default route's gateway, little-endian hex: FE00610A is 10.97.0.254.
    expect((await host.dockerOk(['exec', 'c1', 'cat', '/proc/net/route'])).stdout).toMatch(/eth0\s+00000000\s+FE00610A/i);
  });

  it('releases the lease once the container is gone for longer than the hold', async () => {
    const address = await inspect('c1', 'IPAddress');
    await host.dockerOk(['rm', '-f', 'c1']);
    await expect.poll(() => server.leases().some((l) => l.address === address), { timeout: 30_000, interval: 500 }).toBe(false);
  });

  it('renews at T1 from the container, keeping the address lease after lease, and goes on renewing after a SIGKILL', async () => {
    expect((await run('c3')).exitCode).toBe(0);
    const [address, mac] = [await inspect('c3', 'IPAddress'), await inspect('c3', 'MacAddress')];
    // dnsmasq logs every ACK, the first and each renewal: DHCPACK(wire) <address> <mac>.
    const acks = () => server.log().split('\n').filter((line) => line.includes(`DHCPACK(wire) ${address} ${mac}`)).length;
    await expect.poll(acks, { timeout: 30_000, interval: 500 }).toBeGreaterThanOrEqual(3);
    expect(await inspect('c3', 'IPAddress')).toBe(address);
    await host.tsnet.kill9();
    await host.tsnet.start();
    const before = acks();
    await expect.poll(acks, { timeout: 30_000, interval: 500 }).toBeGreaterThanOrEqual(before + 2);
    expect((await host.docker(['exec', 'c3', 'ping', '-c', '1', '-W', '2', SERVER])).exitCode).toBe(0);
    expect(server.leases().find((l) => l.address === address)?.mac).toBe(mac);
    // tsnet inspect shows the lease on the endpoint.
    const endpoint = await inspect('c3', 'EndpointID');
    const shown = JSON.parse((await host.tsnet.runCli(['inspect', endpoint.slice(0, 12), '--json'])).stdout) as { endpoint: { lease?: { state: string; server: string; routers: string[] } } };
    expect(shown.endpoint.lease).toMatchObject({ state: 'bound', server: SERVER, routers: [ROUTER] });
  });

  it('sends the container\'s name, so a LAN host resolves it through the server\'s DNS', async () => {
    expect((await run('web_5')).exitCode).toBe(0);
    const address = await inspect('web_5', 'IPAddress');
    // Option 12 is one DNS label: the underscore becomes a hyphen.
    const lookup = async () => (await dig(SERVER, 53, ['web-5.lan', 'A'], LAN)).answers;
    await expect.poll(lookup, { timeout: 30_000, interval: 500 }).toEqual([`A ${address}`]);
    expect(server.leases().find((l) => l.address === address)?.hostname).toBe('web-5');
  });

  it('keeps the address and the client across docker restart, and for a container re-created at once', async () => {
    expect((await run('r1')).exitCode).toBe(0);
    const [address, mac] = [await inspect('r1', 'IPAddress'), await inspect('r1', 'MacAddress')];
    await host.dockerOk(['restart', '-t', '0', 'r1'], { timeoutMs: 60_000 });
    expect([await inspect('r1', 'IPAddress'), await inspect('r1', 'MacAddress')]).toEqual([address, mac]);
    await host.dockerOk(['rm', '-f', 'r1']);
    expect((await run('r1')).exitCode).toBe(0);
    expect([await inspect('r1', 'IPAddress'), await inspect('r1', 'MacAddress')]).toEqual([address, mac]);
    expect(server.leases().filter((l) => l.mac === mac).map((l) => l.address)).toEqual([address]);
    expect((await host.docker(['exec', 'r1', 'ping', '-c', '1', '-W', '2', SERVER])).exitCode).toBe(0);
    // tsnet's own DNS answers the DHCP address too, on the host shim (asked from the host: this host has no route back to the LAN's own addresses).
    await expect.poll(async () => (await dig(SHIM, 53, ['r1.dlan.tsnet', 'A'], host.netns)).answers, { timeout: 15_000, interval: 500 }).toEqual([`A ${address}`]);
  });

  it('honours --mac-address: the server\'s lease is the container\'s own MAC, and a re-created container gets it again', async () => {
    const mac = '02:42:0a:61:00:99';
    const create = async () => {
      expect(await api('/containers/create?name=m1', { Image: TEST_IMAGE, Cmd: ['sleep', '600'], MacAddress: mac, HostConfig: { NetworkMode: 'dlan' } })).toBe(201);
      expect(await api('/containers/m1/start', {})).toBe(204);
    };
    await create();
    const address = await inspect('m1', 'IPAddress');
    expect(await inspect('m1', 'MacAddress')).toBe(mac);
    expect(server.leases().find((l) => l.address === address)).toMatchObject({ mac, clientId: `01:${mac}` });
    await host.dockerOk(['rm', '-f', 'm1']);
    await create();
    expect([await inspect('m1', 'IPAddress'), await inspect('m1', 'MacAddress')]).toEqual([address, mac]);
    expect((await host.docker(['exec', 'm1', 'ping', '-c', '1', '-W', '2', SERVER])).exitCode).toBe(0);
  });

  it('asks the server for a --ip, and fails clearly, naming the offer, when it gives another', async () => {
    // One the server has leased to nobody (the earlier cases' containers hold some of its range).
    const free = Array.from({ length: 51 }, (_, i) => `10.97.0.${100 + i}`).find((a) => !server.leases().some((l) => l.address === a))!;
    const first = await run('i1', '--ip', free);
    expect(first.exitCode, first.stderr).toBe(0);
    expect(await inspect('i1', 'IPAddress')).toBe(free);
    // Outside dnsmasq's range: it offers something else, which is not taken.
    const refused = await run('i2', '--ip', '10.97.0.20');
    expect(refused.exitCode).not.toBe(0);
    expect(refused.stderr).toMatch(/Address: DHCP on lan0: no offer could be taken within 5 s \(10\.97\.0\.1 offered 10\.97\.0\.\d+: not 10\.97\.0\.20, which was asked for\)/);
  });

  it('refuses DHCP on a bridge network, naming the option', async () => {
    const refused = await host.docker(['network', 'create', '-d', host.driver, '--ipam-driver', host.driver, '--ipam-opt', 'tsnet.dhcp=on', '--subnet', '10.96.0.0/24', 'dbr']);
    expect(refused.stderr).toMatch(/tsnet\.dhcp: only macvlan networks take addresses from the LAN's DHCP server/);
  });

  it('fails the attach within its timeout when the server is away, naming the parent', async () => {
    await server.stop();
    const started = Date.now();
    const attempt = await run('c2');
    expect(attempt.exitCode).not.toBe(0);
    expect(attempt.stderr).toMatch(/DHCP on lan0: no DHCP server answered within 5 s/);
    expect(Date.now() - started).toBeLessThan(30_000);
  });
});
