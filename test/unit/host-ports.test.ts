// SocketHostPorts on this machine's loopback only (never a wildcard address
// here: the daemon's own netns is where those are tested, in the e2e suite).
import { once } from 'node:events';
import { createServer, type Server } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { SocketHostPorts } from '../../src/sys/index.js';

const servers: Server[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise((done) => s.close(done))));
});

/** A "host service" on 127.0.0.1 at a port the kernel picks; its port. */
async function hostService(): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1');
  servers.push(server);
  await once(server, 'listening');
  return (server.address() as { port: number }).port;
}

/** Whether a host service could listen on 127.0.0.1:port now. */
async function canListen(port: number): Promise<boolean> {
  const server = createServer();
  const result = await new Promise<boolean>((resolve) => {
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => resolve(true));
  });
  if (result) await new Promise((done) => server.close(done));
  return result;
}

describe('SocketHostPorts', () => {
  it('sees a host service\'s port as in use and will not hold it', async () => {
    const port = await hostService();
    const host = new SocketHostPorts();
    expect(await host.inUse({ proto: 'tcp', hostIp: '127.0.0.1', hostPort: port })).toBe(true);
    expect(await host.reserve({ proto: 'tcp', hostIp: '127.0.0.1', hostPort: port })).toBe(false);
    expect(await host.inUse({ proto: 'udp', hostIp: '127.0.0.1', hostPort: port })).toBe(false);
  });

  it('holds a port against host services until it releases it; its own hold is not "in use"', async () => {
    const port = await hostService();
    const service = servers.pop()!;
    await new Promise((done) => service.close(done));
    const host = new SocketHostPorts();
    const held = { proto: 'tcp', hostIp: '127.0.0.1', hostPort: port } as const;
    expect(await host.reserve(held)).toBe(true);
    expect(await canListen(port)).toBe(false);
    expect(await host.inUse(held)).toBe(false);
    await host.release(held);
    expect(await canListen(port)).toBe(true);
  });
});
