import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { IpamService, LOCAL_ADDRESS_SPACE } from '../../src/ipam/ipam-service.js';
import { parseCidr } from '../../src/net/address.js';
import { MemoryStore } from '../../src/store/memory.js';
import { SqliteStore } from '../../src/store/sqlite.js';

const GATEWAY = { RequestAddressType: 'com.docker.network.gateway' };
const pool = (p: string, subPool = '', v6 = false) => ({ addressSpace: LOCAL_ADDRESS_SPACE, pool: p, subPool, options: {}, v6 });

async function ipam(config = {}) {
  const service = new IpamService(new MemoryStore(), config);
  await service.load();
  return service;
}

describe('IpamService pools', () => {
  it('tells a gateway the user chose from one it picked, until it is released', async () => {
    const service = await ipam();
    const chosen = await service.requestPool(pool('10.11.0.0/24'));
    const picked = await service.requestPool(pool('10.12.0.0/24'));
    await service.requestAddress({ poolId: chosen.poolId, address: '10.11.0.254', options: GATEWAY });
    await service.requestAddress({ poolId: picked.poolId, address: '', options: GATEWAY });
    expect(service.gatewayChosen('10.11.0.0/24', '10.11.0.254')).toBe(true);
    expect(service.gatewayChosen('10.12.0.0/24', '10.12.0.1')).toBe(false);
    await service.releaseAddress(chosen.poolId, '10.11.0.254');
    expect(service.gatewayChosen('10.11.0.0/24', '10.11.0.254')).toBe(false);
  });

  it('returns the same PoolID for the same pool and counts references', async () => {
    const service = await ipam();
    const a = await service.requestPool(pool('10.10.0.0/24'));
    const b = await service.requestPool(pool('10.10.0.0/24'));
    expect(b.poolId).toBe(a.poolId);
    expect(service.list()[0]!.refs).toBe(2);
    await service.releasePool(a.poolId);
    expect(service.list()).toHaveLength(1);
    await service.releasePool(a.poolId);
    expect(service.list()).toHaveLength(0);
  });

  it('refuses a pool overlapping another in the same address space', async () => {
    const service = await ipam();
    await service.requestPool(pool('10.10.0.0/16'));
    await expect(service.requestPool(pool('10.10.5.0/24'))).rejects.toThrow('Pool: 10.10.5.0/24 overlaps with pool 10.10.0.0/16');
  });

  it('picks automatic pools from the defaults, skipping used pools and host networks, never the same one twice', async () => {
    const service = await ipam({
      defaultPoolsV4: '10.90.0.0/22/24',
      hostNetworks: async () => [parseCidr('10.90.1.0/24')!.cidr],
    });
    const first = await service.requestPool(pool(''));
    const second = await service.requestPool(pool(''));
    expect([first.pool, second.pool]).toEqual(['10.90.0.0/24', '10.90.2.0/24']);
    await service.requestPool(pool(''));
    await expect(service.requestPool(pool(''))).rejects.toThrow(/^Pool: no free IPv4 subnet left/);
  });

  it('picks IPv6 /64s from a unique-local /48 by default', async () => {
    const service = await ipam();
    const v6 = await service.requestPool(pool('', '', true));
    expect(v6.pool).toMatch(/^fd74:736e:6574:(\d+:)?:\/64$/);
  });

  it('refuses sub-pools outside the pool and without a pool', async () => {
    const service = await ipam();
    await expect(service.requestPool(pool('10.0.0.0/24', '10.0.1.0/25'))).rejects.toThrow('SubPool: 10.0.1.0/25 is not inside pool 10.0.0.0/24');
    await expect(service.requestPool(pool('', '10.0.1.0/25'))).rejects.toThrow('SubPool: an ip-range needs an explicit subnet');
  });
});

describe('IpamService addresses', () => {
  it('gives the gateway the first address and containers the next ones of the ip-range', async () => {
    const service = await ipam();
    const { poolId } = await service.requestPool(pool('10.20.0.0/24', '10.20.0.128/25'));
    expect(await service.requestAddress({ poolId, address: '', options: GATEWAY })).toEqual({ address: '10.20.0.1/24' });
    expect(await service.requestAddress({ poolId, address: '', options: {} })).toEqual({ address: '10.20.0.128/24' });
    expect(await service.requestAddress({ poolId, address: '', options: {} })).toEqual({ address: '10.20.0.129/24' });
  });

  it('honours an explicit gateway and aux addresses outside the ip-range', async () => {
    const service = await ipam();
    const { poolId } = await service.requestPool(pool('10.20.0.0/24', '10.20.0.128/25'));
    expect(await service.requestAddress({ poolId, address: '10.20.0.254', options: GATEWAY })).toEqual({ address: '10.20.0.254/24' });
    expect(await service.requestAddress({ poolId, address: '10.20.0.2', options: {} })).toEqual({ address: '10.20.0.2/24' });
  });

  it('honours a preferred address or says clearly why not', async () => {
    const service = await ipam();
    const { poolId } = await service.requestPool(pool('10.20.0.0/24'));
    await service.requestAddress({ poolId, address: '10.20.0.50', options: {} });
    await expect(service.requestAddress({ poolId, address: '10.20.0.50', options: {} })).rejects.toThrow('Address: 10.20.0.50 is already allocated in pool 10.20.0.0/24');
    await expect(service.requestAddress({ poolId, address: '10.21.0.5', options: {} })).rejects.toThrow('Address: 10.21.0.5 is outside pool 10.20.0.0/24');
    await expect(service.requestAddress({ poolId, address: '10.20.0.255', options: {} })).rejects.toThrow(/broadcast/);
    await expect(service.requestAddress({ poolId, address: 'nope', options: {} })).rejects.toThrow('Address: "nope" is not an IP address');
  });

  it('never gives a container the host\'s own address on the network: skipped when automatic, refused when asked for', async () => {
    const service = await ipam({ hostHolds: (address: string) => address === '10.20.0.2/24' });
    const { poolId } = await service.requestPool(pool('10.20.0.0/24'));
    expect(await service.requestAddress({ poolId, address: '', options: GATEWAY })).toEqual({ address: '10.20.0.1/24' });
    expect(await service.requestAddress({ poolId, address: '', options: {} })).toEqual({ address: '10.20.0.3/24' });
    expect(service.addressesOf(poolId).map((a) => a.address)).toEqual(['10.20.0.1', '10.20.0.2', '10.20.0.3']);
    const other = await ipam({ hostHolds: (address: string) => address === '10.21.0.9/24' });
    const chosen = await other.requestPool(pool('10.21.0.0/24'));
    await expect(other.requestAddress({ poolId: chosen.poolId, address: '10.21.0.9', options: {} })).rejects.toThrow("Address: 10.21.0.9 is the host's own address on the network (tsnet.host_shim)");
    expect(other.addressesOf(chosen.poolId)).toEqual([]);
  });

  it('names the pool when it is exhausted', async () => {
    const service = await ipam();
    const { poolId } = await service.requestPool(pool('10.30.0.0/30'));
    await service.requestAddress({ poolId, address: '', options: {} });
    await service.requestAddress({ poolId, address: '', options: {} });
    await expect(service.requestAddress({ poolId, address: '', options: {} })).rejects.toThrow('Address: no free address left in pool 10.30.0.0/30');
  });

  it('lets networks sharing a pool share its gateway, held until the last release', async () => {
    const service = await ipam();
    const { poolId } = await service.requestPool(pool('10.40.0.0/24'));
    await service.requestPool(pool('10.40.0.0/24'));
    await service.requestAddress({ poolId, address: '10.40.0.1', options: GATEWAY });
    await service.requestAddress({ poolId, address: '10.40.0.1', options: GATEWAY });
    await service.releaseAddress(poolId, '10.40.0.1');
    expect(service.addressesOf(poolId)).toHaveLength(1);
    await service.releaseAddress(poolId, '10.40.0.1');
    expect(service.addressesOf(poolId)).toHaveLength(0);
  });

  it('gives an address back when its ARP probe fails: the failed request leaves the pool as it was', async () => {
    const probeFailure = new Error('tsnet.arp_probe: could not probe 10.50.0.2 on eth1');
    const service = await ipam({ inUse: () => Promise.reject(probeFailure) });
    const { poolId } = await service.requestPool(pool('10.50.0.0/24'));
    await service.requestAddress({ poolId, address: '', options: GATEWAY });
    const before = service.addressesOf(poolId);
    await expect(service.requestAddress({ poolId, address: '', options: {} })).rejects.toBe(probeFailure);
    expect(service.addressesOf(poolId)).toEqual(before);
    // Free, not merely forgotten: asked for by name (no probe), it is granted.
    expect(await service.requestAddress({ poolId, address: '10.50.0.2', options: {} })).toEqual({ address: '10.50.0.2/24' });
  });

  it('treats releases of unknown pools and addresses as done', async () => {
    const service = await ipam();
    await expect(service.releaseAddress('tsnet-local/10.0.0.0/24', '10.0.0.9')).resolves.toBeUndefined();
    await expect(service.releasePool('tsnet-local/10.0.0.0/24')).resolves.toBeUndefined();
  });
});

describe('IpamService persistence', () => {
  const dirs: string[] = [];
  afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));

  it('serves the same pools, addresses and cursor after a restart', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tsnet-ipam-'));
    dirs.push(dir);
    const first = new IpamService(new SqliteStore(dir));
    await first.load();
    const { poolId } = await first.requestPool(pool('10.60.0.0/24'));
    await first.requestAddress({ poolId, address: '', options: GATEWAY });
    await first.requestAddress({ poolId, address: '', options: {} });
    await first.requestAddress({ poolId, address: '', options: {} });
    await first.releaseAddress(poolId, '10.60.0.2');

    const store = new SqliteStore(dir);
    const second = new IpamService(store);
    await second.load();
    expect(second.list().map((p) => p.id)).toEqual([poolId]);
    expect(second.addressesOf(poolId).map((a) => a.address).sort()).toEqual(['10.60.0.1', '10.60.0.3']);
    // The cursor survived: the just-released .2 is not handed out next.
    expect(await second.requestAddress({ poolId, address: '', options: {} })).toEqual({ address: '10.60.0.4/24' });
    await expect(second.requestAddress({ poolId, address: '10.60.0.3', options: {} })).rejects.toThrow(/already allocated/);
    await store.close();
  });
});
