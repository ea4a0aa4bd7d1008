/**
 * tsnet's keys in etcd (all under `tsnet/v1/`):
 *
 *   hosts/<id>                              HostRecord: every host that ever joined, until gc
 *   alive/<id>                              AliveRecord, bound to the host's lease: gone when the host is
 *   pools/<name>/v4/definition              PoolDefinition: subnet, range, gateway, hosts using it
 *   pools/<name>/v4/addresses/<ip>          AddressHold: who holds the address
 *   pools/<name>/v4/encryption              SegmentSecrets: an encrypted overlay segment's keys
 *   pools/<name>/v4/key-acks/<host>         KeyAck: which of those keys the host's kernel holds
 *   pool-names/<pool>/<host>/<endpoint ID>  PublishedName: a container's DNS names, bound to the host's lease
 *   vnis/<vni>                              the name of the overlay pool that has the VNI
 *
 * One pool's keys share a prefix, so the last host leaving deletes the pool
 * (its gateway, aux addresses and any orphan) in one range delete. Names go
 * pool first, so a host watches the pools it has networks on and no other
 * (tsnet before 2026-12 wrote names/<host>/<pool>/…: those are not read, and
 * go with their host's lease).
 */
import { z } from 'zod';
import { type Family, parseIp } from '../net/address.js';
import { ClusterDataError } from './etcd-client.js';

const ROOT = 'tsnet/v1/';

export const HOSTS_PREFIX = `${ROOT}hosts/`;
export const ALIVE_PREFIX = `${ROOT}alive/`;
export const POOLS_PREFIX = `${ROOT}pools/`;
export const NAMES_PREFIX = `${ROOT}pool-names/`;
export const VNIS_PREFIX = `${ROOT}vnis/`;

/** Which pool an overlay segment's VNI belongs to: created only if absent, so two segments never share one. */
export const vniKey = (vni: number) => `${VNIS_PREFIX}${vni}`;

export const hostKey = (id: string) => `${HOSTS_PREFIX}${id}`;
export const aliveKey = (id: string) => `${ALIVE_PREFIX}${id}`;

/** The names of every host's endpoints on one pool: what a host with a network on the pool watches. */
export const poolNamesPrefix = (pool: string) => `${NAMES_PREFIX}${pool}/`;
/** One host's names on one pool: what it lists to publish the difference. */
export const hostNamesPrefix = (pool: string, host: string) => `${poolNamesPrefix(pool)}${host}/`;
export const nameKey = (host: string, pool: string, endpointId: string) => `${hostNamesPrefix(pool, host)}${endpointId}`;

/** Host, pool and endpoint of a pool-names/ key; undefined for any other key. */
export function parseNameKey(key: string): { host: string; pool: string; endpointId: string } | undefined {
  const match = /^tsnet\/v1\/pool-names\/([^/]+)\/([^/]+)\/([^/]+)$/.exec(key);
  return match ? { pool: match[1]!, host: match[2]!, endpointId: match[3]! } : undefined;
}

/** The host of a hosts/ key; undefined for any other key. */
export const hostOfKey = (key: string): string | undefined => (key.startsWith(HOSTS_PREFIX) && !key.includes('/', HOSTS_PREFIX.length) ? key.slice(HOSTS_PREFIX.length) : undefined);

/** Where one shared pool (one name, one family) keeps its keys. */
export class PoolKeys {
  readonly prefix: string;
  readonly definition: string;
  readonly addressesPrefix: string;
  /** An encrypted overlay segment's keys (docs/overlay.md): secrets, gone with the pool. */
  readonly encryption: string;
  readonly keyAcksPrefix: string;

  constructor(
    readonly name: string,
    readonly family: Family,
  ) {
    this.prefix = `${POOLS_PREFIX}${name}/v${family}/`;
    this.definition = `${this.prefix}definition`;
    this.addressesPrefix = `${this.prefix}addresses/`;
    this.encryption = `${this.prefix}encryption`;
    this.keyAcksPrefix = `${this.prefix}key-acks/`;
  }

  keyAck(host: string): string {
    return `${this.keyAcksPrefix}${host}`;
  }

  address(ip: string): string {
    return `${this.addressesPrefix}${ip}`;
  }

  addressOf(key: string): string {
    return key.slice(this.addressesPrefix.length);
  }

  /** The PoolKeys of a definition key found by a scan, or undefined for any other key. */
  static ofDefinition(key: string): PoolKeys | undefined {
    const match = /^tsnet\/v1\/pools\/([^/]+)\/v(4|6)\/definition$/.exec(key);
    return match ? new PoolKeys(match[1]!, Number(match[2]) as Family) : undefined;
  }
}

/** The first host to ask a pool name defines it; later hosts must ask the same subnet and range. */
export const PoolDefinition = z.object({
  name: z.string(),
  family: z.union([z.literal(4), z.literal(6)]),
  subnet: z.string(),
  range: z.string().optional(),
  /** Set by the first gateway request; every host's network uses the same one. */
  gateway: z.string().optional(),
  definedBy: z.string(),
  /** Hosts with a network on the pool; the last one to leave deletes the pool. */
  users: z.array(z.string()),
  /** An overlay segment's pool (docs/overlay.md): its networks are bridged over VXLAN with this VNI. */
  vni: z.number().int().min(1).max(0xffffff).optional(),
  /** An encrypted segment's (tsnet.encrypt=on): set with the VNI, never changed; its keys are under `encryption`. */
  encrypted: z.boolean().optional(),
});
export type PoolDefinition = z.infer<typeof PoolDefinition>;

/**
 * Who holds an address. Gateway and aux addresses belong to the pool (they go
 * with it); a container address to one allocation on one host, told apart by
 * `holder` (random), so a release can only ever delete its own hold.
 */
export const AddressHold = z.object({
  kind: z.enum(['container', 'gateway', 'aux']),
  host: z.string(),
  holder: z.string(),
  since: z.string(),
  /** The container's MAC when the user chose it (--mac-address); absent: derived from the address (macFor). */
  mac: z.string().regex(/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/).optional(),
});
export type AddressHold = z.infer<typeof AddressHold>;

/**
 * One endpoint of a shared-pool network as its host publishes it for the DNS
 * of the other hosts: the container name and aliases (empty while Docker has
 * not named it) and its plain addresses. Other hosts serve it under their own
 * network on the same pool.
 */
export const PublishedName = z.object({
  names: z.array(z.string().min(1).max(253)).max(256),
  // Checked here: an address the DNS cannot encode would cost every answer for the name.
  ipv4: z.string().refine((a) => parseIp(a)?.family === 4, 'not an IPv4 address').optional(),
  ipv6: z.string().refine((a) => parseIp(a)?.family === 6, 'not an IPv6 address').optional(),
});
export type PublishedName = z.infer<typeof PublishedName>;

/**
 * One generation of an encrypted segment's key: 32 random bytes (base64)
 * from which every pair of hosts derives its own SA keys (src/overlay/esp.ts).
 */
export const SegmentKey = z.object({
  generation: z.number().int().min(1),
  secret: z.string().regex(/^[A-Za-z0-9+/]{43}=$/, 'not 32 bytes of base64'),
  created: z.string(),
});
export type SegmentKey = z.infer<typeof SegmentKey>;

/**
 * An encrypted segment's keys: every host receives with all of them and
 * sends with `send`'s. A rotation adds one, moves `send` to it, then drops
 * the old one, each step once every host acknowledged the previous one.
 */
export const SegmentSecrets = z
  .object({
    keys: z.array(SegmentKey).min(1).max(2),
    send: z.number().int().min(1),
    /** When `send` last changed: with `rekeySeconds`, when the next rotation is due. */
    rotatedAt: z.string(),
    /** tsnet.rekey: rotated automatically this often; absent: only by `tsnet cluster rotate-key`. */
    rekeySeconds: z.number().int().min(10).optional(),
  })
  .refine((s) => s.keys.some((k) => k.generation === s.send), 'send names no key');
export type SegmentSecrets = z.infer<typeof SegmentSecrets>;

/** What one host's kernel holds of a segment's keys, written after each change it applied. */
export const KeyAck = z.object({
  /** The generations it receives with. */
  installed: z.array(z.number().int()),
  /** The generation it sends with. */
  sending: z.number().int(),
});
export type KeyAck = z.infer<typeof KeyAck>;

export const HostRecord = z.object({
  id: z.string(),
  joined: z.string(),
  /** Where the other hosts send this host's overlay traffic (--advertise-address), and on which UDP port. */
  underlay: z.string().refine((a) => parseIp(a) !== undefined, 'not an IP address').optional(),
  vxlanPort: z.number().int().min(1).max(65535).optional(),
});
export type HostRecord = z.infer<typeof HostRecord>;

export const AliveRecord = z.object({
  id: z.string(),
  /** Random per state directory (kept in the host's SQLite): a restarted daemon recognises its predecessor's lease. */
  instance: z.string(),
  since: z.string(),
  pid: z.number(),
});
export type AliveRecord = z.infer<typeof AliveRecord>;

/** Parses a value tsnet wrote; anything else is a ClusterDataError naming the key. */
export function decodeValue<S extends z.ZodType>(schema: S, key: string, value: string): z.infer<S> {
  let json: unknown;
  try {
    json = JSON.parse(value);
  } catch {
    throw new ClusterDataError(key, 'is not JSON; was it written by something other than tsnet?');
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) throw new ClusterDataError(key, `unexpected content (${parsed.error.issues[0]!.path.join('.') || 'value'}: ${parsed.error.issues[0]!.message})`);
  return parsed.data;
}
