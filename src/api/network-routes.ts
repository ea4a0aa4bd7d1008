import type { NetworkService } from '../core/network-service.js';
import {
  AllocateNetworkRequest,
  type CapabilitiesResponse,
  CreateEndpointRequest,
  type CreateEndpointResponse,
  CreateNetworkRequest,
  DeleteNetworkRequest,
  DiscoveryRequest,
  EndpointRequest,
  type EndpointOperInfoResponse,
  FreeNetworkRequest,
  JoinRequest,
  type JoinResponse,
  ProgramExternalConnectivityRequest,
} from './protocol.js';
import { type Route, route } from './route.js';
import { z } from 'zod';

const Empty = z.object({}).loose();

/** NetworkDriver.* → the network service; translation between wire and core, nothing else. */
export function networkRoutes(networks: NetworkService): Route[] {
  return [
    route('NetworkDriver.GetCapabilities', Empty, (): CapabilitiesResponse => ({ Scope: 'local', ConnectivityScope: 'local' })),
    route('NetworkDriver.CreateNetwork', CreateNetworkRequest, async (r) => {
      await networks.createNetwork({
        networkId: r.NetworkID,
        options: r.Options,
        ipv4: r.IPv4Data.map((d) => ({ pool: d.Pool, ...(d.Gateway ? { gateway: d.Gateway } : {}), auxAddresses: d.AuxAddresses })),
        ipv6: r.IPv6Data.map((d) => ({ pool: d.Pool, ...(d.Gateway ? { gateway: d.Gateway } : {}), auxAddresses: d.AuxAddresses })),
      });
      return {};
    }),
    route('NetworkDriver.DeleteNetwork', DeleteNetworkRequest, async (r) => {
      await networks.deleteNetwork(r.NetworkID);
      return {};
    }),
    route('NetworkDriver.CreateEndpoint', CreateEndpointRequest, async (r): Promise<CreateEndpointResponse> => {
      const created = await networks.createEndpoint({
        networkId: r.NetworkID,
        endpointId: r.EndpointID,
        address: r.Interface.Address,
        addressIPv6: r.Interface.AddressIPv6,
        macAddress: r.Interface.MacAddress,
        options: r.Options,
      });
      return created.macAddress ? { Interface: { MacAddress: created.macAddress } } : {};
    }),
    route('NetworkDriver.DeleteEndpoint', EndpointRequest, async (r) => {
      await networks.deleteEndpoint(r.NetworkID, r.EndpointID);
      return {};
    }),
    route('NetworkDriver.EndpointOperInfo', EndpointRequest, (): EndpointOperInfoResponse => ({ Value: {} })),
    route('NetworkDriver.Join', JoinRequest, async (r): Promise<JoinResponse> => {
      const join = await networks.join(r.NetworkID, r.EndpointID, r.SandboxKey);
      return {
        InterfaceName: { SrcName: join.srcName, DstPrefix: join.dstPrefix },
        ...(join.gateway ? { Gateway: join.gateway } : {}),
        ...(join.gatewayIPv6 ? { GatewayIPv6: join.gatewayIPv6 } : {}),
        ...(join.staticRoutes
          ? { StaticRoutes: join.staticRoutes.map((s) => ({ Destination: s.destination, RouteType: s.routeType, ...(s.nextHop ? { NextHop: s.nextHop } : {}) })) }
          : {}),
        ...(join.disableGatewayService ? { DisableGatewayService: true } : {}),
      };
    }),
    // Leave needs no work: the link is still in the sandbox; DeleteEndpoint removes it.
    route('NetworkDriver.Leave', EndpointRequest, () => ({})),
    route('NetworkDriver.ProgramExternalConnectivity', ProgramExternalConnectivityRequest, async (r) => {
      await networks.programExternalConnectivity(r.NetworkID, r.EndpointID);
      return {};
    }),
    route('NetworkDriver.RevokeExternalConnectivity', EndpointRequest, async (r) => {
      await networks.revokeExternalConnectivity(r.NetworkID, r.EndpointID);
      return {};
    }),
    route('NetworkDriver.AllocateNetwork', AllocateNetworkRequest, () => ({ Options: {} })),
    route('NetworkDriver.FreeNetwork', FreeNetworkRequest, () => ({})),
    route('NetworkDriver.DiscoverNew', DiscoveryRequest, () => ({})),
    route('NetworkDriver.DiscoverDelete', DiscoveryRequest, () => ({})),
  ];
}
