import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';

/** How tsnet reaches the cluster store and who it is there; absent = a single host on SQLite alone. */
export interface ClusterConfig {
  /** `host:port` of each etcd member, as given. */
  endpoints: string[];
  tls?: { ca: Buffer; cert?: Buffer; key?: Buffer };
  hostId: string;
  /** Free a dead host's addresses after it has been seen dead this long; undefined = never automatically. */
  reclaimAfterMs?: number;
}

/** What `tsnet daemon` was given on its command line. */
export interface ClusterFlags {
  clusterStore?: string;
  clusterCa?: string;
  clusterCert?: string;
  clusterKey?: string;
  hostId?: string;
  reclaimAfter?: string;
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

function readPem(flag: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (error) {
    throw new Error(`${flag} ${path}: ${(error as Error).message}`);
  }
}

/** Checks the cluster flags together; undefined when --cluster-store is absent (and then no other cluster flag may be given). */
export function clusterConfig(flags: ClusterFlags): ClusterConfig | undefined {
  if (flags.clusterStore === undefined) {
    const stray = (['clusterCa', 'clusterCert', 'clusterKey', 'reclaimAfter'] as const).find((k) => flags[k] !== undefined);
    if (stray) throw new Error(`--${stray.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} needs --cluster-store`);
    return undefined;
  }
  const endpoints = parseClusterStoreUrl(flags.clusterStore);
  const hostId = flags.hostId ?? hostname();
  if (!KEY_SEGMENT.test(hostId)) throw new Error(`--host-id "${hostId}": 1-63 letters, digits, _ . and -, starting with a letter or digit`);
  if ((flags.clusterCert === undefined) !== (flags.clusterKey === undefined)) throw new Error('--cluster-cert and --cluster-key go together');
  if (flags.clusterCert !== undefined && flags.clusterCa === undefined) throw new Error('--cluster-cert needs --cluster-ca');
  return {
    endpoints,
    hostId,
    ...(flags.clusterCa !== undefined
      ? {
          tls: {
            ca: readPem('--cluster-ca', flags.clusterCa),
            ...(flags.clusterCert !== undefined ? { cert: readPem('--cluster-cert', flags.clusterCert), key: readPem('--cluster-key', flags.clusterKey!) } : {}),
          },
        }
      : {}),
    ...(flags.reclaimAfter !== undefined ? { reclaimAfterMs: parseDuration('--reclaim-after', flags.reclaimAfter) } : {}),
  };
}
