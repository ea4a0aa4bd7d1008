// Start-up reconciliation of rules, on both backends and a real kernel: a
// network whose record was lost (a crash between its kernel work and its
// commit) leaves its chains (iptables) or set elements and ports (nftables);
// the next start removes them and nothing else: the live network keeps
// every rule (doctor finds nothing), and a user's chains that merely look
// like tsnet's stay.
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { del } from '../../src/store/store.js';
import type { FirewallKind } from '../../src/sys/index.js';
import { createNetns, deleteNetns, execInNetns, execInNetnsOk } from '../harness/index.js';
import { NetnsPlugin } from './netns-plugin.js';

const LIVE = 'a7'.repeat(32);
const GHOST = 'b7'.repeat(32);
const USER_CHAINS = ['TSNET-FWD-mine', `TSNET-FWD-${'c7'.repeat(6)}`, 'TSNET-custom'];

const network = (id: string, subnet: string) => ({
  NetworkID: id,
  Options: { 'com.docker.network.generic': {} },
  IPv4Data: [{ AddressSpace: 'x', Pool: `${subnet}.0/24`, Gateway: `${subnet}.1/24` }],
  IPv6Data: [],
});
const endpoint = (networkId: string, id: string, address: string, hostPort: number) => ({
  NetworkID: networkId,
  EndpointID: id,
  Interface: { Address: address, AddressIPv6: '', MacAddress: '' },
  Options: { 'com.docker.network.portmap': [{ Proto: 6, IP: '', Port: 80, HostIP: '', HostPort: hostPort, HostPortEnd: hostPort }] },
});

describe.each(['iptables', 'nftables'] as FirewallKind[])('start-up removes the rules of networks without a record (%s)', (firewall) => {
  const netns = `tslr${randomBytes(3).toString('hex')}`;
  let tsnet: NetnsPlugin | undefined;
  afterEach(async () => {
    await tsnet?.close();
    await deleteNetns(netns);
  });

  /** Every rule (iptables) and set or map element (nftables) that names the network (its tag or bridge). */
  async function rulesOf(networkId: string): Promise<string[]> {
    const tag = networkId.slice(0, 10);
    const lines = [...(await execInNetnsOk(netns, ['iptables-save'])).stdout.split('\n')];
    const table = await execInNetns(netns, ['nft', '-j', 'list', 'table', 'inet', 'tsnet']);
    if (table.exitCode === 0) {
      for (const entry of (JSON.parse(table.stdout) as { nftables: Array<Record<string, { name?: string; elem?: unknown[] }>> }).nftables) {
        const container = entry.set ?? entry.map;
        for (const element of container?.elem ?? []) lines.push(`${container!.name} ${JSON.stringify(element)}`);
      }
    }
    return lines.filter((l) => l.includes(tag));
  }

  it('and nothing else', async () => {
    await createNetns(netns);
    tsnet = await new NetnsPlugin(netns, firewall).start();
    const ok = async (method: string, body: unknown) => expect((await tsnet!.post(method, body)).body).not.toHaveProperty('Err');
    for (const [id, subnet, ep, port] of [[LIVE, '10.217.0', 'e7', 18471], [GHOST, '10.217.1', 'f7', 18472]] as const) {
      await ok('NetworkDriver.CreateNetwork', network(id, subnet));
      await ok('NetworkDriver.CreateEndpoint', endpoint(id, ep.repeat(32), `${subnet}.2/24`, port));
      await ok('NetworkDriver.ProgramExternalConnectivity', { NetworkID: id, EndpointID: ep.repeat(32), Options: {} });
    }
    for (const chain of USER_CHAINS) await execInNetnsOk(netns, ['iptables', '-N', chain]);
    const liveRules = await rulesOf(LIVE);
    expect(liveRules.length).toBeGreaterThan(3);
    expect((await rulesOf(GHOST)).length).toBeGreaterThan(3);

    // The crash: the ghost's kernel work is done, its records never made it.
    await tsnet.store.commit([del('endpoints', 'f7'.repeat(32)), del('networks', GHOST)]);
    await tsnet.restart();

    expect(await rulesOf(GHOST)).toEqual([]);
    expect((await rulesOf(LIVE)).sort()).toEqual(liveRules.sort());
    expect(await tsnet.plugin.reconciler.check()).toEqual([]);
    const chains = (await execInNetnsOk(netns, ['iptables-save', '-t', 'filter'])).stdout;
    for (const chain of USER_CHAINS) expect(chains).toContain(`:${chain} `);
  });
});
