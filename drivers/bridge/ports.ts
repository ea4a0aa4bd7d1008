import { RequestError } from '../../src/errors.js';
import { parseIp } from '../../src/net/address.js';
import type { Family, HostPort, HostPorts, PortForward } from '../../src/sys/index.js';
import type { PortBinding, PublishedPort } from '../model.js';

/** Which addresses of which family a host IP covers: '*' for all of them. */
function coverage(hostIp: string): Partial<Record<Family, string>> {
  if (hostIp === '') return { 4: '*', 6: '*' };
  if (hostIp === '0.0.0.0') return { 4: '*' };
  if (hostIp === '::') return { 6: '*' };
  return { [parseIp(hostIp)!.family]: hostIp };
}

function clash(a: PublishedPort, b: PublishedPort): boolean {
  if (a.binding.proto !== b.binding.proto || a.hostPort !== b.hostPort) return false;
  const x = coverage(a.hostIp);
  const y = coverage(b.hostIp);
  return ([4, 6] as const).some((f) => x[f] !== undefined && y[f] !== undefined && (x[f] === '*' || y[f] === '*' || x[f] === y[f]));
}

/** 127.0.0.0/8 is the host's whatever addresses lo shows. */
const isLoopback = (ip: string) => ip.startsWith('127.');

const sameBinding = (a: PortBinding, b: PortBinding) =>
  a.proto === b.proto && a.hostIp === b.hostIp && a.hostPort === b.hostPort && a.hostPortEnd === b.hostPortEnd && a.port === b.port;

const hostPortOf = (p: PublishedPort): HostPort => ({ proto: p.binding.proto, hostIp: p.hostIp, hostPort: p.hostPort });
const sameHostPort = (a: PublishedPort, b: PublishedPort) => a.binding.proto === b.binding.proto && a.hostIp === b.hostIp && a.hostPort === b.hostPort;

/** Where a port sits in the table's index: protocol and number, whatever the address. */
const slotOf = (p: PublishedPort) => `${p.binding.proto}/${p.hostPort}`;

/**
 * Host ports held by tsnet's endpoints: in memory (rebuilt from state by
 * restore), and on the host, where a socket holds each one so that no host
 * service can take it. Indexed by protocol and port number, so a clash check
 * is one lookup however many ports are held.
 */
export class PortTable {
  private readonly held = new Map<string, PublishedPort[]>();
  /** protocol/port → endpoint → its ports there (one per address it publishes the port on). */
  private readonly slots = new Map<string, Map<string, PublishedPort[]>>();
  /** Where the next search for a free ephemeral port starts, per protocol: after the last one given. */
  private readonly nextEphemeral = new Map<string, number>();

  constructor(private readonly host: HostPorts) {}

  /**
   * Makes `ports` what the endpoint holds: sockets bound for the new ones,
   * closed for those it no longer has. Returns the new ones a host socket
   * already has; those are not held.
   */
  async hold(endpointId: string, ports: readonly PublishedPort[]): Promise<PublishedPort[]> {
    const before = this.held.get(endpointId) ?? [];
    const lost: PublishedPort[] = [];
    for (const port of ports) {
      if (!before.some((b) => sameHostPort(b, port)) && !(await this.host.reserve(hostPortOf(port)))) lost.push(port);
    }
    for (const port of before) if (!ports.some((p) => sameHostPort(p, port))) await this.host.release(hostPortOf(port));
    const kept = ports.filter((p) => !lost.includes(p));
    this.index(endpointId, before, kept);
    if (kept.length === 0) this.held.delete(endpointId);
    else this.held.set(endpointId, kept);
    return lost;
  }

  private index(endpointId: string, before: readonly PublishedPort[], after: readonly PublishedPort[]): void {
    for (const port of before) this.slots.get(slotOf(port))?.delete(endpointId);
    for (const port of before) if (this.slots.get(slotOf(port))?.size === 0) this.slots.delete(slotOf(port));
    for (const port of after) {
      let slot = this.slots.get(slotOf(port));
      if (!slot) this.slots.set(slotOf(port), (slot = new Map()));
      slot.set(endpointId, [...(slot.get(endpointId) ?? []), port]);
    }
  }

  async release(endpointId: string): Promise<void> {
    await this.hold(endpointId, []);
  }

  /** The endpoint that holds a clashing port, other than `except`. */
  holder(port: PublishedPort, except: string): string | undefined {
    for (const [endpointId, ports] of this.slots.get(slotOf(port)) ?? []) {
      if (endpointId !== except && ports.some((p) => clash(p, port))) return endpointId;
    }
    return undefined;
  }

  /** Whether a socket other than tsnet's holds the port on the host. */
  hostInUse(port: PublishedPort): Promise<boolean> {
    return this.host.inUse(hostPortOf(port));
  }

  /** The ephemeral ports of [low, high] in the order to try them: round robin, so a port just given back is not the next one handed out. */
  *ephemeralOrder(proto: string, low: number, high: number): Generator<number> {
    const size = high - low + 1;
    const start = Math.min(Math.max(this.nextEphemeral.get(proto) ?? low, low), high);
    for (let n = 0; n < size; n++) yield low + ((start - low + n) % size);
  }

  /** Remembers the ephemeral port just chosen, so the next search starts after it. */
  gaveEphemeral(proto: string, port: number): void {
    this.nextEphemeral.set(proto, port + 1);
  }
}

/** The words that say who has a host port that cannot be published. */
export function takenMessage(port: PublishedPort): string {
  return `host port ${port.hostPort}/${port.binding.proto} on ${port.hostIp || 'all addresses'} is in use by a host process`;
}

export interface AllocationContext {
  table: PortTable;
  endpointId: string;
  /** com.docker.network.bridge.host_binding_ipv4: where a binding without HostIP goes. */
  defaultHostIp: string;
  hasIPv6: boolean;
  /** Whether an address is one of the host's; only asked when a binding names one. */
  isHostAddress: (ip: string) => Promise<boolean>;
  /** ip_local_port_range, for HostPort 0. */
  ephemeralRange: () => Promise<[number, number]>;
  /** Earlier allocations of the same endpoint: an unchanged binding keeps its port. */
  previous: readonly PublishedPort[];
  /** Names binding i in errors. */
  field: (index: number) => string;
}

function* portRange(low: number, high: number): Generator<number> {
  for (let port = low; port <= high; port++) yield port;
}

/**
 * Chooses the host port of every binding, or refuses the whole list with an
 * error naming the binding at fault. Changes nothing but where the next
 * search for an ephemeral port starts.
 */
export async function allocatePorts(bindings: readonly PortBinding[], ctx: AllocationContext): Promise<PublishedPort[]> {
  const hostIps = bindings.map((b) => b.hostIp || (ctx.defaultHostIp === '0.0.0.0' ? '' : ctx.defaultHostIp));
  for (const [i, hostIp] of hostIps.entries()) {
    const family = hostIp === '' ? undefined : parseIp(hostIp)!.family;
    if (family === 6 && !ctx.hasIPv6) throw new RequestError(`${ctx.field(i)}.HostIP`, `${hostIp} is IPv6 but the endpoint has no IPv6 address`);
    if (hostIp === '::1') throw new RequestError(`${ctx.field(i)}.HostIP`, 'the IPv6 loopback address cannot be forwarded to a container');
    const specific = coverage(hostIp)[4] !== '*' && coverage(hostIp)[6] !== '*';
    if (specific && !isLoopback(hostIp) && !(await ctx.isHostAddress(hostIp))) throw new RequestError(`${ctx.field(i)}.HostIP`, `${hostIp} is not an address of this host`);
  }

  const out: PublishedPort[] = [];
  for (const [i, binding] of bindings.entries()) {
    const hostIp = hostIps[i]!;
    const kept = ctx.previous.find((p) => sameBinding(p.binding, binding));
    const candidate = (hostPort: number): PublishedPort => ({ binding, hostIp, hostPort });
    const tsnetFree = (port: PublishedPort) => !out.some((p) => clash(p, port)) && ctx.table.holder(port, ctx.endpointId) === undefined;
    const free = async (port: PublishedPort) => tsnetFree(port) && !(await ctx.table.hostInUse(port));
    // A port the endpoint kept is its own on the host already.
    let chosen = kept && tsnetFree(candidate(kept.hostPort)) ? candidate(kept.hostPort) : undefined;
    const ephemeral = binding.hostPort === 0;
    const [low, high] = ephemeral ? await ctx.ephemeralRange() : [binding.hostPort, binding.hostPortEnd];
    if (chosen === undefined) {
      for (const port of ephemeral ? ctx.table.ephemeralOrder(binding.proto, low, high) : portRange(low, high)) {
        if (!(await free(candidate(port)))) continue;
        chosen = candidate(port);
        if (ephemeral) ctx.table.gaveEphemeral(binding.proto, port);
        break;
      }
    }
    if (chosen === undefined) throw new RequestError(`${ctx.field(i)}.HostPort`, unavailable(candidate(low), high, ctx, out));
    out.push(chosen);
  }
  return out;
}

/** Why no port of [first.hostPort, high] could be had. */
function unavailable(first: PublishedPort, high: number, ctx: AllocationContext, mine: readonly PublishedPort[]): string {
  const { proto } = first.binding;
  const where = first.hostIp || 'all addresses';
  if (first.hostPort !== high) return `every host port of ${first.hostPort}-${high}/${proto} on ${where} is published already or in use by a host process`;
  const by = ctx.table.holder(first, ctx.endpointId);
  if (by) return `host port ${first.hostPort}/${proto} on ${where} is already published by tsnet endpoint ${by.slice(0, 12)}`;
  if (mine.some((p) => clash(p, first))) return `host port ${first.hostPort}/${proto} on ${where} is already published by another binding of this endpoint`;
  return takenMessage(first);
}

/** The forwards of an endpoint's ports to its addresses. */
export function portForwards(ports: readonly PublishedPort[], address: { 4?: string; 6?: string }): PortForward[] {
  return ports.flatMap((p) =>
    ([4, 6] as const).flatMap((family) => {
      const covered = coverage(p.hostIp)[family];
      const containerIp = address[family];
      if (covered === undefined || containerIp === undefined) return [];
      return [{
        family,
        proto: p.binding.proto,
        ...(covered === '*' ? {} : { hostIp: covered }),
        hostPort: p.hostPort,
        containerIp,
        containerPort: p.binding.port,
      }];
    }),
  );
}
