// DHCP messages: what tsnet's client sends, and what it makes of replies,
// including hostile and broken ones (which must be named and dropped, never thrown).
import { describe, expect, it } from 'vitest';
import { clientIdForMac, decodeServerReply, encodeClientMessage } from '../../src/dhcp/message.js';

const MAC = '02:11:22:33:44:55';
const client = { mac: MAC, clientId: clientIdForMac(MAC), hostname: 'web' };

/** A server reply as a test server would send it: the fixed part, the cookie, then `options` raw. */
function reply(type: number, options: number[], fields: { xid?: number; yiaddr?: number[]; op?: number; chaddr?: string } = {}): Buffer {
  const fixed = Buffer.alloc(236);
  fixed[0] = fields.op ?? 2;
  fixed[1] = 1;
  fixed[2] = 6;
  fixed.writeUInt32BE(fields.xid ?? 0xabcdef01, 4);
  Buffer.from(fields.yiaddr ?? [10, 99, 0, 120]).copy(fixed, 16);
  Buffer.from((fields.chaddr ?? MAC).split(':').map((h) => Number.parseInt(h, 16))).copy(fixed, 28);
  return Buffer.concat([fixed, Buffer.from([0x63, 0x82, 0x53, 0x63, 53, 1, type, ...options, 255])]);
}

const SERVER_ID = [54, 4, 10, 99, 0, 1];
const LEASE_120 = [51, 4, 0, 0, 0, 120];

describe('DHCP client messages', () => {
  it('sends a DISCOVER broadcast, with client id, hostname, the requested address and the options it wants', () => {
    const bytes = encodeClientMessage({ type: 'DISCOVER', xid: 0x01020304, client, requested: '10.99.0.130' });
    expect(bytes[0]).toBe(1);
    expect(bytes.readUInt32BE(4)).toBe(0x01020304);
    expect(bytes.readUInt16BE(10)).toBe(0x8000);
    expect(bytes.subarray(28, 34).toString('hex')).toBe('021122334455');
    const options = bytes.subarray(240);
    expect([...options.subarray(0, 3)]).toEqual([53, 1, 1]);
    expect([...options.subarray(3, 5)]).toEqual([61, 7]);
    expect(options.subarray(5, 12).toString('hex')).toBe('01021122334455');
    expect([...options.subarray(12, 17)]).toEqual([12, 3, ...Buffer.from('web')]);
    expect([...options.subarray(17, 23)]).toEqual([50, 4, 10, 99, 0, 130]);
    expect(options.at(-1)).toBe(255);
  });

  it('renews with ciaddr and no broadcast flag, and releases naming the server', () => {
    const renew = encodeClientMessage({ type: 'REQUEST', xid: 7, client, ciaddr: '10.99.0.120' });
    expect(renew.readUInt16BE(10)).toBe(0);
    expect([...renew.subarray(12, 16)]).toEqual([10, 99, 0, 120]);
    const release = encodeClientMessage({ type: 'RELEASE', xid: 8, client, ciaddr: '10.99.0.120', server: '10.99.0.1' });
    expect([...release.subarray(240, 243)]).toEqual([53, 1, 7]);
    expect(release.includes(Buffer.from([54, 4, 10, 99, 0, 1]))).toBe(true);
    // No hostname or wishes in a release.
    expect(release.includes(Buffer.from([12, 3]))).toBe(false);
  });
});

describe('DHCP server replies', () => {
  it('reads an ACK: address, server, mask, routers, DNS, lease, T1, T2', () => {
    const ack = decodeServerReply(reply(5, [...SERVER_ID, ...LEASE_120, 1, 4, 255, 255, 255, 0, 3, 4, 10, 99, 0, 1, 6, 8, 10, 99, 0, 1, 9, 9, 9, 9, 58, 4, 0, 0, 0, 60, 59, 4, 0, 0, 0, 105]));
    expect(ack).toEqual({
      type: 'ACK',
      xid: 0xabcdef01,
      chaddr: MAC,
      address: '10.99.0.120',
      server: '10.99.0.1',
      subnetMask: '255.255.255.0',
      routers: ['10.99.0.1'],
      dnsServers: ['10.99.0.1', '9.9.9.9'],
      leaseSeconds: 120,
      renewalSeconds: 60,
      rebindingSeconds: 105,
    });
  });

  it('reads a NAK with the server\'s message, made printable', () => {
    expect(decodeServerReply(reply(6, [...SERVER_ID, 56, 5, ...Buffer.from('wro'), 0x07, 0x67]))).toEqual({ type: 'NAK', xid: 0xabcdef01, chaddr: MAC, server: '10.99.0.1', message: 'wro?g' });
  });

  it('joins an option split in two (RFC 3396) and skips pads', () => {
    const offer = decodeServerReply(reply(2, [0, 0, ...SERVER_ID, 6, 4, 10, 99, 0, 1, 6, 4, 9, 9, 9, 9]));
    expect(offer).toMatchObject({ type: 'OFFER', dnsServers: ['10.99.0.1', '9.9.9.9'] });
  });

  it.each([
    ['a truncated message', reply(2, SERVER_ID).subarray(0, 200), /shorter than a DHCP message/],
    ['a request instead of a reply', reply(2, SERVER_ID, { op: 1 }), /not a BOOTREPLY/],
    ['no magic cookie', Buffer.concat([reply(2, SERVER_ID).subarray(0, 236), Buffer.alloc(8)]), /no DHCP magic cookie/],
    ['an option running past the end', Buffer.concat([reply(2, SERVER_ID).subarray(0, 240), Buffer.from([53, 1, 2, 54, 200, 10])]), /option 54 runs past the end/],
    ['an option with no length', Buffer.concat([reply(2, SERVER_ID).subarray(0, 240), Buffer.from([53, 1, 2, 54])]), /option 54 has no length/],
    ['no message type', Buffer.concat([reply(2, SERVER_ID).subarray(0, 240), Buffer.from([255])]), /no valid message type/],
    ['a message type of two bytes', Buffer.concat([reply(2, SERVER_ID).subarray(0, 240), Buffer.from([53, 2, 2, 2, 255])]), /no valid message type/],
    ['a DISCOVER echoed back', reply(1, SERVER_ID), /a DHCPDISCOVER, not a reply/],
    ['an offer of no address', reply(2, SERVER_ID, { yiaddr: [0, 0, 0, 0] }), /with no address/],
    ['an offer with no server identifier', reply(2, []), /no server identifier/],
    ['an ACK with no lease time', reply(5, SERVER_ID), /no lease time/],
  ])('drops %s, saying why', (_, bytes, why) => {
    const read = decodeServerReply(bytes);
    expect(read).toHaveProperty('dropped');
    expect((read as { dropped: string }).dropped).toMatch(why);
  });

  it('never throws on random bytes', () => {
    let seed = 42;
    const random = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) & 0xff;
    for (let i = 0; i < 2000; i++) {
      const base = reply(2 + (i % 4), SERVER_ID);
      const bytes = Buffer.from(base);
      for (let j = 0; j < 20; j++) bytes[236 + (random() % (bytes.length - 236))] = random();
      expect(() => decodeServerReply(bytes.subarray(0, 240 + (random() % (bytes.length - 240))))).not.toThrow();
    }
  });
});
