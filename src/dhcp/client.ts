import { randomInt } from 'node:crypto';
import { type Ack, type ClientIdentity, type ClientMessage, decodeServerReply, encodeClientMessage, type LeaseTerms, type ServerReply } from './message.js';

/**
 * Where the client's messages go and replies come from: a UDP socket on
 * port 68 in the network namespace of the link that speaks for the
 * container (wire.ts). Messages go to port 67: broadcast, or unicast to `to`.
 */
export interface DhcpWire {
  send(bytes: Buffer, to?: string): Promise<void>;
  /** The next datagram that arrives, or undefined once `deadline` (ms since the epoch) passes. */
  receive(deadline: number): Promise<Buffer | undefined>;
}

/** A lease as the server granted it, with the moment it was granted (ms since the epoch). */
export interface Lease {
  address: string;
  server: string;
  subnetMask?: string;
  routers: string[];
  dnsServers: string[];
  leaseSeconds: number;
  /** T1 and T2 (RFC 2131 4.4.5): the server's, else half and seven eighths of the lease. */
  renewalSeconds: number;
  rebindingSeconds: number;
  grantedAt: number;
}

/** The server said no (DHCPNAK), or offered something other than what was asked. */
export class DhcpRefused extends Error {}
/** No usable answer within the time given. */
export class DhcpTimeout extends Error {}

export interface AcquireOptions {
  /** --ip: the address to ask for (option 50); any other offer is refused. */
  requested?: string;
  timeoutMs: number;
  /** Why an offered address cannot be taken (outside --subnet), or undefined when it can. */
  refuse?: (address: string) => string | undefined;
  /** Told of every datagram that was no reply to take (hostile or broken), with why. */
  dropped?: (why: string) => void;
  now?: () => number;
}

/** Retransmissions: 1 s, then doubling (RFC 2131 4.1 asks for 4 s, doubling; an attach cannot wait that long). */
const FIRST_RETRY_MS = 1000;

const newXid = () => randomInt(0, 2 ** 32);

function leaseOf(ack: Ack, grantedAt: number): Lease {
  return {
    address: ack.address,
    server: ack.server,
    ...(ack.subnetMask ? { subnetMask: ack.subnetMask } : {}),
    routers: ack.routers,
    dnsServers: ack.dnsServers,
    leaseSeconds: ack.leaseSeconds,
    renewalSeconds: ack.renewalSeconds ?? Math.floor(ack.leaseSeconds / 2),
    rebindingSeconds: ack.rebindingSeconds ?? Math.floor((ack.leaseSeconds * 7) / 8),
    grantedAt,
  };
}

/**
 * One exchange: sends `message` (again at growing intervals) until `take`
 * accepts a reply of its xid and MAC, or the deadline passes. Anything else
 * that arrives is dropped and told.
 */
async function exchange<T>(wire: DhcpWire, message: ClientMessage, deadline: number, take: (reply: ServerReply) => T | undefined, options: AcquireOptions, to?: string): Promise<T | undefined> {
  const now = options.now ?? Date.now;
  const bytes = encodeClientMessage(message);
  let wait = FIRST_RETRY_MS;
  while (now() < deadline) {
    await wire.send(bytes, to);
    const resendAt = Math.min(deadline, now() + wait);
    wait *= 2;
    for (;;) {
      const datagram = await wire.receive(resendAt);
      if (!datagram) break;
      const reply = decodeServerReply(datagram);
      if ('dropped' in reply) {
        options.dropped?.(reply.dropped);
        continue;
      }
      if (reply.xid !== message.xid) {
        options.dropped?.(`a reply to another exchange (xid ${reply.xid.toString(16)})`);
        continue;
      }
      if (reply.chaddr !== message.client.mac) {
        options.dropped?.(`a reply for another MAC (${reply.chaddr})`);
        continue;
      }
      const taken = take(reply);
      if (taken !== undefined) return taken;
    }
  }
  return undefined;
}

/**
 * DISCOVER, OFFER, REQUEST, ACK (RFC 2131 3.1): a new lease for `client`.
 * An offer outside what `refuse` allows, or other than `requested`, is not
 * taken; if nothing else comes, the error says what was offered.
 */
export async function acquire(wire: DhcpWire, client: ClientIdentity, options: AcquireOptions): Promise<Lease> {
  const now = options.now ?? Date.now;
  const deadline = now() + options.timeoutMs;
  const refusals: string[] = [];
  const discover = { type: 'DISCOVER' as const, xid: newXid(), client, ...(options.requested ? { requested: options.requested } : {}) };
  const offer = await exchange(wire, discover, deadline, (reply) => {
    if (reply.type !== 'OFFER') return undefined;
    const why = options.requested && reply.address !== options.requested ? `not ${options.requested}, which was asked for` : options.refuse?.(reply.address);
    if (why === undefined) return reply;
    refusals.push(`${reply.server} offered ${reply.address}: ${why}`);
    return undefined;
  }, options);
  if (!offer) {
    const seconds = options.timeoutMs / 1000;
    if (refusals.length > 0) throw new DhcpRefused(`no offer could be taken within ${seconds} s (${[...new Set(refusals)].join('; ')})`);
    throw new DhcpTimeout(`no DHCP server answered within ${seconds} s`);
  }
  const request = { type: 'REQUEST' as const, xid: discover.xid, client, server: offer.server, requested: offer.address };
  return finish(wire, request, offer, deadline, options);
}

/** Waits for the server's ACK or NAK of a REQUEST; the ACK must grant the address it was about. */
async function finish(wire: DhcpWire, request: ClientMessage, asked: Pick<LeaseTerms, 'address' | 'server'>, deadline: number, options: AcquireOptions, to?: string): Promise<Lease> {
  const now = options.now ?? Date.now;
  const answer = await exchange(wire, request, deadline, (reply) => {
    if (reply.type === 'OFFER') return undefined;
    if (reply.type === 'NAK') return reply.server === undefined || reply.server === asked.server ? reply : undefined;
    return reply.address === asked.address ? reply : undefined;
  }, options, to);
  if (!answer) throw new DhcpTimeout(`the DHCP server ${asked.server} did not acknowledge ${asked.address} within ${options.timeoutMs / 1000} s`);
  if (answer.type === 'NAK') throw new DhcpRefused(`the DHCP server ${asked.server} refused ${asked.address}${answer.message ? `: ${answer.message}` : ''}`);
  return leaseOf(answer, now());
}

/**
 * Extends `lease`: renewing (unicast to its server, from the leased address)
 * or, past T2, rebinding (broadcast, any server). A NAK means the address
 * is no longer the client's.
 */
export function extend(wire: DhcpWire, client: ClientIdentity, lease: Lease, how: 'renew' | 'rebind', options: AcquireOptions): Promise<Lease> {
  const now = options.now ?? Date.now;
  const request = { type: 'REQUEST' as const, xid: newXid(), client, ciaddr: lease.address };
  return finish(wire, request, lease, now() + options.timeoutMs, options, how === 'renew' ? lease.server : undefined);
}

/** DHCPRELEASE: no answer comes (RFC 2131 4.4.6), so it is sent twice against a lost datagram. */
export async function release(wire: DhcpWire, client: ClientIdentity, lease: Pick<Lease, 'address' | 'server'>): Promise<void> {
  const bytes = encodeClientMessage({ type: 'RELEASE', xid: newXid(), client, ciaddr: lease.address, server: lease.server });
  for (let i = 0; i < 2; i++) await wire.send(bytes, lease.server);
}
