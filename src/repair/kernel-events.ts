/**
 * What one line of `ip -o monitor link address route neigh`, of `ip -o xfrm monitor` or of `nft monitor`
 * means for the drift watcher: whether it may be drift of tsnet's (look) or
 * cannot be (ignore). Every `docker run` makes a dozen such lines, most of
 * them tsnet's own doing or nothing tsnet checks (IPv6 link-local addresses
 * and their routes); only what someone else did to what tsnet keeps in
 * place asks for a look.
 */

import { isOwnXfrmLine } from '../sys/xfrm.js';

/** Who the watcher asks about a line's subject. */
export interface EventJudge {
  /** A link tsnet keeps in place: its bridges, veths, macvlans, shims, and the parents and VLAN links of its macvlan networks. */
  ownsLink(name: string): boolean;
  /** A link whose neighbour and forwarding entries tsnet keeps equal to the store: an overlay's VXLAN device. */
  keepsPeers(name: string): boolean;
  /** tsnet itself changed this link a moment ago (serving a plugin request, or writing an overlay's peers). */
  changedLink(name: string): boolean;
  /** tsnet itself changed the ports of this bridge lately: its carrier may still be catching up. */
  changedPorts(name: string): boolean;
  /** tsnet itself changed its rules a moment ago (serving a plugin request). */
  changedRules(): boolean;
  /** When tsnet itself last changed its rules (ms since the epoch; 0: never). */
  rulesChangedAt(): number;
}

export type Verdict = 'look' | 'ignore';

/** The link a monitor line is about: `N: name[@peer]: …` (link), `N: name    inet …` (address), `… dev name …` (route, neighbour, forwarding entry). */
function subjectOf(line: string): string | undefined {
  const body = line.replace(/^Deleted /, '');
  return /^\d+: ([^\s:@]+)/.exec(body)?.[1] ?? /(?:^| )dev ([^\s]+)/.exec(body)?.[1];
}

/**
 * A neighbour line (`ADDR dev X lladdr MAC STATE`), or a bridge forwarding
 * entry shown as one (`dev X lladdr MAC STATE`, or `DST dev X lladdr MAC NOARP
 * PERMANENT` for a VXLAN device's): it ends with a NUD state.
 */
const isNeighbourLine = (line: string) => /\b(PERMANENT|NOARP|REACHABLE|STALE|DELAY|PROBE|FAILED|INCOMPLETE|NONE)\s*$/.test(line);

/**
 * What tsnet never checks: IPv6 link-local addresses (which the kernel adds,
 * and marks done a second later, on every link that comes up), the routes
 * the kernel derives from addresses (local, broadcast and multicast tables),
 * IPv6 routes. tsnet checks links, their IPv4 and global IPv6 addresses, and
 * IPv4 routes of the main table.
 */
function unchecked(line: string): boolean {
  const body = line.replace(/^Deleted /, '');
  if (/^\d+: \S+\s+inet6 fe80:/.test(body)) return true;
  if (/^\d+: /.test(body)) return false;
  return /^(local|broadcast|multicast|anycast) /.test(body) || / table local /.test(body) || /^[0-9a-f]*:[0-9a-f:]*(\/\d+)? /.test(body);
}

/** A line about a link (not an address or route, not its deletion) whose flags say it is administratively up. */
const isUpLinkLine = (line: string) => /^\d+: [^\s]+: <([^>]*)>/.exec(line)?.[1]?.split(',').includes('UP') === true;

/** An `ip -o monitor` line. */
export function judgeLinkEvent(line: string, judge: EventJudge): Verdict {
  const subject = subjectOf(line);
  // A line this reading does not understand: look rather than miss drift.
  if (subject === undefined) return 'look';
  // Neighbours come and go with every conversation on a bridge; tsnet keeps only the VXLAN devices' (a deleted one shows as FAILED).
  if (isNeighbourLine(line)) return judge.keepsPeers(subject) && !judge.changedLink(subject) ? 'look' : 'ignore';
  if (!judge.ownsLink(subject) || unchecked(line) || judge.changedLink(subject)) return 'ignore';
  // Still up (tsnet never puts its bridge down): the carrier following the ports, not someone's change.
  return judge.changedPorts(subject) && isUpLinkLine(line) ? 'ignore' : 'look';
}

/**
 * An `ip -o xfrm monitor` line: someone flushing the IPsec tables, or one of
 * tsnet's SAs or policies deleted, may have taken an encrypted overlay's
 * away. What is added or updated is left alone (tsnet's own writes, which
 * never flush; its own deletions, at a rotation, cost one look).
 */
export function judgeXfrmEvent(line: string): Verdict {
  if (/^Flushed (state|policy)\b/.test(line)) return 'look';
  return /^Deleted /.test(line) && isOwnXfrmLine(line) ? 'look' : 'ignore';
}

/** Chains where tsnet's iptables backend hooks in: a change there may have taken its jump away. */
const BASE_CHAIN = /\b(FORWARD|INPUT|OUTPUT|PREROUTING|POSTROUTING)\b/;

/** An `nft monitor` line (nftables, and iptables-nft's tables). */
export function judgeRuleEvent(line: string, judge: EventJudge): Verdict {
  if (line.trim() === '' || line.startsWith('#')) return 'ignore';
  if (/tsnet|TSNET/.test(line)) return judge.changedRules() ? 'ignore' : 'look';
  // Another table or chain (Docker's DOCKER*, a firewalld zone, fail2ban's sets) holds nothing of tsnet's,
  // but a base chain or a whole table going may take tsnet's hooks with it.
  return BASE_CHAIN.test(line) || /^(flush ruleset|delete table|flush table)\b/.test(line) ? 'look' : 'ignore';
}
