import { CommandError, type Runner } from './runner.js';

/** The parts of `ip -json -details link show` tsnet reads. */
export interface LinkInfo {
  ifindex: number;
  ifname: string;
  mtu: number;
  flags: string[];
  address?: string;
  master?: string;
  /** `link` is the parent's name for vlan/macvlan links in the same netns. */
  link?: string;
  promiscuity?: number;
  /** The interface group: `default`, a number, or a name of /etc/iproute2/group. */
  group?: string;
  linkinfo?: { info_kind?: string; info_data?: Record<string, unknown>; info_slave_kind?: string; info_slave_data?: { hairpin?: boolean; isolated?: boolean } };
}

export interface AddressInfo {
  ifname: string;
  addr_info: Array<{ family: 'inet' | 'inet6'; local: string; prefixlen: number }>;
}

export interface RouteInfo {
  dst: string;
  dev?: string;
  /** The next hop of a route through a gateway. */
  gateway?: string;
  /** `kernel`, `boot`, `static`, … or the number of one without a name. */
  protocol?: string;
}

/**
 * The interface group links wait in for a moment before they are deleted
 * together ("td"); nothing else of tsnet's, Docker's or a distribution's
 * uses it (tsnet's bridges are in 0x7473, see iptables-gate.ts).
 */
const DELETE_GROUP = '0x7464';

/** ip(8)'s words for a link, route or address that is not there. */
const GONE = /does not exist|Cannot find device|No such process|Cannot assign requested address/;

/** A link name that ip(8) and the kernel accept and that is safe in an `ip -batch` line. */
export const LINK_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}$/;

function checkBatchLine(words: readonly string[]): string {
  for (const word of words) {
    // ip -batch splits on blanks and honours quotes; tsnet only ever passes
    // generated names, numbers and addresses, so anything else is a bug.
    if (word === '' || /[\s"'\\#]/.test(word)) throw new Error(`unsafe word in ip batch line: ${JSON.stringify(word)}`);
  }
  return words.join(' ');
}

/** iproute2, through the Runner: JSON for reads, one `ip -batch -` per group of writes. */
export class Ip {
  constructor(
    private readonly runner: Runner,
    /** `ip -n <netns>`: operate inside a named network namespace. */
    private readonly netns?: string,
  ) {}

  private base(): string[] {
    return this.netns ? ['-n', this.netns] : [];
  }

  /** Runs all lines in one process; iproute2 stops at the first failing line. */
  async batch(lines: ReadonlyArray<readonly string[]>): Promise<void> {
    if (lines.length === 0) return;
    const input = lines.map(checkBatchLine).join('\n') + '\n';
    await this.runner.run('ip', [...this.base(), '-batch', '-'], { input });
  }

  async link(name: string): Promise<LinkInfo | undefined> {
    try {
      const { stdout } = await this.runner.run('ip', [...this.base(), '-json', '-details', 'link', 'show', 'dev', name]);
      return (JSON.parse(stdout) as LinkInfo[])[0];
    } catch (error) {
      if (error instanceof CommandError && GONE.test(error.stderr)) return undefined;
      throw error;
    }
  }

  async addresses(): Promise<AddressInfo[]> {
    const { stdout } = await this.runner.run('ip', [...this.base(), '-json', 'address', 'show']);
    return JSON.parse(stdout) as AddressInfo[];
  }

  /** Every link with its details and its addresses, in one read (see kernel-view.ts). */
  async detailedAddresses(): Promise<Array<LinkInfo & { addr_info: AddressInfo['addr_info'] }>> {
    const { stdout } = await this.runner.run('ip', [...this.base(), '-json', '-details', 'address', 'show']);
    return JSON.parse(stdout) as Array<LinkInfo & { addr_info: AddressInfo['addr_info'] }>;
  }

  /** Whether `address` (a plain IP of either family) is on one of the netns' links; ip reads only the matching addresses. */
  async hasAddress(address: string): Promise<boolean> {
    return (await this.linkOfAddress(address)) !== undefined;
  }

  /** The permanent neighbour entries of a link, or of every link: address → MAC, and the link. */
  async permanentNeighbours(dev?: string): Promise<Array<{ ip: string; mac: string; dev: string }>> {
    const { stdout } = await this.runner.run('ip', [...this.base(), '-json', 'neigh', 'show', ...(dev ? ['dev', dev] : []), 'nud', 'permanent']);
    return (JSON.parse(stdout) as Array<{ dst: string; lladdr?: string; dev?: string }>).flatMap((n) => (n.lladdr ? [{ ip: n.dst, mac: n.lladdr, dev: n.dev ?? dev ?? '' }] : []));
  }

  /** Every link of one kind (`vxlan`, `bridge`…) with its details. */
  async linksOfKind(kind: string): Promise<LinkInfo[]> {
    const { stdout } = await this.runner.run('ip', [...this.base(), '-json', '-details', 'link', 'show', 'type', kind]);
    return JSON.parse(stdout) as LinkInfo[];
  }

  /** The link holding `address` (a plain IP) and its MTU; undefined when no link has it. */
  async linkOfAddress(address: string): Promise<{ ifname: string; mtu: number } | undefined> {
    const { stdout } = await this.runner.run('ip', [...this.base(), '-json', 'address', 'show', 'to', `${address}/${address.includes(':') ? 128 : 32}`]);
    const link = (JSON.parse(stdout) as Array<AddressInfo & { mtu: number }>).find((l) => l.addr_info.length > 0);
    return link && { ifname: link.ifname, mtu: link.mtu };
  }

  /** The names of every link of the netns. */
  async linkNames(): Promise<Set<string>> {
    const { stdout } = await this.runner.run('ip', [...this.base(), '-json', 'link', 'show']);
    return new Set((JSON.parse(stdout) as LinkInfo[]).map((l) => l.ifname));
  }

  /** The addresses on one link, as `address/prefix`. */
  async addressesOf(dev: string): Promise<string[]> {
    const { stdout } = await this.runner.run('ip', [...this.base(), '-json', 'address', 'show', 'dev', dev]);
    return (JSON.parse(stdout) as AddressInfo[]).flatMap((entry) => entry.addr_info.map((a) => `${a.local}/${a.prefixlen}`));
  }

  /** The source address the kernel picks for a packet to `destination` (a plain IP); undefined without a route. */
  async routeSource(destination: string): Promise<string | undefined> {
    try {
      const { stdout } = await this.runner.run('ip', [...this.base(), '-json', 'route', 'get', destination]);
      return (JSON.parse(stdout) as Array<{ prefsrc?: string }>)[0]?.prefsrc;
    } catch (error) {
      if (error instanceof CommandError && /unreachable|No route/i.test(error.stderr)) return undefined;
      throw error;
    }
  }

  async routes(family: 4 | 6): Promise<RouteInfo[]> {
    const { stdout } = await this.runner.run('ip', [...this.base(), '-json', `-${family}`, 'route', 'show']);
    return JSON.parse(stdout) as RouteInfo[];
  }

  /**
   * Deletes links, ignoring the ones already gone: teardown is idempotent.
   * Several go as one group: the kernel unregisters a group in one batch,
   * ~17 ms a bridge here instead of ~40 ms one by one (its RCU waits are
   * shared), holding its lock for the whole batch.
   */
  async deleteLinks(names: readonly string[]): Promise<void> {
    if (names.length === 0) return;
    if (names.length === 1) return this.undo(['link', 'del', 'dev', names[0]!]);
    for (const name of names) await this.undo(['link', 'set', 'dev', name, 'group', DELETE_GROUP]);
    // Another deleteLinks may have taken this group's links along already: nothing left is done too.
    await this.undo(['link', 'del', 'group', DELETE_GROUP]);
  }

  /**
   * Runs one undo command (link or route del, flag reset); a link or route
   * already gone is success. As a batch, so a long-lived ip session takes it.
   */
  async undo(words: readonly string[]): Promise<void> {
    try {
      await this.batch([words]);
    } catch (error) {
      if (!(error instanceof CommandError) || !GONE.test(error.stderr)) throw error;
    }
  }
}
