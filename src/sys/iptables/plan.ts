import type { Family, FirewallNetwork, OutboundNat, PortForward } from '../firewall.js';

/**
 * The iptables rules of tsnet, as pure data: which chains exist, what they
 * hold, and the hooks that lead into them. The golden files under
 * test/golden/ show the result of these plans for each scenario.
 *
 *   filter FORWARD ─▶ TSNET-FORWARD ─▶ TSNET-FWD-<net>   (-o bridge hooks first, then -i bridge)
 *                                        ├▶ TSNET-INTERNAL (first in every network's chain: what leaves an internal bridge, dropped)
 *                                        ├▶ TSNET-OPEN     (bridges of networks with isolation off)
 *                                        └▶ TSNET-DOCKER   (Docker's own bridges: no new connection into them)
 *   filter INPUT   ─▶ TSNET-INPUT                         (containers never open connections to 127/8: route_localnet guard;
 *                                                          a network's DNS server on its gateway: its bridge only;
 *                                                          an internal network: nothing but its gateway's DNS)
 *   nat PREROUTING, OUTPUT (local destinations) ─▶ TSNET-DNAT ─▶ TSNET-DNAT-<net>
 *   nat POSTROUTING ─▶ TSNET-POSTROUTING ─▶ TSNET-SNAT-<net>
 */

export type Table = 'filter' | 'nat';
/** A rule: the words after `-A <chain>`, in iptables-save's canonical order so saved rules compare equal. */
export type Rule = readonly string[];

export interface ChainPlan {
  table: Table;
  name: string;
  rules: Rule[];
}

/** A rule that leads into tsnet's chains from a chain shared with others. */
export interface HookPlan {
  table: Table;
  chain: string;
  rule: Rule;
  /** Inserted at the top instead of appended. */
  first: boolean;
}

export const SHARED_CHAINS = {
  forward: 'TSNET-FORWARD',
  internal: 'TSNET-INTERNAL',
  open: 'TSNET-OPEN',
  docker: 'TSNET-DOCKER',
  input: 'TSNET-INPUT',
  dnat: 'TSNET-DNAT',
  postrouting: 'TSNET-POSTROUTING',
} as const;

/**
 * The drops towards Docker's own bridges (`docker`: their names), as Docker
 * drops traffic between its networks; replies of connections Docker's side
 * opened (to a published port) pass.
 */
export function dockerChain(docker: readonly string[]): ChainPlan {
  return {
    table: 'filter',
    name: SHARED_CHAINS.docker,
    rules: [['-m', 'conntrack', '--ctstate', 'RELATED,ESTABLISHED', '-j', 'RETURN'], ...docker.map((bridge) => ['-o', bridge, '-j', 'DROP'])],
  };
}

/** tsnet's shared chains and their hooks in the built-in chains: made with the first network, removed with the last. */
export function basePlan(docker: readonly string[] = []): { chains: ChainPlan[]; hooks: HookPlan[] } {
  const local = ['-m', 'addrtype', '--dst-type', 'LOCAL', '-j', SHARED_CHAINS.dnat];
  return {
    chains: [
      { table: 'filter', name: SHARED_CHAINS.forward, rules: [] },
      { table: 'filter', name: SHARED_CHAINS.internal, rules: [] },
      { table: 'filter', name: SHARED_CHAINS.open, rules: [] },
      dockerChain(docker),
      { table: 'filter', name: SHARED_CHAINS.input, rules: [] },
      { table: 'nat', name: SHARED_CHAINS.dnat, rules: [] },
      { table: 'nat', name: SHARED_CHAINS.postrouting, rules: [] },
    ],
    hooks: [
      { table: 'filter', chain: 'FORWARD', rule: ['-j', SHARED_CHAINS.forward], first: true },
      { table: 'filter', chain: 'INPUT', rule: ['-j', SHARED_CHAINS.input], first: true },
      { table: 'nat', chain: 'PREROUTING', rule: local, first: true },
      { table: 'nat', chain: 'OUTPUT', rule: local, first: true },
      { table: 'nat', chain: 'POSTROUTING', rule: ['-j', SHARED_CHAINS.postrouting], first: true },
    ],
  };
}

/** Every network has a filter chain named so. */
export const NETWORK_CHAIN_PREFIX = 'TSNET-FWD-';

/** The name of any network's chain (networkChains): what start-up may remove when no network owns it. */
export const NETWORK_CHAIN = /^TSNET-(FWD|DNAT|SNAT)-[0-9a-f]{10}$/;

/** Per-network chain names: ≤ 28 characters, stable for the network ID. */
export function networkChains(networkId: string) {
  const tag = networkId.slice(0, 10);
  return { forward: `${NETWORK_CHAIN_PREFIX}${tag}`, dnat: `TSNET-DNAT-${tag}`, snat: `TSNET-SNAT-${tag}` };
}

const HOST_BITS: Record<Family, string> = { 4: '/32', 6: '/128' };

function outboundNatTarget(nat: OutboundNat): string[] {
  return nat.kind === 'masquerade' ? ['-j', 'MASQUERADE'] : ['-j', 'SNAT', '--to-source', nat.source];
}

/** Forwarding verdicts for traffic into and out of the bridge. Every packet into it gets a verdict here. */
function forwardRules(network: FirewallNetwork): Rule[] {
  const b = network.bridge;
  const icc = network.icc ? 'ACCEPT' : 'DROP';
  return [
    // What comes out of an internal bridge may not pass here, not even for a published port (TSNET-INTERNAL drops it).
    ...(network.internal ? [] : [['-j', SHARED_CHAINS.internal]]),
    ['-o', b, '-m', 'conntrack', '--ctstate', 'RELATED,ESTABLISHED', '-j', 'ACCEPT'],
    // Published ports: only tsnet's DNAT rules of this network send new connections here.
    ...(network.internal ? [] : [['-o', b, '-m', 'conntrack', '--ctstate', 'DNAT', '-j', 'ACCEPT']]),
    ['-i', b, '-o', b, '-j', icc],
    ...(network.isolate || network.internal ? [] : [['-o', b, '-j', SHARED_CHAINS.open]]),
    // Anything else into the bridge (other networks, unsolicited traffic from outside) is dropped.
    ['-o', b, '-j', 'DROP'],
    ...(network.internal ? [] : [['-i', b, '-j', SHARED_CHAINS.docker]]),
    ['-i', b, '-j', network.internal ? 'DROP' : 'ACCEPT'],
  ];
}

function snatRules(network: FirewallNetwork, family: Family, subnet: string): Rule[] {
  if (network.internal) return [];
  const b = network.bridge;
  const nat = network.outboundNat[family];
  return [
    ...(nat ? [['-s', subnet, '!', '-o', b, ...outboundNatTarget(nat)]] : []),
    // Hairpin: a container reaching a published port of its own network gets the gateway as source, so replies come back the same way.
    ['-s', subnet, '-o', b, '-m', 'conntrack', '--ctstate', 'DNAT', '-j', 'MASQUERADE'],
    // Ports published on 127.0.0.1 are reached from the host with a loopback source, which must not enter the bridge.
    ...(family === 4 ? [['-s', '127.0.0.0/8', '-o', b, '-j', 'MASQUERADE']] : []),
  ];
}

/** DNAT rules of the forwards of one family; the order of forwards is kept, so plans are reproducible. */
export function dnatRules(family: Family, forwards: readonly PortForward[]): Rule[] {
  return forwards
    .filter((f) => f.family === family)
    .map((f) => [
      ...(f.hostIp ? ['-d', f.hostIp + HOST_BITS[family]] : []),
      '-p', f.proto, '-m', f.proto, '--dport', String(f.hostPort),
      '-j', 'DNAT', '--to-destination', family === 4 ? `${f.containerIp}:${f.containerPort}` : `[${f.containerIp}]:${f.containerPort}`,
    ]);
}

/**
 * DNS on the gateway: let in from the network's own bridge (even under an
 * INPUT policy of DROP), dropped when it comes from another interface (other
 * networks, the LAN) unless the host itself asks. The two rules never match
 * the same packet, so their order does not matter.
 */
function dnsServerHooks(network: FirewallNetwork): HookPlan[] {
  const server = network.dnsServer;
  if (!server) return [];
  const b = network.bridge;
  return (['udp', 'tcp'] as const).flatMap((p) => [
    ['-d', `${server}/32`, '-i', b, '-p', p, '-m', p, '--dport', '53', '-j', 'ACCEPT'],
    ['-d', `${server}/32`, '!', '-i', b, '-p', p, '-m', 'addrtype', '!', '--src-type', 'LOCAL', '-m', p, '--dport', '53', '-j', 'DROP'],
  ]).map((rule) => ({ table: 'filter' as const, chain: SHARED_CHAINS.input, rule, first: false }));
}

/**
 * An internal network reaches the host only for its gateway's DNS (the
 * accepts of dnsServerHooks, appended before these): replies to the host's
 * own connections and IPv6 neighbour discovery (untracked by conntrack) go
 * on to the host's rules, anything else is dropped.
 */
function internalInputHooks(bridge: string, family: Family): HookPlan[] {
  const neighbourDiscovery = family === 6 ? ['135', '136'].map((type) => ['-i', bridge, '-p', 'ipv6-icmp', '-m', 'icmp6', '--icmpv6-type', type, '-j', 'RETURN']) : [];
  return [
    ['-i', bridge, '-m', 'conntrack', '--ctstate', 'RELATED,ESTABLISHED', '-j', 'RETURN'],
    ...neighbourDiscovery,
    ['-i', bridge, '-j', 'DROP'],
  ].map((rule) => ({ table: 'filter' as const, chain: SHARED_CHAINS.input, rule, first: false }));
}

/** Everything one network owns in one family: its chains (replaced whole) and its hooks in the shared chains. */
export function networkPlan(network: FirewallNetwork, family: Family, forwards: readonly PortForward[]): { chains: ChainPlan[]; hooks: HookPlan[] } {
  const subnet = network.subnets[family];
  if (!subnet) return { chains: [], hooks: [] };
  const names = networkChains(network.id);
  const b = network.bridge;
  return {
    chains: [
      { table: 'filter', name: names.forward, rules: forwardRules(network) },
      { table: 'nat', name: names.dnat, rules: network.internal ? [] : dnatRules(family, forwards) },
      { table: 'nat', name: names.snat, rules: snatRules(network, family, subnet) },
    ],
    hooks: [
      // Verdicts on traffic INTO a bridge come first, so a network's isolation
      // cannot be bypassed by another network's accept of its outgoing traffic.
      { table: 'filter', chain: SHARED_CHAINS.forward, rule: ['-o', b, '-j', names.forward], first: true },
      { table: 'filter', chain: SHARED_CHAINS.forward, rule: ['-i', b, '-j', names.forward], first: false },
      ...(network.internal ? [{ table: 'filter' as const, chain: SHARED_CHAINS.internal, rule: ['-i', b, '!', '-o', b, '-j', 'DROP'], first: false }] : []),
      ...(network.isolate || network.internal ? [] : [{ table: 'filter' as const, chain: SHARED_CHAINS.open, rule: ['-i', b, '-j', 'ACCEPT'], first: false }]),
      ...(family === 4 && !network.internal
        ? [{ table: 'filter' as const, chain: SHARED_CHAINS.input, rule: ['-d', '127.0.0.0/8', '-i', b, '-m', 'conntrack', '!', '--ctstate', 'RELATED,ESTABLISHED', '-j', 'DROP'], first: false }]
        : []),
      ...(family === 4 ? dnsServerHooks(network) : []),
      ...(network.internal ? internalInputHooks(b, family) : []),
      { table: 'nat', chain: SHARED_CHAINS.dnat, rule: ['-j', names.dnat], first: false },
      { table: 'nat', chain: SHARED_CHAINS.postrouting, rule: ['-j', names.snat], first: false },
    ],
  };
}
