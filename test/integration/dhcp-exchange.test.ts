// tsnet's DHCP client against a real server (dnsmasq) on a LAN netns, and
// against a hostile one: a lease taken through a probe macvlan with the
// container's MAC in a namespace of its own, renewed and released from the
// "container" (a netns holding the leased address), refusals, a server that
// is away, and replies that must be dropped without harm.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { acquire, DhcpRefused, DhcpTimeout, extend, release } from '../../src/dhcp/client.js';
import { clientIdForMac } from '../../src/dhcp/message.js';
import { openDhcpWire, withProbeLink } from '../../src/dhcp/wire.js';
import { CleanupStack, createNetns, createVethPair, deleteNetns, type DhcpServer, ipIn, netnsPath, newRunId, nodeInNetns, run, runDir, startDhcpServer } from '../harness/index.js';
import { NetnsRunner } from './netns-plugin.js';

const id = newRunId();
const [HOST, LAN, CONTAINER] = [`${id}h`, `${id}l`, `${id}c`];
const SERVER = '10.98.0.1';
const MAC = '02:42:0a:62:00:33';
const identity = { mac: MAC, clientId: clientIdForMac(MAC), hostname: 'web' };
/** A subnet check as the IPAM will make it: the LAN is 10.98.0.0/24. */
const refuse = (address: string) => (address.startsWith('10.98.0.') ? undefined : `outside 10.98.0.0/24`);

const cleanup = new CleanupStack();
const runner = new NetnsRunner(HOST);
let server: DhcpServer;

const probe = (mac = MAC) => ({ parent: 'wire', mac });
const netnsList = async () => (await run('ip', ['netns', 'list'])).stdout;

beforeAll(async () => {
  for (const ns of [HOST, LAN, CONTAINER]) {
    await createNetns(ns);
    cleanup.defer(`delete netns ${ns}`, () => deleteNetns(ns));
  }
  await createVethPair({ netns: HOST, name: 'wire' }, { netns: LAN, name: 'wire', address: `${SERVER}/24` });
  server = await startDhcpServer({ dir: join(runDir(id), 'dhcp'), netns: LAN, iface: 'wire', address: SERVER, range: '10.98.0.100,10.98.0.150' }, cleanup);
});
afterAll(() => cleanup.run());

describe('DHCP exchange with dnsmasq', () => {
  let leased: Awaited<ReturnType<typeof acquire>>;

  it('takes a lease through a probe link with the container\'s MAC, and leaves neither link nor namespace behind', async () => {
    leased = await withProbeLink(runner, probe(), (wire) => acquire(wire, identity, { timeoutMs: 5000, refuse }));
    expect(leased).toMatchObject({ server: SERVER, routers: [SERVER], subnetMask: '255.255.255.0', leaseSeconds: 120, renewalSeconds: 60, rebindingSeconds: 105 });
    expect(Number(leased.address.split('.')[3])).toBeGreaterThanOrEqual(100);
    const line = server.leases().find((l) => l.address === leased.address);
    expect(line).toMatchObject({ mac: MAC, hostname: 'web', clientId: `01:${MAC}` });
    expect((await ipIn(HOST, ['-o', 'link', 'show'])).stdout).not.toMatch(/tsd[0-9a-f]{10}/);
    expect(await netnsList()).not.toMatch(/tsnet-dhcp-/);
  });

  it('renews and releases from the container that holds the address', async () => {
    // What the container will be: a macvlan with the MAC, holding the leased address.
    await ipIn(HOST, ['link', 'add', 'c0', 'link', 'wire', 'address', MAC, 'type', 'macvlan', 'mode', 'bridge']);
    await ipIn(HOST, ['link', 'set', 'c0', 'netns', CONTAINER]);
    await ipIn(CONTAINER, ['address', 'add', `${leased.address}/24`, 'dev', 'c0']);
    await ipIn(CONTAINER, ['link', 'set', 'c0', 'up']);
    const wire = await openDhcpWire({ path: netnsPath(CONTAINER) });
    try {
      const renewed = await extend(wire, identity, leased, 'renew', { timeoutMs: 5000 });
      expect(renewed.address).toBe(leased.address);
      expect(renewed.grantedAt).toBeGreaterThanOrEqual(leased.grantedAt);
      expect(server.log()).toMatch(new RegExp(`DHCPACK\\(wire\\) ${leased.address.replace(/\./g, '\\.')} ${MAC} web`));
      await release(wire, identity, leased);
    } finally {
      wire.close();
    }
    await expect.poll(() => server.leases().some((l) => l.address === leased.address), { timeout: 5000 }).toBe(false);
    await ipIn(CONTAINER, ['link', 'del', 'c0']);
  });

  it('asks for a chosen address (--ip) and gets it; refuses clearly when the server offers another', async () => {
    const mac = '02:42:0a:62:00:34';
    const chosen = await withProbeLink(runner, probe(mac), (wire) => acquire(wire, { mac, clientId: clientIdForMac(mac) }, { timeoutMs: 5000, refuse, requested: '10.98.0.140' }));
    expect(chosen.address).toBe('10.98.0.140');
    const other = '02:42:0a:62:00:35';
    // Outside dnsmasq's range: it offers something else, which tsnet does not take (dnsmasq pings an address for ~3 s before it offers it).
    const refused = withProbeLink(runner, probe(other), (wire) => acquire(wire, { mac: other, clientId: clientIdForMac(other) }, { timeoutMs: 6000, refuse, requested: '10.98.0.20' }));
    await expect(refused).rejects.toThrow(DhcpRefused);
    await expect(refused).rejects.toThrow(/offered 10\.98\.0\.\d+: not 10\.98\.0\.20, which was asked for/);
  });

  it('gives up within its time when no server answers, and says so', async () => {
    await server.stop();
    const started = Date.now();
    const attempt = withProbeLink(runner, probe(), (wire) => acquire(wire, identity, { timeoutMs: 2000, refuse }));
    await expect(attempt).rejects.toThrow(DhcpTimeout);
    await expect(attempt).rejects.toThrow(/no DHCP server answered within 2 s/);
    expect(Date.now() - started).toBeLessThan(15_000);
    expect(await netnsList()).not.toMatch(/tsnet-dhcp-/);
  });
});

/** A server that answers every DISCOVER with what a broken or hostile one sends: wrong xid, another MAC, garbage, a truncated offer, an offer off the subnet. */
const HOSTILE_SERVER = `
const dgram = require('node:dgram');
const s = dgram.createSocket({ type: 'udp4', reuseAddr: true });
function reply(req, { xid, mac, yiaddr = [10, 98, 0, 120], cut }) {
  const b = Buffer.alloc(300);
  b[0] = 2; b[1] = 1; b[2] = 6;
  b.writeUInt32BE(xid ?? req.readUInt32BE(4), 4);
  Buffer.from(yiaddr).copy(b, 16);
  (mac ?? req.subarray(28, 34)).copy(b, 28);
  b.writeUInt32BE(0x63825363, 236);
  Buffer.from([53, 1, 2, 54, 4, 10, 98, 0, 1, 51, 4, 0, 0, 0, 120, 255]).copy(b, 240);
  return cut ? b.subarray(0, cut) : b;
}
s.on('message', (req) => {
  if (req[242] !== 1) return;
  const send = (b) => s.send(b, 68, '255.255.255.255');
  send(reply(req, { xid: 1 }));
  send(reply(req, { mac: Buffer.from([2, 0, 0, 0, 0, 9]) }));
  send(Buffer.from('not dhcp at all'));
  send(reply(req, { cut: 245 }));
  send(reply(req, { yiaddr: [192, 0, 2, 7] }));
});
s.bind(67, () => { s.setBroadcast(true); console.log('ready'); });
`;

describe('DHCP exchange with a hostile server', () => {
  it('drops every broken reply, takes no address it was not fairly offered, and names what was offered', async () => {
    // Its replies go to 255.255.255.255, which needs a route out of the wire.
    await ipIn(LAN, ['route', 'add', 'default', 'dev', 'wire']);
    await nodeInNetns(netnsPath(LAN), HOSTILE_SERVER, cleanup);
    const dropped: string[] = [];
    const attempt = withProbeLink(runner, probe(), (wire) => acquire(wire, identity, { timeoutMs: 2500, refuse, dropped: (why) => dropped.push(why) }));
    await expect(attempt).rejects.toThrow(/no offer could be taken within 2\.5 s \(10\.98\.0\.1 offered 192\.0\.2\.7: outside 10\.98\.0\.0\/24\)/);
    expect(dropped).toEqual(expect.arrayContaining([
      expect.stringMatching(/a reply to another exchange/),
      expect.stringMatching(/a reply for another MAC \(02:00:00:00:00:09\)/),
      expect.stringMatching(/shorter than a DHCP message/),
      expect.stringMatching(/runs past the end|no valid message type/),
    ]));
  });
});
