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

/** What a TCP client may hold of a listener. */
export interface TcpLimits {
  /** Clients at once; more are refused until one leaves. */
  connections: number;
  /** Clients at once from one address, so a few hosts cannot hold every slot. */
  perAsker: number;
  /** A client that sends nothing and reads nothing this long is cut (RFC 7766 suggests seconds). */
  idleMs: number;
  /** A message must arrive whole this soon after its first byte: a client dribbling a byte now and then is cut. */
  messageMs: number;
  /** Answers written that the client has not read yet; above this the connection is not read until they drain. */
  pendingBytes: number;
}

export const DEFAULT_TCP_LIMITS: TcpLimits = { connections: 128, perAsker: 16, idleMs: 10_000, messageMs: 5_000, pendingBytes: 64 * 1024 };

/** Queries of one TCP connection being answered at once (upstream, mostly); more wait for one of them. */
const MAX_PIPELINED = 32;

export interface ListenerOptions {
  /** Whether a client at this address may ask at all: one that may not is closed at once, holding no slot. */
  admits?: (from: string) => boolean;
  tcp?: TcpLimits;
}

/**
 * DNS on one address and port, over UDP and TCP (RFC 7766: length-prefixed
 * messages, several per connection, answered as they are ready).
 */
export class DnsListener {
  private readonly connections = new Set<Socket>();
  /** Open connections per client address. */
  private readonly perAsker = new Map<string, number>();

  private constructor(
    readonly address: string,
    readonly port: number,
    private readonly udp: UdpSocket,
    private readonly tcp: Server,
    private readonly admits: (from: string) => boolean,
    private readonly limits: TcpLimits,
  ) {}

  /** Binds both sockets; rejects (with nothing left open) when either cannot be bound. */
  static async open(address: string, port: number, handler: Handler, onError: (error: Error) => void, options: ListenerOptions = {}): Promise<DnsListener> {
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
    const listener = new DnsListener(address, port, udp, tcp, options.admits ?? (() => true), options.tcp ?? DEFAULT_TCP_LIMITS);
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
    this.tcp.maxConnections = this.limits.connections;
    this.tcp.on('error', onError);
    this.tcp.on('connection', (socket) => this.serveConnection(socket, handler));
  }

  private serveConnection(socket: Socket, handler: Handler): void {
    const from = socket.remoteAddress ?? '';
    const held = this.perAsker.get(from) ?? 0;
    if (!this.admits(from) || held >= this.limits.perAsker) return void socket.destroy();
    this.perAsker.set(from, held + 1);
    this.connections.add(socket);
    socket.on('close', () => {
      this.connections.delete(socket);
      const left = (this.perAsker.get(from) ?? 1) - 1;
      if (left > 0) this.perAsker.set(from, left);
      else this.perAsker.delete(from);
    });
    socket.on('error', () => socket.destroy());
    // Idle counts reads and writes: a client that stops reading (its answers pile up, so tsnet stops reading it) goes too.
    socket.setTimeout(this.limits.idleMs, () => socket.destroy());
    new TcpConversation(socket, handler, from, this.limits).start();
  }

  /** Bytes written to TCP clients that they have not read yet. */
  get tcpPendingBytes(): number {
    return [...this.connections].reduce((sum, socket) => sum + socket.writableLength, 0);
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

/**
 * One TCP client's queries in, answers out, with backpressure: messages
 * wait while the client has not read pendingBytes of answers, and the
 * socket is not read meanwhile, so a client that never reads holds about
 * that much and one chunk of queries, not everything it asked.
 */
class TcpConversation {
  private readonly reader = new FrameReader();
  private readonly waiting: Buffer[] = [];
  private answering = 0;
  private messageTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly socket: Socket,
    private readonly handler: Handler,
    private readonly from: string,
    private readonly limits: TcpLimits,
  ) {}

  start(): void {
    this.socket.on('data', (chunk) => this.received(chunk));
    this.socket.on('drain', () => this.pump());
    this.socket.on('close', () => clearTimeout(this.messageTimer));
  }

  private received(chunk: Buffer): void {
    try {
      this.waiting.push(...this.reader.push(chunk));
    } catch {
      return void this.socket.destroy();
    }
    this.watchMessageDeadline();
    this.pump();
  }

  /** A message begun must be whole within messageMs, however its bytes trickle in. */
  private watchMessageDeadline(): void {
    if (this.reader.buffered === 0) {
      clearTimeout(this.messageTimer);
      this.messageTimer = undefined;
    } else if (this.messageTimer === undefined) {
      this.messageTimer = setTimeout(() => this.socket.destroy(), this.limits.messageMs);
    }
  }

  private get backedUp(): boolean {
    return this.socket.writableLength > this.limits.pendingBytes;
  }

  private pump(): void {
    while (this.waiting.length > 0 && !this.backedUp && this.answering < MAX_PIPELINED && !this.socket.destroyed) this.answer(this.waiting.shift()!);
    if (this.waiting.length > 0 || this.backedUp) this.socket.pause();
    else this.socket.resume();
  }

  private answer(message: Buffer): void {
    this.answering++;
    const send = (reply: Buffer | undefined) => {
      this.answering--;
      if (!reply) return void this.socket.destroy();
      if (!this.socket.destroyed) this.socket.write(frame(reply));
    };
    const answer = this.handler(message, 'tcp', this.from);
    if (answer instanceof Promise) {
      void answer.then((reply) => {
        send(reply);
        this.pump();
      });
    } else send(answer);
  }
}
