import { beforeEach, describe, expect, it } from 'vitest';
import { EP_1, NET_A, pluginFixture } from './plugin-fixture.js';

type Fixture = Awaited<ReturnType<typeof pluginFixture>>;

/** The CreateNetwork body dockerd 20.10.24 sent for --subnet/--gateway/--ip-range/--aux-address (reference §2.2). */
const createNetworkBody = {
  NetworkID: NET_A,
  Options: { 'com.docker.network.enable_ipv6': false, 'com.docker.network.generic': { 'com.docker.network.driver.mtu': '1400' } },
  IPv4Data: [{ AddressSpace: 'LocalDefault', AuxAddresses: { host: '10.123.0.2/24' }, Gateway: '10.123.0.254/24', Pool: '10.123.0.0/24' }],
  IPv6Data: [],
};

/** The CreateEndpoint body dockerd sent for --ip 10.123.0.150 -p 18080:80 -p 127.0.0.1:18081-18082:81/udp (reference §2.5). */
const createEndpointBody = {
  NetworkID: NET_A,
  EndpointID: EP_1,
  Interface: { Address: '10.123.0.150/24', AddressIPv6: '', MacAddress: '' },
  Options: {
    'com.docker.network.endpoint.dnsservers': ['9.9.9.9'],
    'com.docker.network.endpoint.exposedports': [{ Proto: 6, Port: 90 }, { Proto: 17, Port: 81 }, { Proto: 6, Port: 80 }],
    'com.docker.network.portmap': [
      { Proto: 17, IP: '', Port: 81, HostIP: '127.0.0.1', HostPort: 18081, HostPortEnd: 18082 },
      { Proto: 6, IP: '', Port: 80, HostIP: '', HostPort: 18080, HostPortEnd: 18080 },
    ],
  },
};

describe('plugin protocol with the bodies dockerd sends', () => {
  let f: Fixture;
  beforeEach(async () => {
    f = await pluginFixture();
  });

  it('answers the handshake with both subsystems and local scope, from empty bodies', async () => {
    expect((await f.post('Plugin.Activate')).body).toEqual({ Implements: ['NetworkDriver', 'IpamDriver'] });
    expect((await f.post('NetworkDriver.GetCapabilities')).body).toEqual({ Scope: 'local', ConnectivityScope: 'local' });
    expect((await f.post('IpamDriver.GetCapabilities')).body).toEqual({ RequiresMACAddress: false, RequiresRequestReplay: false });
    expect((await f.post('IpamDriver.GetDefaultAddressSpaces')).body).toEqual({
      LocalDefaultAddressSpace: 'tsnet-local',
      GlobalDefaultAddressSpace: 'tsnet-global',
    });
  });

  it('creates a network, an endpoint and joins it', async () => {
    expect((await f.post('NetworkDriver.CreateNetwork', createNetworkBody)).status).toBe(200);
    const created = await f.post('NetworkDriver.CreateEndpoint', createEndpointBody);
    // dockerd gave no MAC, so tsnet supplies one (Docker's 02:42:<ip>) and nothing else.
    expect(created.body).toEqual({ Interface: { MacAddress: '02:42:0a:7b:00:96' } });
    const join = await f.post('NetworkDriver.Join', { NetworkID: NET_A, EndpointID: EP_1, SandboxKey: '/var/run/docker/netns/37443de31ef9', Options: null });
    expect(join.body).toEqual({ InterfaceName: { SrcName: `tsc${EP_1.slice(0, 12)}`, DstPrefix: 'eth' }, Gateway: '10.123.0.254' });
    expect((await f.post('NetworkDriver.EndpointOperInfo', { NetworkID: NET_A, EndpointID: EP_1 })).body).toEqual({ Value: {} });
    expect(f.runner.lines()).toContain(
      `ip -batch -\nlink add tsv${EP_1.slice(0, 12)} mtu 1400 master tsbr-aaaaaaaaaa up type veth peer name tsc${EP_1.slice(0, 12)} mtu 1400\nlink set dev tsv${EP_1.slice(0, 12)} type bridge_slave hairpin on`,
    );
    const endpoint = f.plugin.networks.listEndpoints()[0]!;
    expect(endpoint.portBindings).toEqual([
      { proto: 'udp', hostIp: '127.0.0.1', hostPort: 18081, hostPortEnd: 18082, port: 81 },
      { proto: 'tcp', hostIp: '', hostPort: 18080, hostPortEnd: 18080, port: 80 },
    ]);
  });

  it('never echoes a MAC that dockerd already set', async () => {
    await f.post('NetworkDriver.CreateNetwork', createNetworkBody);
    const body = { ...createEndpointBody, Interface: { ...createEndpointBody.Interface, MacAddress: '02:11:22:33:44:55' } };
    expect((await f.post('NetworkDriver.CreateEndpoint', body)).body).toEqual({});
  });

  it('returns no gateway for internal networks and disables docker_gwbridge', async () => {
    await f.post('NetworkDriver.CreateNetwork', { ...createNetworkBody, Options: { ...createNetworkBody.Options, 'com.docker.network.internal': true } });
    await f.post('NetworkDriver.CreateEndpoint', createEndpointBody);
    const join = await f.post('NetworkDriver.Join', { NetworkID: NET_A, EndpointID: EP_1, SandboxKey: '', Options: {} });
    expect(join.body).toEqual({ InterfaceName: { SrcName: `tsc${EP_1.slice(0, 12)}`, DstPrefix: 'eth' }, DisableGatewayService: true });
  });

  it('accepts per-endpoint options of any shape: tsnet reads only the port map', async () => {
    await f.post('NetworkDriver.CreateNetwork', createNetworkBody);
    const options = { 'com.docker.network.endpoint.exposedports': [{ Proto: 6, Port: 80 }], dk: 5, nested: { a: ['b'] } };
    const res = await f.post('NetworkDriver.CreateEndpoint', { ...createEndpointBody, Options: options });
    expect(res.status).toBe(200);
    expect(f.plugin.networks.listEndpoints()[0]).not.toHaveProperty('driverOptions');
  });

  it('accepts null for every map and list dockerd may leave empty', async () => {
    const res = await f.post('NetworkDriver.CreateNetwork', { ...createNetworkBody, Options: null, IPv6Data: null });
    expect(res.status).toBe(200);
    expect((await f.post('NetworkDriver.CreateEndpoint', { ...createEndpointBody, Options: null })).status).toBe(200);
    expect((await f.post('IpamDriver.RequestPool', { AddressSpace: 'tsnet-local', Pool: '10.9.0.0/24', SubPool: '', Options: null, V6: false })).status).toBe(200);
  });

  it('answers deletes, leaves and releases of unknown IDs with {}', async () => {
    const ids = { NetworkID: NET_A, EndpointID: EP_1 };
    for (const [method, body] of [
      ['NetworkDriver.DeleteNetwork', { NetworkID: NET_A }],
      ['NetworkDriver.DeleteEndpoint', ids],
      ['NetworkDriver.Leave', ids],
      ['NetworkDriver.RevokeExternalConnectivity', ids],
      ['IpamDriver.ReleasePool', { PoolID: 'tsnet-local/10.0.0.0/24' }],
      ['IpamDriver.ReleaseAddress', { PoolID: 'tsnet-local/10.0.0.0/24', Address: '10.0.0.5' }],
    ] as const) {
      const res = await f.post(method, body);
      expect([method, res.status, res.body]).toEqual([method, 200, {}]);
    }
  });

  it('keeps the swarm-only calls harmless', async () => {
    expect((await f.post('NetworkDriver.AllocateNetwork', { NetworkID: NET_A, Options: {}, IPv4Data: [] })).body).toEqual({ Options: {} });
    expect((await f.post('NetworkDriver.FreeNetwork', { NetworkID: NET_A })).body).toEqual({});
    expect((await f.post('NetworkDriver.DiscoverNew', { DiscoveryType: 1, DiscoveryData: { Self: true } })).body).toEqual({});
  });

  it('serves the IPAM flow of network create: pool, gateway, aux, then container addresses', async () => {
    const pool = await f.post('IpamDriver.RequestPool', { AddressSpace: 'tsnet-local', Pool: '10.124.0.0/24', SubPool: '10.124.0.64/26', Options: { po: '1' }, V6: false });
    expect(pool.body).toEqual({ PoolID: 'tsnet-local/10.124.0.0/24/10.124.0.64/26', Pool: '10.124.0.0/24', Data: {} });
    const PoolID = pool.body.PoolID as string;
    const gateway = await f.post('IpamDriver.RequestAddress', { PoolID, Address: '', Options: { RequestAddressType: 'com.docker.network.gateway' } });
    expect(gateway.body).toEqual({ Address: '10.124.0.1/24', Data: {} });
    expect((await f.post('IpamDriver.RequestAddress', { PoolID, Address: '10.124.0.2', Options: null })).body.Address).toBe('10.124.0.2/24');
    expect((await f.post('IpamDriver.RequestAddress', { PoolID, Address: '', Options: null })).body.Address).toBe('10.124.0.64/24');
  });

  it('answers an unknown method with 404 in protocol form', async () => {
    const res = await f.post('NetworkDriver.Frobnicate', {});
    expect(res.status).toBe(404);
    expect(res.body.Err).toMatch(/unknown method/);
  });
});
