import { type Drift, drift } from '../drift.js';
import type { FirewallNetwork, PortForward, RuleSnapshot } from '../firewall.js';
import type { SavedTables } from '../iptables/restore-script.js';
import { GATE, INPUT_GATE } from './iptables-gate.js';
import { DOCKER_BRIDGE_SET, type Element, networkElements, portElement, skeleton, TABLE } from './ruleset.js';

/** What `nft -j list table inet tsnet` and iptables-save (the gate) showed. */
export interface NftSnapshot extends RuleSnapshot {
  backend: 'nftables';
  /** undefined: the table is gone. */
  table: TableView | undefined;
  /** iptables' filter tables per family; undefined without iptables on the host. */
  gate: { 4: SavedTables; 6: SavedTables } | undefined;
}

/** The table as sets of comparable texts. */
export interface TableView {
  /** Rules per base chain: counted, as nft prints them differently from how they are written. */
  rulesPerChain: Map<string, number>;
  /** Elements per set or map as `key` or `key : value`, e.g. `tsbr-0123456789 . 10.1.0.0/24`. */
  elements: Map<string, Set<string>>;
}

type JsonValue = string | number | { prefix?: { addr: string; len: number }; concat?: JsonValue[]; elem?: { val: JsonValue }; range?: JsonValue[] };
interface JsonTable {
  nftables: Array<{ chain?: { name: string }; rule?: { chain: string }; set?: { name: string; elem?: JsonValue[] }; map?: { name: string; elem?: Array<[JsonValue, JsonValue]> } }>;
}

/** An element as nft's JSON shows it, in the words tsnet writes it (without quotes). */
function text(value: JsonValue): string {
  if (typeof value !== 'object') return String(value);
  if (value.prefix) return `${value.prefix.addr}/${value.prefix.len}`;
  if (value.concat) return value.concat.map(text).join(' . ');
  if (value.elem) return text(value.elem.val);
  if (value.range) return value.range.map(text).join('-');
  return JSON.stringify(value);
}

export function parseTable(json: string): TableView {
  const view: TableView = { rulesPerChain: new Map(), elements: new Map() };
  for (const entry of (JSON.parse(json) as JsonTable).nftables) {
    if (entry.chain) view.rulesPerChain.set(entry.chain.name, view.rulesPerChain.get(entry.chain.name) ?? 0);
    if (entry.rule) view.rulesPerChain.set(entry.rule.chain, (view.rulesPerChain.get(entry.rule.chain) ?? 0) + 1);
    if (entry.set) view.elements.set(entry.set.name, new Set((entry.set.elem ?? []).map(text)));
    if (entry.map) view.elements.set(entry.map.name, new Set((entry.map.elem ?? []).map(([k, v]) => `${text(k)} : ${text(v)}`)));
  }
  return view;
}

/** The base chains with the number of rules the skeleton gives them, and the sets and maps it declares. */
const SKELETON = (() => {
  const rules = new Map<string, number>();
  const containers: string[] = [];
  for (const line of skeleton()) {
    const chain = line.match(/^add chain \S+ \S+ (\S+)/);
    if (chain) rules.set(chain[1]!, rules.get(chain[1]!) ?? 0);
    const rule = line.match(/^add rule \S+ \S+ (\S+) /);
    if (rule) rules.set(rule[1]!, (rules.get(rule[1]!) ?? 0) + 1);
    const container = line.match(/^add (?:set|map) \S+ \S+ (\S+) /);
    if (container) containers.push(container[1]!);
  }
  return { rules, containers };
})();

/** An element as parseTable shows the kernel's: `key` or `key : value`, without quotes. */
export const shownAs = (e: Pick<Element, 'key' | 'value'>) => `${e.key.replaceAll('"', '')}${e.value ? ` : ${e.value}` : ''}`;

/** The gate's chains and hooks in iptables' filter table (see iptables-gate.ts). */
function gateDrift(networkId: string, gate: NftSnapshot['gate']): Drift[] {
  if (!gate) return [];
  return ([4, 6] as const).flatMap((family) => {
    const filter = gate[family].filter;
    const pieces = [
      { chain: GATE, hook: `-A FORWARD -j ${GATE}` },
      ...(family === 4 ? [{ chain: INPUT_GATE, hook: `-A INPUT -j ${INPUT_GATE}` }] : []),
    ];
    return pieces.flatMap(({ chain, hook }) => [
      ...(filter.chains.has(chain) && [...filter.rules].some((r) => r.startsWith(`-A ${chain} `)) ? [] : [drift(networkId, 'chain', 'missing', `${chain} (iptables filter, IPv${family})`)]),
      ...(filter.rules.has(hook) ? [] : [drift(networkId, 'hook', 'missing', `${hook} (iptables filter, IPv${family})`)]),
    ]);
  });
}

/**
 * What the network needs of tsnet's table (its elements in the shared sets,
 * its published ports, the base chains with all their rules) and of the
 * iptables gate, that the snapshot lacks. Other networks' elements are
 * theirs to report; elements of no network go at start-up (removeUnknown).
 */
export function nftDrift(snapshot: NftSnapshot, network: FirewallNetwork, forwards: readonly PortForward[], dockerBridges: readonly string[]): Drift[] {
  const gate = gateDrift(network.id, snapshot.gate);
  const table = snapshot.table;
  if (!table) return [drift(network.id, 'table', 'missing', TABLE), ...gate];
  const chains = [...SKELETON.rules].flatMap(([chain, count]) => {
    const have = table.rulesPerChain.get(chain);
    if (have === undefined) return [drift(network.id, 'chain', 'missing', `${chain} (${TABLE})`)];
    return have === count ? [] : [drift(network.id, 'chain', 'changed', `${chain} (${TABLE}) has ${have} rules, tsnet wrote ${count}`)];
  });
  const containers = SKELETON.containers.filter((c) => !table.elements.has(c)).map((c) => drift(network.id, 'chain', 'missing', `set ${c} (${TABLE})`));
  const wanted: Array<{ container: string; key: string }> = [
    ...networkElements(network).map((e) => ({ container: e.container, key: shownAs(e) })),
    ...(network.internal ? [] : forwards.map(portElement).map((e) => ({ container: e.map, key: shownAs(e) }))),
    // Every network's isolation from Docker's networks rests on them.
    ...dockerBridges.map((name) => ({ container: DOCKER_BRIDGE_SET, key: name })),
  ];
  const elements = wanted
    .filter((e) => table.elements.has(e.container) && !table.elements.get(e.container)!.has(e.key))
    .map((e) => drift(network.id, 'element', 'missing', `${e.key} in ${e.container} (${TABLE})`));
  return [...chains, ...containers, ...elements, ...gate];
}
