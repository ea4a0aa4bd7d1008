// dnsmasq as the LAN's DHCP server (and, with `domain`, the LAN's DNS that
// registers its clients' hostnames), in a netns of the test, on one interface,
// in the foreground, stopped by PID. Its lease file and its log are what
// tests read to see what the server granted, renewed and released.
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type CleanupStack } from './cleanup.js';
import { spawnDnsmasq } from './dnsmasq.js';

export interface DhcpServerOptions {
  dir: string;
  netns: string;
  /** The interface it serves, which holds `address`. */
  iface: string;
  address: string;
  /** `first,last` of the range it hands out. */
  range: string;
  /** Lease time, dnsmasq's syntax (`2m`, `1h`); its minimum is 2 minutes. */
  leaseTime?: string;
  /** With a domain, it also answers DNS on `address`:53 for its clients' hostnames (`<name>.<domain>`). */
  domain?: string;
  extraArgs?: readonly string[];
}

/** One line of dnsmasq's lease file: expiry, MAC, address, hostname (`*`: none), client id (`*`: none). */
export interface LeaseLine {
  expires: number;
  mac: string;
  address: string;
  hostname: string;
  clientId: string;
}

export interface DhcpServer {
  pid: number;
  leases(): LeaseLine[];
  log(): string;
  stop(): Promise<void>;
}

export async function startDhcpServer(opts: DhcpServerOptions, cleanup: CleanupStack): Promise<DhcpServer> {
  mkdirSync(opts.dir, { recursive: true });
  const leaseFile = join(opts.dir, 'dnsmasq.leases');
  const args = [
    '--keep-in-foreground', '--conf-file=/dev/null', '--no-resolv', '--no-hosts', '--pid-file=', '--user=root', '--group=root', '--log-facility=-', '--log-dhcp',
    `--interface=${opts.iface}`, '--bind-interfaces', `--dhcp-range=${opts.range},${opts.leaseTime ?? '2m'}`, `--dhcp-leasefile=${leaseFile}`, '--dhcp-authoritative',
    ...(opts.domain ? [`--domain=${opts.domain}`, `--local=/${opts.domain}/`, `--listen-address=${opts.address}`] : ['--port=0']),
    ...(opts.extraArgs ?? []),
  ];
  const dnsmasq = await spawnDnsmasq(args, opts.netns, /DHCP, IP range/, `dnsmasq DHCP on ${opts.iface}`, cleanup);
  return {
    pid: dnsmasq.pid,
    stop: dnsmasq.stop,
    log: dnsmasq.output,
    leases: () => {
      if (!existsSync(leaseFile)) return [];
      return readFileSync(leaseFile, 'utf8').split('\n').filter(Boolean).map((line) => {
        const [expires, mac, address, hostname, clientId] = line.split(' ');
        return { expires: Number(expires), mac: mac!, address: address!, hostname: hostname!, clientId: clientId! };
      });
    },
  };
}
