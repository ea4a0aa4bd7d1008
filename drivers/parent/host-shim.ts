import { type Drift, drift, type Ip, type KernelView } from '../../src/sys/index.js';
import type { EndpointSpec } from '../model.js';
import type { ParentNetwork } from './parent-config.js';

/** The `ip link add` words of the network's kind for a child link `name` of its parent (the driver's). */
export type ShimLine = (network: ParentNetwork, name: string) => string[];

/** The endpoint's IPv4 address as a host route, `a.b.c.d/32`. */
const hostRoute = (endpoint: EndpointSpec) => `${endpoint.address!.slice(0, endpoint.address!.indexOf('/'))}/32`;

/**
 * The host shim: a child link of the host on the network's parent, of the
 * network's kind (a bridge-mode macvlan, or an ipvlan of the network's mode).
 * Neither kind passes frames between a parent and its children, so without
 * it the host cannot reach its own containers.
 *
 * Routing is one /32 per local container rather than the subnet: the subnet
 * is shared with other hosts (their containers, and often the parent's own
 * LAN address), which must keep going out through the parent; only the
 * local containers are unreachable that way.
 */
export class HostShim {
  constructor(
    private readonly ip: Ip,
    private readonly shimLine: ShimLine,
  ) {}

  /** Creates the shim if missing and (re)installs its address and the routes to `endpoints`. Idempotent. */
  async ensure(network: ParentNetwork, endpoints: readonly EndpointSpec[]): Promise<void> {
    const shim = network.config.hostShim;
    if (!shim) return;
    const exists = (await this.ip.link(shim.name)) !== undefined;
    await this.ip.batch([
      ...(exists ? [] : [this.shimLine(network, shim.name)]),
      ['address', 'replace', `${shim.address}/32`, 'dev', shim.name],
      ['link', 'set', 'dev', shim.name, 'up'],
      ...endpoints.filter((e) => e.address).map((e) => this.routeLine(network, e)!),
    ]);
  }

  /** Deleting the shim takes its routes with it. */
  async remove(network: ParentNetwork): Promise<void> {
    if (network.config.hostShim) await this.ip.deleteLinks([network.config.hostShim.name]);
  }

  /** The `ip route replace` words that send the host's traffic for `endpoint` through the shim. */
  routeLine(network: ParentNetwork, endpoint: EndpointSpec): string[] | undefined {
    const shim = network.config.hostShim;
    if (!shim || !endpoint.address) return undefined;
    return ['route', 'replace', hostRoute(endpoint), 'dev', shim.name];
  }

  /** The shim missing or down, its address gone, routes to local containers gone. */
  drift(network: ParentNetwork, endpoints: readonly EndpointSpec[], kernel: KernelView): Drift[] {
    const shim = network.config.hostShim;
    if (!shim) return [];
    const link = kernel.links.get(shim.name);
    if (!link) return [drift(network.id, 'link', 'missing', `${shim.name} (host shim)`)];
    const routes = endpoints.filter((e) => e.address).map((e) => `${hostRoute(e).replace(/\/32$/, '')} dev ${shim.name}`);
    return [
      ...(link.flags.includes('UP') ? [] : [drift(network.id, 'link', 'changed', `${shim.name} (host shim) is down`)]),
      ...(link.addresses.includes(`${shim.address}/32`) ? [] : [drift(network.id, 'address', 'missing', `${shim.address}/32 on ${shim.name}`)]),
      ...routes.filter((r) => !kernel.routes.has(r)).map((r) => drift(network.id, 'route', 'missing', r)),
    ];
  }

  async removeRoute(network: ParentNetwork, endpoint: EndpointSpec): Promise<void> {
    const shim = network.config.hostShim;
    if (shim && endpoint.address) await this.ip.undo(['route', 'del', hostRoute(endpoint), 'dev', shim.name]);
  }
}
