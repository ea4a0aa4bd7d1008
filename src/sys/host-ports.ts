import { createSocket } from 'node:dgram';
import { createServer, type Server } from 'node:net';
import type { TransportProtocol } from './firewall.js';

/** A published host port: '' is every address of both families, 0.0.0.0 / :: every address of one, else one address. */
export interface HostPort {
  proto: TransportProtocol;
  hostIp: string;
  hostPort: number;
}

/**
 * The host's own sockets on the ports tsnet publishes. A DNAT rule on a port
 * a host service listens on would steal that service's traffic, and a
 * service started later on a published port would never see any, so tsnet
 * refuses ports in use and holds a bound socket on each port it publishes,
 * as Docker does.
 */
export interface HostPorts {
  /** Whether a socket other than tsnet's own holds the port. */
  inUse(port: HostPort): Promise<boolean>;
  /** Binds a socket on the port and keeps it until release; false when a host socket has the port. */
  reserve(port: HostPort): Promise<boolean>;
  release(port: HostPort): Promise<void>;
}

interface Held {
  close(): Promise<void>;
}

const keyOf = (port: HostPort) => `${port.proto} ${port.hostIp} ${port.hostPort}`;

/** Where a socket binds to cover the addresses of a host IP. */
function bindAddresses(hostIp: string): Array<{ address: string; ipv6Only: boolean }> {
  // Dual-stack :: covers both families; a host without IPv6 only has 0.0.0.0.
  if (hostIp === '') return [{ address: '::', ipv6Only: false }, { address: '0.0.0.0', ipv6Only: false }];
  return [{ address: hostIp, ipv6Only: hostIp === '::' }];
}

/** A listening TCP socket, backlog 1: DNAT sends the port's traffic elsewhere, and anything that gets here is refused. */
function bindTcp(address: string, port: number, ipv6Only: boolean): Promise<Held> {
  return new Promise((resolve, reject) => {
    const server: Server = createServer((connection) => connection.destroy());
    server.once('error', reject);
    server.listen({ host: address, port, ipv6Only, backlog: 1 }, () => {
      server.off('error', reject);
      resolve({ close: () => new Promise((done) => server.close(() => done())) });
    });
  });
}

function bindUdp(address: string, port: number, ipv6Only: boolean): Promise<Held> {
  return new Promise((resolve, reject) => {
    const socket = createSocket({ type: address.includes(':') ? 'udp6' : 'udp4', ipv6Only });
    socket.once('error', reject);
    socket.bind({ address, port, exclusive: true }, () => {
      socket.off('error', reject);
      resolve({ close: () => new Promise((done) => socket.close(() => done())) });
    });
  });
}

/** Errors that mean "not here" rather than "taken": try the next address (a host without IPv6). */
const UNAVAILABLE = new Set(['EAFNOSUPPORT', 'EADDRNOTAVAIL']);

/** The daemon's sockets, in its own netns. SCTP has no socket in Node: its ports are neither checked nor held. */
export class SocketHostPorts implements HostPorts {
  private readonly held = new Map<string, Held>();

  private async bind(port: HostPort): Promise<Held | undefined> {
    const bind = port.proto === 'tcp' ? bindTcp : bindUdp;
    let last: unknown;
    for (const { address, ipv6Only } of bindAddresses(port.hostIp)) {
      try {
        return await bind(address, port.hostPort, ipv6Only);
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code === 'EADDRINUSE') return undefined;
        if (!UNAVAILABLE.has(code ?? '')) throw error;
        last = error;
      }
    }
    throw last;
  }

  async inUse(port: HostPort): Promise<boolean> {
    if (port.proto === 'sctp' || this.held.has(keyOf(port))) return false;
    const probe = await this.bind(port);
    await probe?.close();
    return probe === undefined;
  }

  async reserve(port: HostPort): Promise<boolean> {
    if (port.proto === 'sctp' || this.held.has(keyOf(port))) return true;
    const socket = await this.bind(port);
    if (socket) this.held.set(keyOf(port), socket);
    return socket !== undefined;
  }

  async release(port: HostPort): Promise<void> {
    const socket = this.held.get(keyOf(port));
    this.held.delete(keyOf(port));
    await socket?.close();
  }
}

/**
 * For a plugin that programs another netns from outside it (integration
 * tests): its sockets would land in the wrong netns, so it checks and holds
 * nothing. The daemon, which runs in the netns it programs, never uses it.
 */
export class UncheckedHostPorts implements HostPorts {
  async inUse(): Promise<boolean> {
    return false;
  }

  async reserve(): Promise<boolean> {
    return true;
  }

  async release(): Promise<void> {}
}
