import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { NetworkService } from '../core/network-service.js';
import type { DnsCounts } from '../dns/dns-server.js';
import type { IpamService } from '../ipam/ipam-service.js';
import { cidrSize, parseCidr } from '../net/address.js';
import type { PeerWrite } from '../overlay/segment-follower.js';
import { type Drift, ExecaRunner, type RunOptions, type RunResult, type Runner } from '../sys/index.js';
import { sessionRunner } from '../sys/sessions.js';

/** How a plugin request ended: answered, refused for bad input (RequestError), or failed. */
export type RequestOutcome = 'ok' | 'refused' | 'failed';

/** Seconds, from 1 ms (a read from memory) to 10 s (an iptables-restore behind a held xtables lock). */
const BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

const seconds = (since: bigint) => Number(process.hrtime.bigint() - since) / 1e9;

/** The label of a kernel command: the program, with `ip -batch` (one long-lived process, a line per write) told apart from ip reads. */
const commandOf = (file: string, args: readonly string[]) => (file === 'ip' && args.at(-2) === '-batch' ? 'ip-batch' : file);

/**
 * tsnet's Prometheus registry. The rooms count what they do through it:
 * the API each request, the runners each kernel command and program start;
 * what the state holds (networks, endpoints, pool usage, published ports) is
 * read from the services at scrape time. Node's process metrics come along.
 */
export class Metrics {
  readonly registry = new Registry();
  private readonly requests = new Counter({ name: 'tsnet_plugin_requests_total', help: 'Plugin API requests by method and outcome (ok, refused: bad input, failed)', labelNames: ['method', 'outcome'], registers: [this.registry] });
  private readonly requestSeconds = new Histogram({ name: 'tsnet_plugin_request_duration_seconds', help: 'Plugin API request latency by method', labelNames: ['method'], buckets: BUCKETS, registers: [this.registry] });
  private readonly commands = new Counter({ name: 'tsnet_kernel_commands_total', help: 'Kernel commands by program (ip-batch: writes through the long-lived ip process; iptables-restore: one rule transaction)', labelNames: ['command', 'outcome'], registers: [this.registry] });
  private readonly commandSeconds = new Histogram({ name: 'tsnet_kernel_command_duration_seconds', help: 'Kernel command latency by program', labelNames: ['command'], buckets: BUCKETS, registers: [this.registry] });
  private readonly ipLines = new Counter({ name: 'tsnet_ip_batch_lines_total', help: 'Lines (one netlink change each) written through ip -batch', registers: [this.registry] });
  private readonly programStarts = new Counter({ name: 'tsnet_program_starts_total', help: 'Programs started (iptables-save and -restore, ip and nft reads, and the long-lived ip -batch and nft -i sessions)', labelNames: ['program'], registers: [this.registry] });

  private readonly looks = new Counter({ name: 'tsnet_drift_looks_total', help: 'Reads of the whole kernel the drift watcher made to compare it with the records (after changes it could not tell from drift, and every few minutes)', registers: [this.registry] });
  private readonly repairs = new Counter({ name: 'tsnet_repairs_total', help: 'Differences between the records and the kernel that tsnet repaired (drift watcher, doctor --fix), by object (link, address, route, port-flag, promisc, neighbour, fdb, table, chain, rule, hook, element)', labelNames: ['object'], registers: [this.registry] });

  private readonly peerChanges = new Counter({ name: 'tsnet_overlay_peer_changes_total', help: 'Overlay peer entries (a neighbour and a forwarding entry each) written into the kernel or removed from it, following the cluster store', labelNames: ['change'], registers: [this.registry] });
  private readonly rekeys = new Counter({ name: 'tsnet_overlay_rekeys_total', help: "Times this host started sending an encrypted segment's traffic with a new generation of its key", registers: [this.registry] });
  private readonly convergence = new Histogram({ name: 'tsnet_overlay_convergence_seconds', help: "From a change of an overlay segment arriving from the cluster store to its peer entries in this host's kernel", buckets: BUCKETS, registers: [this.registry] });

  constructor() {
    collectDefaultMetrics({ register: this.registry });
  }

  /** For the API server: one answered request. */
  readonly observeRequest = (method: string, outcome: RequestOutcome, elapsedSeconds: number): void => {
    this.requests.inc({ method, outcome });
    this.requestSeconds.observe({ method }, elapsedSeconds);
  };

  /** For the drift watcher: one read and compare of every network. */
  readonly observeLook = (): void => {
    this.looks.inc();
  };

  /** For the reconciler: the differences it repaired. */
  readonly observeRepairs = (found: readonly Drift[]): void => {
    for (const d of found) this.repairs.inc({ object: d.object });
  };

  /** For the overlay segments: one write of peer entries. */
  readonly observePeerWrite = (write: PeerWrite): void => {
    this.peerChanges.inc({ change: 'written' }, write.written);
    this.peerChanges.inc({ change: 'removed' }, write.removed);
    this.convergence.observe(write.seconds);
  };

  /** The daemon's door to programs, counted: each program start, each command with its latency, each ip batch line. */
  runner(): Runner {
    return this.measure(sessionRunner(this.countStarts(new ExecaRunner()), (program) => this.programStarts.inc({ program })));
  }

  /** Wraps the runner that starts programs: counts each start. */
  private countStarts(inner: Runner): Runner {
    return {
      run: (file: string, args: readonly string[], options?: RunOptions): Promise<RunResult> => {
        this.programStarts.inc({ program: file });
        return inner.run(file, args, options);
      },
    };
  }

  /** Wraps the runner tsnet's kernel work goes through: counts and times each command, and the lines of each ip batch. */
  private measure(inner: Runner): Runner {
    return {
      run: async (file: string, args: readonly string[], options?: RunOptions): Promise<RunResult> => {
        const command = commandOf(file, args);
        if (command === 'ip-batch') this.ipLines.inc((options?.input ?? '').split('\n').filter((line) => line.trim() !== '').length);
        const started = process.hrtime.bigint();
        try {
          const result = await inner.run(file, args, options);
          this.commands.inc({ command, outcome: 'ok' });
          return result;
        } catch (error) {
          this.commands.inc({ command, outcome: 'failed' });
          throw error;
        } finally {
          this.commandSeconds.observe({ command }, seconds(started));
        }
      },
    };
  }

  /** What the state holds, read at each scrape. */
  watch(networks: NetworkService, ipam: IpamService): void {
    const registers = [this.registry];
    new Gauge({
      name: 'tsnet_networks',
      help: 'Networks by kind',
      labelNames: ['kind'],
      registers,
      collect() {
        this.reset();
        for (const n of networks.listNetworks()) this.inc({ kind: n.kind });
      },
    });
    new Gauge({
      name: 'tsnet_endpoints',
      help: 'Endpoints by network kind',
      labelNames: ['kind'],
      registers,
      collect() {
        this.reset();
        const kinds = new Map(networks.listNetworks().map((n) => [n.id, n.kind]));
        for (const e of networks.listEndpoints()) this.inc({ kind: kinds.get(e.networkId) ?? 'unknown' });
      },
    });
    new Gauge({
      name: 'tsnet_dhcp_leases',
      help: 'DHCP leases this host holds for containers, by state (expired: no server extended it in time)',
      labelNames: ['state'],
      registers,
      collect() {
        this.reset();
        for (const state of ['bound', 'expired']) this.set({ state }, 0);
        for (const lease of ipam.dhcpLeases()) this.inc({ state: lease.expired ? 'expired' : 'bound' });
      },
    });
    new Gauge({
      name: 'tsnet_published_ports',
      help: 'Host ports published to containers, by protocol',
      labelNames: ['proto'],
      registers,
      collect() {
        this.reset();
        for (const e of networks.listEndpoints()) for (const p of networks.publishedPorts(e)) this.inc({ proto: p.binding.proto });
      },
    });
    new Gauge({
      name: 'tsnet_pool_addresses_held',
      help: "Addresses held in each pool of tsnet's IPAM (gateways and aux addresses included)",
      labelNames: ['pool', 'range'],
      registers,
      collect() {
        this.reset();
        for (const p of ipam.list()) this.set({ pool: p.pool, range: p.subPool ?? p.pool }, ipam.addressesOf(p.id).length);
      },
    });
    new Gauge({
      name: 'tsnet_pool_addresses_size',
      help: 'Addresses in the range each pool hands out from (--ip-range, else the subnet)',
      labelNames: ['pool', 'range'],
      registers,
      collect() {
        this.reset();
        for (const p of ipam.list()) {
          const range = p.subPool ?? p.pool;
          this.set({ pool: p.pool, range }, Number(cidrSize(parseCidr(range)!.cidr)));
        }
      },
    });
  }

  /** The DNS server's answers by transport and RCODE, and the queries it left unanswered (refused askers, malformed packets). */
  watchDns(dns: { counts(): DnsCounts }): void {
    const registers = [this.registry];
    new Counter({
      name: 'tsnet_dns_answers_total',
      help: 'DNS answers by transport (udp, tcp) and RCODE',
      labelNames: ['transport', 'rcode'],
      registers,
      collect() {
        this.reset();
        for (const [key, n] of Object.entries(dns.counts().answers)) {
          const [transport, rcode] = key.split(' ');
          this.inc({ transport: transport!, rcode: rcode! }, n);
        }
      },
    });
    new Counter({
      name: 'tsnet_dns_dropped_total',
      help: 'DNS queries left without an answer (an asker outside the listener\'s networks, a packet that is no query)',
      registers,
      collect() {
        this.reset();
        this.inc(dns.counts().dropped);
      },
    });
  }

  /** Encrypted overlays: this host starting to send with a new generation of a segment's key. */
  readonly observeRekey = (): void => {
    this.rekeys.inc();
  };

  /** VXLAN datagrams the overlay gate dropped: from hosts that are not in the cluster, and an encrypted segment's without ESP; and the SAs held. */
  watchOverlayGate(gate: { strangers(): Promise<number>; cleartext(direction: 'in' | 'out'): Promise<number> }, ciphers: { count(): number }): void {
    new Counter({
      name: 'tsnet_overlay_cleartext_dropped_total',
      help: 'VXLAN datagrams of an encrypted overlay segment dropped for arriving (in) or leaving (out) without IPsec ESP; 0 while this host has no encrypted segment',
      labelNames: ['direction'],
      registers: [this.registry],
      async collect() {
        this.reset();
        const [incoming, outgoing] = await Promise.all([gate.cleartext('in'), gate.cleartext('out')]);
        this.inc({ direction: 'in' }, incoming);
        this.inc({ direction: 'out' }, outgoing);
      },
    });
    new Gauge({
      name: 'tsnet_overlay_security_associations',
      help: 'IPsec SAs this host holds for its encrypted overlay segments (two per other host and key generation)',
      registers: [this.registry],
      collect() {
        this.set(ciphers.count());
      },
    });
    new Counter({
      name: 'tsnet_overlay_strangers_total',
      help: 'VXLAN datagrams dropped by the overlay gate (from addresses of no registered host); 0 while this host has no overlay',
      registers: [this.registry],
      async collect() {
        this.reset();
        this.inc(await gate.strangers());
      },
    });
  }
}
