import type { Firewall, FirewallNetwork, PortForward } from '../firewall.js';
import { enableForwarding, giveBackRouteLocalnet } from '../forwarding.js';
import { Ip } from '../ip.js';
import { CommandError, type Runner } from '../runner.js';
import { removeIptablesChains } from '../iptables/restore-script.js';
import type { Sysctl } from '../sysctl.js';
import { BRIDGE_GROUP, GATE, openIptablesGate } from './iptables-gate.js';
import { addPortLine, TABLE, networkLines, networkRemovalLines, networkTag, PORT_MAPS, type PortElement, portElement, removePortLines, skeleton } from './ruleset.js';

/** A network's port elements by map and key. */
type Ports = Map<string, PortElement>;
const slot = (e: PortElement) => `${e.map} ${e.key}`;

/** The port maps' elements as `nft -j list maps` shows them: [key, value], the key with the owner's comment. */
type Concat = { concat: Array<string | number> };
type JsonElement = [Concat | { elem: { val: Concat; comment?: string } }, Concat];
interface JsonMaps {
  nftables: Array<{ map?: { table: string; name: string; elem?: JsonElement[] } }>;
}

/**
 * The firewall on nftables: tsnet's own table `inet tsnet` (see ./ruleset.ts),
 * every change one `nft -f -` transaction (all of it or nothing). Creating a
 * network adds its set elements and NAT chain; publishing a port adds one
 * map element. Nothing is read per request: the daemon keeps the port
 * elements it wrote, and reads the kernel's once (at its first change, i.e.
 * during start-up) or when a change fails because someone else changed them.
 */
export class NftablesFirewall implements Firewall {
  private readonly ip: Ip;
  /** Each network's port elements in the kernel, by network tag. */
  private readonly ports = new Map<string, Ports>();
  private started: Promise<void> | undefined;

  constructor(
    private readonly runner: Runner,
    private readonly sysctl: Sysctl,
  ) {
    this.ip = new Ip(runner);
  }

  private async apply(lines: readonly string[]): Promise<void> {
    await this.runner.run('nft', ['-f', '-'], { input: `${lines.join('\n')}\n` });
  }

  /** Once per daemon: the table and its base chains, what ports the kernel already has (tsnet ran before), and the gate through iptables' FORWARD. */
  private start(): Promise<void> {
    this.started ??= (async () => {
      await this.apply(skeleton());
      for (const [tag, ports] of await this.kernelPorts()) this.ports.set(tag, ports);
      await openIptablesGate(this.runner);
    })().catch((error: unknown) => {
      this.started = undefined;
      throw error;
    });
    return this.started;
  }

  /** The port elements in the kernel, by the network tag in their comment. */
  private async kernelPorts(): Promise<Map<string, Ports>> {
    const { stdout } = await this.runner.run('nft', ['-j', 'list', 'maps', 'inet']);
    const mapNames = new Set<string>(Object.values(PORT_MAPS).flatMap((m) => [m.address, m.any]));
    const out = new Map<string, Ports>();
    for (const { map } of (JSON.parse(stdout) as JsonMaps).nftables) {
      if (!map || map.table !== 'tsnet' || !mapNames.has(map.name)) continue;
      for (const [key, value] of map.elem ?? []) {
        const owner = 'elem' in key ? key.elem.comment : undefined;
        if (!owner) continue;
        const concat = 'elem' in key ? key.elem.val : key;
        const element = { map: map.name, key: concat.concat.join(' . '), value: value.concat.join(' . ') };
        if (!out.has(owner)) out.set(owner, new Map());
        out.get(owner)!.set(slot(element), element);
      }
    }
    return out;
  }

  /** Lines that turn the network's port elements into `wanted`. */
  private portChanges(tag: string, wanted: Ports): string[] {
    const current = this.ports.get(tag) ?? new Map<string, PortElement>();
    const gone = [...current.values()].filter((e) => wanted.get(slot(e))?.value !== e.value);
    const added = [...wanted.values()].filter((e) => current.get(slot(e))?.value !== e.value);
    return [...gone.flatMap((e) => removePortLines(e, tag)), ...added.map((e) => addPortLine(e, tag))];
  }

  /**
   * One transaction: `lines` plus the changes that make the network's port
   * elements those of `forwards`. When it fails because tsnet's table or its
   * ports are not what this daemon wrote (someone changed them), it reads the
   * kernel's ports and runs once more, with the table's skeleton first.
   */
  private async transact(network: FirewallNetwork, lines: readonly string[], forwards: readonly PortForward[]): Promise<void> {
    const tag = networkTag(network.id);
    const wanted: Ports = new Map(forwards.map(portElement).map((e) => [slot(e), e]));
    const changes = this.portChanges(tag, wanted);
    if (lines.length + changes.length === 0) return;
    try {
      await this.apply([...lines, ...changes]);
    } catch {
      this.ports.set(tag, (await this.kernelPorts()).get(tag) ?? new Map());
      await this.apply([...skeleton(), ...lines, ...this.portChanges(tag, wanted)]);
    }
    this.ports.set(tag, wanted);
  }

  async setupNetwork(network: FirewallNetwork, forwards: readonly PortForward[]): Promise<void> {
    await this.start();
    await this.transact(network, networkLines(network), network.internal ? [] : forwards);
    // Only now that tsnet's chains decide for the bridge does iptables' FORWARD let it through.
    await this.ip.batch([['link', 'set', 'dev', network.bridge, 'group', BRIDGE_GROUP]]);
    await enableForwarding(this.sysctl, network);
  }

  async setPortForwards(network: FirewallNetwork, forwards: readonly PortForward[]): Promise<void> {
    if (network.internal) return;
    await this.start();
    await this.transact(network, [], forwards);
  }

  async teardownNetwork(network: FirewallNetwork): Promise<void> {
    await this.start();
    await giveBackRouteLocalnet(this.sysctl, network);
    await this.ip.undo(['link', 'set', 'dev', network.bridge, 'group', network.groupBefore]);
    await this.transact(network, networkRemovalLines(network), []);
    this.ports.delete(networkTag(network.id));
  }
}

/**
 * Removes what the nftables backend made (a host switching to iptables):
 * tsnet's table and the gate in iptables' FORWARD. Without a working nft
 * there is no table to remove.
 */
export async function removeNftablesBackend(runner: Runner): Promise<void> {
  try {
    // nft has no "delete if present": an add first makes the delete succeed either way.
    await runner.run('nft', ['-f', '-'], { input: `add table ${TABLE}\ndelete table ${TABLE}\n` });
  } catch (error) {
    if (!(error instanceof CommandError)) throw error;
  }
  await removeIptablesChains(runner, (chain) => chain === GATE);
}
