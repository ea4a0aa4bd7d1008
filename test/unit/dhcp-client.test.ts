// The client's exchanges against a server in memory: a NAK is a clear
// refusal naming the server's reason, a silent server a timeout, an ACK for
// another address is not taken.
import { describe, expect, it } from 'vitest';
import { acquire, type DhcpWire, DhcpRefused, DhcpTimeout } from '../../src/dhcp/client.js';
import { clientIdForMac } from '../../src/dhcp/message.js';

const MAC = '02:11:22:33:44:66';
const client = { mac: MAC, clientId: clientIdForMac(MAC) };

/** A server that answers DISCOVER with an offer of .20 and REQUEST with `onRequest`'s reply (type, yiaddr, extra options). */
function server(onRequest: { type: number; yiaddr?: number[]; options?: number[] } | undefined): DhcpWire {
  const queue: Buffer[] = [];
  const reply = (request: Buffer, type: number, yiaddr: number[], options: number[]) => {
    const b = Buffer.alloc(236);
    b[0] = 2;
    b[1] = 1;
    b[2] = 6;
    request.copy(b, 4, 4, 8);
    Buffer.from(yiaddr).copy(b, 16);
    request.copy(b, 28, 28, 34);
    return Buffer.concat([b, Buffer.from([0x63, 0x82, 0x53, 0x63, 53, 1, type, 54, 4, 10, 0, 0, 1, 51, 4, 0, 0, 14, 16, ...options, 255])]);
  };
  return {
    async send(bytes) {
      const type = bytes[242];
      if (type === 1) queue.push(reply(bytes, 2, [10, 0, 0, 20], []));
      if (type === 3 && onRequest) queue.push(reply(bytes, onRequest.type, onRequest.yiaddr ?? [10, 0, 0, 20], onRequest.options ?? []));
    },
    async receive(deadline) {
      const next = queue.shift();
      if (next) return next;
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, Math.min(20, deadline - Date.now()))));
      return queue.shift();
    },
  };
}

describe('DHCP client exchanges', () => {
  it('takes the ACK of the address it asked for', async () => {
    await expect(acquire(server({ type: 5 }), client, { timeoutMs: 1000 })).resolves.toMatchObject({ address: '10.0.0.20', server: '10.0.0.1', leaseSeconds: 3600 });
  });

  it('refuses clearly on a NAK, with the server\'s reason', async () => {
    const attempt = acquire(server({ type: 6, options: [56, 5, ...Buffer.from('taken')] }), client, { timeoutMs: 1000 });
    await expect(attempt).rejects.toThrow(DhcpRefused);
    await expect(attempt).rejects.toThrow('the DHCP server 10.0.0.1 refused 10.0.0.20: taken');
  });

  it('takes no ACK of another address, and times out naming what it waited for', async () => {
    const attempt = acquire(server({ type: 5, yiaddr: [10, 0, 0, 21] }), client, { timeoutMs: 300 });
    await expect(attempt).rejects.toThrow(DhcpTimeout);
    await expect(attempt).rejects.toThrow('the DHCP server 10.0.0.1 did not acknowledge 10.0.0.20 within 0.3 s');
  });
});
