import type { Family, FirewallNetwork, PortForward } from '../firewall.js';

/**
 * tsnet's nftables rules, as `nft -f` lines: pure data, no I/O. Everything
 * lives in one table of its own, `inet tsnet`, whose base chains decide by
 * looking interfaces, subnets and ports up in sets and maps. A network is a
 * handful of set elements, a published port one map element: no change
 * touches another network's rules, and a change costs the same with 5 or 500
 * networks. (Chains of its own per network would not: nft reads every chain
 * before each change, and the kernel checks every chain reachable from a
 * verdict map whenever a jump into one is added.)
 *
 *   forward     out of an internal bridge: dropped, first (nothing may pass for it, not even
 *               a published port). Into a tsnet bridge: replies, published ports, the bridge
 *               itself (ICC), another open bridge; everything else dropped. Out of one into
 *               Docker's own bridges (@docker_bridges): dropped but for replies, as Docker
 *               drops traffic between its networks; elsewhere: accepted
 *   input       no new connections from a bridge to 127/8 (the route_localnet guard); DNS to a
 *               network's gateway listener only from its own bridge or the host (@dns4, @dnsgw4);
 *               from an internal bridge nothing but its gateway's DNS, replies and IPv6
 *               neighbour discovery
 *   prerouting, output (local destinations) ─▶ published: dnat through @ports4/@ports4_any/@ports6/@ports6_any
 *   postrouting from a network's subnet out of its bridge to elsewhere: masquerade (@masq4,
 *               @masq6) or SNAT (@snat4); hairpin (a container reaching its own network's
 *               published port: @subnets4, @subnets6); loopback sources of ports on
 *               127.0.0.1 masqueraded into the bridge
 *
 * The golden files test/golden/nft-*.rules show the result for each scenario.
 */

export const TABLE = 'inet tsnet';

/** Maps of published ports: with a host address in the key, or for every local address. */
export const PORT_MAPS = {
  4: { address: 'ports4', any: 'ports4_any' },
  6: { address: 'ports6', any: 'ports6_any' },
} as const;

const ADDRESS_TYPE: Record<Family, string> = { 4: 'ipv4_addr', 6: 'ipv6_addr' };
const FAMILY_WORD: Record<Family, string> = { 4: 'ip', 6: 'ip6' };

/** Sets of bridges, by what they say about a network. */
const BRIDGE_SETS = {
  /** Every tsnet bridge: what enters one gets a verdict here. */
  bridges: 'bridges',
  /** Not internal: published ports may enter, and what leaves is accepted. */
  published: 'publishing',
  /** Internal: nothing leaves. */
  internal: 'internal',
  /** tsnet.isolate=off: exchanges traffic with the other open bridges. */
  open: 'open',
  /** route_localnet is on: the 127/8 guard, and loopback sources masqueraded into it. */
  localnet: 'localnet',
  /** Bridges of Docker's own networks (not tsnet's): tsnet's networks open no connection into them. */
  docker: 'docker_bridges',
} as const;

/**
 * Values written into rules: generated names, numbers and addresses only. A
 * quote, blank or brace would end the word early, so anything else is a bug.
 */
function word(value: string): string {
  if (value === '' || /[\s"'\\#;{}]/.test(value)) throw new Error(`unsafe word in an nft rule: ${JSON.stringify(value)}`);
  return value;
}

const quoted = (name: string) => `"${word(name)}"`;

/** Per-network names: the first 10 hex digits of the ID, as the bridge's default name. */
export function networkTag(networkId: string): string {
  return word(networkId.slice(0, 10));
}

/** Per family: the network's bridge . subnet, for all networks with a way out, and for those that masquerade. */
const SUBNET_SETS: Record<Family, { all: string; masquerade: string }> = {
  4: { all: 'subnets4', masquerade: 'masq4' },
  6: { all: 'subnets6', masquerade: 'masq6' },
};
/** bridge . subnet → the SNAT source of com.docker.network.host_ipv4. */
const SNAT4 = 'snat4';
/** bridge . gateway of each network whose gateway answers DNS, and the gateways alone. */
const DNS_SETS = { byBridge: 'dns4', gateways: 'dnsgw4' } as const;

/** The table, its sets and maps, and its base chains with their rules: idempotent, as often as wanted. */
export function skeleton(): string[] {
  const maps = ([4, 6] as const).flatMap((f) => [
    `add map ${TABLE} ${PORT_MAPS[f].address} { type ${ADDRESS_TYPE[f]} . inet_proto . inet_service : ${ADDRESS_TYPE[f]} . inet_service; }`,
    `add map ${TABLE} ${PORT_MAPS[f].any} { type inet_proto . inet_service : ${ADDRESS_TYPE[f]} . inet_service; }`,
  ]);
  const base = (name: string, spec: string, rules: string[]) => [
    `add chain ${TABLE} ${name} { ${spec}; policy accept; }`,
    `flush chain ${TABLE} ${name}`,
    ...rules.map((r) => `add rule ${TABLE} ${name} ${r}`),
  ];
  const { bridges, published, internal, open, localnet, docker } = BRIDGE_SETS;
  return [
    `add table ${TABLE}`,
    ...Object.values(BRIDGE_SETS).map((set) => `add set ${TABLE} ${set} { type ifname; }`),
    // The bridges with inter-container traffic on (ICC), as `bridge . bridge`: one lookup of the packet's out and in interfaces.
    `add set ${TABLE} icc { type ifname . ifname; }`,
    ...([4, 6] as const).flatMap((f) => Object.values(SUBNET_SETS[f]).map((set) => `add set ${TABLE} ${set} { type ifname . ${ADDRESS_TYPE[f]}; flags interval; }`)),
    `add map ${TABLE} ${SNAT4} { type ifname . ipv4_addr : ipv4_addr; flags interval; }`,
    `add set ${TABLE} ${DNS_SETS.byBridge} { type ifname . ipv4_addr; }`,
    `add set ${TABLE} ${DNS_SETS.gateways} { type ipv4_addr; }`,
    ...maps,
    `add chain ${TABLE} published`,
    `flush chain ${TABLE} published`,
    ...([4, 6] as const).flatMap((f) => [
      `add rule ${TABLE} published dnat ${FAMILY_WORD[f]} to ${FAMILY_WORD[f]} daddr . meta l4proto . th dport map @${PORT_MAPS[f].address}`,
      `add rule ${TABLE} published dnat ${FAMILY_WORD[f]} to meta l4proto . th dport map @${PORT_MAPS[f].any}`,
    ]),
    ...base('forward', 'type filter hook forward priority filter', [
      // ICC first: with br_netfilter, traffic within a bridge passes this hook too.
      'oifname . iifname @icc accept',
      // Nothing leaves an internal network, not even for a published port reached through its gateway.
      `iifname @${internal} drop`,
      // Verdicts on traffic INTO a bridge come before any on traffic out of one, so a network's
      // isolation cannot be bypassed by another network's accept of its outgoing traffic.
      `oifname @${bridges} ct state established,related accept`,
      // Published ports: only tsnet's DNAT sends new connections here.
      `oifname @${published} ct status dnat accept`,
      `oifname @${open} iifname @${open} accept`,
      // Anything else into a bridge (other networks, unsolicited traffic from outside) is dropped.
      `oifname @${bridges} drop`,
      // Docker's networks are as closed to tsnet's as they are to each other (replies pass).
      `iifname @${bridges} oifname @${docker} ct state { new, invalid, untracked } drop`,
      `iifname @${published} accept`,
    ]),
    // route_localnet lets ports published on 127.0.0.1 in; containers must not use it to reach the host's loopback services.
    ...base('input', 'type filter hook input priority filter', [
      `iifname @${localnet} ip daddr 127.0.0.0/8 ct state { new, invalid, untracked } drop`,
      // A network's DNS listener serves that network (its bridge) and the host: other networks and the LAN learn nothing of it.
      `ip daddr @${DNS_SETS.gateways} meta l4proto { tcp, udp } th dport 53 iifname . ip daddr != @${DNS_SETS.byBridge} fib saddr type != local drop`,
      // An internal network reaches the host only for its gateway's DNS; replies to the host's own
      // connections and IPv6 neighbour discovery (which conntrack does not track) pass too.
      `iifname @${internal} ct state established,related accept`,
      `iifname . ip daddr @${DNS_SETS.byBridge} meta l4proto { tcp, udp } th dport 53 accept`,
      `iifname @${internal} icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept`,
      `iifname @${internal} drop`,
    ]),
    ...base('prerouting', 'type nat hook prerouting priority dstnat', ['fib daddr type local jump published']),
    ...base('output', 'type nat hook output priority -100', ['fib daddr type local jump published']),
    ...base('postrouting', 'type nat hook postrouting priority srcnat', [
      // Out of a network's subnet through another interface than its bridge: the host's address.
      ...([4, 6] as const).map((f) => `iifname . ${FAMILY_WORD[f]} saddr @${SUBNET_SETS[f].masquerade} oifname . ${FAMILY_WORD[f]} saddr != @${SUBNET_SETS[f].all} masquerade`),
      `oifname . ip saddr != @${SUBNET_SETS[4].all} snat ip to iifname . ip saddr map @${SNAT4}`,
      // Hairpin: a container reaching a published port of its own network gets the gateway as source, so replies come back the same way.
      ...([4, 6] as const).map((f) => `oifname . ${FAMILY_WORD[f]} saddr @${SUBNET_SETS[f].all} ct status dnat masquerade`),
      // Ports published on 127.0.0.1 are reached from the host with a loopback source, which must not enter the bridge.
      `oifname @${localnet} ip saddr 127.0.0.0/8 masquerade`,
    ]),
  ];
}

const families = (network: FirewallNetwork) => ([4, 6] as const).filter((f) => network.subnets[f] !== undefined);

/** The set of Docker's bridges made exactly `names`, in one transaction with the rest. */
export function dockerBridgeLines(names: readonly string[]): string[] {
  const set = `${TABLE} ${BRIDGE_SETS.docker}`;
  return [`flush set ${set}`, ...(names.length > 0 ? [`add element ${set} { ${names.map(quoted).join(', ')} }`] : [])];
}

export const DOCKER_BRIDGE_SET = BRIDGE_SETS.docker;

/** One element of a set or map. */
export interface Element {
  container: string;
  key: string;
  value?: string;
}

/** The network's elements in the shared sets and maps. */
export function networkElements(network: FirewallNetwork): Element[] {
  const b = quoted(network.bridge);
  const member = (set: string, wanted: boolean): Element[] => (wanted ? [{ container: set, key: b }] : []);
  const { internal } = network;
  return [
    ...member(BRIDGE_SETS.bridges, true),
    ...member(BRIDGE_SETS.internal, internal),
    ...member(BRIDGE_SETS.published, !internal),
    ...member(BRIDGE_SETS.open, !network.isolate && !internal),
    ...(network.icc ? [{ container: 'icc', key: `${b} . ${b}` }] : []),
    ...member(BRIDGE_SETS.localnet, !internal && network.subnets[4] !== undefined),
    ...(network.dnsServer
      ? [{ container: DNS_SETS.byBridge, key: `${b} . ${word(network.dnsServer)}` }, { container: DNS_SETS.gateways, key: word(network.dnsServer) }]
      : []),
    ...families(network).flatMap((f): Element[] => {
      if (internal) return [];
      const key = `${b} . ${word(network.subnets[f]!)}`;
      const nat = network.outboundNat[f];
      return [
        { container: SUBNET_SETS[f].all, key },
        ...(nat?.kind === 'masquerade' ? [{ container: SUBNET_SETS[f].masquerade, key }] : []),
        ...(nat?.kind === 'snat' && f === 4 ? [{ container: SNAT4, key, value: word(nat.source) }] : []),
      ];
    }),
  ];
}

const elementText = (e: { key: string; value?: string; comment?: string }) =>
  `${e.key}${e.comment ? ` comment ${quoted(e.comment)}` : ''}${e.value ? ` : ${e.value}` : ''}`;

/** The network's elements in the shared sets and maps. */
export function networkLines(network: FirewallNetwork): string[] {
  return networkElements(network).map((e) => `add element ${TABLE} ${e.container} { ${elementText(e)} }`);
}

/**
 * Removes the network's elements, whichever exist: nft has no "delete if
 * present", so each one is added (a no-op when it is there) right before it
 * is deleted, in the same transaction.
 */
export function networkRemovalLines(network: FirewallNetwork): string[] {
  return networkElements(network).flatMap((e) => [`add element ${TABLE} ${e.container} { ${elementText(e)} }`, `delete element ${TABLE} ${e.container} { ${e.key} }`]);
}

/** A published port as an element of one of the port maps; `key` names it in its map. */
export interface PortElement {
  map: string;
  key: string;
  value: string;
}

export function portElement(forward: PortForward): PortElement {
  const { family } = forward;
  const port = `${forward.proto} . ${forward.hostPort}`;
  return {
    map: forward.hostIp ? PORT_MAPS[family].address : PORT_MAPS[family].any,
    key: forward.hostIp ? `${word(forward.hostIp)} . ${port}` : port,
    value: `${word(forward.containerIp)} . ${forward.containerPort}`,
  };
}

/** `owner` (the network's tag) goes into the element's comment, so the kernel's copy tells whose it is. */
export function addPortLine(element: PortElement, owner: string): string {
  return `add element ${TABLE} ${element.map} { ${elementText({ key: element.key, value: element.value, comment: owner })} }`;
}

/** Removes a port element whether or not the kernel still has it (see networkRemovalLines). */
export function removePortLines(element: PortElement, owner: string): string[] {
  return [addPortLine(element, owner), `delete element ${TABLE} ${element.map} { ${element.key} }`];
}
