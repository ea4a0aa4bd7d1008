// dnsmasq (Debian's dnsmasq-base) as a stand-in DNS server: the upstream
// tsnet forwards to in tests, and the baseline of bench/dns. It serves the
// names of a hosts file and nothing else: no resolv.conf, no upstream, no
// DHCP, bound to one address and port, in the foreground, stopped by PID.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { type CleanupStack } from './cleanup.js';
import { netnsPath } from './netns.js';
import { terminate } from './processes.js';
import { waitUntil } from './wait.js';

export interface DnsmasqOptions {
  /** Where its hosts file goes. */
  dir: string;
  address: string;
  port: number;
  /** name → address lines of its hosts file. */
  hosts: ReadonlyArray<readonly [string, string]>;
  /** Domains it answers NXDOMAIN for what it does not have (instead of REFUSED). */
  localDomains?: readonly string[];
  /** TTL of its answers (default 30 s). */
  ttl?: number;
  /** Run in this netns (default: here). */
  netns?: string;
  /** Extra flags, e.g. `['--cache-size=0']`. */
  extraArgs?: readonly string[];
}

export interface Dnsmasq {
  pid: number;
  stop(): Promise<void>;
}

/** Starts dnsmasq and waits until its log says it read the hosts file; the cleanup stack stops it. */
export async function startDnsmasq(opts: DnsmasqOptions, cleanup: CleanupStack): Promise<Dnsmasq> {
  mkdirSync(opts.dir, { recursive: true });
  const hostsFile = join(opts.dir, 'hosts');
  writeFileSync(hostsFile, opts.hosts.map(([name, address]) => `${address} ${name}\n`).join(''));
  const args = [
    '--keep-in-foreground', '--conf-file=/dev/null', '--no-resolv', '--no-hosts', `--addn-hosts=${hostsFile}`,
    `--listen-address=${opts.address}`, '--bind-interfaces', `--port=${opts.port}`, `--local-ttl=${opts.ttl ?? 30}`,
    '--pid-file=', '--user=root', '--group=root', '--log-facility=-',
    ...(opts.localDomains ?? []).map((d) => `--local=/${d}/`),
    ...(opts.extraArgs ?? []),
  ];
  const { pid, stop } = await spawnDnsmasq(args, opts.netns, /read .*hosts - \d+ names?/, `dnsmasq on ${opts.address}:${opts.port}`, cleanup);
  return { pid, stop };
}

/**
 * Starts dnsmasq with `args` (in `netns`, when given) and waits until its
 * output matches `ready`; the cleanup stack stops it by PID. `output()` is
 * what it has printed so far (its log, with --log-facility=-).
 */
export async function spawnDnsmasq(args: readonly string[], netns: string | undefined, ready: RegExp, what: string, cleanup: CleanupStack): Promise<Dnsmasq & { output(): string }> {
  const argv = netns ? ['nsenter', `--net=${netnsPath(netns)}`, 'dnsmasq', ...args] : ['dnsmasq', ...args];
  const child: ResultPromise = execa(argv[0]!, argv.slice(1), { reject: false, stdin: 'ignore', all: true });
  const pid = child.pid;
  if (pid === undefined) throw new Error('could not spawn dnsmasq');
  let output = '';
  child.all?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const stop = async () => {
    await terminate(pid, 5_000);
    await child;
  };
  cleanup.defer(`stop dnsmasq ${pid}`, stop);
  await waitUntil(
    async () => {
      if (child.exitCode !== null) throw new Error(`dnsmasq exited: ${output}`);
      return ready.test(output);
    },
    { timeoutMs: 10_000, what, diagnostics: () => output },
  );
  return { pid, stop, output: () => output };
}
