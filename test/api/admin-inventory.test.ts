/**
 * `tsnet ls` and `tsnet inspect` as the admin API answers them: networks
 * made through the plugin API (tsnet's IPAM, a gateway, an aux address, a
 * container with published ports), Docker's names where they are known.
 */
import { pino } from 'pino';
import supertest from 'supertest';
import { beforeAll, describe, expect, it } from 'vitest';
import type { DockerNames } from '../../src/admin/docker-names.js';
import { Inventory, type NetworkSummary } from '../../src/admin/inventory.js';
import { createAdminApp } from '../../src/admin/server.js';
import { EP_1, EP_2, NET_A, NET_B, pluginFixture } from './plugin-fixture.js';

const names: DockerNames = {
  // Network B's name is also the start of endpoint 2's ID: `inspect 2222` is ambiguous.
  networkName: (id) => ({ [NET_A]: 'web', [NET_B]: '2222' })[id],
  containerOfEndpoint: (id) => (id === EP_1 ? 'shop' : undefined),
};

let admin: supertest.Agent;

describe('admin API: networks and inspect', () => {
  beforeAll(async () => {
    const { plugin, post } = await pluginFixture();
    const ok = async (method: string, body: unknown) => {
      const r = await post(method, body);
      expect(r.status, JSON.stringify(r.body)).toBe(200);
      return r.body as Record<string, string>;
    };
    const { PoolID } = await ok('IpamDriver.RequestPool', { AddressSpace: 'tsnet-local', Pool: '10.162.0.0/24', SubPool: '10.162.0.128/25', Options: {}, V6: false });
    await ok('IpamDriver.RequestAddress', { PoolID, Address: '', Options: { RequestAddressType: 'com.docker.network.gateway' } });
    await ok('IpamDriver.RequestAddress', { PoolID, Address: '10.162.0.2', Options: {} });
    const { Address } = await ok('IpamDriver.RequestAddress', { PoolID, Address: '', Options: {} });
    await ok('NetworkDriver.CreateNetwork', {
      NetworkID: NET_A,
      Options: { 'com.docker.network.enable_ipv6': false, 'com.docker.network.generic': { 'com.docker.network.bridge.enable_icc': 'false' } },
      IPv4Data: [{ AddressSpace: 'tsnet-local', Pool: '10.162.0.0/24', Gateway: '10.162.0.1/24', AuxAddresses: { router: '10.162.0.2/24' } }],
      IPv6Data: [],
    });
    await ok('NetworkDriver.CreateEndpoint', {
      NetworkID: NET_A,
      EndpointID: EP_1,
      Interface: { Address, AddressIPv6: '', MacAddress: '' },
      Options: { 'com.docker.network.portmap': [{ Proto: 6, IP: '', Port: 80, HostIP: '', HostPort: 18090, HostPortEnd: 18090 }] },
    });
    await ok('NetworkDriver.Join', { NetworkID: NET_A, EndpointID: EP_1, SandboxKey: '/var/run/docker/netns/0123456789ab', Options: null });
    await ok('NetworkDriver.ProgramExternalConnectivity', { NetworkID: NET_A, EndpointID: EP_1, Options: {} });
    await ok('NetworkDriver.CreateNetwork', {
      NetworkID: NET_B,
      Options: { 'com.docker.network.enable_ipv6': false, 'com.docker.network.generic': {} },
      IPv4Data: [{ AddressSpace: 'LocalDefault', Pool: '10.163.0.0/24', Gateway: '10.163.0.1/24' }],
      IPv6Data: [],
    });
    await ok('NetworkDriver.CreateEndpoint', { NetworkID: NET_B, EndpointID: EP_2, Interface: { Address: '10.163.0.2/24', AddressIPv6: '', MacAddress: '' }, Options: {} });
    const inventory = new Inventory(plugin.networks, plugin.ipam, names);
    admin = supertest.agent(createAdminApp({ networks: plugin.networks, inFlight: plugin.inFlight, inventory, dns: { listeners: () => [] }, reconciler: plugin.reconciler }, pino({ level: 'silent' })));
  });

  it('lists every network with its name when known, subnets, gateway, bridge and endpoint count', async () => {
    const networks = (await admin.get('/networks').expect(200)).body as NetworkSummary[];
    expect(networks).toEqual([
      { id: NET_A, name: 'web', kind: 'bridge', subnets: ['10.162.0.0/24'], gateways: ['10.162.0.1'], link: 'tsbr-aaaaaaaaaa', internal: false, endpoints: 1 },
      { id: NET_B, name: '2222', kind: 'bridge', subnets: ['10.163.0.0/24'], gateways: ['10.163.0.1'], link: 'tsbr-bbbbbbbbbb', internal: false, endpoints: 1 },
    ]);
  });

  it('inspects a network by Docker name or ID prefix: options, endpoints, IPAM holds', async () => {
    const byName = (await admin.get('/inspect').query({ q: 'web' }).expect(200)).body;
    expect((await admin.get('/inspect').query({ q: NET_A.slice(0, 6) }).expect(200)).body).toEqual(byName);
    expect(byName.type).toBe('network');
    expect(byName.network.options).toEqual({ 'com.docker.network.bridge.enable_icc': 'false' });
    expect(byName.network.config.icc).toBe(false);
    expect(byName.network.endpointList.map((e: { id: string; container: string }) => [e.id, e.container])).toEqual([[EP_1, 'shop']]);
    expect(byName.network.pools).toEqual([
      {
        id: expect.any(String),
        pool: '10.162.0.0/24',
        range: '10.162.0.128/25',
        size: '128',
        held: [
          { address: '10.162.0.1', use: 'gateway' },
          { address: '10.162.0.2', use: 'aux address router' },
          { address: '10.162.0.128', use: `endpoint ${EP_1.slice(0, 12)} (shop)` },
        ],
      },
    ]);
  });

  it('inspects an endpoint by ID prefix or address: addresses, MAC, links, published ports, sandbox', async () => {
    const byAddress = (await admin.get('/inspect').query({ q: '10.162.0.128' }).expect(200)).body;
    expect((await admin.get('/inspect').query({ q: EP_1.slice(0, 8) }).expect(200)).body).toEqual(byAddress);
    expect(byAddress).toEqual({
      type: 'endpoint',
      endpoint: {
        id: EP_1,
        network: NET_A,
        networkName: 'web',
        container: 'shop',
        addresses: ['10.162.0.128/24'],
        mac: '02:42:0a:a2:00:80',
        links: { host: `tsv${EP_1.slice(0, 12)}`, container: `tsc${EP_1.slice(0, 12)}` },
        ports: ['18090:80/tcp'],
        sandbox: '/var/run/docker/netns/0123456789ab',
      },
    });
  });

  it('says what a gateway or aux address is for', async () => {
    expect((await admin.get('/inspect').query({ q: '10.162.0.2' }).expect(200)).body).toEqual({
      type: 'address',
      address: { address: '10.162.0.2', use: 'aux address router', network: NET_A, networkName: 'web', pool: '10.162.0.0/24' },
    });
    // Docker's IPAM: no pool of tsnet's, the network still knows its gateway.
    expect((await admin.get('/inspect').query({ q: '10.163.0.1' }).expect(200)).body).toEqual({
      type: 'address',
      address: { address: '10.163.0.1', use: 'gateway', network: NET_B, networkName: '2222' },
    });
  });

  it.each([
    ['nothing', '', 'query: name a network, an endpoint or an address'],
    ['an unknown name', 'nope', 'query: no tsnet network or endpoint is named "nope"'],
    ['an address nobody holds', '10.99.0.1', 'query: no tsnet network, endpoint or IPAM pool holds the address 10.99.0.1'],
    ['a name that is also an endpoint ID prefix', '2222', `query: "2222" is ambiguous: network ${NET_B.slice(0, 12)}, endpoint ${EP_2.slice(0, 12)}`],
  ])('refuses %s with one line naming the query', async (_what, query, message) => {
    const r = await admin.get('/inspect').query({ q: query }).expect(400);
    expect(r.body).toEqual({ Err: message });
  });

  it('answers a request it does not know in JSON, so an older daemon gives the CLI a readable line', async () => {
    expect((await admin.get('/no-such-thing').expect(404)).body).toEqual({ Err: 'the daemon knows no GET /no-such-thing (a tsnet daemon of another version?)' });
  });
});
