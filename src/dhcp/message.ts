/**
 * DHCPv4 messages (RFC 2131, options RFC 2132) as tsnet's client sends and
 * reads them: the client's DISCOVER, REQUEST and RELEASE are built here, a
 * server's OFFER, ACK and NAK are read here. Reading never throws: whatever
 * arrives on port 68 may be hostile, and what is not a well-formed reply is
 * named and dropped.
 */

const BOOTREQUEST = 1;
const BOOTREPLY = 2;
const ETHERNET = 1;
const MAGIC_COOKIE = 0x63825363;
/** op … file: the fixed part before the magic cookie and the options. */
const FIXED_LENGTH = 236;
const BROADCAST_FLAG = 0x8000;

const OPTION = {
  pad: 0,
  subnetMask: 1,
  router: 3,
  dnsServer: 6,
  hostname: 12,
  requestedAddress: 50,
  leaseTime: 51,
  messageType: 53,
  serverId: 54,
  parameterRequest: 55,
  message: 56,
  renewalTime: 58,
  rebindingTime: 59,
  clientId: 61,
  end: 255,
} as const;

const TYPE_CODES = { DISCOVER: 1, OFFER: 2, REQUEST: 3, DECLINE: 4, ACK: 5, NAK: 6, RELEASE: 7, INFORM: 8 } as const;
type TypeName = keyof typeof TYPE_CODES;

/** Who the client is: the MAC it sends from and the identifier (option 61) a server keeps its lease by. */
export interface ClientIdentity {
  mac: string;
  /** Option 61's bytes (type byte first). */
  clientId: Buffer;
  /** Option 12: the container's name, where tsnet knows it. */
  hostname?: string;
}

/** DHCPDISCOVER: asks every server on the wire for an offer; `requested` is option 50 (a --ip). */
export interface Discover {
  type: 'DISCOVER';
  xid: number;
  client: ClientIdentity;
  requested?: string;
}

/**
 * DHCPREQUEST. Selecting an offer: `server` and `requested` set, no
 * `ciaddr`. Renewing (unicast to the server) and rebinding (broadcast):
 * `ciaddr` set, neither of the others.
 */
export interface Request {
  type: 'REQUEST';
  xid: number;
  client: ClientIdentity;
  server?: string;
  requested?: string;
  ciaddr?: string;
}

/** DHCPRELEASE: gives the lease back, unicast to the server that granted it. */
export interface Release {
  type: 'RELEASE';
  xid: number;
  client: ClientIdentity;
  ciaddr: string;
  server: string;
}

export type ClientMessage = Discover | Request | Release;

/** What an OFFER and an ACK carry for the client. */
export interface LeaseTerms {
  xid: number;
  chaddr: string;
  address: string;
  server: string;
  subnetMask?: string;
  routers: string[];
  dnsServers: string[];
  /** Option 51; absent in an OFFER from some servers, required in an ACK. */
  leaseSeconds?: number;
  renewalSeconds?: number;
  rebindingSeconds?: number;
}

export interface Offer extends LeaseTerms {
  type: 'OFFER';
}

export interface Ack extends LeaseTerms {
  type: 'ACK';
  leaseSeconds: number;
}

export interface Nak {
  type: 'NAK';
  xid: number;
  chaddr: string;
  server?: string;
  /** Option 56: the server's reason, if it gave one. */
  message?: string;
}

export type ServerReply = Offer | Ack | Nak;

/** The options tsnet asks for (option 55): mask, routers, DNS, lease, T1, T2. */
const WANTED_OPTIONS = [OPTION.subnetMask, OPTION.router, OPTION.dnsServer, OPTION.leaseTime, OPTION.renewalTime, OPTION.rebindingTime];

const macBytes = (mac: string) => Buffer.from(mac.split(':').map((h) => Number.parseInt(h, 16)));
const formatMac = (bytes: Buffer) => [...bytes].map((b) => b.toString(16).padStart(2, '0')).join(':');
const ipBytes = (ip: string) => Buffer.from(ip.split('.').map(Number));
const formatIp = (bytes: Buffer, at = 0) => `${bytes[at]}.${bytes[at + 1]}.${bytes[at + 2]}.${bytes[at + 3]}`;

/** The client identifier tsnet sends for a MAC: type 1 (Ethernet) and the MAC, as RFC 2132 suggests and dnsmasq, Kea and ISC key leases by. */
export const clientIdForMac = (mac: string): Buffer => Buffer.concat([Buffer.from([ETHERNET]), macBytes(mac)]);

function option(code: number, value: Buffer): Buffer {
  return Buffer.concat([Buffer.from([code, value.length]), value]);
}

/** The bytes of a client message, ready for UDP port 67. */
export function encodeClientMessage(message: ClientMessage): Buffer {
  const fixed = Buffer.alloc(FIXED_LENGTH);
  fixed[0] = BOOTREQUEST;
  fixed[1] = ETHERNET;
  fixed[2] = 6;
  fixed.writeUInt32BE(message.xid >>> 0, 4);
  // Broadcast replies while the client has no address: the kernel drops unicast to an address the link does not hold yet.
  const ciaddr = message.type === 'DISCOVER' ? undefined : message.ciaddr;
  if (message.type !== 'RELEASE' && !ciaddr) fixed.writeUInt16BE(BROADCAST_FLAG, 10);
  if (ciaddr) ipBytes(ciaddr).copy(fixed, 12);
  macBytes(message.client.mac).copy(fixed, 28);
  const cookie = Buffer.alloc(4);
  cookie.writeUInt32BE(MAGIC_COOKIE);
  const options = [option(OPTION.messageType, Buffer.from([TYPE_CODES[message.type]])), option(OPTION.clientId, message.client.clientId)];
  if (message.type !== 'RELEASE') {
    if (message.client.hostname) options.push(option(OPTION.hostname, Buffer.from(message.client.hostname, 'ascii')));
    if (message.requested) options.push(option(OPTION.requestedAddress, ipBytes(message.requested)));
    options.push(option(OPTION.parameterRequest, Buffer.from(WANTED_OPTIONS)));
  }
  if (message.type !== 'DISCOVER' && message.server) options.push(option(OPTION.serverId, ipBytes(message.server)));
  return Buffer.concat([fixed, cookie, ...options, Buffer.from([OPTION.end])]);
}

/** A reply that is not one to take, and why (for the debug log). */
export interface Dropped {
  dropped: string;
}

/** The options of a message: code → value. A second occurrence of a code is concatenated (RFC 3396). */
function readOptions(bytes: Buffer): Map<number, Buffer> | Dropped {
  const options = new Map<number, Buffer>();
  let at = 0;
  while (at < bytes.length) {
    const code = bytes[at]!;
    if (code === OPTION.end) return options;
    if (code === OPTION.pad) {
      at++;
      continue;
    }
    if (at + 1 >= bytes.length) return { dropped: `option ${code} has no length` };
    const length = bytes[at + 1]!;
    if (at + 2 + length > bytes.length) return { dropped: `option ${code} runs past the end of the message` };
    const value = bytes.subarray(at + 2, at + 2 + length);
    const earlier = options.get(code);
    options.set(code, earlier ? Buffer.concat([earlier, value]) : value);
    at += 2 + length;
  }
  // No end option: tolerated, as most clients do, when every option was whole.
  return options;
}

const address = (value: Buffer | undefined): string | undefined => (value?.length === 4 ? formatIp(value) : undefined);
const addresses = (value: Buffer | undefined): string[] => {
  if (!value || value.length % 4 !== 0) return [];
  return Array.from({ length: value.length / 4 }, (_, i) => formatIp(value, i * 4));
};
const seconds = (value: Buffer | undefined): number | undefined => (value?.length === 4 ? value.readUInt32BE(0) : undefined);

/** Reads what arrived on port 68: an OFFER, ACK or NAK, or why it is no reply to take. */
export function decodeServerReply(bytes: Buffer): ServerReply | Dropped {
  if (bytes.length < FIXED_LENGTH + 4) return { dropped: `${bytes.length} bytes is shorter than a DHCP message` };
  if (bytes[0] !== BOOTREPLY) return { dropped: 'not a BOOTREPLY' };
  if (bytes[1] !== ETHERNET || bytes[2] !== 6) return { dropped: 'not for an Ethernet client' };
  if (bytes.readUInt32BE(FIXED_LENGTH) !== MAGIC_COOKIE) return { dropped: 'no DHCP magic cookie' };
  const options = readOptions(bytes.subarray(FIXED_LENGTH + 4));
  if ('dropped' in options) return options;
  const typeCode = options.get(OPTION.messageType);
  const type = typeCode?.length === 1 ? (Object.keys(TYPE_CODES) as TypeName[]).find((name) => TYPE_CODES[name] === typeCode[0]) : undefined;
  const xid = bytes.readUInt32BE(4);
  const chaddr = formatMac(bytes.subarray(28, 34));
  const server = address(options.get(OPTION.serverId));
  if (type === 'NAK') {
    const message = options.get(OPTION.message)?.toString('latin1').replace(/[^\x20-\x7e]/g, '?');
    return { type, xid, chaddr, ...(server ? { server } : {}), ...(message ? { message } : {}) };
  }
  if (type !== 'OFFER' && type !== 'ACK') return { dropped: type ? `a DHCP${type}, not a reply` : 'no valid message type (option 53)' };
  const yiaddr = formatIp(bytes, 16);
  if (yiaddr === '0.0.0.0') return { dropped: `a DHCP${type} with no address` };
  if (!server) return { dropped: `a DHCP${type} with no server identifier (option 54)` };
  const subnetMask = address(options.get(OPTION.subnetMask));
  const leaseSeconds = seconds(options.get(OPTION.leaseTime));
  const renewalSeconds = seconds(options.get(OPTION.renewalTime));
  const rebindingSeconds = seconds(options.get(OPTION.rebindingTime));
  const terms = {
    xid,
    chaddr,
    address: yiaddr,
    server,
    ...(subnetMask ? { subnetMask } : {}),
    routers: addresses(options.get(OPTION.router)),
    dnsServers: addresses(options.get(OPTION.dnsServer)),
    ...(renewalSeconds !== undefined ? { renewalSeconds } : {}),
    ...(rebindingSeconds !== undefined ? { rebindingSeconds } : {}),
  };
  if (type === 'OFFER') return { type, ...terms, ...(leaseSeconds !== undefined ? { leaseSeconds } : {}) };
  if (leaseSeconds === undefined) return { dropped: 'a DHCPACK with no lease time (option 51)' };
  return { type, ...terms, leaseSeconds };
}
