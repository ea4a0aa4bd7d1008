import { describe, expect, it } from 'vitest';
import type { NetworkRecord, SubnetRecord } from '../../drivers/model.js';
import { SharedNetworks } from '../../src/cluster/shared-networks.js';

const subnet = (pool: string): SubnetRecord => ({ pool, aux: {} });
const network = (id: string, ipv4: string[], ipv6: string[] = []) => ({ id, ipv4: ipv4.map(subnet), ipv6Subnets: ipv6.map(subnet) }) as unknown as NetworkRecord;

describe('which local network is on which shared pool', () => {
  const shared = new SharedNetworks(
    () => [
      network('n-lan', ['10.60.0.0/24']),
      // Docker may hand the subnet over in a non-canonical spelling.
      network('n-dual', ['10.61.0.7/24'], ['fd61::/64']),
      network('n-v6only', [], ['fd62:0:0:0::/64']),
      network('n-local', ['10.63.0.0/24']),
    ],
    () => [
      { name: 'lan', subnet: '10.60.0.0/24' },
      { name: 'dual', subnet: '10.61.0.0/24' },
      { name: 'dual', subnet: 'fd61::/64' },
      { name: 'six', subnet: 'fd62::/64' },
      // A pool this host uses with no network yet (between RequestPool and CreateNetwork).
      { name: 'pending', subnet: '10.64.0.0/24' },
    ],
    (id) => `name-of-${id}`,
  );

  it('maps networks to pools by subnet, one name for both families, and leaves local networks out', () => {
    expect([...shared.poolByNetwork()]).toEqual([
      ['n-lan', 'lan'],
      ['n-dual', 'dual'],
      ['n-v6only', 'six'],
    ]);
  });

  it('finds this host\'s network of a pool, with the name its DNS serves it under', () => {
    const byPool = shared.networkByPool();
    expect(byPool.get('dual')).toEqual({ id: 'n-dual', name: 'name-of-n-dual' });
    expect(byPool.has('pending')).toBe(false);
    expect(byPool.size).toBe(3);
  });
});
