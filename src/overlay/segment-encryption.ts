import type { Logger } from 'pino';
import { errorText } from '../cluster/background-task.js';
import { deadlineFromNow, type EtcdClient, type Entry } from '../cluster/etcd-client.js';
import type { HostRegistry } from '../cluster/host-registry.js';
import { decodeValue, type KeyAck, PoolDefinition, type PoolKeys, SegmentSecrets } from '../cluster/keys.js';
import { PrefixMirror } from '../cluster/prefix-mirror.js';
import type { HostCiphers } from './ciphers.js';
import { rotateSegmentKey } from './key-rotation.js';
import type { Underlay } from './underlay.js';

/** How often a host looks whether a tsnet.rekey rotation is due (a look reads nothing from etcd). */
const REKEY_LOOK_MS = 5000;

/** What the daemon hears of a segment's keys (metrics). */
export interface KeyEvents {
  /** This host started sending with a new generation of the segment's key. */
  rekeyed?: (segment: string, generation: number) => void;
}

/**
 * One encrypted segment as its follower keeps it on this host: the pool's
 * users (every host with a network on it gets a pair of SAs with this one,
 * before any container of either talks) and the segment's keys, both
 * mirrored from the store; the host's share of the IPsec tables written
 * from them, then acknowledged under key-acks/ (what a rotation waits for).
 * Whichever live user has the lowest ID runs the rotations tsnet.rekey asks for.
 */
export class SegmentEncryption {
  private readonly definition: PrefixMirror<PoolDefinition>;
  private readonly secrets: PrefixMirror<SegmentSecrets>;
  /** What the kernel holds since the last apply(), to acknowledge; and what was acknowledged last, as JSON. */
  private held: KeyAck | undefined;
  private acked: string | undefined;
  private rekeyTimer: NodeJS.Timeout | undefined;
  private rotating = false;
  /** Stopped: an apply() still under way must not put back what stop() takes out. */
  private stopped = false;

  constructor(
    private readonly etcd: EtcdClient,
    private readonly keys: PoolKeys,
    private readonly networkId: string,
    private readonly vni: number,
    private readonly self: string,
    private readonly underlay: Underlay,
    private readonly registry: HostRegistry,
    private readonly ciphers: HostCiphers,
    changed: () => void,
    private readonly log: Logger,
    private readonly events: KeyEvents = {},
  ) {
    // Each mirror's prefix is one whole key: anything longer under it is not its.
    const definition = (entry: Entry) => (entry.key === keys.definition ? decodeValue(PoolDefinition, entry.key, entry.value) : undefined);
    const secrets = (entry: Entry) => (entry.key === keys.encryption ? decodeValue(SegmentSecrets, entry.key, entry.value) : undefined);
    this.definition = new PrefixMirror(etcd, keys.definition, `the definition of segment ${keys.name}`, definition, changed, log);
    this.secrets = new PrefixMirror(etcd, keys.encryption, `the keys of segment ${keys.name}`, secrets, changed, log);
  }

  start(): void {
    this.definition.start();
    this.secrets.start();
    this.rekeyTimer = setInterval(() => void this.rekeyIfDue(), REKEY_LOOK_MS);
    this.rekeyTimer.unref();
  }

  /** Stops following; `drop` (the network is gone) also takes its SAs and policies out of the kernel. */
  async stop(drop: boolean): Promise<void> {
    this.stopped = true;
    this.definition.stop();
    this.secrets.stop();
    clearInterval(this.rekeyTimer);
    if (drop) await this.ciphers.set(this.networkId, undefined);
  }

  /** Both read: until then the follower writes no peer, as none could be reached safely. */
  get loaded(): boolean {
    return this.definition.loaded && this.secrets.loaded;
  }

  async settle(): Promise<void> {
    await Promise.all([this.definition.settle(), this.secrets.settle()]);
  }

  /** The keys as last read. */
  current(): SegmentSecrets | undefined {
    return this.secrets.get(this.keys.encryption);
  }

  /** The kernel's IPsec tables are read again before the next write (someone changed them). */
  forgetKernel(): void {
    this.ciphers.forget();
  }

  /**
   * Writes this host's SAs and policies for the segment's users and keys
   * (acknowledge() tells the store afterwards). Keys gone from the store (the pool deleted
   * under it) change nothing: what the kernel holds stays, and so does the
   * policy that drops whatever has no SA.
   */
  async apply(): Promise<void> {
    const secrets = this.current();
    const definition = this.definition.get(this.keys.definition);
    if (this.stopped || !this.loaded || !secrets || !definition) return;
    const hosts = this.registry.hosts();
    const peers = definition.users.filter((u) => u !== this.self).flatMap((u) => (hosts.get(u)?.underlay ? [hosts.get(u)!.underlay!] : []));
    const pairs = peers.map((peer) => ({ self: this.underlay.address, peer, port: this.underlay.port, vni: this.vni, keys: secrets.keys, send: secrets.send }));
    // Queued on the host's IPsec lock before any drop of stop(), which therefore comes last.
    await this.ciphers.set(this.networkId, { vni: this.vni, pairs });
    if (this.held !== undefined && this.held.sending !== secrets.send) this.events.rekeyed?.(this.keys.name, secrets.send);
    this.held = { installed: secrets.keys.map((k) => k.generation), sending: secrets.send };
  }

  /** Tells the store which keys this host's kernel holds and sends with (as the last apply() wrote them), when that changed. */
  async acknowledge(): Promise<void> {
    const ack = this.held;
    if (!ack || JSON.stringify(ack) === this.acked) return;
    await this.etcd.txn([], [{ put: this.keys.keyAck(this.self), value: JSON.stringify(ack) }], [], deadlineFromNow());
    this.acked = JSON.stringify(ack);
  }

  /** Rotates the key when tsnet.rekey says it is time and this host is the live user with the lowest ID. */
  private async rekeyIfDue(): Promise<void> {
    const secrets = this.current();
    const users = this.definition.get(this.keys.definition)?.users.filter((u) => this.registry.isAlive(u) !== false).sort();
    if (this.rotating || !secrets?.rekeySeconds || users?.[0] !== this.self) return;
    if (Date.parse(secrets.rotatedAt) + secrets.rekeySeconds * 1000 > Date.now() && secrets.keys.length === 1) return;
    this.rotating = true;
    try {
      const rotation = await rotateSegmentKey(this.etcd, this.keys);
      this.log.info({ segment: this.keys.name, from: rotation.from, to: rotation.to }, 'segment key rotated (tsnet.rekey)');
    } catch (error) {
      this.log.warn({ segment: this.keys.name, err: errorText(error) }, 'cannot rotate the segment key (tsnet.rekey); trying again later');
    } finally {
      this.rotating = false;
    }
  }
}
