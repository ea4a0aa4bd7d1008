import { describe, expect, it } from 'vitest';
import { OptionReader } from '../../drivers/option-values.js';
import { genericOptions, kindOf, networkSpec } from '../../src/core/network-options.js';
import { portBindings } from '../../src/core/endpoint-options.js';

const ID = 'f'.repeat(64);

describe('network options', () => {
  it('picks macvlan when a parent is given or asked for, bridge otherwise', () => {
    expect(kindOf({})).toBe('bridge');
    expect(kindOf({ parent: 'eth1' })).toBe('macvlan');
    expect(kindOf({ 'tsnet.mode': 'macvlan' })).toBe('macvlan');
    expect(() => kindOf({ 'tsnet.mode': 'bridge', parent: 'eth1' })).toThrow(/^parent: only macvlan and ipvlan/);
  });

  it('picks ipvlan for Docker\'s ipvlan keys, and refuses them on another kind', () => {
    expect(kindOf({ parent: 'eth1', ipvlan_mode: 'l3' })).toBe('ipvlan');
    expect(kindOf({ parent: 'eth1', ipvlan_flag: 'private' })).toBe('ipvlan');
    expect(kindOf({ parent: 'eth1', 'tsnet.mode': 'ipvlan' })).toBe('ipvlan');
    expect(() => kindOf({ parent: 'eth1', 'tsnet.mode': 'macvlan', ipvlan_mode: 'l2' })).toThrow(/^ipvlan_mode: only ipvlan networks take it, not tsnet.mode=macvlan$/);
  });

  it('marks a gateway the user chose, as tsnet\'s IPAM tells', () => {
    const { spec } = networkSpec(
      { networkId: ID, options: {}, ipv4: [{ pool: '10.123.0.0/24', gateway: '10.123.0.254/24', auxAddresses: {} }, { pool: '10.124.0.0/24', gateway: '10.124.0.1/24', auxAddresses: {} }], ipv6: [] },
      (subnet, gateway) => subnet === '10.123.0.0/24' && gateway === '10.123.0.254',
    );
    expect(spec.ipv4.map((s) => s.gatewayChosen)).toEqual([true, undefined]);
  });

  it('turns dockerd\'s gateway and aux CIDRs into plain addresses and keeps the flags', () => {
    const { kind, spec } = networkSpec({
      networkId: ID,
      options: { 'com.docker.network.enable_ipv6': true, 'com.docker.network.internal': true, 'com.docker.network.generic': { 'com.docker.network.driver.mtu': '9000' } },
      ipv4: [{ pool: '10.123.0.0/24', gateway: '10.123.0.254/24', auxAddresses: { host: '10.123.0.2/24' } }],
      ipv6: [{ pool: 'fd00:dead::/64', gateway: 'fd00:dead::1/64', auxAddresses: {} }],
    });
    expect(kind).toBe('bridge');
    expect(spec).toEqual({
      id: ID,
      internal: true,
      ipv6: true,
      ipv4: [{ pool: '10.123.0.0/24', gateway: '10.123.0.254', aux: { host: '10.123.0.2' } }],
      ipv6Subnets: [{ pool: 'fd00:dead::/64', gateway: 'fd00:dead::1', aux: {} }],
      mtu: 9000,
      ifacePrefix: 'eth',
      dns: true,
      options: { 'com.docker.network.driver.mtu': '9000' },
    });
  });

  it('reads tsnet.dns as on/off, on by default', () => {
    const spec = (generic: Record<string, string>) =>
      networkSpec({ networkId: ID, options: { 'com.docker.network.generic': generic }, ipv4: [{ pool: '10.123.0.0/24', auxAddresses: {} }], ipv6: [] }).spec;
    expect(spec({}).dns).toBe(true);
    expect(spec({ 'tsnet.dns': 'off' }).dns).toBe(false);
    expect(() => spec({ 'tsnet.dns': 'no' })).toThrow('tsnet.dns: "no" must be on or off');
  });

  it('refuses generic options that are not a map of strings', () => {
    expect(() => genericOptions({ 'com.docker.network.generic': ['x'] })).toThrow(/must be a map of strings/);
    expect(() => genericOptions({ 'com.docker.network.generic': { k: true } })).toThrow(/^k: value must be a string/);
  });

  it('reads booleans the way Docker does and names the option when it cannot', () => {
    const reader = new OptionReader({ a: 'True', b: '0', c: 'yes', d: 'on' });
    expect(reader.bool('a', false)).toBe(true);
    expect(reader.bool('b', true)).toBe(false);
    expect(reader.bool('missing', true)).toBe(true);
    expect(() => reader.bool('c', true)).toThrow('c: "yes" is not a boolean');
    expect(reader.onOff('d', false)).toBe(true);
    expect(() => reader.onOff('a', false)).toThrow('a: "True" must be on or off');
  });

  it('checks link names for length and characters', () => {
    expect(new OptionReader({ n: 'eth1.10' }).linkName('n')).toBe('eth1.10');
    expect(() => new OptionReader({ n: 'abcdefghijklmnop' }).linkName('n')).toThrow(/longer than 15 bytes/);
    expect(() => new OptionReader({ n: 'a/b' }).linkName('n')).toThrow(/may only hold/);
    expect(() => new OptionReader({ n: 'a b' }).linkName('n')).toThrow(/may only hold/);
  });
});

describe('port map', () => {
  it('reads dockerd\'s bindings: protocols by number, "any port" as 0, ranges as ranges', () => {
    expect(
      portBindings({
        'com.docker.network.portmap': [
          { Proto: 132, IP: '', Port: 9, HostIP: '', HostPort: 0, HostPortEnd: 0 },
          { Proto: 17, IP: '', Port: 81, HostIP: '127.0.0.1', HostPort: 18081, HostPortEnd: 18082 },
        ],
      }),
    ).toEqual([
      { proto: 'sctp', hostIp: '', hostPort: 0, hostPortEnd: 0, port: 9 },
      { proto: 'udp', hostIp: '127.0.0.1', hostPort: 18081, hostPortEnd: 18082, port: 81 },
    ]);
    expect(portBindings({})).toEqual([]);
    expect(portBindings({ 'com.docker.network.portmap': null })).toEqual([]);
  });
});
