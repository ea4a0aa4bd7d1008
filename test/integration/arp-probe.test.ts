// The ARP probe of macvlan networks (-o tsnet.arp_probe=on), on a real
// wire: a "LAN" netns at the other end of the parent holds addresses of the
// network's subnet, as a printer or a DHCP client would. tsnet's IPAM never
// hands those out, keeps them reserved, and gives up with a clear error
// after a bounded number of probes; without the option it does not look.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createNetns, deleteNetns, ipIn } from '../harness/index.js';
import { NetnsPlugin } from './netns-plugin.js';

const host = `tsap${randomBytes(3).toString('hex')}`;
const lan = `${host}l`;
const tsnet = new NetnsPlugin(host);

beforeAll(async () => {
  await createNetns(host);
  await createNetns(lan);
  await ipIn(host, ['link', 'add', 'lan0', 'type', 'veth', 'peer', 'name', 'lan0-peer']);
  await ipIn(host, ['link', 'set', 'lan0-peer', 'netns', lan]);
  await ipIn(host, ['link', 'set', 'lan0', 'up']);
  await ipIn(host, ['link', 'add', 'gone0', 'type', 'veth', 'peer', 'name', 'gone0-peer']);
  await ipIn(lan, ['link', 'set', 'lan0-peer', 'up']);
  // Devices already on the LAN: 10.169.0.2 and .3, and on the second subnet .2.
  for (const address of ['10.169.0.2/24', '10.169.0.3/24', '10.170.0.2/24']) await ipIn(lan, ['address', 'add', address, 'dev', 'lan0-peer']);
  await tsnet.start();
});
afterAll(async () => {
  await tsnet.close();
  await deleteNetns(lan);
  await deleteNetns(host);
});

/** A macvlan network on lan0 with tsnet's IPAM, as `docker network create --ipam-driver tsnet -d tsnet -o parent=lan0 …`. */
async function macvlanNetwork(id: string, subnet: string, generic: Record<string, string>): Promise<string> {
  const pool = (await tsnet.post('IpamDriver.RequestPool', { AddressSpace: 'tsnet-local', Pool: `${subnet}.0/24`, SubPool: '', Options: {}, V6: false }).expect(200)).body as { PoolID: string };
  await tsnet.post('IpamDriver.RequestAddress', { PoolID: pool.PoolID, Address: '', Options: { RequestAddressType: 'com.docker.network.gateway' } }).expect(200);
  await tsnet
    .post('NetworkDriver.CreateNetwork', { NetworkID: id, Options: { 'com.docker.network.generic': { parent: 'lan0', ...generic } }, IPv4Data: [{ AddressSpace: 'tsnet-local', Pool: `${subnet}.0/24`, Gateway: `${subnet}.1/24` }], IPv6Data: [] })
    .expect(200);
  return pool.PoolID;
}

/** The pool of the probing network, shared by the tests that follow its first. */
let probed: string;

const nextAddress = (poolId: string) => tsnet.post('IpamDriver.RequestAddress', { PoolID: poolId, Address: '', Options: {} });

it('with tsnet.arp_probe=on, skips the addresses devices on the LAN answer for, and keeps them reserved', async () => {
  const pool = (probed = await macvlanNetwork('a9'.repeat(32), '10.169.0', { 'tsnet.arp_probe': 'on' }));
  const first = await nextAddress(pool);
  expect(first.body).toEqual({ Address: '10.169.0.4/24', Data: {} });
  expect((await nextAddress(pool).expect(200)).body).toEqual({ Address: '10.169.0.5/24', Data: {} });
  // The devices' addresses stay taken: asked for by name, they are refused.
  const taken = await tsnet.post('IpamDriver.RequestAddress', { PoolID: pool, Address: '10.169.0.2', Options: {} }).expect(500);
  expect(taken.body.Err).toBe('Address: 10.169.0.2 is already allocated in pool 10.169.0.0/24');
});

it('gives up after four answered probes, naming the addresses, and serves the next request', async () => {
  for (const address of ['10.169.0.6/24', '10.169.0.7/24', '10.169.0.8/24', '10.169.0.9/24']) await ipIn(lan, ['address', 'add', address, 'dev', 'lan0-peer']);
  const refused = await nextAddress(probed).expect(500);
  expect(refused.body.Err).toBe("Address: devices outside tsnet answer ARP for 10.169.0.6, 10.169.0.7, 10.169.0.8, 10.169.0.9 on the network's LAN: those stay reserved; ask again for the next addresses, or give --ip");
  expect((await nextAddress(probed).expect(200)).body).toEqual({ Address: '10.169.0.10/24', Data: {} });
});

it('without the option, does not look: the next address is handed out whoever holds it', async () => {
  const pool = await macvlanNetwork('b9'.repeat(32), '10.170.0', {});
  expect((await nextAddress(pool).expect(200)).body).toEqual({ Address: '10.170.0.2/24', Data: {} });
});

it('refuses a value other than on or off', async () => {
  const refused = await tsnet
    .post('NetworkDriver.CreateNetwork', { NetworkID: 'c9'.repeat(32), Options: { 'com.docker.network.generic': { parent: 'lan0', 'tsnet.arp_probe': 'sometimes' } }, IPv4Data: [{ AddressSpace: 'x', Pool: '10.171.0.0/24', Gateway: '10.171.0.1/24' }], IPv6Data: [] })
    .expect(500);
  expect(refused.body.Err).toMatch(/^tsnet\.arp_probe: /);
});

it('a probe that fails (its parent vanished) names the option and gives the address back', async () => {
  const pool = await macvlanNetwork('d9'.repeat(32), '10.173.0', { parent: 'gone0', 'tsnet.arp_probe': 'on' });
  const before = tsnet.plugin.ipam.addressesOf(pool);
  await ipIn(host, ['link', 'del', 'gone0']);
  const failed = await nextAddress(pool).expect(500);
  expect(failed.body.Err).toMatch(/^tsnet\.arp_probe: could not probe 10\.173\.0\.2 on gone0, so it was not handed out: .*arping/);
  expect(tsnet.plugin.ipam.addressesOf(pool)).toEqual(before);
});
