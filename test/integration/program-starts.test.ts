/**
 * What a plugin request costs in programs started, on a real daemon in its
 * own netns, counted by its own metric (tsnet_program_starts_total): a
 * program start (fork + exec of a 100 MB process, then the program's own
 * start-up) is most of what a request costs on a busy 2-core host. Link
 * writes go through the long-lived ip session, nft transactions through the
 * nft session and sysctls through /proc/sys, so a create, an attach with
 * ports and a delete start only iptables' programs, and an attach without
 * ports none. The drift watcher
 * is off here: its periodic look would start programs at any moment.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createNetns, deleteNetns, execInNetns, httpPostUnix, newRunId, run, runDir, startTsnet, type TsnetDaemon } from '../harness/index.js';

/**
 * Programs a network create or delete, and an attach publishing ports,
 * start: none on nftables (its transactions go through the long-lived
 * `nft -i` session); on iptables a save and a restore per network (the
 * hooks' place in FORWARD depends on what Docker and others put there
 * since) and a restore per attach with ports.
 */
const BACKENDS = [
  { firewall: 'nftables', perNetwork: 0, perPortsAttach: 0 },
  { firewall: 'iptables', perNetwork: 2, perPortsAttach: 1 },
] as const;

describe.each(BACKENDS)('program starts per plugin request ($firewall)', ({ firewall, perNetwork, perPortsAttach }) => {
  const id = newRunId();
  const netns = `${id}s`;
  const dir = runDir(id);
  let tsnet: TsnetDaemon;
  const networkId = (n: number) => `${n.toString(16).padStart(2, '0')}${'c7'.repeat(31)}`;
  const endpointId = (n: number) => `${n.toString(16).padStart(2, '0')}${'e8'.repeat(31)}`;

  const post = async (method: string, body: unknown) => {
    const res = await httpPostUnix(tsnet.socketPath, `/${method}`, JSON.stringify(body));
    expect(res.status, `${method}: ${res.body}\n${tsnet.logTail()}`).toBe(200);
  };

  /** Every program the daemon started so far, whatever it was. */
  async function programStarts(): Promise<number> {
    const r = await execInNetns(netns, ['timeout', '5', 'busybox', 'wget', '-qO-', 'http://127.0.0.1:9467/metrics']);
    expect(r.exitCode, r.stderr).toBe(0);
    return r.stdout
      .split('\n')
      .filter((line) => line.startsWith('tsnet_program_starts_total{'))
      .reduce((sum, line) => sum + Number(line.slice(line.lastIndexOf(' ') + 1)), 0);
  }

  /** The programs `step` started. */
  async function startsOf(step: () => Promise<unknown>): Promise<number> {
    const before = await programStarts();
    await step();
    return (await programStarts()) - before;
  }

  const createNetwork = (n: number) =>
    post('NetworkDriver.CreateNetwork', {
      NetworkID: networkId(n),
      Options: { 'com.docker.network.generic': {} },
      IPv4Data: [{ AddressSpace: 'tsnet-local', Pool: `10.171.${n}.0/24`, Gateway: `10.171.${n}.1/24` }],
      IPv6Data: [],
    });

  async function attach(n: number, e: number, hostPorts: number[]): Promise<void> {
    const portmap = hostPorts.map((hostPort) => ({ Proto: 6, IP: '', Port: 80, HostIP: '', HostPort: hostPort, HostPortEnd: hostPort }));
    await post('NetworkDriver.CreateEndpoint', { NetworkID: networkId(n), EndpointID: endpointId(e), Interface: { Address: `10.171.${n}.${10 + e}/24`, AddressIPv6: '', MacAddress: '' }, Options: { 'com.docker.network.portmap': portmap } });
    await post('NetworkDriver.Join', { NetworkID: networkId(n), EndpointID: endpointId(e), SandboxKey: '', Options: {} });
    await post('NetworkDriver.ProgramExternalConnectivity', { NetworkID: networkId(n), EndpointID: endpointId(e), Options: {} });
  }

  beforeAll(async () => {
    await createNetns(netns);
    await execInNetns(netns, ['ip', 'link', 'set', 'lo', 'up']);
    tsnet = await startTsnet({ netns, pluginDir: join(dir, 'plugins'), stateDir: join(dir, 'state'), logFile: join(dir, 'tsnet.log'), driver: `tsq${id}`, extraArgs: ['--metrics', '127.0.0.1:9467', '--firewall', firewall, '--no-drift-watch'] });
    // The first network sets the backend up (its table or chains, the gate): a one-time cost.
    await createNetwork(1);
    await attach(1, 1, [18470]);
  });
  afterAll(async () => {
    await tsnet?.stop();
    await deleteNetns(netns);
    await run('rm', ['-rf', dir]);
  });

  it("an attach publishing ports starts only the firewall's program, one without ports none", async () => {
    expect(await startsOf(() => attach(1, 2, [18471, 18472, 18473]))).toBeLessThanOrEqual(perPortsAttach);
    expect(await startsOf(() => attach(1, 3, []))).toBe(0);
    // And the bridge and its endpoints are really there.
    const links = (await execInNetns(netns, ['ip', '-br', 'link', 'show', 'master', `tsbr-${networkId(1).slice(0, 10)}`])).stdout;
    expect(links.trim().split('\n')).toHaveLength(3);
  });

  it("a network create and delete start only the firewall's programs", async () => {
    expect(await startsOf(() => createNetwork(2))).toBeLessThanOrEqual(perNetwork);
    // The bridge itself goes a moment later, through the ip session (see LinkReaper): no program either.
    expect(await startsOf(() => post('NetworkDriver.DeleteNetwork', { NetworkID: networkId(2) }))).toBeLessThanOrEqual(perNetwork);
  });
});
