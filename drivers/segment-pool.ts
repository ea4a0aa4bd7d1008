import { RequestError } from '../src/errors.js';
import type { Segments } from '../src/overlay/segments.js';
import type { NetworkSpec } from './model.js';

/**
 * A network of one L2 (bridge, macvlan) on a shared pool that is an overlay
 * segment elsewhere would share its addresses and reach none of its
 * containers: refused, naming the pool's kind.
 */
export async function refuseSegmentPool(segments: Segments | undefined, spec: NetworkSpec): Promise<void> {
  const subnet = spec.ipv4[0]?.pool;
  const vni = subnet && segments ? await segments.vniOf(subnet) : undefined;
  if (vni !== undefined) throw new RequestError('tsnet.mode', `${subnet} is the shared pool of an overlay segment (VNI ${vni}); create the network with -o tsnet.mode=overlay`);
}
