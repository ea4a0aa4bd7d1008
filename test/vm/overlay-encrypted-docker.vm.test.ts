// An encrypted overlay with real dockerds and tsnet daemons: two hosts in
// their own subnets behind a router, etcd on it (createClusterHosts,
// routed), INSIDE the guest (npm run test:vlan): the CI host kernel has no
// ESP. VXLAN on port 8472 (Linux's default, not IANA's 4789: Docker's
// encryption broke on another port, moby#45635). `docker network create -o tsnet.encrypt=on` on both hosts, containers
// that ping across them at the encrypted MTU, `tsnet cluster rotate-key`
// during a steady ping that loses nothing, a flushed SA table put back by
// the drift watcher, and `docker network rm` taking the SAs away.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CleanupStack, createClusterHosts, type DockerHost, newRunId, TEST_IMAGE, waitUntil } from '../harness/index.js';
import { requireEspKernel } from './guest.js';

const id = newRunId();
const SUBNET = '10.95.0.0/24';
/** The underlay's 1500 − 50 of VXLAN − 37 of ESP. */
const ENCRYPTED_MTU = 1413;
const VXLAN_PORT = 8472;
/** Upper bound per step in the emulated guest (two dockerds and two tsnets on two vCPUs), not a performance check. */
const SLOW_STEP_MS = 600_000;
const cleanup = new CleanupStack();
let hosts: [DockerHost, DockerHost];

const addressOf = async (host: DockerHost, name: string) => (await host.dockerOk(['inspect', '-f', '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}', name])).stdout.trim();
const states = async (host: DockerHost) => (await host.execInHost(['ip', 'xfrm', 'state', 'list'])).stdout.split('\n').filter((l) => l.startsWith('src ')).length;

describe('an encrypted overlay across two routed Docker hosts (guest kernel)', { timeout: SLOW_STEP_MS }, () => {
  beforeAll(async () => {
    requireEspKernel();
    const cluster = await createClusterHosts({ id, net: '10.250.19', hostIds: ['ena', 'enb'], wire: 'wire', routed: true, tsnetArgs: ['--vxlan-port', String(VXLAN_PORT)] }, cleanup);
    hosts = cluster.hosts as [DockerHost, DockerHost];
    for (const host of hosts) {
      await host.dockerOk(['network', 'create', '-d', host.driver, '-o', 'tsnet.mode=overlay', '-o', 'tsnet.encrypt=on', '--ipam-driver', host.driver, '--ipam-opt', 'tsnet.pool=enc', '--subnet', SUBNET, 'enc'], { timeoutMs: 120_000 });
    }
  }, SLOW_STEP_MS);
  afterAll(() => cleanup.run(), SLOW_STEP_MS);

  it('lets containers on the two hosts ping each other at the encrypted MTU, and tsnet ls says the segment is encrypted', async () => {
    const [a, b] = hosts;
    for (const [host, name] of [[a, 'a1'], [b, 'b1']] as const) await host.dockerOk(['run', '-d', '--pull=never', '--name', name, '--network', 'enc', TEST_IMAGE, 'sleep', '3600'], { timeoutMs: 120_000 });
    const onB = await addressOf(b, 'b1');
    await waitUntil(async () => (await a.docker(['exec', 'a1', 'ping', '-c', '1', '-W', '1', onB])).exitCode === 0, { timeoutMs: 30_000, what: 'a1 to reach b1 across the hosts', diagnostics: () => a.tsnet.logTail(20) + b.tsnet.logTail(20) });
    expect((await b.docker(['exec', 'b1', 'ping', '-c', '1', '-W', '2', await addressOf(a, 'a1')])).exitCode).toBe(0);
    expect((await a.dockerOk(['exec', 'a1', 'cat', '/sys/class/net/eth0/mtu'])).stdout.trim()).toBe(String(ENCRYPTED_MTU));
    expect((await a.docker(['exec', 'a1', 'ping', '-c', '1', '-W', '2', '-s', String(ENCRYPTED_MTU - 28), onB])).exitCode).toBe(0);
    expect((await a.tsnet.runCli(['ls'])).stdout).toMatch(/enc +\w{12} +overlay \(VNI \d+, encrypted\)/);
    expect([await states(a), await states(b)]).toEqual([2, 2]);
    for (const host of hosts) expect((await host.execInHost(['ip', 'xfrm', 'policy', 'list'])).stdout.match(new RegExp(`proto udp dport ${VXLAN_PORT}`, 'g'))).toHaveLength(2);
  });

  it('rotates the key with tsnet cluster rotate-key during a steady ping that loses nothing', async () => {
    const [a, b] = hosts;
    const onB = await addressOf(b, 'b1');
    const ping = a.docker(['exec', 'a1', 'ping', '-c', '80', '-i', '0.1', onB], { timeoutMs: 120_000 });
    const rotated = await a.tsnet.runCli(['cluster', 'rotate-key', 'enc'], { timeoutMs: 120_000 });
    expect(rotated.stdout, rotated.stderr).toMatch(/^segment key rotated from generation 1 to 2 on 2 host\(s\): ena, enb$/m);
    const { stdout } = await ping;
    expect(stdout).toMatch(/80 packets transmitted, 80 packets received, 0% packet loss/);
    const doctor = await b.tsnet.runCli(['doctor']);
    expect(doctor.exitCode, doctor.stdout + doctor.stderr).toBe(0);
    // A network of no encryption is refused by name.
    await a.dockerOk(['network', 'create', '-d', a.driver, 'plainbr']);
    const refused = await a.tsnet.runCli(['cluster', 'rotate-key', 'plainbr']);
    expect(refused.exitCode).not.toBe(0);
    expect(refused.stderr).toContain('network: plainbr is no encrypted overlay network of this host');
    await a.dockerOk(['network', 'rm', 'plainbr']);
  });

  it('puts back an ip xfrm state flush by itself at once (the drift watcher follows the IPsec tables), and the containers talk again', async () => {
    const [a, b] = hosts;
    await a.execInHost(['ip', 'xfrm', 'state', 'flush']);
    // Well within the watcher's periodic look (2 min): the flush's own event asked for the repair.
    await waitUntil(async () => (await states(a)) === 2, { timeoutMs: 30_000, what: "host A's SAs to come back", diagnostics: () => a.tsnet.logTail(20) });
    // The daemon's log is written asynchronously: the repair's line may come a moment after the SAs.
    await waitUntil(() => /repaired: missing xfrm-state/.test(a.tsnet.logTail(60)), { timeoutMs: 10_000, what: 'the repair to be logged', diagnostics: () => a.tsnet.logTail(20) });
    expect((await a.docker(['exec', 'a1', 'ping', '-c', '1', '-W', '2', await addressOf(b, 'b1')])).exitCode).toBe(0);
  });

  it('takes the SAs away with docker network rm', async () => {
    for (const [host, name] of [[hosts[0], 'a1'], [hosts[1], 'b1']] as const) {
      await host.dockerOk(['rm', '-f', name]);
      await host.dockerOk(['network', 'rm', 'enc']);
      expect(await states(host)).toBe(0);
    }
  });
});
