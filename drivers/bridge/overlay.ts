import { parseDuration } from '../../src/cluster/cluster-config.js';
import { RequestError } from '../../src/errors.js';
import { ESP_OVERHEAD } from '../../src/overlay/esp.js';
import type { EncryptAsk, Segments } from '../../src/overlay/segments.js';
import { type RemotePeer, SegmentPeers, VXLAN_OVERHEAD, vxlanLines } from '../../src/overlay/vxlan.js';
import { type Drift, drift, type ForwardingTable, type HostPorts, type Ip, type KernelView, type Offloads, type VxlanEntries } from '../../src/sys/index.js';
import { describePolicy, type EspPolicy, type EspState, policyId, stateId, type Xfrm, type XfrmView } from '../../src/sys/xfrm.js';
import type { NetworkRecord, NetworkSpec } from '../model.js';
import { GENERATED_LINK, vxlanName } from '../names.js';
import { refuseSegmentPool } from '../segment-pool.js';
import { OptionReader } from '../option-values.js';

/** tsnet.mode=overlay (read by core, which makes it a bridge network): one segment across the hosts of its shared pool. */
const MODE_OPTION = 'tsnet.mode';
const MTU_OPTION = 'com.docker.network.driver.mtu';
/** tsnet's options that only an overlay takes. */
export const OVERLAY_OPTIONS = {
  /**
   * off: the VXLAN device computes checksums itself instead of leaving them
   * to the NIC, the workaround for NICs whose offload of encapsulated
   * checksums is broken (packets held ~63 s, kubernetes#88986, flannel#1282).
   */
  checksumOffload: 'tsnet.vxlan_csum_offload',
  /** on: the segment's VXLAN between hosts travels in IPsec ESP (docs/overlay.md, "Encryption"). */
  encrypt: 'tsnet.encrypt',
  /** With tsnet.encrypt: rotate the segment's key this often (24h, 30m…). */
  rekey: 'tsnet.rekey',
} as const;
/** The feature ethtool names for the device's TX checksum offload. */
const TX_CHECKSUM_FEATURE = 'tx-checksum-ip-generic';

/** What an overlay network keeps in its record besides its bridge's configuration. */
export interface OverlayConfig {
  /** The shared pool: the segment's identity across hosts. */
  pool: string;
  vni: number;
  device: string;
  /** This host's underlay address and the VXLAN port, as the device was made with. */
  underlay: string;
  port: number;
  /** tsnet.vxlan_csum_offload (absent in records from before it: on, the kernel's default). */
  checksumOffload?: boolean;
  /** tsnet.encrypt=on: the segment's VXLAN travels in ESP. */
  encrypted?: boolean;
}

/** Whether the bridge network asks to be an overlay. */
export const wantsOverlay = (spec: NetworkSpec): boolean => new OptionReader(spec.options).string(MODE_OPTION) === 'overlay';

/** An overlay's option on a network of one host is refused rather than ignored: the user meant an overlay. */
export function refuseOverlayOptions(spec: NetworkSpec): void {
  const key = Object.values(OVERLAY_OPTIONS).find((k) => new OptionReader(spec.options).has(k));
  if (key) throw new RequestError(key, 'only overlay networks (-o tsnet.mode=overlay) have a VXLAN device');
}

type OverlayNetwork = NetworkRecord<{ bridge: string; mtu: number; overlay?: OverlayConfig }>;

/**
 * The overlay part of a bridge network: the segment's VXLAN device on the
 * network's bridge, and its peers followed from the cluster store. The
 * bridge, its gateway (the same on every host), its containers and its
 * firewall are the bridge network's own.
 */
export class OverlayPart {
  constructor(
    private readonly ip: Ip,
    private readonly fdb: ForwardingTable,
    private readonly offloads: Offloads,
    private readonly hostPorts: HostPorts,
    private readonly xfrm: Xfrm,
    /** Present with --cluster-store. */
    private readonly segments: () => Segments | undefined,
  ) {}

  /** Refuses a network of one L2 on an overlay's pool (see segment-pool.ts). */
  refuseSegmentPool(spec: NetworkSpec): Promise<void> {
    return refuseSegmentPool(this.segments(), spec);
  }

  /** Joins the segment (its VNI, given now if it has none) and checks the MTU against the underlay's: a larger one would black-hole large packets. */
  async prepare(spec: NetworkSpec): Promise<{ overlay: OverlayConfig; mtu: number }> {
    const segments = this.segments();
    if (!segments) throw new RequestError(MODE_OPTION, 'an overlay needs the cluster store: run tsnet daemon with --cluster-store');
    // The store's peers are followed per IPv4 pool; IPv6 containers would be unreachable across hosts without a word.
    if (spec.ipv6) throw new RequestError('com.docker.network.enable_ipv6', 'an overlay carries IPv4 only so far; create it without --ipv6');
    const checksumOffload = new OptionReader(spec.options).onOff(OVERLAY_OPTIONS.checksumOffload, true);
    if (!checksumOffload && !(await this.offloads.available())) throw new RequestError(OVERLAY_OPTIONS.checksumOffload, 'off needs ethtool on this host: apt-get install ethtool');
    const encrypt = await this.encryptAsk(spec);
    const segment = await segments.join(spec.ipv4[0]?.pool ?? '', MODE_OPTION, encrypt);
    const encrypted = encrypt.on;
    await this.refuseForeignDevices(segment.underlay.port);
    const link = await this.ip.linkOfAddress(segment.underlay.address);
    if (!link) throw new RequestError(MODE_OPTION, `underlay address ${segment.underlay.address} is on no link of this host`);
    const vxlan = VXLAN_OVERHEAD[segment.underlay.address.includes(':') ? 6 : 4];
    const largest = link.mtu - vxlan - (encrypted ? ESP_OVERHEAD : 0);
    if (spec.mtu !== undefined && spec.mtu > largest) {
      const esp = encrypted ? ` − ${ESP_OVERHEAD} of ESP` : '';
      throw new RequestError(MTU_OPTION, `${spec.mtu} is more than an overlay on this host carries: at most ${largest} (${link.ifname}'s ${link.mtu} − ${vxlan} of VXLAN${esp})`);
    }
    const overlay: OverlayConfig = { pool: segment.pool, vni: segment.vni, device: vxlanName(spec.id), underlay: segment.underlay.address, port: segment.underlay.port, checksumOffload, ...(encrypted ? { encrypted } : {}) };
    return { overlay, mtu: spec.mtu ?? largest };
  }

  /**
   * tsnet.encrypt and tsnet.rekey; an encrypted segment on a kernel that
   * cannot carry ESP is refused, naming what is missing: nothing would be
   * sent in clear instead (the policies drop what has no SA), but nothing
   * would pass either.
   */
  private async encryptAsk(spec: NetworkSpec): Promise<EncryptAsk> {
    const options = new OptionReader(spec.options);
    const rekey = options.string(OVERLAY_OPTIONS.rekey);
    if (!options.onOff(OVERLAY_OPTIONS.encrypt, false)) {
      if (rekey !== undefined) throw new RequestError(OVERLAY_OPTIONS.rekey, `only an encrypted overlay (-o ${OVERLAY_OPTIONS.encrypt}=on) has a key to rotate`);
      return { field: OVERLAY_OPTIONS.encrypt, on: false };
    }
    let rekeySeconds: number | undefined;
    if (rekey !== undefined) {
      try {
        rekeySeconds = Math.round(parseDuration(OVERLAY_OPTIONS.rekey, rekey) / 1000);
      } catch {
        throw new RequestError(OVERLAY_OPTIONS.rekey, `"${rekey}" is no duration such as 90s, 10m, 24h or 7d`);
      }
      if (rekeySeconds < 10) throw new RequestError(OVERLAY_OPTIONS.rekey, `"${rekey}" is shorter than the 10 s a rotation needs`);
    }
    const missing = await this.xfrm.missing();
    if (missing) throw new RequestError(OVERLAY_OPTIONS.encrypt, missing);
    return { field: OVERLAY_OPTIONS.encrypt, on: true, ...(rekeySeconds !== undefined ? { rekeySeconds } : {}) };
  }

  /**
   * Another program's VXLAN on the port (Docker's swarm overlay, flannel)
   * would have its traffic dropped by tsnet's gate, which lets only tsnet's
   * hosts in: refused, naming it. A device in this netns is named; Docker's
   * swarm keeps its devices in netns of its own, and only the UDP socket they
   * share with every VXLAN device on the port shows here: a port bound while
   * tsnet has no device on it is someone else's.
   */
  private async refuseForeignDevices(port: number): Promise<void> {
    const onPort = (await this.ip.linksOfKind('vxlan')).filter((l) => (l.linkinfo?.info_data as { port?: number } | undefined)?.port === port);
    const foreign = onPort.filter((l) => !GENERATED_LINK.test(l.ifname));
    const remedy = 'run tsnet daemon with another --vxlan-port';
    if (foreign.length > 0) {
      const named = foreign.map((l) => `${l.ifname} (VNI ${String((l.linkinfo?.info_data as { id?: number }).id)})`).join(', ');
      throw new RequestError(MODE_OPTION, `UDP port ${port} carries VXLAN of another program here (${named}); ${remedy}`);
    }
    if (onPort.length === 0 && (await this.hostPorts.inUse({ proto: 'udp', hostIp: '', hostPort: port }))) {
      throw new RequestError(MODE_OPTION, `UDP port ${port} is taken by another program (Docker's swarm overlay, in a netns of its own, holds it so); ${remedy}`);
    }
  }

  /** The device on the bridge (made unless `exists`), then the peers followed. */
  async create(network: OverlayNetwork, exists = false): Promise<void> {
    const { overlay, bridge, mtu } = network.config;
    if (!overlay) return;
    const [add, attach] = vxlanLines({ name: overlay.device, vni: overlay.vni, local: overlay.underlay, port: overlay.port, bridge, mtu });
    const segments = this.segments();
    if (!segments) throw new RequestError(MODE_OPTION, 'an overlay needs the cluster store: run tsnet daemon with --cluster-store');
    // The device would take VXLAN from anyone who reaches the port: the gate goes up first.
    const encryptedVni = overlay.encrypted ? overlay.vni : undefined;
    await segments.guard(network.id, overlay.port, encryptedVni);
    await this.ip.batch(exists ? [attach!] : [add!, attach!]);
    // Every time, not only when made: a device someone re-made by hand comes back with the kernel's default.
    if (overlay.checksumOffload === false) await this.offloads.set(overlay.device, { [TX_CHECKSUM_FEATURE]: false });
    const peers = new SegmentPeers(overlay.device, this.ip, this.fdb);
    // A device that outlived the daemon holds the entries it wrote: those the store dropped meanwhile must go.
    if (exists) await peers.adoptKernel();
    await segments.follow(network.id, overlay.pool, peers, encryptedVni);
  }

  /** The device first: an encrypted segment's policies and cleartext rules must outlive anything that could send into it. */
  async delete(network: OverlayNetwork): Promise<void> {
    const { overlay } = network.config;
    if (!overlay) return;
    await this.ip.deleteLinks([overlay.device]);
    await this.segments()?.unfollow(network.id);
  }

  /** After a restart or a repair: the device as recorded, and its peers made the store's again (read in full after a restart). */
  async restore(network: OverlayNetwork): Promise<void> {
    const { overlay } = network.config;
    if (!overlay) return;
    await this.create(network, (await this.ip.link(overlay.device)) !== undefined);
  }

  links(network: OverlayNetwork): string[] {
    return network.config.overlay ? [network.config.overlay.device] : [];
  }

  drift(network: OverlayNetwork, kernel: KernelView): Drift[] {
    const { overlay, bridge } = network.config;
    if (!overlay) return [];
    const device = kernel.links.get(overlay.device);
    if (!device) return [drift(network.id, 'link', 'missing', overlay.device)];
    if (device.master !== bridge) return [drift(network.id, 'link', 'changed', `${overlay.device} is not a port of ${bridge}`)];
    if (!device.flags.includes('UP')) return [drift(network.id, 'link', 'changed', `${overlay.device} is down`)];
    const wanted = this.segments()?.wanted(network.id);
    const peers = wanted ? peerDrift(network.id, overlay.device, wanted, kernel.vxlanEntries.get(overlay.device)) : [];
    const xfrm = overlay.encrypted ? this.segments()?.wantedXfrm(network.id) : undefined;
    return xfrm ? [...peers, ...xfrmDrift(network.id, xfrm, kernel.xfrm)] : peers;
  }
}

/**
 * An encrypted segment's SAs and policies against the kernel's: each
 * missing one (someone's `ip xfrm state flush`), and each outbound policy
 * that sends with another generation. Repaired by restore, which reads the
 * kernel's tables again and writes the difference.
 */
export function xfrmDrift(networkId: string, wanted: { states: readonly EspState[]; policies: readonly EspPolicy[] }, held: XfrmView = { states: [], policies: [] }): Drift[] {
  const states = new Set(held.states.map(stateId));
  const policies = new Map(held.policies.map((p) => [policyId(p), p]));
  const found: Drift[] = [];
  for (const s of wanted.states) if (!states.has(stateId(s))) found.push(drift(networkId, 'xfrm-state', 'missing', stateId(s)));
  for (const p of wanted.policies) {
    const h = policies.get(policyId(p));
    if (h?.reqid !== p.reqid) found.push(drift(networkId, 'xfrm-policy', h ? 'changed' : 'missing', describePolicy(p)));
  }
  return found;
}

const NONE: VxlanEntries = { neighbours: new Map(), destinations: new Map() };

/**
 * The device's entries against the peers the store asks for: each peer's
 * neighbour and forwarding entry, and nothing else (an entry someone added,
 * or one of a container gone while a write failed). Repaired by restore,
 * which adopts the kernel's entries and writes the difference.
 */
export function peerDrift(networkId: string, device: string, wanted: readonly RemotePeer[], held: VxlanEntries = NONE): Drift[] {
  const found: Drift[] = [];
  for (const peer of wanted) {
    const mac = held.neighbours.get(peer.ip);
    if (mac !== peer.mac) found.push(drift(networkId, 'neighbour', mac === undefined ? 'missing' : 'changed', `${peer.ip} lladdr ${peer.mac} dev ${device}`));
    const host = held.destinations.get(peer.mac);
    if (host !== peer.host) found.push(drift(networkId, 'fdb', host === undefined ? 'missing' : 'changed', `${peer.mac} dst ${peer.host} dev ${device}`));
  }
  const ips = new Set(wanted.map((p) => p.ip));
  const macs = new Set(wanted.map((p) => p.mac));
  for (const [ip, mac] of held.neighbours) if (!ips.has(ip)) found.push(drift(networkId, 'neighbour', 'extra', `${ip} lladdr ${mac} dev ${device}`));
  for (const [mac, host] of held.destinations) if (!macs.has(mac)) found.push(drift(networkId, 'fdb', 'extra', `${mac} dst ${host} dev ${device}`));
  return found;
}
