import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { formatIp, parseIp } from '../net/address.js';
import { LEASE_TTL_SECONDS } from './membership.js';

/** How tsnet reaches the cluster store and who it is there; absent = a single host on SQLite alone. */
export interface ClusterConfig {
  /** `host:port` of each etcd member, as given. */
  endpoints: string[];
  tls?: { ca: Buffer; cert?: Buffer; key?: Buffer };
  /** etcd's user and password authentication (etcd's RBAC), when etcd has auth enabled. */
  auth?: { username: string; password: string };
  hostId: string;
  /** Free a dead host's addresses after it has been seen dead this long; undefined = never automatically. */
  reclaimAfterMs?: number;
  /** --advertise-address: this host's underlay address for overlays; undefined = the source of the route to the first etcd member. */
  advertiseAddress?: string;
  /** --vxlan-port; undefined = DEFAULT_VXLAN_PORT. */
  vxlanPort?: number;
}

/** What `tsnet daemon` was given on its command line. */
export interface ClusterFlags {
  clusterStore?: string;
  clusterCa?: string;
  clusterCert?: string;
  clusterKey?: string;
  clusterStoreUser?: string;
  /** Never the password itself: command lines are visible to every user of the host (ps, /proc). */
  clusterStorePasswordFile?: string;
  hostId?: string;
  reclaimAfter?: string;
  advertiseAddress?: string;
  vxlanPort?: string;
}

/** Host IDs and pool names become etcd key segments: no slashes, no spaces, at most 63 bytes. */
export const KEY_SEGMENT = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

const ENDPOINT = /^(?<host>[A-Za-z0-9.-]+|\[[0-9A-Fa-f:]+\]):(?<port>\d{1,5})$/;

/** `etcd://H:P[,H:P…]` → the endpoints; anything else is refused naming the flag. */
export function parseClusterStoreUrl(url: string): string[] {
  const prefix = 'etcd://';
  if (!url.startsWith(prefix)) throw new Error(`--cluster-store "${url}": must be etcd://HOST:PORT[,HOST:PORT…]`);
  const endpoints = url.slice(prefix.length).split(',');
  for (const endpoint of endpoints) {
    const match = ENDPOINT.exec(endpoint);
    const port = Number(match?.groups?.port);
    if (!match || port < 1 || port > 65535) throw new Error(`--cluster-store "${url}": "${endpoint}" is not HOST:PORT (port 1-65535)`);
  }
  return endpoints;
}

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** `90s`, `10m`, `2h`, `1d` → milliseconds. */
export function parseDuration(flag: string, text: string): number {
  const match = /^(\d+)(ms|s|m|h|d)$/.exec(text);
  if (!match || Number(match[1]) === 0) throw new Error(`${flag} "${text}": must be a positive duration such as 90s, 10m, 2h or 1d`);
  return Number(match[1]) * UNITS[match[2]!]!;
}

function readFlagFile(flag: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (error) {
    throw new Error(`${flag} ${path}: ${(error as Error).message}`);
  }
}

/** etcd user names: printable, no spaces (they travel in gRPC requests and in etcdctl commands). */
const ETCD_USER = /^[\x21-\x7e]{1,128}$/;

/** The user and the password, read from its file (one line; its final newline is not part of it). */
function clusterAuth(user: string, passwordFile: string): { username: string; password: string } {
  if (!ETCD_USER.test(user)) throw new Error(`--cluster-store-user "${user}": 1-128 printable characters without spaces`);
  const password = readFlagFile('--cluster-store-password-file', passwordFile).toString('utf8').replace(/\r?\n$/, '');
  if (password === '') throw new Error(`--cluster-store-password-file ${passwordFile}: the file is empty; write the password of etcd user ${user} in it`);
  if (/[\r\n]/.test(password)) throw new Error(`--cluster-store-password-file ${passwordFile}: more than one line; the file holds the password alone`);
  return { username: user, password };
}

/** Checks the cluster flags together; undefined when --cluster-store is absent (and then no other cluster flag may be given). */
export function clusterConfig(flags: ClusterFlags): ClusterConfig | undefined {
  if (flags.clusterStore === undefined) {
    const stray = (['clusterCa', 'clusterCert', 'clusterKey', 'clusterStoreUser', 'clusterStorePasswordFile', 'reclaimAfter', 'advertiseAddress', 'vxlanPort'] as const).find((k) => flags[k] !== undefined);
    if (stray) throw new Error(`--${stray.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} needs --cluster-store`);
    return undefined;
  }
  const endpoints = parseClusterStoreUrl(flags.clusterStore);
  const hostId = flags.hostId ?? hostname();
  if (!KEY_SEGMENT.test(hostId)) throw new Error(`--host-id "${hostId}": 1-63 letters, digits, _ . and -, starting with a letter or digit`);
  if ((flags.clusterCert === undefined) !== (flags.clusterKey === undefined)) throw new Error('--cluster-cert and --cluster-key go together');
  if (flags.clusterCert !== undefined && flags.clusterCa === undefined) throw new Error('--cluster-cert needs --cluster-ca');
  if ((flags.clusterStoreUser === undefined) !== (flags.clusterStorePasswordFile === undefined)) throw new Error('--cluster-store-user and --cluster-store-password-file go together');
  return {
    endpoints,
    hostId,
    ...(flags.clusterCa !== undefined
      ? {
          tls: {
            ca: readFlagFile('--cluster-ca', flags.clusterCa),
            ...(flags.clusterCert !== undefined ? { cert: readFlagFile('--cluster-cert', flags.clusterCert), key: readFlagFile('--cluster-key', flags.clusterKey!) } : {}),
          },
        }
      : {}),
    ...(flags.clusterStoreUser !== undefined ? { auth: clusterAuth(flags.clusterStoreUser, flags.clusterStorePasswordFile!) } : {}),
    ...(flags.reclaimAfter !== undefined ? { reclaimAfterMs: reclaimAfter(flags.reclaimAfter) } : {}),
    ...(flags.advertiseAddress !== undefined ? { advertiseAddress: advertiseAddress(flags.advertiseAddress) } : {}),
    ...(flags.vxlanPort !== undefined ? { vxlanPort: vxlanPort(flags.vxlanPort) } : {}),
  };
}

function advertiseAddress(text: string): string {
  const ip = parseIp(text);
  if (!ip) throw new Error(`--advertise-address "${text}": not an IP address`);
  return formatIp(ip);
}

function vxlanPort(text: string): number {
  const port = Number(text);
  if (!/^\d{1,5}$/.test(text) || port < 1 || port > 65535) throw new Error(`--vxlan-port "${text}": a UDP port, 1-65535`);
  return port;
}

/**
 * The shortest --reclaim-after: six lease lengths. A host is shown dead one
 * lease length after its last keepalive, which a busy etcd or a short
 * partition delays by seconds; freeing its addresses that soon would give
 * a live host's addresses to others.
 */
export const RECLAIM_FLOOR_MS = 6 * LEASE_TTL_SECONDS * 1000;

function reclaimAfter(text: string): number {
  const ms = parseDuration('--reclaim-after', text);
  if (ms < RECLAIM_FLOOR_MS) {
    throw new Error(`--reclaim-after "${text}": at least ${RECLAIM_FLOOR_MS / 1000}s (six ${LEASE_TTL_SECONDS} s lease lengths): a host that missed a few keepalives is not dead yet`);
  }
  return ms;
}
