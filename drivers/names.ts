/**
 * Kernel names derive from Docker's IDs, so they are stable across restarts
 * and never collide with Docker's own br-*, veth*, DOCKER*. All are ≤ 15 bytes.
 */
export const bridgeName = (networkId: string) => `tsbr-${networkId.slice(0, 10)}`;
/** Host end of an endpoint's veth pair. */
export const vethHostName = (endpointId: string) => `tsv${endpointId.slice(0, 12)}`;
/** Container end, until dockerd moves it into the sandbox and renames it eth<N>. */
export const vethContainerName = (endpointId: string) => `tsc${endpointId.slice(0, 12)}`;
/** An endpoint's macvlan or ipvlan link, until dockerd moves it into the sandbox. */
export const childLinkName = (endpointId: string) => `tsm${endpointId.slice(0, 12)}`;
/** The host's own macvlan or ipvlan shim on a parent, per network. */
export const shimName = (networkId: string) => `tss${networkId.slice(0, 12)}`;
/** An overlay network's VXLAN device, a port of its bridge. */
export const vxlanName = (networkId: string) => `tsx${networkId.slice(0, 12)}`;

/** An overlay's VXLAN device (vxlanName). */
export const VXLAN_LINK = /^tsx[0-9a-f]{12}$/;

/** Every name above, and nothing a user or Docker would pick by chance: the IDs are lower-case hex. */
export const GENERATED_LINK = /^(tsbr-[0-9a-f]{10}|ts[vcmsx][0-9a-f]{12})$/;
/**
 * The generated links that stay in the host's netns, which tsnet keeps as
 * recorded: bridges, veth host ends, shims, VXLAN devices. A container's end (tsc, tsm) only
 * passes through on its way into the container, and goes with it.
 */
export const HOST_KEPT_LINK = /^(tsbr-[0-9a-f]{10}|ts[vsx][0-9a-f]{12})$/;
/**
 * A bridge's own MAC, fixed and derived from the network ID (locally
 * administered, unicast). Left to itself the kernel gives a bridge the
 * lowest MAC of its ports, so the gateway's MAC changes whenever a container
 * with a lower one joins, and the containers' ARP caches point at nothing
 * for seconds (Docker fixes its bridges' MACs for the same reason).
 */
export const bridgeMac = (networkId: string) => ['06', ...(networkId.slice(0, 10).match(/../g) ?? [])].join(':');
