import { Address6 } from 'ip-address';

export type Family = 4 | 6;

/** An IP address as a number, so ranges and offsets are plain arithmetic. */
export interface Ip {
  family: Family;
  value: bigint;
}

/** A subnet in canonical form: host bits of `network` are zero. */
export interface Cidr {
  family: Family;
  network: bigint;
  prefix: number;
}

const BITS: Record<Family, number> = { 4: 32, 6: 128 };

function parseAddress(text: string): Address6 | undefined {
  if (Address6.isValid(text) && !text.includes('/') && !text.includes('%')) return new Address6(text);
  return undefined;
}

const DOTTED_QUAD = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/** IPv4 by hand: the IPAM formats and parses an address per allocation, and the library is slow at it. */
function parseIpv4(text: string): Ip | undefined {
  const match = DOTTED_QUAD.exec(text);
  if (!match) return undefined;
  let value = 0;
  for (let i = 1; i <= 4; i++) {
    const part = match[i]!;
    if ((part.length > 1 && part.startsWith('0')) || Number(part) > 255) return undefined;
    value = value * 256 + Number(part);
  }
  return { family: 4, value: BigInt(value) };
}

/** Parses a plain address (no mask); undefined when it is not one. */
export function parseIp(text: string): Ip | undefined {
  if (!text.includes(':')) return parseIpv4(text);
  const address = parseAddress(text);
  return address && { family: 6, value: address.bigInt() };
}

export function formatIp(ip: Ip): string {
  if (ip.family === 6) return Address6.fromBigInt(ip.value).correctForm();
  const n = Number(ip.value);
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

/** Size of a subnet in addresses. */
export function cidrSize(cidr: Cidr): bigint {
  return 1n << BigInt(BITS[cidr.family] - cidr.prefix);
}

/**
 * Parses `addr/len`. With `strict`, host bits must be zero (a subnet as the
 * user must write it); otherwise the address part is returned as `ip` too,
 * which is how dockerd writes gateways and interface addresses.
 */
export function parseCidrWithIp(text: string): { cidr: Cidr; ip: Ip } | undefined {
  const slash = text.indexOf('/');
  if (slash < 0) return undefined;
  const ip = parseIp(text.slice(0, slash));
  const lengthText = text.slice(slash + 1);
  if (!ip || !/^\d{1,3}$/.test(lengthText)) return undefined;
  const prefix = Number(lengthText);
  if (prefix > BITS[ip.family]) return undefined;
  const hostBits = BigInt(BITS[ip.family] - prefix);
  const network = (ip.value >> hostBits) << hostBits;
  return { cidr: { family: ip.family, network, prefix }, ip };
}

/** Parses a subnet; `hostBitsSet` tells when the text had host bits (10.0.0.1/24). */
export function parseCidr(text: string): { cidr: Cidr; hostBitsSet: boolean } | undefined {
  const parsed = parseCidrWithIp(text);
  if (!parsed) return undefined;
  return { cidr: parsed.cidr, hostBitsSet: parsed.ip.value !== parsed.cidr.network };
}

export function formatCidr(cidr: Cidr): string {
  return `${formatIp({ family: cidr.family, value: cidr.network })}/${cidr.prefix}`;
}

/** A CIDR as tsnet compares them (`10.1.0.5/24` → `10.1.0.0/24`, IPv6 compressed); text that is no CIDR as it is. */
export function canonicalCidr(text: string): string {
  const parsed = parseCidr(text);
  return parsed ? formatCidr(parsed.cidr) : text;
}

export function cidrContains(cidr: Cidr, ip: Ip): boolean {
  return ip.family === cidr.family && ip.value >= cidr.network && ip.value < cidr.network + cidrSize(cidr);
}

export function cidrOverlaps(a: Cidr, b: Cidr): boolean {
  if (a.family !== b.family) return false;
  const wider = a.prefix <= b.prefix ? a : b;
  const narrower = wider === a ? b : a;
  return cidrContains(wider, { family: narrower.family, value: narrower.network });
}

export function cidrWithin(inner: Cidr, outer: Cidr): boolean {
  return inner.prefix >= outer.prefix && cidrOverlaps(inner, outer);
}
