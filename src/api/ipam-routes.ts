import { z } from 'zod';
import { GLOBAL_ADDRESS_SPACE, type IpamService, LOCAL_ADDRESS_SPACE } from '../ipam/ipam-service.js';
import {
  type AddressSpacesResponse,
  type IpamCapabilitiesResponse,
  ReleaseAddressRequest,
  ReleasePoolRequest,
  RequestAddressRequest,
  type RequestAddressResponse,
  RequestPoolRequest,
  type RequestPoolResponse,
} from './protocol.js';
import { type Route, route } from './route.js';

const Empty = z.object({}).loose();

/** IpamDriver.* → the IPAM service. */
export function ipamRoutes(ipam: IpamService): Route[] {
  return [
    // State is persisted, so dockerd need not replay pools and addresses after a restart.
    route('IpamDriver.GetCapabilities', Empty, (): IpamCapabilitiesResponse => ({ RequiresMACAddress: false, RequiresRequestReplay: false })),
    route(
      'IpamDriver.GetDefaultAddressSpaces',
      Empty,
      (): AddressSpacesResponse => ({ LocalDefaultAddressSpace: LOCAL_ADDRESS_SPACE, GlobalDefaultAddressSpace: GLOBAL_ADDRESS_SPACE }),
    ),
    route('IpamDriver.RequestPool', RequestPoolRequest, async (r): Promise<RequestPoolResponse> => {
      const pool = await ipam.requestPool({ addressSpace: r.AddressSpace, pool: r.Pool, subPool: r.SubPool, options: r.Options, v6: r.V6 });
      return { PoolID: pool.poolId, Pool: pool.pool, Data: pool.data };
    }),
    route('IpamDriver.ReleasePool', ReleasePoolRequest, async (r) => {
      await ipam.releasePool(r.PoolID);
      return {};
    }),
    route('IpamDriver.RequestAddress', RequestAddressRequest, async (r): Promise<RequestAddressResponse> => {
      const { address } = await ipam.requestAddress({ poolId: r.PoolID, address: r.Address, options: r.Options });
      return { Address: address, Data: {} };
    }),
    route('IpamDriver.ReleaseAddress', ReleaseAddressRequest, async (r) => {
      await ipam.releaseAddress(r.PoolID, r.Address);
      return {};
    }),
  ];
}
