import { formatCidr, parseCidr, parseIp } from '../net/address.js';

/** Where DNS is served or asked: an IP address and a port. */
export interface DnsAddress {
  address: string;
  port: number;
}

export const dnsAddressKey = (a: DnsAddress) => (a.address.includes(':') ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`);

/** `IP`, `IP:PORT` or `[IPv6]:PORT` (port 53 when absent); undefined when it is none of those. */
export function parseDnsAddress(text: string): DnsAddress | undefined {
  const bracketed = /^\[([^\]]+)\](?::(\d{1,5}))?$/.exec(text);
  const v4WithPort = /^([\d.]+):(\d{1,5})$/.exec(text);
  const [address, port] = bracketed ? [bracketed[1]!, bracketed[2]] : v4WithPort ? [v4WithPort[1]!, v4WithPort[2]] : [text, undefined];
  const portNumber = port === undefined ? 53 : Number(port);
  if (!parseIp(address) || portNumber < 1 || portNumber > 65535) return undefined;
  return { address, port: portNumber };
}

/** A --dns-listen or --dns-upstream value, or an error naming the flag. */
export function dnsAddressFlag(flag: string, text: string): DnsAddress {
  const parsed = parseDnsAddress(text);
  if (!parsed) throw new Error(`${flag} ${text}: expected IP, IP:PORT or [IPv6]:PORT`);
  return parsed;
}

/** A --dns-recursion-from value: a CIDR (or one address), canonical, or an error naming the flag. */
export function dnsRecursionFromFlag(text: string): string {
  const parsed = parseCidr(text.includes('/') ? text : `${text}/${text.includes(':') ? 128 : 32}`);
  if (!parsed) throw new Error(`--dns-recursion-from ${text}: expected a CIDR such as 192.168.1.0/24, or an address`);
  return formatCidr(parsed.cidr);
}

const LABEL = '[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?';

/** --dns-domain: one or more DNS labels, lower case, no trailing dot. */
export function dnsDomainFlag(text: string): string {
  const domain = text.toLowerCase().replace(/\.$/, '');
  if (!new RegExp(`^${LABEL}(\\.${LABEL})*$`).test(domain) || domain.length > 200) {
    throw new Error(`--dns-domain ${text}: expected a domain name such as tsnet or containers.example`);
  }
  return domain;
}
