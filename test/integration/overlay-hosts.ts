/**
 * Overlay hosts for the plugin-API tests (overlay-network.test.ts and the
 * guest's encrypted overlay): each a plugin programming its own routed netns
 * (routed-hosts.ts), wired as the daemon wires it for --cluster-store
 * (shared pools, membership with its underlay, segments, the gate, the
 * IPsec tables), and "containers" made as dockerd makes them of endpoints.
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { expect } from 'vitest';
import { EtcdClient } from '../../src/cluster/etcd-client.js';
import { HostRegistry } from '../../src/cluster/host-registry.js';
import { HostMembership } from '../../src/cluster/membership.js';
import { SharedPoolService } from '../../src/cluster/shared-pool-service.js';
import { Metrics } from '../../src/metrics/metrics.js';
import { HostCiphers } from '../../src/overlay/ciphers.js';
import { ClusterSegments } from '../../src/overlay/segments.js';
import { OverlayGate } from '../../src/sys/overlay-gate.js';
import { Xfrm } from '../../src/sys/xfrm.js';
import { type CleanupStack, createNetns, deleteNetns, ipIn, netnsPath, nodeInNetns, type RoutedHost, udpEchoServer } from '../harness/index.js';
import { NetnsPlugin, NetnsRunner } from './netns-plugin.js';

export interface OverlayHost {
  id: string;
  routed: RoutedHost;
  tsnet: NetnsPlugin;
  segments: ClusterSegments;
  gate: OverlayGate;
  ciphers: HostCiphers;
  network: string;
  /** As --metrics serves them: the segments report their peer writes and rekeys here. */
  metrics: Metrics;
}

export class OverlayHosts {
  constructor(
    private readonly etcdEndpoint: string,
    private readonly subnet: string,
    private readonly cleanup: CleanupStack,
    private readonly log: Logger,
  ) {}

  /** The same hosts on another subnet: a second segment. */
  onSubnet(subnet: string): OverlayHosts {
    return new OverlayHosts(this.etcdEndpoint, subnet, this.cleanup, this.log);
  }

  /** One host, its plugin programming `routed.netns`, alive in the store when this resolves. */
  async host(hostId: string, routed: RoutedHost): Promise<OverlayHost> {
    const { cleanup, log } = this;
    const client = new EtcdClient({ endpoints: [this.etcdEndpoint] });
    cleanup.defer(`close ${hostId}'s etcd client`, () => client.close());
    const underlay = async () => ({ address: routed.underlay, port: 4789 });
    let pools: SharedPoolService | undefined;
    let membership: HostMembership | undefined;
    const localPools = () => (pools?.localPools() ?? []).map(({ record }) => ({ name: record.name, subnet: record.pool }));
    const registry = new HostRegistry(client, log);
    const metrics = new Metrics();
    const runner = new NetnsRunner(routed.netns);
    const gate = new OverlayGate(runner);
    const ciphers = new HostCiphers(new Xfrm(runner));
    metrics.watchOverlayGate(gate, ciphers);
    const segments = new ClusterSegments(client, hostId, localPools, registry, underlay, gate, log, ciphers, false, { observe: metrics.observePeerWrite, rekeyed: metrics.observeRekey });
    const tsnet: NetnsPlugin = new NetnsPlugin(routed.netns, undefined, 300, {
      sharedPools: async (subnetInUse): Promise<SharedPoolService> => {
        membership = new HostMembership(client, hostId, tsnet.store, log, () => pools?.drainSoon(), 10, underlay);
        await membership.load();
        pools = new SharedPoolService(tsnet.store, client, membership, subnetInUse, log);
        await pools.load();
        return pools;
      },
      segments: () => segments,
    });
    await tsnet.start();
    await membership!.ensureAlive(Date.now() + 4000);
    cleanup.defer(`stop ${hostId}`, async () => {
      segments.stop();
      registry.stop();
      pools?.stop();
      await membership?.stop();
      await tsnet.close();
    });
    return { id: hostId, routed, tsnet, segments, gate, ciphers, network: randomBytes(32).toString('hex'), metrics };
  }

  async ok(h: OverlayHost, method: string, body: unknown): Promise<Record<string, unknown>> {
    const r = await h.tsnet.post(method, body);
    expect(r.status, `${method}: ${JSON.stringify(r.body)}`).toBe(200);
    return r.body as Record<string, unknown>;
  }

  /** The shared pool `name` on the host, with its gateway: what dockerd asks of the IPAM before CreateNetwork. */
  async pool(h: OverlayHost, name: string): Promise<string> {
    const { PoolID } = await this.ok(h, 'IpamDriver.RequestPool', { AddressSpace: 'tsnet-local', Pool: this.subnet, SubPool: '', Options: { 'tsnet.pool': name }, V6: false });
    await this.ok(h, 'IpamDriver.RequestAddress', { PoolID, Address: '', Options: { RequestAddressType: 'com.docker.network.gateway' } });
    return PoolID as string;
  }

  /** CreateNetwork of the host's network (or `networkId`, a second one) on this harness's subnet. */
  createNetwork(h: OverlayHost, generic: Record<string, string>, gateway: string, networkId = h.network) {
    return h.tsnet.post('NetworkDriver.CreateNetwork', {
      NetworkID: networkId,
      Options: { 'com.docker.network.enable_ipv6': false, 'com.docker.network.generic': generic },
      IPv4Data: [{ AddressSpace: 'tsnet-local', Pool: this.subnet, Gateway: gateway }],
      IPv6Data: [],
    });
  }

  /** What dockerd does for `docker run --network`: an address, the endpoint, its veth end moved into a new netns with a UDP echo on 7007. Resolves with the address. */
  async runContainer(h: OverlayHost, poolId: string, name: string, networkId = h.network): Promise<string> {
    const { Address } = await this.ok(h, 'IpamDriver.RequestAddress', { PoolID: poolId, Address: '', Options: {} });
    const endpoint = randomBytes(32).toString('hex');
    await this.ok(h, 'NetworkDriver.CreateEndpoint', { NetworkID: networkId, EndpointID: endpoint, Interface: { Address, AddressIPv6: '', MacAddress: '' }, Options: {} });
    const join = await this.ok(h, 'NetworkDriver.Join', { NetworkID: networkId, EndpointID: endpoint, SandboxKey: netnsPath(name), Options: null });
    await createNetns(name);
    this.cleanup.defer(`delete netns ${name}`, () => deleteNetns(name));
    const srcName = (join.InterfaceName as { SrcName: string }).SrcName;
    await ipIn(h.routed.netns, ['link', 'set', srcName, 'netns', name]);
    await ipIn(name, ['link', 'set', srcName, 'name', 'eth0']);
    await ipIn(name, ['link', 'set', 'eth0', 'address', `02:42:${(Address as string).split('/')[0]!.split('.').map((b) => Number(b).toString(16).padStart(2, '0')).join(':')}`]);
    await ipIn(name, ['address', 'add', Address as string, 'dev', 'eth0']);
    await ipIn(name, ['link', 'set', 'eth0', 'up']);
    await ipIn(name, ['route', 'add', 'default', 'via', join.Gateway as string]);
    await nodeInNetns(netnsPath(name), udpEchoServer(7007), this.cleanup);
    return (Address as string).split('/')[0]!;
  }
}
