import { describe, expect, it } from 'vitest';
import { parseDockerHost } from '../../src/docker/docker-api.js';
import { dnsAddressFlag, dnsDomainFlag, parseDnsAddress } from '../../src/dns/dns-address.js';
import { RecordTable, reverseName } from '../../src/dns/record-table.js';
import { parseResolvConf } from '../../src/dns/upstreams.js';
import { parseIp } from '../../src/net/address.js';

describe('DNS flags and files', () => {
  it('reads IP, IP:PORT and [IPv6]:PORT, port 53 by default', () => {
    expect(parseDnsAddress('127.0.0.1')).toEqual({ address: '127.0.0.1', port: 53 });
    expect(parseDnsAddress('127.0.0.1:5353')).toEqual({ address: '127.0.0.1', port: 5353 });
    expect(parseDnsAddress('[fd00::1]:53')).toEqual({ address: 'fd00::1', port: 53 });
    expect(parseDnsAddress('fd00::1')).toEqual({ address: 'fd00::1', port: 53 });
    expect(parseDnsAddress('example.com:53')).toBeUndefined();
    expect(parseDnsAddress('1.2.3.4:70000')).toBeUndefined();
    expect(() => dnsAddressFlag('--dns-listen', 'nowhere')).toThrow('--dns-listen nowhere: expected IP, IP:PORT or [IPv6]:PORT');
  });

  it('takes a domain of DNS labels, lower-cased, without the final dot', () => {
    expect(dnsDomainFlag('Containers.Example.')).toBe('containers.example');
    expect(() => dnsDomainFlag('-bad')).toThrow(/--dns-domain -bad/);
    expect(() => dnsDomainFlag('a..b')).toThrow(/--dns-domain/);
  });

  it('reads the nameservers of a resolv.conf, without IPv6 zones, skipping what is not an address', () => {
    const text = '# comment\nsearch example\nnameserver 10.0.0.53\nnameserver fe80::1%eth0\nnameserver bogus\n  nameserver 1.1.1.1 \noptions ndots:2\n';
    expect(parseResolvConf(text)).toEqual([
      { address: '10.0.0.53', port: 53 },
      { address: 'fe80::1', port: 53 },
      { address: '1.1.1.1', port: 53 },
    ]);
  });

  it('reads --docker-host as a unix socket or a TCP address', () => {
    expect(parseDockerHost('unix:///var/run/docker.sock')).toEqual({ socketPath: '/var/run/docker.sock' });
    expect(parseDockerHost('tcp://127.0.0.1:2375')).toEqual({ host: '127.0.0.1', port: 2375 });
    expect(parseDockerHost('tcp://[::1]:2375')).toEqual({ host: '::1', port: 2375 });
    expect(() => parseDockerHost('unix://relative.sock')).toThrow(/must be absolute/);
    expect(() => parseDockerHost('https://docker:2376')).toThrow(/expected unix:\/\/\/path or tcp:\/\/host:port/);
  });
});

describe('record table', () => {
  const table = new RecordTable('tsnet', [
    { networkId: 'n1', networkName: 'front', endpointId: 'aaaaaaaaaaaa11', names: ['a.b', 'x'], ipv4: '10.0.0.2' },
    { networkId: 'n2', networkName: 'back', endpointId: 'bbbbbbbbbbbb22', names: ['x'], ipv4: '10.0.1.2' },
  ]);

  it('builds reverse names for both families', () => {
    expect(reverseName(parseIp('10.1.2.3')!)).toBe('3.2.1.10.in-addr.arpa');
    expect(reverseName(parseIp('fd00::1')!)).toBe(`1.${'0.'.repeat(29)}d.f.ip6.arpa`);
  });

  it('scopes names and addresses to one network, and knows the empty names between', () => {
    expect(table.lookup('x.front.tsnet', undefined)).toEqual({ kind: 'found', a: ['10.0.0.2'], aaaa: [], ptr: [] });
    expect(table.lookup('x.front.tsnet', 'n2')).toEqual({ kind: 'nxdomain' });
    expect(table.lookup('b.front.tsnet', 'n1')).toEqual({ kind: 'found', a: [], aaaa: [], ptr: [] });
    expect(table.lookup('2.0.0.10.in-addr.arpa', 'n1')).toEqual({ kind: 'found', a: [], aaaa: [], ptr: ['a.b.front.tsnet'] });
    expect(table.lookup('2.0.0.10.in-addr.arpa', 'n2')).toEqual({ kind: 'nxdomain' });
    expect(table.lookup('9.9.9.10.in-addr.arpa', undefined)).toEqual({ kind: 'outside' });
    expect(table.lookup('example.com', 'n1')).toEqual({ kind: 'outside' });
  });
});
