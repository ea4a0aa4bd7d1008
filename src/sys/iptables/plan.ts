import type { Family, FirewallNetwork, OutboundNat, PortForward } from '../firewall.js';

/**
 * The iptables rules of tsnet, as pure data: which chains exist, what they
 * hold, and the hooks that lead into them. The golden files under
 * test/golden/ show the result of these plans for each scenario.
 *
 * What tsnet refuses to forward is dropped in the mangle table, which the
 * packet passes before filter: there no ACCEPT of another manager (Docker
 * inserts its own at the top of filter FORWARD whenever it makes a network,
 * libvirt and firewalls too) can come first, and a drop is final. Those
 * chains only drop or return, so the order of their hooks never matters.
 * What they let through, filter FORWARD accepts below DOCKER-USER (the host's
 * policy may be DROP), as Docker accepts its own networks' traffic.
 *
 *   mangle FORWARD ─▶ TSNET-GUARD ─▶ TSNET-FWD-<net>  (into a bridge: replies, published ports, ICC; goto TSNET-OPEN; else drop)
 *                                  │                    TSNET-OPEN: from an open bridge returns, else drop
 *                                  ├▶ TSNET-DOCKER     (out of a bridge into Docker's own bridges: replies only)
 *                                  └  -i <internal> ! -o <internal> DROP
 *   filter FORWARD ─▶ TSNET-FORWARD                    (what the guard let through: ACCEPT, past a DROP policy)
 *   filter INPUT   ─▶ TSNET-INPUT                      (containers never open connections to 127/8: route_localnet guard;
 *                                                       a network's DNS server on its gateway: its bridge only;
 *                                                       an internal network: nothing but its gateway's DNS)
 *   nat PREROUTING, OUTPUT (local destinations) ─▶ TSNET-DNAT ─▶ TSNET-DNAT-<net>
 *   nat POSTROUTING ─▶ TSNET-POSTROUTING ─▶ TSNET-SNAT-<net>
 */

export const TABLES = ['filter', 'nat', 'mangle'] as const;
export type Table = (typeof TABLES)[number];
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
  guard: 'TSNET-GUARD',
  open: 'TSNET-OPEN',
  docker: 'TSNET-DOCKER',
  forward: 'TSNET-FORWARD',
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
    table: 'mangle',
    name: SHARED_CHAINS.docker,
    rules: [['-m', 'conntrack', '--ctstate', 'RELATED,ESTABLISHED', '-j', 'RETURN'], ...docker.map((bridge) => ['-o', bridge, '-j', 'DROP'])],
  };
}

/** tsnet's shared chains and their hooks in the built-in chains: made with the first network, removed with the last. */
export function basePlan(docker: readonly string[] = []): { chains: ChainPlan[]; hooks: HookPlan[] } {
  const local = ['-m', 'addrtype', '--dst-type', 'LOCAL', '-j', SHARED_CHAINS.dnat];
  return {
    chains: [
      { table: 'mangle', name: SHARED_CHAINS.guard, rules: [] },
      // Reached by goto from the chain of a bridge that is open: an open bridge's traffic returns (networks insert theirs on top), the rest is dropped.
      { table: 'mangle', name: SHARED_CHAINS.open, rules: [['-j', 'DROP']] },
      dockerChain(docker),
      { table: 'filter', name: SHARED_CHAINS.forward, rules: [] },
      { table: 'filter', name: SHARED_CHAINS.input, rules: [] },
      { table: 'nat', name: SHARED_CHAINS.dnat, rules: [] },
      { table: 'nat', name: SHARED_CHAINS.postrouting, rules: [] },
    ],
    hooks: [
      { table: 'mangle', chain: 'FORWARD', rule: ['-j', SHARED_CHAINS.guard], first: true },
      { table: 'filter', chain: 'FORWARD', rule: ['-j', SHARED_CHAINS.forward], first: true },
      { table: 'filter', chain: 'INPUT', rule: ['-j', SHARED_CHAINS.input], first: true },
      { table: 'nat', chain: 'PREROUTING', rule: local, first: true },
      { table: 'nat', chain: 'OUTPUT', rule: local, first: true },
      { table: 'nat', chain: 'POSTROUTING', rule: ['-j', SHARED_CHAINS.postrouting], first: true },
    ],
  };
}

/** Every network has a mangle chain named so. */
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

/**
 * What may enter the bridge (the guard's chain for it, reached by `-o
 * bridge`): replies, published ports (tsnet's DNAT sends them), the bridge
 * itself with ICC on, another open bridge when this one is open; the rest,
 * other networks and unsolicited traffic from outside, is dropped.
 */
function intoBridgeRules(network: FirewallNetwork): Rule[] {
  const open = !network.isolate && !network.internal;
  return [
    ['-m', 'conntrack', '--ctstate', 'RELATED,ESTABLISHED', '-j', 'RETURN'],
    ...(network.internal ? [] : [['-m', 'conntrack', '--ctstate', 'DNAT', '-j', 'RETURN']]),
    ['-i', network.bridge, '-j', network.icc ? 'RETURN' : 'DROP'],
    ...(open ? [['-g', SHARED_CHAINS.open]] : []),
    ['-j', 'DROP'],
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
  const hook = (table: Table, chain: string, rule: Rule, first = false): HookPlan => ({ table, chain, rule, first });
  return {
    chains: [
      { table: 'mangle', name: names.forward, rules: intoBridgeRules(network) },
      { table: 'nat', name: names.dnat, rules: network.internal ? [] : dnatRules(family, forwards) },
      { table: 'nat', name: names.snat, rules: snatRules(network, family, subnet) },
    ],
    hooks: [
      hook('mangle', SHARED_CHAINS.guard, ['-o', b, '-j', names.forward]),
      // Nothing leaves an internal network, not even for a published port reached through its gateway.
      network.internal ? hook('mangle', SHARED_CHAINS.guard, ['-i', b, '!', '-o', b, '-j', 'DROP']) : hook('mangle', SHARED_CHAINS.guard, ['-i', b, '-j', SHARED_CHAINS.docker]),
      // On top of TSNET-OPEN's final drop.
      ...(network.isolate || network.internal ? [] : [hook('mangle', SHARED_CHAINS.open, ['-i', b, '-j', 'RETURN'], true)]),
      hook('filter', SHARED_CHAINS.forward, ['-o', b, '-j', 'ACCEPT']),
      ...(network.internal ? [] : [hook('filter', SHARED_CHAINS.forward, ['-i', b, '-j', 'ACCEPT'])]),
      ...(family === 4 && !network.internal
        ? [hook('filter', SHARED_CHAINS.input, ['-d', '127.0.0.0/8', '-i', b, '-m', 'conntrack', '!', '--ctstate', 'RELATED,ESTABLISHED', '-j', 'DROP'])]
        : []),
      ...(family === 4 ? dnsServerHooks(network) : []),
      ...(network.internal ? internalInputHooks(b, family) : []),
      hook('nat', SHARED_CHAINS.dnat, ['-j', names.dnat]),
      hook('nat', SHARED_CHAINS.postrouting, ['-j', names.snat]),
    ],
  };
}
