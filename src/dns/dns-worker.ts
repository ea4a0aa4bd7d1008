/**
 * The DNS server's thread. Queries never wait for the daemon's event loop,
 * and plugin requests never wait behind a flood of queries: the main thread
 * only posts the record entries and the wanted listeners here. The thread
 * keeps the daemon's priority: at nice 5 (bench/dns) it answered 12 % fewer
 * queries a second on a busy 2-core host, and plugin requests under its load
 * were no faster than at nice 0, as they run on the other thread anyway.
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { DnsAddress } from './dns-address.js';
import { type DnsCounts, DnsServer, type ListenerSpec, type ListenerStatus } from './dns-server.js';
import type { NameEntry } from './name-entry.js';
import { ResolvConfUpstreams, StaticUpstreams } from './upstreams.js';

export interface WorkerSetup {
  domain: string;
  /** --dns-upstream; empty = the resolv.conf at `resolvConf`. */
  upstreams: DnsAddress[];
  resolvConf: string;
  /** Our own --dns-listen addresses (as dnsAddressKey), never taken from resolv.conf as upstreams. */
  own: string[];
  /** --dns-recursion-from CIDRs. */
  recursionFrom: string[];
}

export type ToWorker =
  | { type: 'entries'; entries: NameEntry[]; ownedSubnets: string[] }
  | { type: 'listeners'; seq: number; listeners: ListenerSpec[] }
  /** The next `listeners` tries to bind the failed ones again. */
  | { type: 'retry-failed' }
  | { type: 'stop' };

export type FromWorker =
  | { type: 'listeners'; seq: number; statuses: ListenerStatus[] }
  | { type: 'error'; context: string; message: string }
  | { type: 'counts'; counts: DnsCounts }
  | { type: 'stopped' };

/** How often the counts go to the main thread (for metrics), when they changed. */
const COUNTS_EVERY_MS = 1_000;

/** How often the host's own addresses are read again. */
const HOST_ADDRESSES_EVERY_MS = 30_000;

const port = parentPort!;
const setup = workerData as WorkerSetup;
const post = (message: FromWorker) => port.postMessage(message);

const server = new DnsServer({
  domain: setup.domain,
  upstreams: setup.upstreams.length > 0 ? new StaticUpstreams(setup.upstreams) : new ResolvConfUpstreams(setup.resolvConf, new Set(setup.own)),
  onError: (error, context) => post({ type: 'error', context, message: error.stack ?? error.message }),
  recursionFrom: setup.recursionFrom,
});

port.on('message', (message: ToWorker) => {
  if (message.type === 'entries') server.setEntries(message.entries, message.ownedSubnets);
  else if (message.type === 'listeners') void server.setListeners(message.listeners).then((statuses) => post({ type: 'listeners', seq: message.seq, statuses }));
  else if (message.type === 'retry-failed') server.forgetFailures();
  else void server.close().then(() => post({ type: 'stopped' }));
});

// The host's addresses change without telling tsnet (DHCP on the LAN); its queries to itself stay its own.
setInterval(() => server.refreshHostAddresses(), HOST_ADDRESSES_EVERY_MS).unref();

// The counts reach the main thread a second late at most, and never from the query path.
let reported = -1;
setInterval(() => {
  const counts = server.counts;
  const total = counts.dropped + Object.values(counts.answers).reduce((a, b) => a + b, 0);
  if (total === reported) return;
  reported = total;
  post({ type: 'counts', counts });
}, COUNTS_EVERY_MS).unref();
