// Helpers for tests that run INSIDE the guest (test/vm/vmrun.sh).
// Everything a test builds lives in its own network namespaces with unique
// names, so even a misdirected run on a host never touches the root netns.
import { spawnSync } from 'node:child_process';

export interface Result {
  code: number;
  out: string;
}

/** Run a command without a shell; never throws. `out` = stdout + stderr. */
export function run(cmd: string, ...args: string[]): Result {
  const r = spawnSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 120_000 });
  const err = r.error ? `\n${r.error.message}` : '';
  return { code: r.status ?? -1, out: `${r.stdout ?? ''}${r.stderr ?? ''}${err}` };
}

/** Run a command that must succeed; throws with its output otherwise. */
export function must(cmd: string, ...args: string[]): string {
  const r = run(cmd, ...args);
  if (r.code !== 0) throw new Error(`\`${cmd} ${args.join(' ')}\` exited ${r.code}:\n${r.out}`);
  return r.out;
}

/** Unique per test process: several suites may share one kernel. */
export const uniq = (tag: string): string => `tsv${process.pid.toString(36)}${tag}`;

export const IN_VM = process.env.TSN_IN_VM === '1';

const notInGuest = (feature: string) => `
######################################################################
This test needs a kernel with ${feature}. The CI host kernel has none,
so it must run INSIDE the guest:

    scripts/vm-test.sh            (all test/vm/**/*.vm.test.ts)
    test/vm/run-in-guest.sh FILE  (selected files)

It is never skipped: a guest suite that did not run has not passed.
######################################################################`;

/**
 * Whether the kernel can make a child link of `type` (words after `type`) on
 * a veth: probed in a throw-away netns, so the caller's root netns is never
 * touched. Returns why not, or '' when it can.
 */
export function kernelRefuses(module: string, ...type: string[]): string {
  const ns = uniq('probe');
  const add = run('ip', 'netns', 'add', ns);
  if (add.code !== 0) return `ip netns add failed: ${add.out}`;
  try {
    run('modprobe', module); // may be built in; the link below is the real test
    const veth = run('ip', '-n', ns, 'link', 'add', 'p0', 'type', 'veth', 'peer', 'name', 'p1');
    const child = veth.code === 0 ? run('ip', '-n', ns, 'link', 'add', 'link', 'p0', 'name', 'p0c', 'type', ...type) : veth;
    return child.code === 0 ? '' : `\`ip link add ... type ${type.join(' ')}\` failed: ${child.out.trim()}`;
  } finally {
    run('ip', 'netns', 'del', ns);
  }
}

function requireKernel(feature: string, why: string): void {
  if (why) throw new Error(`${why}\n(TSN_IN_VM=${process.env.TSN_IN_VM ?? 'unset'})${notInGuest(feature)}`);
}

/** Fail loudly unless `ip link add ... type vlan` works. */
export function requireVlanKernel(): void {
  requireKernel('802.1Q VLAN support (8021q)', kernelRefuses('8021q', 'vlan', 'id', '10'));
}

/** Fail loudly unless `ip link add ... type ipvlan` works. */
export function requireIpvlanKernel(): void {
  requireKernel('ipvlan', kernelRefuses('ipvlan', 'ipvlan', 'mode', 'l2'));
}

/** Fail loudly unless the kernel takes an ESP SA of AES-GCM (XFRM, esp4, rfc4106(gcm(aes))): probed in a netns of its own. */
export function requireEspKernel(): void {
  const sa = ['xfrm', 'state', 'add', 'src', '127.0.0.1', 'dst', '127.0.0.2', 'proto', 'esp', 'spi', '0x100', 'mode', 'transport', 'aead', 'rfc4106(gcm(aes))', `0x${'0'.repeat(72)}`, '128'];
  const probe = run('unshare', '--net', 'ip', ...sa);
  requireKernel('IPsec ESP with AES-GCM (XFRM, esp4)', probe.code === 0 ? '' : `\`ip xfrm state add ... proto esp ... rfc4106(gcm(aes))\` failed: ${probe.out.trim()}`);
}

/**
 * Two network namespaces "a" and "b" joined by a veth pair named "wire" on
 * both ends: a private Ethernet segment between two simulated hosts.
 */
export class Wire {
  readonly ns: { a: string; b: string };

  constructor(tag: string) {
    this.ns = { a: uniq(`${tag}a`), b: uniq(`${tag}b`) };
    try {
      for (const ns of [this.ns.a, this.ns.b]) {
        must('ip', 'netns', 'add', ns);
        must('ip', '-n', ns, 'link', 'set', 'lo', 'up');
      }
      // The peer is created directly in b: nothing ever appears in the root netns.
      must('ip', '-n', this.ns.a, 'link', 'add', 'wire', 'type', 'veth', 'peer', 'name', 'wire', 'netns', this.ns.b);
      must('ip', '-n', this.ns.a, 'link', 'set', 'wire', 'up');
      must('ip', '-n', this.ns.b, 'link', 'set', 'wire', 'up');
    } catch (e) {
      this.destroy();
      throw e;
    }
  }

  /** Add an address on one side; default device: the bare (untagged) wire. */
  addr(side: 'a' | 'b', cidr: string, dev = 'wire'): void {
    must('ip', '-n', this.ns[side], 'addr', 'add', cidr, 'dev', dev);
  }

  /** Create VLAN sub-interface wire.<vid> on one side, with an address. */
  vlan(side: 'a' | 'b', vid: number, cidr: string): string {
    const ns = this.ns[side];
    const dev = `wire.${vid}`;
    must('ip', '-n', ns, 'link', 'add', 'link', 'wire', 'name', dev, 'type', 'vlan', 'id', String(vid));
    must('ip', '-n', ns, 'addr', 'add', cidr, 'dev', dev);
    must('ip', '-n', ns, 'link', 'set', dev, 'up');
    return dev;
  }

  /** One ICMP echo from a side; true if a reply came within 3 s. */
  ping(from: 'a' | 'b', ip: string): boolean {
    return run('ip', 'netns', 'exec', this.ns[from], 'busybox', 'ping', '-c', '1', '-W', '3', ip).code === 0;
  }

  rxPackets(side: 'a' | 'b', dev: string): number {
    const [link] = JSON.parse(must('ip', '-n', this.ns[side], '-s', '-j', 'link', 'show', dev)) as Array<{
      stats64: { rx: { packets: number } };
    }>;
    return link?.stats64.rx.packets ?? 0;
  }

  /** Deleting a netns deletes the veth ends and VLAN links inside it. */
  destroy(): void {
    for (const ns of [this.ns.a, this.ns.b]) run('ip', 'netns', 'del', ns);
  }
}
