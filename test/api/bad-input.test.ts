import { beforeAll, describe, expect, it } from 'vitest';
import { EP_1, EP_2, NET_A, NET_B, pluginFixture, snapshot } from './plugin-fixture.js';

type Fixture = Awaited<ReturnType<typeof pluginFixture>>;

const POOL_ID = 'tsnet-local/10.1.0.0/24';
const TINY_POOL_ID = 'tsnet-local/10.2.0.0/30';

const network = (overrides: Record<string, unknown> = {}, generic: Record<string, unknown> = {}) => ({
  NetworkID: NET_B,
  Options: { 'com.docker.network.enable_ipv6': false, 'com.docker.network.generic': generic },
  IPv4Data: [{ AddressSpace: 'tsnet-local', Gateway: '10.5.0.1/24', Pool: '10.5.0.0/24' }],
  IPv6Data: [],
  ...overrides,
});

const endpoint = (iface: Record<string, unknown> = {}, options: unknown = {}, ids: Record<string, unknown> = {}) => ({
  NetworkID: NET_A,
  EndpointID: EP_2,
  Interface: { Address: '10.1.0.20/24', AddressIPv6: '', MacAddress: '', ...iface },
  Options: options,
  ...ids,
});

const portmap = (binding: Record<string, unknown>) => ({
  'com.docker.network.portmap': [{ Proto: 6, IP: '', Port: 80, HostIP: '', HostPort: 8080, HostPortEnd: 8080, ...binding }],
});

const pool = (overrides: Record<string, unknown>) => ({ AddressSpace: 'tsnet-local', Pool: '10.7.0.0/24', SubPool: '', Options: {}, V6: false, ...overrides });

/** [what, method, body, the field the error must name first] */
const CASES: Array<[string, string, unknown, string]> = [
  ['malformed JSON', 'NetworkDriver.CreateNetwork', '{"NetworkID": ', 'body: malformed JSON'],
  ['a JSON array body', 'NetworkDriver.CreateNetwork', '[1,2]', 'body: expected a JSON object'],
  ['a missing NetworkID', 'NetworkDriver.CreateNetwork', { Options: {} }, 'NetworkID: is required'],
  ['a numeric NetworkID', 'NetworkDriver.CreateNetwork', network({ NetworkID: 42 }), 'NetworkID:'],
  ['a NetworkID that is not hex', 'NetworkDriver.CreateNetwork', network({ NetworkID: 'x'.repeat(64) }), 'NetworkID: must be 64'],
  ['IPv4Data that is not a list', 'NetworkDriver.CreateNetwork', network({ IPv4Data: 'nope' }), 'IPv4Data:'],
  ['an invalid CIDR', 'NetworkDriver.CreateNetwork', network({ IPv4Data: [{ Pool: '10.5.0.0/33', Gateway: '10.5.0.1/33' }] }), 'IPv4Data.0.Pool:'],
  ['a gateway outside the pool', 'NetworkDriver.CreateNetwork', network({ IPv4Data: [{ Pool: '10.5.0.0/24', Gateway: '10.6.0.1/24' }] }), 'IPv4Data.0.Gateway:'],
  ['an aux address outside the pool', 'NetworkDriver.CreateNetwork', network({ IPv4Data: [{ Pool: '10.5.0.0/24', Gateway: '10.5.0.1/24', AuxAddresses: { r: '10.9.0.1/24' } }] }), 'IPv4Data.0.AuxAddresses.r:'],
  ['two IPv4 subnets on a bridge', 'NetworkDriver.CreateNetwork', network({ IPv4Data: [{ Pool: '10.5.0.0/24', Gateway: '10.5.0.1/24' }, { Pool: '10.6.0.0/24', Gateway: '10.6.0.1/24' }] }), 'IPv4Data: a bridge network needs exactly one'],
  ['the null IPAM on a bridge', 'NetworkDriver.CreateNetwork', network({ IPv4Data: [{ AddressSpace: 'null', Pool: '0.0.0.0/0' }] }), 'IPv4Data.0.Pool:'],
  ['a subnet overlapping another bridge network', 'NetworkDriver.CreateNetwork', network({ IPv4Data: [{ Pool: '10.1.0.0/16', Gateway: '10.1.0.1/16' }] }), 'Pool: 10.1.0.0/16 overlaps'],
  ['an IPv4 subnet in IPv6Data', 'NetworkDriver.CreateNetwork', network({ IPv6Data: [{ Pool: '10.8.0.0/24' }] }), 'IPv6Data.0.Pool:'],
  ['an MTU that is not a number', 'NetworkDriver.CreateNetwork', network({}, { 'com.docker.network.driver.mtu': 'abc' }), 'com.docker.network.driver.mtu:'],
  ['an MTU below 68', 'NetworkDriver.CreateNetwork', network({}, { 'com.docker.network.driver.mtu': '10' }), 'com.docker.network.driver.mtu:'],
  ['an MTU above 65535', 'NetworkDriver.CreateNetwork', network({}, { 'com.docker.network.driver.mtu': '70000' }), 'com.docker.network.driver.mtu:'],
  ['ICC that is not a boolean', 'NetworkDriver.CreateNetwork', network({}, { 'com.docker.network.bridge.enable_icc': 'maybe' }), 'com.docker.network.bridge.enable_icc:'],
  ['masquerade that is not a boolean', 'NetworkDriver.CreateNetwork', network({}, { 'com.docker.network.bridge.enable_ip_masquerade': 'yes' }), 'com.docker.network.bridge.enable_ip_masquerade:'],
  ['a bridge name longer than 15 bytes', 'NetworkDriver.CreateNetwork', network({}, { 'com.docker.network.bridge.name': 'a-very-long-bridge' }), 'com.docker.network.bridge.name: interface name "a-very-long-bridge" is longer than 15 bytes'],
  ['a bridge name with shell characters', 'NetworkDriver.CreateNetwork', network({}, { 'com.docker.network.bridge.name': 'br;rm -rf' }), 'com.docker.network.bridge.name:'],
  ['a bridge name another network uses', 'NetworkDriver.CreateNetwork', network({}, { 'com.docker.network.bridge.name': 'tsbr-aaaaaaaaaa' }), 'com.docker.network.bridge.name: bridge tsbr-aaaaaaaaaa is already used'],
  ['an unknown tsnet option', 'NetworkDriver.CreateNetwork', network({}, { 'tsnet.colour': 'blue' }), 'tsnet.colour: unknown option'],
  ['an unknown tsnet.mode', 'NetworkDriver.CreateNetwork', network({}, { 'tsnet.mode': 'overlay' }), 'tsnet.mode:'],
  ['a host binding that is not an IPv4 address', 'NetworkDriver.CreateNetwork', network({}, { 'com.docker.network.bridge.host_binding_ipv4': 'localhost' }), 'com.docker.network.bridge.host_binding_ipv4:'],
  ['host_ipv4 that is IPv6', 'NetworkDriver.CreateNetwork', network({}, { 'com.docker.network.host_ipv4': 'fd00::1' }), 'com.docker.network.host_ipv4:'],
  ['an option value that is not a string', 'NetworkDriver.CreateNetwork', network({}, { 'com.docker.network.driver.mtu': 1400 }), 'com.docker.network.driver.mtu: value must be a string'],
  ['enable_ipv6 that is not a boolean', 'NetworkDriver.CreateNetwork', network({ Options: { 'com.docker.network.enable_ipv6': 'yes' } }), 'Options.com.docker.network.enable_ipv6:'],
  ['an interface prefix with capitals', 'NetworkDriver.CreateNetwork', network({}, { 'com.docker.network.container_iface_prefix': 'ETH' }), 'com.docker.network.container_iface_prefix:'],
  ['an overlay option on a plain bridge network', 'NetworkDriver.CreateNetwork', network({}, { 'tsnet.vxlan_csum_offload': 'off' }), 'tsnet.vxlan_csum_offload: only overlay networks'],
  ['the IPAM option tsnet.dhcp given as -o', 'NetworkDriver.CreateNetwork', network({}, { 'tsnet.dhcp': 'on' }), 'tsnet.dhcp: an IPAM option: give it as --ipam-opt tsnet.dhcp=… with --ipam-driver tsnet'],
  ['a DHCP timeout on a network of no DHCP pool', 'NetworkDriver.CreateNetwork', network({}, { 'tsnet.mode': 'macvlan', parent: 'lo', 'tsnet.dhcp_timeout': '3' }), 'tsnet.dhcp_timeout: only a network on a DHCP pool'],
  ['a DHCP pool without --subnet', 'IpamDriver.RequestPool', { AddressSpace: 'tsnet-local', Pool: '', SubPool: '', Options: { 'tsnet.dhcp': 'on' }, V6: false }, "Pool: tsnet.dhcp=on needs the LAN's subnet"],
  ['a DHCP pool with --ip-range', 'IpamDriver.RequestPool', { AddressSpace: 'tsnet-local', Pool: '10.7.0.0/24', SubPool: '10.7.0.128/25', Options: { 'tsnet.dhcp': 'on' }, V6: false }, 'SubPool: the DHCP server hands out its own range'],
  ['a DHCP pool for IPv6', 'IpamDriver.RequestPool', { AddressSpace: 'tsnet-local', Pool: 'fd00:7::/64', SubPool: '', Options: { 'tsnet.dhcp': 'on' }, V6: true }, 'Options.tsnet.dhcp: DHCP hands out IPv4 addresses only'],
  ['tsnet.dhcp neither on nor off', 'IpamDriver.RequestPool', { AddressSpace: 'tsnet-local', Pool: '10.7.0.0/24', SubPool: '', Options: { 'tsnet.dhcp': 'yes' }, V6: false }, 'Options.tsnet.dhcp: "yes" must be on or off'],
  ['a parent on a bridge network', 'NetworkDriver.CreateNetwork', network({}, { 'tsnet.mode': 'bridge', parent: 'eth1' }), 'parent:'],
  ['an endpoint on an unknown network', 'NetworkDriver.CreateEndpoint', endpoint({}, {}, { NetworkID: 'c'.repeat(64) }), 'NetworkID: no such network'],
  ['a missing EndpointID', 'NetworkDriver.CreateEndpoint', endpoint({}, {}, { EndpointID: undefined }), 'EndpointID: is required'],
  ['an address without a prefix', 'NetworkDriver.CreateEndpoint', endpoint({ Address: '10.1.0.20' }), 'Interface.Address:'],
  ['an IPv6 address as the IPv4 address', 'NetworkDriver.CreateEndpoint', endpoint({ Address: 'fd00::5/64' }), 'Interface.Address:'],
  ['a MAC that is not one', 'NetworkDriver.CreateEndpoint', endpoint({ MacAddress: '02:42:zz:00:00:01' }), 'Interface.MacAddress:'],
  ['an unknown protocol number', 'NetworkDriver.CreateEndpoint', endpoint({}, portmap({ Proto: 99 })), 'com.docker.network.portmap.0.Proto: unknown protocol number 99'],
  ['a host port above 65535', 'NetworkDriver.CreateEndpoint', endpoint({}, portmap({ HostPort: 70000, HostPortEnd: 70000 })), 'com.docker.network.portmap.0.HostPort:'],
  ['a host port range that runs backwards', 'NetworkDriver.CreateEndpoint', endpoint({}, portmap({ HostPort: 9000, HostPortEnd: 8000 })), 'com.docker.network.portmap.0.HostPortEnd:'],
  ['a host IP that is not an IP', 'NetworkDriver.CreateEndpoint', endpoint({}, portmap({ HostIP: 'example.com' })), 'com.docker.network.portmap.0.HostIP:'],
  ['a port map that is not a list', 'NetworkDriver.CreateEndpoint', endpoint({}, { 'com.docker.network.portmap': 'all' }), 'com.docker.network.portmap:'],
  ['endpoint options that are not a map', 'NetworkDriver.CreateEndpoint', endpoint({}, 'nope'), 'Options:'],
  ['a join of an unknown endpoint', 'NetworkDriver.Join', { NetworkID: NET_A, EndpointID: EP_2, SandboxKey: '', Options: {} }, 'EndpointID: no such endpoint'],
  ['a join on an unknown network', 'NetworkDriver.Join', { NetworkID: NET_B, EndpointID: EP_1, SandboxKey: '', Options: {} }, 'NetworkID: no such network'],
  ['ports for an unknown endpoint', 'NetworkDriver.ProgramExternalConnectivity', { NetworkID: NET_A, EndpointID: EP_2, Options: {} }, 'EndpointID: no such endpoint'],
  ['malformed JSON to the IPAM', 'IpamDriver.RequestPool', '{', 'body: malformed JSON'],
  ['an unknown address space', 'IpamDriver.RequestPool', pool({ AddressSpace: 'LocalDefault' }), 'AddressSpace: unknown address space'],
  ['a pool that is not a CIDR', 'IpamDriver.RequestPool', pool({ Pool: '10.7.0.0' }), 'Pool: "10.7.0.0" is not a subnet'],
  ['a pool with host bits set', 'IpamDriver.RequestPool', pool({ Pool: '10.7.0.1/24' }), 'Pool: 10.7.0.1/24 has host bits set; did you mean 10.7.0.0/24?'],
  ['an IPv4 pool asked for as IPv6', 'IpamDriver.RequestPool', pool({ V6: true }), 'Pool: 10.7.0.0/24 is not an IPv6 subnet'],
  ['a pool too small for containers', 'IpamDriver.RequestPool', pool({ Pool: '10.7.0.0/31' }), 'Pool: 10.7.0.0/31 is too small'],
  ['an explicit pool overlapping another', 'IpamDriver.RequestPool', pool({ Pool: '10.1.0.128/25' }), 'Pool: 10.1.0.128/25 overlaps with pool 10.1.0.0/24'],
  ['an ip-range outside the pool', 'IpamDriver.RequestPool', pool({ SubPool: '10.8.0.0/25' }), 'SubPool: 10.8.0.0/25 is not inside pool 10.7.0.0/24'],
  ['an ip-range without a pool', 'IpamDriver.RequestPool', pool({ Pool: '', SubPool: '10.8.0.0/25' }), 'SubPool: an ip-range needs an explicit subnet'],
  ['V6 that is not a boolean', 'IpamDriver.RequestPool', pool({ V6: 'no' }), 'V6:'],
  ['an unknown tsnet IPAM option', 'IpamDriver.RequestPool', pool({ Options: { 'tsnet.shared': 'x' } }), 'Options.tsnet.shared: unknown IPAM option'],
  ['a shared pool on a daemon without --cluster-store', 'IpamDriver.RequestPool', pool({ Options: { 'tsnet.pool': 'lan' } }), 'Options.tsnet.pool: shared pools need the cluster store'],
  ['a shared pool name with a space', 'IpamDriver.RequestPool', pool({ Options: { 'tsnet.pool': 'my lan' } }), 'Options.tsnet.pool: "my lan" may only hold letters'],
  ['a shared pool name with a slash', 'IpamDriver.RequestPool', pool({ Options: { 'tsnet.pool': 'a/b' } }), 'Options.tsnet.pool: "a/b" may only hold letters'],
  ['a shared pool name over 63 bytes', 'IpamDriver.RequestPool', pool({ Options: { 'tsnet.pool': 'p'.repeat(64) } }), 'Options.tsnet.pool: "ppp'],
  ['an address from an unknown shared pool', 'IpamDriver.RequestAddress', { PoolID: 'tsnet-cluster/lan/10.9.0.0/24', Address: '', Options: null }, 'PoolID: shared pools need the cluster store'],
  ['an address from an unknown pool', 'IpamDriver.RequestAddress', { PoolID: 'tsnet-local/10.99.0.0/24', Address: '', Options: null }, 'PoolID: unknown pool'],
  ['an address already taken', 'IpamDriver.RequestAddress', { PoolID: POOL_ID, Address: '10.1.0.10', Options: null }, 'Address: 10.1.0.10 is already allocated in pool 10.1.0.0/24'],
  ['an address outside the pool', 'IpamDriver.RequestAddress', { PoolID: POOL_ID, Address: '10.3.0.10', Options: null }, 'Address: 10.3.0.10 is outside pool 10.1.0.0/24'],
  ['an address that is not an IP', 'IpamDriver.RequestAddress', { PoolID: POOL_ID, Address: '10.1.0.300', Options: null }, 'Address: "10.1.0.300" is not an IP address'],
  ['an address from an exhausted pool', 'IpamDriver.RequestAddress', { PoolID: TINY_POOL_ID, Address: '', Options: null }, 'Address: no free address left in pool 10.2.0.0/30'],
  ['an address request without PoolID', 'IpamDriver.RequestAddress', { Address: '', Options: null }, 'PoolID: is required'],
  ['a release without Address', 'IpamDriver.ReleaseAddress', { PoolID: POOL_ID }, 'Address: is required'],
];

describe('bad input is refused with the field named, and changes nothing', () => {
  let f: Fixture;

  beforeAll(async () => {
    f = await pluginFixture();
    const ok = async (method: string, body: unknown) => expect((await f.post(method, body)).status, method).toBe(200);
    await ok('IpamDriver.RequestPool', { AddressSpace: 'tsnet-local', Pool: '10.1.0.0/24', SubPool: '', Options: {}, V6: false });
    await ok('IpamDriver.RequestAddress', { PoolID: POOL_ID, Address: '10.1.0.1', Options: { RequestAddressType: 'com.docker.network.gateway' } });
    await ok('IpamDriver.RequestAddress', { PoolID: POOL_ID, Address: '10.1.0.10', Options: null });
    await ok('IpamDriver.RequestPool', { AddressSpace: 'tsnet-local', Pool: '10.2.0.0/30', SubPool: '', Options: {}, V6: false });
    await ok('IpamDriver.RequestAddress', { PoolID: TINY_POOL_ID, Address: '', Options: null });
    await ok('IpamDriver.RequestAddress', { PoolID: TINY_POOL_ID, Address: '', Options: null });
    await ok('NetworkDriver.CreateNetwork', {
      NetworkID: NET_A,
      Options: { 'com.docker.network.generic': {} },
      IPv4Data: [{ AddressSpace: 'tsnet-local', Gateway: '10.1.0.1/24', Pool: '10.1.0.0/24' }],
      IPv6Data: [],
    });
    await ok('NetworkDriver.CreateEndpoint', { NetworkID: NET_A, EndpointID: EP_1, Interface: { Address: '10.1.0.10/24' }, Options: {} });
  });

  it('has at least 40 cases', () => {
    expect(CASES.length).toBeGreaterThanOrEqual(40);
  });

  it.each(CASES)('refuses %s', async (_what, method, body, expected) => {
    const before = snapshot(f.plugin, f.runner);
    const res = await f.post(method, body);
    expect(res.status).toBe(500);
    expect(res.body.Err).toEqual(expect.stringMatching(new RegExp(`^${expected.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`)));
    expect(snapshot(f.plugin, f.runner)).toBe(before);
  });

  it('still serves valid requests afterwards', async () => {
    const res = await f.post('NetworkDriver.Join', { NetworkID: NET_A, EndpointID: EP_1, SandboxKey: '', Options: {} });
    expect(res.status).toBe(200);
    expect(res.body.Gateway).toBe('10.1.0.1');
  });
});
