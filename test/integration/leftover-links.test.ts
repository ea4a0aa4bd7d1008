// Start-up reconciliation on a real kernel: links with tsnet's generated
// names that no stored record owns (what a crash between a kernel change and
// its commit leaves) are removed; everything else stays.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createNetns, deleteNetns, ipIn } from '../harness/index.js';
import { NetnsPlugin } from './netns-plugin.js';

const netns = `tslo${randomBytes(3).toString('hex')}`;
const tsnet = new NetnsPlugin(netns);
const hex = (n: number) => randomBytes(n).toString('hex').slice(0, n);

beforeAll(async () => {
  await createNetns(netns);
  await tsnet.start();
});
afterAll(async () => {
  await tsnet.close();
  await deleteNetns(netns);
});

const links = async () => (await ipIn(netns, ['-o', 'link', 'show'])).stdout.split('\n').map((l) => l.split(': ')[1]?.split('@')[0]).filter((l): l is string => Boolean(l));

it('removes leftover links with generated names at start-up, and nothing it owns or that only looks alike', async () => {
  const live = `${hex(10)}${'0'.repeat(54)}`;
  const adopted = 'ad'.repeat(32);
  const endpoint = 'ee'.repeat(32);
  // What tsnet owns: a network with an endpoint, and a network on a user's bridge whose name looks generated.
  await ipIn(netns, ['link', 'add', `tsbr-${'ad'.repeat(5)}`, 'type', 'bridge']);
  const network = (id: string, subnet: string, generic: Record<string, string> = {}) =>
    tsnet.post('NetworkDriver.CreateNetwork', { NetworkID: id, Options: { 'com.docker.network.generic': generic }, IPv4Data: [{ AddressSpace: 'x', Pool: `${subnet}.0/24`, Gateway: `${subnet}.1/24` }] }).expect(200);
  await network(live, '10.216.0');
  await network(adopted, '10.216.1', { 'com.docker.network.bridge.name': `tsbr-${'ad'.repeat(5)}` });
  await tsnet.post('NetworkDriver.CreateEndpoint', { NetworkID: live, EndpointID: endpoint, Interface: { Address: '10.216.0.2/24' }, Options: {} }).expect(200);

  // What a crash leaves: a bridge, a veth pair and a macvlan (on a wire) of records never committed.
  const lost = hex(12);
  await ipIn(netns, ['link', 'add', `tsbr-${hex(10)}`, 'type', 'bridge']);
  await ipIn(netns, ['link', 'add', `tsv${lost}`, 'type', 'veth', 'peer', 'name', `tsc${lost}`]);
  await ipIn(netns, ['link', 'add', 'wire0', 'type', 'veth', 'peer', 'name', 'wire1']);
  await ipIn(netns, ['link', 'add', `tsm${hex(12)}`, 'link', 'wire0', 'type', 'macvlan']);
  // A user's links that merely resemble tsnet's.
  await ipIn(netns, ['link', 'add', 'tsbr-mine', 'type', 'bridge']);
  await ipIn(netns, ['link', 'add', 'tsvOWN', 'type', 'veth', 'peer', 'name', 'tscOWN']);
  const owned = [`tsbr-${live.slice(0, 10)}`, `tsbr-${'ad'.repeat(5)}`, `tsv${endpoint.slice(0, 12)}`, `tsc${endpoint.slice(0, 12)}`];
  const theirs = ['wire0', 'wire1', 'tsbr-mine', 'tsvOWN', 'tscOWN'];

  await tsnet.restart();
  const after = await links();
  expect(after.filter((l) => /^ts/.test(l)).sort()).toEqual([...owned, ...theirs.filter((l) => l.startsWith('ts'))].sort());
  for (const l of theirs) expect(after).toContain(l);
});
