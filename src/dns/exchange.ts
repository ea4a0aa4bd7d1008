import { randomInt } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { connect, isIPv6 } from 'node:net';
import * as packet from 'dns-packet';
import { FrameReader, frame } from './tcp-frames.js';
import type { Upstream } from './upstreams.js';

export type Transport = 'udp' | 'tcp';

/** The EDNS0 buffer size tsnet offers: the size that avoids IP fragmentation (DNS flag day 2020). */
export const EDNS_UDP_SIZE = 1232;

/** An upstream's answer with the DNS fields tsnet passes on. */
export type UpstreamAnswer = packet.DecodedPacket & { rcode?: string };

const sameQuestion = (a: packet.Question, b: packet.Question | undefined) =>
  b !== undefined && a.type === b.type && (a.class ?? 'IN') === (b.class ?? 'IN') && a.name.toLowerCase() === b.name.toLowerCase();

/** Whether `reply` answers `query`: a response with its ID and its question (so a stray or forged datagram is ignored). */
function answers(query: packet.Packet, reply: packet.DecodedPacket): boolean {
  return reply.type === 'response' && reply.id === query.id && sameQuestion(query.questions![0]!, reply.questions?.[0]);
}

function decodeOrUndefined(message: Buffer): packet.DecodedPacket | undefined {
  try {
    return packet.decode(message);
  } catch {
    return undefined;
  }
}

/**
 * Asks one upstream one question over `transport`, with a fresh random ID
 * and (over UDP) a fresh socket, so the source port is random too. Rejects
 * after `timeoutMs` or when the upstream cannot be reached.
 */
export function exchange(upstream: Upstream, question: packet.Question, transport: Transport, timeoutMs: number): Promise<UpstreamAnswer> {
  const query: packet.Packet = {
    type: 'query',
    id: randomInt(0, 65536),
    flags: packet.RECURSION_DESIRED,
    questions: [question],
    additionals: [{ type: 'OPT', name: '.', udpPayloadSize: EDNS_UDP_SIZE, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] }],
  };
  const message = packet.encode(query);
  return transport === 'udp' ? overUdp(upstream, query, message, timeoutMs) : overTcp(upstream, query, message, timeoutMs);
}

/**
 * A promise for one upstream answer, settled once: by the answer, an error
 * or the deadline. `open` sets up the socket and returns what closes it.
 */
function oneAnswer(
  upstream: Upstream,
  timeoutMs: number,
  open: (finish: (error: Error | undefined, reply?: UpstreamAnswer) => void) => () => void,
): Promise<UpstreamAnswer> {
  return new Promise((resolve, reject) => {
    let settled = false;
    let release = () => {};
    const finish = (error: Error | undefined, reply?: UpstreamAnswer) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      release();
      if (error) reject(error);
      else resolve(reply!);
    };
    const timer = setTimeout(() => finish(new Error(`${upstream.address}:${upstream.port} did not answer within ${timeoutMs} ms`)), timeoutMs);
    release = open(finish);
  });
}

function overUdp(upstream: Upstream, query: packet.Packet, message: Buffer, timeoutMs: number): Promise<UpstreamAnswer> {
  return oneAnswer(upstream, timeoutMs, (finish) => {
    const socket = createSocket(isIPv6(upstream.address) ? 'udp6' : 'udp4');
    socket.on('error', (error) => finish(error));
    socket.on('message', (data, from) => {
      if (from.address !== upstream.address || from.port !== upstream.port) return;
      const reply = decodeOrUndefined(data);
      if (reply && answers(query, reply)) finish(undefined, reply);
    });
    socket.send(message, upstream.port, upstream.address);
    return () => socket.close();
  });
}

function overTcp(upstream: Upstream, query: packet.Packet, message: Buffer, timeoutMs: number): Promise<UpstreamAnswer> {
  return oneAnswer(upstream, timeoutMs, (finish) => {
    const socket = connect({ host: upstream.address, port: upstream.port });
    const reader = new FrameReader();
    socket.on('error', (error) => finish(error));
    socket.on('close', () => finish(new Error(`${upstream.address}:${upstream.port} closed the TCP connection without an answer`)));
    socket.on('data', (chunk) => {
      try {
        for (const data of reader.push(chunk)) {
          const reply = decodeOrUndefined(data);
          if (reply && answers(query, reply)) return finish(undefined, reply);
        }
      } catch (error) {
        finish(error as Error);
      }
    });
    socket.write(frame(message));
    return () => socket.destroy();
  });
}
