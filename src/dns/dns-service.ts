import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import { type DnsAddress, dnsAddressKey } from './dns-address.js';
import type { DnsCounts, ListenerSpec, ListenerStatus } from './dns-server.js';
import type { FromWorker, ToWorker, WorkerSetup } from './dns-worker.js';
import type { Topology } from './local-records.js';
import type { RecordSource } from './name-entry.js';

export interface DnsOptions {
  /** --dns-domain: names are <container>.<network>.<domain>. */
  domain: string;
  /** --dns-listen: serve every network's names here (the host, the LAN). */
  listen: DnsAddress[];
  /** --dns-upstream; empty = the nameservers of `resolvConf`. */
  upstreams: DnsAddress[];
  resolvConf: string;
  /** --dns-recursion-from: askers that are not tsnet's but may have any name resolved (CIDRs). */
  recursionFrom: string[];
}

/** Networks' own listeners are on port 53 of the host's address in the network. */
const NETWORK_PORT = 53;
/** A worker that died is started again after this long. */
const RESTART_MS = 1_000;
/**
 * The DNS thread's heap: its caches are bounded in bytes (answers 4 MiB,
 * forwarded answers 1000), so this is room, not a budget. Whatever a flood
 * finds past those bounds kills the worker (which is started again), never
 * the daemon serving dockerd.
 */
const WORKER_LIMITS = { maxOldGenerationSizeMb: 96, maxYoungGenerationSizeMb: 16 };
/** How often a listener that could not bind (a host service holds its port) is tried again. */
const RETRY_FAILED_MS = 10_000;

/**
 * The listeners wanted now: the --dns-listen ones (anyone may ask), and one
 * per network address of every network with tsnet.dns on (only hosts of
 * the network's subnets may ask).
 */
function wantedListeners(options: DnsOptions, topology: Topology): ListenerSpec[] {
  const perNetwork = topology
    .listNetworks()
    .filter((network) => network.dns)
    .flatMap((network) => {
      // Only the network's own hosts may ask: its containers (and, on a macvlan network, its LAN), and the host through its address there.
      const askers = [...network.ipv4, ...network.ipv6Subnets].map((s) => s.pool);
      return topology.hostAddresses(network.id).map((address) => ({ address, port: NETWORK_PORT, networkId: network.id, forward: !network.internal, askers }));
    });
  return [...options.listen.map((a) => ({ ...a, forward: true })), ...perNetwork];
}

/** The subnets tsnet owns whole: a bridge network's. A macvlan subnet is the LAN's, with tsnet's containers among other hosts. */
function ownedSubnets(topology: Topology): string[] {
  return topology
    .listNetworks()
    .filter((network) => network.kind === 'bridge')
    .flatMap((network) => [...network.ipv4, ...network.ipv6Subnets].map((s) => s.pool));
}

/**
 * The daemon's side of the DNS server: runs it in a worker thread, feeds it
 * the entries of every record source and the wanted listeners whenever the
 * topology or a source changes (coalesced per tick, so within milliseconds),
 * logs listeners that cannot bind, and restarts a worker that died.
 *
 * Record sources plug in here: LocalRecords (this host's endpoints named by
 * Docker) and, with the cluster store, RemoteNames (other hosts' entries of
 * shared networks, src/cluster).
 */
export class DnsService {
  private worker: Worker | undefined;
  private statuses: ListenerStatus[] = [];
  private latestCounts: DnsCounts = { answers: {}, dropped: 0 };
  private readonly waiting = new Map<number, (statuses: ListenerStatus[]) => void>();
  private seq = 0;
  private scheduled = false;
  private stopping = false;
  private retry: NodeJS.Timeout | undefined;
  private readonly unsubscribe: Array<() => void> = [];

  private constructor(
    private readonly options: DnsOptions,
    private readonly topology: Topology,
    private readonly sources: readonly RecordSource[],
    private readonly log: Logger,
  ) {}

  /**
   * Starts the worker and binds every listener. Throws, naming the flag,
   * when a --dns-listen address cannot be bound; a network's listener that
   * cannot bind is only logged (and shown by listeners()).
   */
  static async start(options: DnsOptions, topology: Topology, sources: readonly RecordSource[], log: Logger): Promise<DnsService> {
    const service = new DnsService(options, topology, sources, log);
    await service.spawn();
    const failed = service.statuses.filter((s) => s.networkId === undefined && s.state === 'failed');
    if (failed.length > 0) {
      await service.stop();
      throw new Error(failed.map((s) => `--dns-listen ${dnsAddressKey(s)}: cannot serve DNS there (${s.error})`).join('; '));
    }
    const changed = () => service.schedule();
    service.unsubscribe.push(topology.onChange(changed), ...sources.map((s) => s.onChange(changed)));
    return service;
  }

  /** Every wanted listener and whether it serves. */
  listeners(): ListenerStatus[] {
    return this.statuses;
  }

  /** What the server answered so far (as of its last report, at most a second old); a restarted worker counts from 0 again, which Prometheus reads as a counter reset. */
  counts(): DnsCounts {
    return this.latestCounts;
  }

  async stop(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.retry);
    this.unsubscribe.forEach((off) => off());
    const worker = this.worker;
    if (!worker) return;
    const stopped = new Promise<void>((resolve) => {
      worker.on('message', (m: FromWorker) => m.type === 'stopped' && resolve());
      worker.once('exit', () => resolve());
    });
    this.post({ type: 'stop' });
    await stopped;
    await worker.terminate();
  }

  private async spawn(): Promise<void> {
    if (this.stopping) return;
    const setup: WorkerSetup = {
      domain: this.options.domain,
      upstreams: this.options.upstreams,
      resolvConf: this.options.resolvConf,
      own: this.options.listen.map(dnsAddressKey),
      recursionFrom: this.options.recursionFrom,
    };
    const worker = new Worker(new URL('./dns-worker.js', import.meta.url), { workerData: setup, resourceLimits: WORKER_LIMITS });
    this.worker = worker;
    worker.on('message', (message: FromWorker) => this.received(message));
    worker.on('error', (error) => this.log.error({ err: error }, 'the DNS worker failed'));
    worker.on('exit', (code) => {
      // Nobody will answer what was asked of this worker.
      for (const resolve of this.waiting.values()) resolve(this.statuses);
      this.waiting.clear();
      if (this.stopping || this.worker !== worker) return;
      this.log.error({ code, restartInMs: RESTART_MS }, 'the DNS worker exited; restarting it');
      this.worker = undefined;
      setTimeout(() => void this.spawn().catch((error: unknown) => this.log.error({ err: error }, 'cannot restart the DNS worker')), RESTART_MS);
    });
    await this.sync();
  }

  private received(message: FromWorker): void {
    if (message.type === 'listeners') {
      this.waiting.get(message.seq)?.(message.statuses);
      this.waiting.delete(message.seq);
    } else if (message.type === 'counts') {
      this.latestCounts = message.counts;
    } else if (message.type === 'error') {
      this.log.error({ context: message.context, detail: message.message }, 'DNS server error');
    }
  }

  private post(message: ToWorker): void {
    this.worker?.postMessage(message);
  }

  /** Coalesces a burst of changes (a network with its endpoints) into one update. */
  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.sync().catch((error: unknown) => this.log.error({ err: error }, 'cannot update the DNS server'));
    });
  }

  /** Sends the entries of every source and the wanted listeners; resolves with the listeners' states. */
  private async sync(): Promise<void> {
    if (!this.worker || this.stopping) return;
    this.post({ type: 'entries', entries: this.sources.flatMap((s) => s.entries()), ownedSubnets: ownedSubnets(this.topology) });
    const seq = ++this.seq;
    const statuses = new Promise<ListenerStatus[]>((resolve) => this.waiting.set(seq, resolve));
    this.post({ type: 'listeners', seq, listeners: wantedListeners(this.options, this.topology) });
    const answered = await statuses;
    this.report(answered);
    this.retryFailedLater(answered);
  }

  /**
   * A listener whose port a host service holds is tried again every
   * RETRY_FAILED_MS while it fails: once the service is gone, the network's
   * names are served without a tsnet restart.
   */
  private retryFailedLater(statuses: readonly ListenerStatus[]): void {
    if (this.retry || this.stopping || !statuses.some((s) => s.state === 'failed')) return;
    this.retry = setTimeout(() => {
      this.retry = undefined;
      this.post({ type: 'retry-failed' });
      this.sync().catch((error: unknown) => this.log.error({ err: error }, 'cannot update the DNS server'));
    }, RETRY_FAILED_MS);
    this.retry.unref();
  }

  /** Logs listeners that start serving or fail, once each. */
  private report(statuses: ListenerStatus[]): void {
    const before = new Map(this.statuses.map((s) => [dnsAddressKey(s), s.state]));
    for (const status of statuses) {
      if (before.get(dnsAddressKey(status)) === status.state) continue;
      const fields = { address: dnsAddressKey(status), network: status.networkId?.slice(0, 12), forward: status.forward };
      if (status.state === 'serving') this.log.info(fields, 'serving DNS');
      else if (status.networkId) this.log.warn({ ...fields, error: status.error }, 'cannot serve DNS for the network on this address; the network works without it');
    }
    this.statuses = statuses;
  }
}
