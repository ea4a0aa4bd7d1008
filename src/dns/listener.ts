import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { createServer, isIPv6, type Server, type Socket } from 'node:net';
import type { Transport } from './exchange.js';
import { FrameReader, frame } from './tcp-frames.js';

/** Answers one message from `from` (the asker's address), at once when it can; undefined = send nothing. Must not throw. */
export type Handler = (message: Buffer, transport: Transport, from: string) => Buffer | undefined | Promise<Buffer | undefined>;


/**
 * dgram resolves every destination before it sends, through dns.lookup
 * and a tick even for an IP literal; ours are always literals (the
 * asker's address, our own), so they are taken as they are, at once.
 * About a fifth more answers per second under load.
 */
const literalLookup = (address: string, _options: unknown, callback: (error: null, address: string, family: number) => void) =>
  // Not isIPv6: its regular expression costs a percent of the server's time at full load.
  callback(null, address, address.includes(':') ? 6 : 4);

/** TCP clients at once per listener; more are refused until one leaves. */
const MAX_TCP_CONNECTIONS = 128;
/** A TCP client silent this long is disconnected (RFC 7766 suggests seconds). */
const TCP_IDLE_MS = 10_000;
/** Queries of one TCP connection being answered at once; a client that pipelines more is cut off. */
const MAX_PIPELINED = 32;

/**
 * DNS on one address and port, over UDP and TCP (RFC 7766: length-prefixed
 * messages, several per connection, answered as they are ready).
 */
export class DnsListener {
  private readonly connections = new Set<Socket>();

  private constructor(
    readonly address: string,
    readonly port: number,
    private readonly udp: UdpSocket,
    private readonly tcp: Server,
  ) {}

  /** Binds both sockets; rejects (with nothing left open) when either cannot be bound. */
  static async open(address: string, port: number, handler: Handler, onError: (error: Error) => void): Promise<DnsListener> {
    const udp = createSocket({ type: isIPv6(address) ? 'udp6' : 'udp4', lookup: literalLookup });
    await new Promise<void>((resolve, reject) => {
      udp.once('error', reject);
      udp.bind(port, address, () => {
        udp.off('error', reject);
        resolve();
      });
    });
    const tcp = createServer();
    try {
      await new Promise<void>((resolve, reject) => {
        tcp.once('error', reject);
        tcp.listen({ host: address, port }, () => {
          tcp.off('error', reject);
          resolve();
        });
      });
    } catch (error) {
      udp.close();
      throw error;
    }
    const listener = new DnsListener(address, port, udp, tcp);
    listener.serve(handler, onError);
    return listener;
  }

  private serve(handler: Handler, onError: (error: Error) => void): void {
    this.udp.on('error', onError);
    this.udp.on('message', (message, from) => {
      // No closure on the hot path: an answer at hand goes out at once.
      const answer = handler(message, 'udp', from.address);
      if (answer instanceof Promise) void answer.then((reply) => reply && this.udp.send(reply, from.port, from.address));
      else if (answer) this.udp.send(answer, from.port, from.address);
    });
    this.tcp.maxConnections = MAX_TCP_CONNECTIONS;
    this.tcp.on('error', onError);
    this.tcp.on('connection', (socket) => this.serveConnection(socket, handler));
  }

  private serveConnection(socket: Socket, handler: Handler): void {
    this.connections.add(socket);
    const reader = new FrameReader();
    let answering = 0;
    socket.setTimeout(TCP_IDLE_MS, () => socket.destroy());
    socket.on('close', () => this.connections.delete(socket));
    socket.on('error', () => socket.destroy());
    socket.on('data', (chunk) => {
      let messages: Buffer[];
      try {
        messages = reader.push(chunk);
      } catch {
        socket.destroy();
        return;
      }
      for (const message of messages) {
        if (++answering > MAX_PIPELINED) return void socket.destroy();
        const send = (reply: Buffer | undefined) => {
          answering--;
          if (!reply) return void socket.destroy();
          if (!socket.destroyed) socket.write(frame(reply));
        };
        const answer = handler(message, 'tcp', socket.remoteAddress ?? '');
        if (answer instanceof Promise) void answer.then(send);
        else send(answer);
      }
    });
  }

  /** TCP clients connected now. */
  get tcpConnections(): number {
    return this.connections.size;
  }

  async close(): Promise<void> {
    for (const socket of this.connections) socket.destroy();
    await Promise.all([new Promise<void>((resolve) => this.udp.close(() => resolve())), new Promise<void>((resolve) => this.tcp.close(() => resolve()))]);
  }
}
