import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { clusterConfig, parseClusterStoreUrl, parseDuration } from '../../src/cluster/cluster-config.js';

describe('--cluster-store and friends', () => {
  it('takes one or several etcd endpoints', () => {
    expect(parseClusterStoreUrl('etcd://10.0.0.1:2379')).toEqual(['10.0.0.1:2379']);
    expect(parseClusterStoreUrl('etcd://a.example:2379,b.example:2379,[fd00::1]:2379')).toEqual(['a.example:2379', 'b.example:2379', '[fd00::1]:2379']);
  });

  it.each([
    ['http://10.0.0.1:2379', 'must be etcd://HOST:PORT'],
    ['etcd://10.0.0.1', '"10.0.0.1" is not HOST:PORT'],
    ['etcd://10.0.0.1:99999', '"10.0.0.1:99999" is not HOST:PORT'],
    ['etcd://a:1,,b:2', '"" is not HOST:PORT'],
    ['etcd://a b:2379', '"a b:2379" is not HOST:PORT'],
  ])('refuses %s naming the flag', (url, reason) => {
    expect(() => parseClusterStoreUrl(url)).toThrow(`--cluster-store "${url}": `);
    expect(() => parseClusterStoreUrl(url)).toThrow(reason);
  });

  it('reads durations and refuses other spellings', () => {
    expect(parseDuration('--reclaim-after', '90s')).toBe(90_000);
    expect(parseDuration('--reclaim-after', '2h')).toBe(7_200_000);
    expect(() => parseDuration('--reclaim-after', '10')).toThrow('--reclaim-after "10": must be a positive duration');
    expect(() => parseDuration('--reclaim-after', '0s')).toThrow('must be a positive duration');
  });

  it('checks the flags together', () => {
    expect(clusterConfig({})).toBeUndefined();
    expect(() => clusterConfig({ reclaimAfter: '1h' })).toThrow('--reclaim-after needs --cluster-store');
    // Three lease lengths: a host whose keepalives a busy etcd delayed would lose its addresses.
    expect(() => clusterConfig({ clusterStore: 'etcd://a:1', hostId: 'h1', reclaimAfter: '30s' })).toThrow('--reclaim-after "30s": at least 60s');
    expect(clusterConfig({ clusterStore: 'etcd://a:1', hostId: 'h1', reclaimAfter: '60s' })).toMatchObject({ reclaimAfterMs: 60_000 });
  });

  it('reads the overlay\'s underlay flags, and refuses them without a store or malformed', () => {
    expect(clusterConfig({ clusterStore: 'etcd://a:1', hostId: 'h1', advertiseAddress: '192.0.2.7', vxlanPort: '4790' })).toMatchObject({ advertiseAddress: '192.0.2.7', vxlanPort: 4790 });
    expect(() => clusterConfig({ advertiseAddress: '192.0.2.7' })).toThrow('--advertise-address needs --cluster-store');
    expect(() => clusterConfig({ clusterStore: 'etcd://a:1', hostId: 'h1', advertiseAddress: 'eth1' })).toThrow('--advertise-address "eth1": not an IP address');
    expect(() => clusterConfig({ clusterStore: 'etcd://a:1', hostId: 'h1', vxlanPort: '70000' })).toThrow('--vxlan-port "70000": a UDP port, 1-65535');
    expect(() => clusterConfig({ clusterStore: 'etcd://a:1', hostId: 'has/slash' })).toThrow('--host-id "has/slash"');
    expect(() => clusterConfig({ clusterStore: 'etcd://a:1', hostId: 'x'.repeat(64) })).toThrow('--host-id');
    expect(() => clusterConfig({ clusterStore: 'etcd://a:1', clusterCert: '/c' })).toThrow('--cluster-cert and --cluster-key go together');
    expect(() => clusterConfig({ clusterStore: 'etcd://a:1', clusterCa: '/nonexistent/ca.pem' })).toThrow('--cluster-ca /nonexistent/ca.pem: ENOENT');
    expect(clusterConfig({ clusterStore: 'etcd://a:1', hostId: 'h1', reclaimAfter: '10m' })).toEqual({ endpoints: ['a:1'], hostId: 'h1', reclaimAfterMs: 600_000 });
  });

  it('reads the etcd password from a file, never from the command line, and checks the user', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tsnet-auth-'));
    try {
      const file = (name: string, content: string) => {
        writeFileSync(join(dir, name), content, { mode: 0o600 });
        return join(dir, name);
      };
      const store = { clusterStore: 'etcd://a:1', hostId: 'h1' };
      expect(clusterConfig({ ...store, clusterStoreUser: 'tsnet', clusterStorePasswordFile: file('pw', 's3cret pass\n') })?.auth).toEqual({ username: 'tsnet', password: 's3cret pass' });
      expect(() => clusterConfig({ ...store, clusterStoreUser: 'tsnet' })).toThrow('--cluster-store-user and --cluster-store-password-file go together');
      expect(() => clusterConfig({ ...store, clusterStorePasswordFile: file('pw', 'x') })).toThrow('--cluster-store-user and --cluster-store-password-file go together');
      expect(() => clusterConfig({ clusterStoreUser: 'tsnet', clusterStorePasswordFile: file('pw', 'x') })).toThrow('--cluster-store-user needs --cluster-store');
      expect(() => clusterConfig({ ...store, clusterStoreUser: 'ts net', clusterStorePasswordFile: file('pw', 'x') })).toThrow('--cluster-store-user "ts net": 1-128 printable characters without spaces');
      expect(() => clusterConfig({ ...store, clusterStoreUser: 'tsnet', clusterStorePasswordFile: join(dir, 'missing') })).toThrow(`--cluster-store-password-file ${join(dir, 'missing')}: ENOENT`);
      expect(() => clusterConfig({ ...store, clusterStoreUser: 'tsnet', clusterStorePasswordFile: file('empty', '\n') })).toThrow(`--cluster-store-password-file ${join(dir, 'empty')}: the file is empty; write the password of etcd user tsnet in it`);
      expect(() => clusterConfig({ ...store, clusterStoreUser: 'tsnet', clusterStorePasswordFile: file('two', 'a\nb\n') })).toThrow('more than one line');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
