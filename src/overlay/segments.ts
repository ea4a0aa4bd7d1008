import type { Logger } from 'pino';
import { BackgroundTask, errorText } from '../cluster/background-task.js';
import { deadlineFromNow, type EtcdClient } from '../cluster/etcd-client.js';
import type { HostRegistry } from '../cluster/host-registry.js';
import { decodeValue, PoolDefinition, PoolKeys } from '../cluster/keys.js';
import { segmentVni } from '../cluster/pool-definition.js';
import { RequestError } from '../errors.js';
import { canonicalCidr, parseCidr } from '../net/address.js';
import type { OverlayGate } from '../sys/overlay-gate.js';
import type { EspPolicy, EspState } from '../sys/xfrm.js';
import type { HostCiphers } from './ciphers.js';
import { newSecrets } from './esp.js';
import { type Rotation, rotateSegmentKey } from './key-rotation.js';
import { type KeyEvents, SegmentEncryption } from './segment-encryption.js';
import { type PeerWriteHooks, SegmentFollower } from './segment-follower.js';
import type { SegmentMember } from './segment-members.js';
import type { Underlay } from './underlay.js';
import type { PeerTable, RemotePeer } from './vxlan.js';

/** An overlay network's segment, as its host sees it. */
export interface Segment {
  /** The shared pool's name: the segment's identity across hosts. */
  pool: string;
  vni: number;
  underlay: Underlay;
}

/** What an overlay network asks of its segment's encryption. */
export interface EncryptAsk {
  /** The option (tsnet.encrypt), which a mismatch with the segment is blamed on. */
  field: string;
  on: boolean;
  /** tsnet.rekey, kept with the keys if this network makes them. */
  rekeySeconds?: number;
}

/** What the bridge driver asks of the cluster for an overlay network (docs/overlay.md). */
export interface Segments {
  /** The segment of the shared pool on `subnet`: its VNI (given now, with its keys if encrypted, when it has none), and this host's underlay. `field` names the option a refusal blames; an encryption other than the segment's is refused. */
  join(subnet: string, field: string, encrypt: EncryptAsk): Promise<Segment>;
  /** The name of this host's shared pool on `subnet`; undefined when it has none there. */
  sharedPool(subnet: string): string | undefined;
  /** The VNI of the shared pool on `subnet` when it is an overlay segment; undefined for any other subnet. */
  vniOf(subnet: string): Promise<number | undefined>;
  /**
   * Lets VXLAN on `port` in from the cluster's hosts only, for the network:
   * before its VXLAN device is made, kept as hosts come and go, until
   * unfollow. With `encryptedVni`, VXLAN of that VNI that is not in ESP is
   * dropped both ways from then on.
   */
  guard(networkId: string, port: number, encryptedVni?: number): Promise<void>;
  /**
   * Keeps `peers` equal to the pool's containers on other hosts in the
   * store, until unfollow; followed already, `peers` (which adopted the
   * kernel's entries) takes over and is repaired. An encrypted segment
   * (`encryptedVni`) also keeps this host's SAs and policies with the pool's
   * users, written before any peer.
   */
  follow(networkId: string, pool: string, peers: PeerTable, encryptedVni?: number): Promise<void>;
  /** Stops following; the network's SAs and policies go with it. */
  unfollow(networkId: string): Promise<void>;
  /** The SAs and policies the store asks of the host for the network's segment, to compare with the kernel; undefined while not known or being written. */
  wantedXfrm(networkId: string): { states: EspState[]; policies: EspPolicy[] } | undefined;
  /** The peers the store asks of the network's device, to compare with the kernel; undefined while not known or being written. */
  wanted(networkId: string): RemotePeer[] | undefined;
  /** Replaces an encrypted segment's key on every host (key-rotation.ts). */
  rotateKey(pool: string): Promise<Rotation>;
  /** The hosts with containers on the network's segment; undefined before the store was read. */
  members(networkId: string): SegmentMember[] | undefined;
}

/** The shared pools this host has networks on (the shared pool service's record). */
export type LocalPools = () => ReadonlyArray<{ name: string; subnet: string }>;

/**
 * Segments on the cluster store: one follower per overlay network, the
 * daemon's host registry, and the gate that lets VXLAN in from the
 * registered hosts only, up before the first VXLAN device and gone with the last.
 */
export class ClusterSegments implements Segments {
  private readonly followers = new Map<string, { pool: string; follower: SegmentFollower }>();
  /** The VXLAN port the gate guards, while an overlay network is there. */
  private port: number | undefined;
  /** The overlay networks the gate is up for. */
  private readonly guarded = new Set<string>();
  /** The VNI of each guarded network whose segment is encrypted. */
  private readonly encryptedVnis = new Map<string, number>();
  private readonly gateTask: BackgroundTask;
  private warnedPlainStore = false;

  constructor(
    private readonly etcd: EtcdClient,
    private readonly hostId: string,
    private readonly localPools: LocalPools,
    /** The host registry (shared with the cluster names; its owner stops it). */
    private readonly registry: HostRegistry,
    private readonly underlay: () => Promise<Underlay | undefined>,
    private readonly gate: OverlayGate,
    private readonly log: Logger,
    private readonly ciphers: HostCiphers,
    /** Whether the cluster store is reached over TLS with a client certificate: it holds the segments' keys. */
    private readonly storeIsPrivate: boolean,
    /** Around every write of peers (metrics, the drift watcher's own-change notes), and told of rekeys. */
    private readonly hooks: PeerWriteHooks & KeyEvents = {},
  ) {
    this.gateTask = new BackgroundTask(() => this.keepGate(), (error) => this.log.warn({ err: errorText(error) }, 'cannot update the overlay gate; retrying'), 1000);
    this.registry.onChange(() => this.gateTask.request());
  }

  /** Members in, everyone else out; no gate once no overlay is left. */
  private async keepGate(): Promise<void> {
    if (this.port === undefined) return;
    if (this.guarded.size === 0) {
      this.port = undefined;
      return this.gate.remove();
    }
    const members = [...this.registry.hosts().values()].flatMap((h) => (h.underlay ? [h.underlay] : []));
    await this.gate.set(this.port, members, [...new Set(this.encryptedVnis.values())]);
  }

  /** The shared pool this host has on `subnet`, if any. */
  private poolOn(subnet: string): { name: string; subnet: string } | undefined {
    return this.localPools().find((p) => canonicalCidr(p.subnet) === canonicalCidr(subnet));
  }

  async join(subnet: string, field: string, encrypt: EncryptAsk): Promise<Segment> {
    const pool = this.poolOn(subnet);
    if (!pool) throw new RequestError(field, `an overlay needs a shared pool: create it with --ipam-driver tsnet --ipam-opt tsnet.pool=NAME (${subnet} is no shared pool of this host)`);
    const underlay = await this.underlay();
    if (!underlay) throw new RequestError(field, 'this host has no underlay address for overlays: give tsnet daemon --advertise-address');
    const family = parseCidr(subnet)!.cidr.family;
    const ask = { field: encrypt.field, ...(encrypt.on ? { firstKeys: () => newSecrets(encrypt.rekeySeconds) } : {}) };
    const vni = await segmentVni(this.etcd, new PoolKeys(pool.name, family), field, deadlineFromNow(), ask);
    return { pool: pool.name, vni, underlay };
  }

  sharedPool(subnet: string): string | undefined {
    return this.poolOn(subnet)?.name;
  }

  async vniOf(subnet: string): Promise<number | undefined> {
    const pool = this.poolOn(subnet);
    if (!pool) return undefined;
    const keys = new PoolKeys(pool.name, parseCidr(subnet)!.cidr.family);
    const entry = await this.etcd.get(keys.definition, deadlineFromNow());
    return entry ? decodeValue(PoolDefinition, entry.key, entry.value).vni : undefined;
  }

  async guard(networkId: string, port: number, encryptedVni?: number): Promise<void> {
    this.guarded.add(networkId);
    const newVni = encryptedVni !== undefined && this.encryptedVnis.get(networkId) !== encryptedVni;
    if (encryptedVni !== undefined) this.encryptedVnis.set(networkId, encryptedVni);
    if (this.port === port && !newVni) return;
    if (this.port === port) {
      // The drop of the segment's clear VXLAN is in before its device exists.
      this.gateTask.request();
      return this.gateTask.settle();
    }
    // Closed before the first device exists: members come in as the registry is read.
    this.port = port;
    await this.gate.set(port, [], [...new Set(this.encryptedVnis.values())]);
    this.registry.start();
    this.gateTask.request();
  }

  async follow(networkId: string, pool: string, peers: PeerTable, encryptedVni?: number): Promise<void> {
    const current = this.followers.get(networkId);
    if (current?.pool === pool) return current.follower.repair(peers);
    this.registry.start();
    await current?.follower.stop();
    const keys = new PoolKeys(pool, 4);
    const encrypt = encryptedVni === undefined ? undefined : await this.encryption(networkId, keys, encryptedVni);
    const follower = new SegmentFollower(this.etcd, keys, this.registry, this.hostId, peers, this.log, this.hooks, encrypt);
    this.followers.set(networkId, { pool, follower });
    follower.start();
  }

  /** How an encrypted segment's follower keeps its keys; the store that holds them should be private, and tsnet says so when it is not. */
  private async encryption(networkId: string, keys: PoolKeys, vni: number): Promise<(changed: () => void) => SegmentEncryption> {
    if (!this.storeIsPrivate && !this.warnedPlainStore) {
      this.warnedPlainStore = true;
      this.log.warn({ segment: keys.name }, 'an encrypted overlay keeps its keys in the cluster store, which tsnet reaches without TLS and a client certificate: anyone who can read etcd or its traffic can decrypt the overlay (docs/overlay.md)');
    }
    const underlay = await this.underlay();
    if (!underlay) throw new RequestError('tsnet.encrypt', 'this host has no underlay address for overlays: give tsnet daemon --advertise-address');
    return (changed) => new SegmentEncryption(this.etcd, keys, networkId, vni, this.hostId, underlay, this.registry, this.ciphers, changed, this.log, this.hooks);
  }

  async unfollow(networkId: string): Promise<void> {
    const follower = this.followers.get(networkId)?.follower;
    this.followers.delete(networkId);
    this.guarded.delete(networkId);
    this.encryptedVnis.delete(networkId);
    this.gateTask.request();
    await follower?.stop(true);
  }

  rotateKey(pool: string): Promise<Rotation> {
    return rotateSegmentKey(this.etcd, new PoolKeys(pool, 4));
  }

  wantedXfrm(networkId: string): { states: EspState[]; policies: EspPolicy[] } | undefined {
    if (!this.encryptedVnis.has(networkId) || this.followers.get(networkId)?.follower.wanted() === undefined) return undefined;
    const { states, policies } = this.ciphers.wanted();
    return { states: states.filter((s) => s.network === networkId), policies: policies.filter((p) => p.network === networkId) };
  }

  wanted(networkId: string): RemotePeer[] | undefined {
    return this.followers.get(networkId)?.follower.wanted();
  }

  members(networkId: string): SegmentMember[] | undefined {
    return this.followers.get(networkId)?.follower.members();
  }

  /** Waits for the followers' reads and kernel writes in progress (tests). */
  async settle(): Promise<void> {
    await this.registry.settle();
    await Promise.all([...this.followers.values()].map(({ follower }) => follower.settle()));
    await this.gateTask.settle();
  }

  /** The daemon stops: following ends, and what the kernel holds stays (the next daemon adopts it). */
  stop(): void {
    for (const { follower } of this.followers.values()) void follower.stop();
    this.followers.clear();
    this.gateTask.stop();
  }
}
