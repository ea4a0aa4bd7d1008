import { randomBytes } from 'node:crypto';
import type { Ip } from './address.js';

/**
 * A locally administered unicast MAC. From an IPv4 address it is Docker's
 * 02:42:a.b.c.d, so ARP caches and users see familiar values; otherwise random.
 */
export function macFor(ipv4: Ip | undefined): string {
  const tail = ipv4 && ipv4.family === 4 ? [0x42, ...[24n, 16n, 8n, 0n].map((s) => Number((ipv4.value >> s) & 0xffn))] : [...randomBytes(5)];
  return [0x02, ...tail].map((b) => b.toString(16).padStart(2, '0')).join(':');
}

export const MAC_ADDRESS = /^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/;
