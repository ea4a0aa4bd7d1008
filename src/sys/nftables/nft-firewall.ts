import { isIP } from 'node:net';
import type { Drift } from '../drift.js';
import type { EndpointForwards, Firewall, FirewallNetwork, PortForward, RuleSnapshot } from '../firewall.js';
import { enableForwarding, giveBackRouteLocalnet } from '../forwarding.js';
import { Ip } from '../ip.js';
import { KeyedMutex } from '../../mutex.js';
import { CommandError, ProgramNotFound, type Runner } from '../runner.js';
import { iptablesSave, removeIptablesChains } from '../iptables/restore-script.js';
import type { Sysctl } from '../sysctl.js';
import { BRIDGE_GROUP, GATE, INPUT_GATE, openIptablesGate } from './iptables-gate.js';
import { addPortLine, DOCKER_BRIDGE_SET, dockerBridgeLines, TABLE, networkElements, networkLines, networkRemovalLines, networkTag, PORT_MAPS, type PortElement, portElement, removePortLines, skeleton } from './ruleset.js';
import { nftDrift, type NftSnapshot, parseTable, shownAs } from './table-drift.js';

/** An endpoint's port elements by map and key. */
type Ports = Map<string, PortElement>;
const slot = (e: PortElement) => `${e.map} ${e.key}`;
const portsOf = (forwards: readonly PortForward[]): Ports => new Map(forwards.map(portElement).map((e) => [slot(e), e]));

/** Whose a port element is, in its comment: `<network tag>/<endpoint tag>`. */
const endpointTag = (endpointId: string) => endpointId.slice(0, 12);
const ownerOf = (networkId: string, endpoint: string) => `${networkTag(networkId)}/${endpoint}`;

/** The port maps' elements as `nft -j list maps` shows them: [key, value], the key with the owner's comment. */
type Concat = { concat: Array<string | number> };
type JsonElement = [Concat | { elem: { val: Concat; comment?: string } }, Concat];
interface JsonMaps {
  nftables: Array<{ map?: { table: string; name: string; elem?: JsonElement[] } }>;
}

/**
 * The firewall on nftables: tsnet's own table `inet tsnet` (see ./ruleset.ts),
 * every change one `nft -f -` transaction (all of it or nothing). Creating a
 * network adds its elements to the table's sets; publishing a port adds one
 * map element. Nothing is read per request: the daemon keeps the port
 * elements it wrote, and reads the kernel's once (at its first change, i.e.
 * during start-up) or when a change fails because someone else changed them.
 */
export class NftablesFirewall implements Firewall {
  private readonly ip: Ip;
  /** The port elements in the kernel: network tag → endpoint tag → elements. */
  private readonly ports = new Map<string, Map<string, Ports>>();
  private started: Promise<void> | undefined;
  /** Setting a network up and tearing one down: the last teardown takes the table along, which no setup may overlap. */
  private readonly networks = new KeyedMutex();
  /** Docker's bridges, written with the table whenever it is (re)made. */
  private dockerBridges: readonly string[] = [];

  constructor(
    private readonly runner: Runner,
    private readonly sysctl: Sysctl,
  ) {
    this.ip = new Ip(runner);
  }

  private async apply(lines: readonly string[]): Promise<void> {
    await this.runner.run('nft', ['-f', '-'], { input: `${lines.join('\n')}\n` });
  }

  /**
   * Once per daemon, and again after forgetKernel: the table and its base
   * chains, what ports the kernel has (tsnet ran before, or someone removed
   * some), and the gate through iptables' FORWARD. Networks known without
   * ports in the kernel stay known, with none.
   */
  private start(): Promise<void> {
    this.started ??= (async () => {
      await this.apply(this.skeleton());
      const kernel = await this.kernelPorts();
      for (const tag of new Set([...this.ports.keys(), ...kernel.keys()])) this.ports.set(tag, kernel.get(tag) ?? new Map());
      await openIptablesGate(this.runner);
    })().catch((error: unknown) => {
      this.started = undefined;
      throw error;
    });
    return this.started;
  }

  /** The table's skeleton with the elements that are not any network's: Docker's bridges. */
  private skeleton(): string[] {
    return [...skeleton(), ...dockerBridgeLines(this.dockerBridges)];
  }

  async setDockerBridges(names: readonly string[]): Promise<void> {
    await this.networks.run(TABLE, async () => {
      this.dockerBridges = [...names];
      // Without a table (no network yet) the names wait for start().
      if (this.started) await this.apply(dockerBridgeLines(this.dockerBridges));
    });
  }

  /** The port elements in the kernel, by the network and endpoint in their comment. */
  private async kernelPorts(): Promise<Map<string, Map<string, Ports>>> {
    const { stdout } = await this.runner.run('nft', ['-j', 'list', 'maps', 'inet']);
    const mapNames = new Set<string>(Object.values(PORT_MAPS).flatMap((m) => [m.address, m.any]));
    const out = new Map<string, Map<string, Ports>>();
    for (const { map } of (JSON.parse(stdout) as JsonMaps).nftables) {
      if (!map || map.table !== 'tsnet' || !mapNames.has(map.name)) continue;
      for (const [key, value] of map.elem ?? []) {
        const [network, endpoint] = ('elem' in key ? key.elem.comment ?? '' : '').split('/');
        if (!network || !endpoint) continue;
        const concat = 'elem' in key ? key.elem.val : key;
        const element = { map: map.name, key: concat.concat.join(' . '), value: value.concat.join(' . ') };
        if (!out.has(network)) out.set(network, new Map());
        const endpoints = out.get(network)!;
        if (!endpoints.has(endpoint)) endpoints.set(endpoint, new Map());
        endpoints.get(endpoint)!.set(slot(element), element);
      }
    }
    return out;
  }

  /** Lines that turn the elements of each endpoint in `wanted` into those given (the network's other endpoints stay). */
  private portChanges(network: FirewallNetwork, wanted: ReadonlyMap<string, Ports>): string[] {
    const current = this.ports.get(networkTag(network.id));
    return [...wanted].flatMap(([endpoint, want]) => {
      const have = current?.get(endpoint) ?? new Map<string, PortElement>();
      const owner = ownerOf(network.id, endpoint);
      const gone = [...have.values()].filter((e) => want.get(slot(e))?.value !== e.value);
      const added = [...want.values()].filter((e) => have.get(slot(e))?.value !== e.value);
      return [...gone.flatMap((e) => removePortLines(e, owner)), ...added.map((e) => addPortLine(e, owner))];
    });
  }

  /**
   * One transaction: `lines` plus the changes that make the port elements of
   * each endpoint in `wanted` those given. When it fails because tsnet's
   * table or ports are not what this daemon wrote (someone changed them), it
   * puts the table's skeleton back, reads the kernel's ports and runs once more.
   */
  private async transact(network: FirewallNetwork, lines: readonly string[], wanted: ReadonlyMap<string, Ports>): Promise<void> {
    const tag = networkTag(network.id);
    const changes = this.portChanges(network, wanted);
    if (lines.length + changes.length === 0) return;
    try {
      await this.apply([...lines, ...changes]);
    } catch {
      // nft 1.0 cannot add elements to an interval set it creates in the same transaction: the skeleton goes first, alone.
      await this.apply(this.skeleton());
      this.ports.set(tag, (await this.kernelPorts()).get(tag) ?? new Map());
      await this.apply([...lines, ...this.portChanges(network, wanted)]);
    }
    if (!this.ports.has(tag)) this.ports.set(tag, new Map());
    for (const [endpoint, want] of wanted) {
      if (want.size > 0) this.ports.get(tag)!.set(endpoint, want);
      else this.ports.get(tag)!.delete(endpoint);
    }
  }

  /** Every endpoint the kernel has ports of for this network, wanted with none: they go. */
  private noPorts(network: FirewallNetwork): Map<string, Ports> {
    return new Map([...(this.ports.get(networkTag(network.id))?.keys() ?? [])].map((endpoint) => [endpoint, new Map()]));
  }

  async setupNetwork(network: FirewallNetwork, forwards: EndpointForwards): Promise<void> {
    await this.networks.run(TABLE, async () => {
      await this.start();
      // Exactly these endpoints' ports: any other this network had in the kernel (a crash) goes.
      const wanted = this.noPorts(network);
      if (!network.internal) for (const [endpointId, mine] of forwards) wanted.set(endpointTag(endpointId), portsOf(mine));
      await this.transact(network, networkLines(network), wanted);
    });
    // Only now that tsnet's chains decide for the bridge does iptables' FORWARD let it through.
    await this.ip.batch([['link', 'set', 'dev', network.bridge, 'group', BRIDGE_GROUP]]);
    await enableForwarding(this.sysctl, network);
  }

  async setPortForwards(network: FirewallNetwork, endpointId: string, forwards: readonly PortForward[]): Promise<void> {
    if (network.internal) return;
    await this.start();
    await this.transact(network, [], new Map([[endpointTag(endpointId), portsOf(forwards)]]));
  }

  async teardownNetwork(network: FirewallNetwork): Promise<void> {
    await this.networks.run(TABLE, async () => {
      await this.start();
      await giveBackRouteLocalnet(this.sysctl, network);
      if (network.groupBefore) await this.ip.undo(['link', 'set', 'dev', network.bridge, 'group', network.groupBefore]);
      await this.transact(network, networkRemovalLines(network), this.noPorts(network));
      this.ports.delete(networkTag(network.id));
      // The last network takes the table and the iptables gate along: a removed plugin leaves nothing.
      if (this.ports.size > 0) return;
      await removeNftablesBackend(this.runner);
      this.started = undefined;
    });
  }

  async snapshot(): Promise<NftSnapshot> {
    const table = this.runner.run('nft', ['-j', 'list', 'table', ...TABLE.split(' ')]).then(
      ({ stdout }) => parseTable(stdout),
      (error: unknown) => {
        if (error instanceof CommandError && /No such file or directory/.test(error.stderr)) return undefined;
        throw error;
      },
    );
    const gate = Promise.all([iptablesSave(this.runner, 4, 'filter'), iptablesSave(this.runner, 6, 'filter')]).then(
      ([v4, v6]) => ({ 4: v4, 6: v6 }),
      (error: unknown) => {
        if (error instanceof ProgramNotFound) return undefined;
        throw error;
      },
    );
    return { backend: 'nftables', table: await table, gate: await gate };
  }

  drift(snapshot: RuleSnapshot, network: FirewallNetwork, forwards: EndpointForwards): Drift[] {
    return nftDrift(snapshot as NftSnapshot, network, [...forwards.values()].flat(), this.dockerBridges);
  }

  forgetKernel(): void {
    this.started = undefined;
  }

  /**
   * Elements of tsnet's table that no known network wants: set elements by
   * their text, port elements by the network tag in their comment. Only
   * tsnet's own table changes.
   */
  async removeUnknown(known: readonly FirewallNetwork[]): Promise<string[]> {
    const snapshot = await this.snapshot();
    if (!snapshot.table) return [];
    const wanted = new Set(known.flatMap((n) => networkElements(n).map((e) => `${e.container} ${shownAs(e)}`)));
    const portMaps = new Set<string>(Object.values(PORT_MAPS).flatMap((m) => [m.address, m.any]));
    const lines: string[] = [];
    const removed: string[] = [];
    for (const [container, elements] of snapshot.table.elements) {
      if (portMaps.has(container) || container === DOCKER_BRIDGE_SET) continue;
      for (const element of elements) {
        if (wanted.has(`${container} ${element}`)) continue;
        lines.push(`delete element ${TABLE} ${container} { ${nftWords(element.split(' : ')[0]!)} }`);
        removed.push(`${element} in ${container}`);
      }
    }
    const tags = new Set(known.map((n) => networkTag(n.id)));
    for (const [tag, endpoints] of await this.kernelPorts()) {
      if (tags.has(tag)) continue;
      for (const [endpoint, ports] of endpoints) {
        for (const port of ports.values()) {
          lines.push(`delete element ${TABLE} ${port.map} { ${port.key} }`);
          removed.push(`${port.key} : ${port.value} in ${port.map} (network ${tag}, endpoint ${endpoint})`);
        }
      }
      this.ports.delete(tag);
    }
    if (lines.length > 0) await this.networks.run(TABLE, () => this.apply(lines));
    return removed;
  }
}

/** An element's text (`tsbr-0123456789 . 10.1.0.0/24`) in nft's syntax: interface names quoted, addresses, prefixes and numbers as they are. */
function nftWords(text: string): string {
  const plain = (part: string) => /^\d+$/.test(part) || ['tcp', 'udp', 'sctp'].includes(part) || isIP(part.split('/')[0]!) !== 0;
  return text
    .split(' . ')
    .map((part) => (plain(part) ? part : `"${part}"`))
    .join(' . ');
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
  await removeIptablesChains(runner, (chain) => chain === GATE || chain === INPUT_GATE);
}
