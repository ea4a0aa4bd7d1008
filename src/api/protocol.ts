/**
 * libnetwork's remote NetworkDriver and IpamDriver protocols (dockerd 20.10):
 * one zod schema and one type per request, one type per response. dockerd
 * writes `null` for empty maps and lists, so every optional container accepts it.
 */
import { z } from 'zod';

const dockerId = (field: string) =>
  z.string({ error: `${field} is required` }).regex(/^[0-9a-f]{64}$/, `must be 64 lower-case hex characters`);

const nullableMap = <T extends z.ZodType>(value: T) =>
  z
    .record(z.string(), value)
    .nullish()
    .transform((map) => map ?? {});

const nullableList = <T extends z.ZodType>(item: T) =>
  z
    .array(item)
    .nullish()
    .transform((list) => list ?? []);

/** Driver options: values are JSON of any shape (strings, booleans, nested maps, port lists). */
const options = nullableMap(z.unknown());

// ---------------------------------------------------------------- NetworkDriver

export const IpamData = z.object({
  AddressSpace: z.string().default(''),
  Pool: z.string(),
  Gateway: z.string().optional(),
  AuxAddresses: nullableMap(z.string()),
});
export type IpamData = z.infer<typeof IpamData>;

export const CreateNetworkRequest = z.object({
  NetworkID: dockerId('NetworkID'),
  Options: options,
  IPv4Data: nullableList(IpamData),
  IPv6Data: nullableList(IpamData),
});
export type CreateNetworkRequest = z.infer<typeof CreateNetworkRequest>;

export const DeleteNetworkRequest = z.object({ NetworkID: dockerId('NetworkID') });
export type DeleteNetworkRequest = z.infer<typeof DeleteNetworkRequest>;

export const EndpointInterface = z.object({
  Address: z.string().default(''),
  AddressIPv6: z.string().default(''),
  MacAddress: z.string().default(''),
});
export type EndpointInterface = z.infer<typeof EndpointInterface>;

export const CreateEndpointRequest = z.object({
  NetworkID: dockerId('NetworkID'),
  EndpointID: dockerId('EndpointID'),
  Interface: EndpointInterface.nullish().transform((i) => i ?? { Address: '', AddressIPv6: '', MacAddress: '' }),
  Options: options,
});
export type CreateEndpointRequest = z.infer<typeof CreateEndpointRequest>;

/** DeleteEndpoint, EndpointOperInfo, Leave and RevokeExternalConnectivity carry only the two IDs. */
export const EndpointRequest = z.object({
  NetworkID: dockerId('NetworkID'),
  EndpointID: dockerId('EndpointID'),
});
export type EndpointRequest = z.infer<typeof EndpointRequest>;

export const JoinRequest = z.object({
  NetworkID: dockerId('NetworkID'),
  EndpointID: dockerId('EndpointID'),
  SandboxKey: z.string().default(''),
  Options: options,
});
export type JoinRequest = z.infer<typeof JoinRequest>;

export const ProgramExternalConnectivityRequest = z.object({
  NetworkID: dockerId('NetworkID'),
  EndpointID: dockerId('EndpointID'),
  Options: options,
});
export type ProgramExternalConnectivityRequest = z.infer<typeof ProgramExternalConnectivityRequest>;

/** Swarm-only calls; a standalone daemon never sends them, tsnet accepts and ignores them. */
export const AllocateNetworkRequest = z.object({ NetworkID: z.string(), Options: options }).loose();
export const FreeNetworkRequest = z.object({ NetworkID: z.string() }).loose();
export const DiscoveryRequest = z.object({ DiscoveryType: z.number(), DiscoveryData: z.unknown() }).loose();

export interface CapabilitiesResponse {
  Scope: 'local' | 'global';
  ConnectivityScope: 'local' | 'global';
}

export interface CreateEndpointResponse {
  /** Only the fields dockerd left empty may be set: echoing one back fails the endpoint. */
  Interface?: Partial<EndpointInterface>;
}

export interface StaticRoute {
  Destination: string;
  /** 0 = via NextHop, 1 = connected to the interface. */
  RouteType: 0 | 1;
  NextHop?: string;
}

export interface JoinResponse {
  InterfaceName: { SrcName: string; DstPrefix: string };
  Gateway?: string;
  GatewayIPv6?: string;
  StaticRoutes?: StaticRoute[];
  DisableGatewayService?: boolean;
}

export interface EndpointOperInfoResponse {
  Value: Record<string, unknown>;
}

// ---------------------------------------------------------------- IpamDriver

export interface IpamCapabilitiesResponse {
  RequiresMACAddress: boolean;
  RequiresRequestReplay: boolean;
}

export interface AddressSpacesResponse {
  LocalDefaultAddressSpace: string;
  GlobalDefaultAddressSpace: string;
}

export const RequestPoolRequest = z.object({
  AddressSpace: z.string({ error: 'AddressSpace is required' }),
  Pool: z.string().default(''),
  SubPool: z.string().default(''),
  Options: nullableMap(z.string()),
  V6: z.boolean().default(false),
});
export type RequestPoolRequest = z.infer<typeof RequestPoolRequest>;

export interface RequestPoolResponse {
  PoolID: string;
  Pool: string;
  Data: Record<string, string>;
}

export const ReleasePoolRequest = z.object({ PoolID: z.string({ error: 'PoolID is required' }).min(1) });
export type ReleasePoolRequest = z.infer<typeof ReleasePoolRequest>;

export const RequestAddressRequest = z.object({
  PoolID: z.string({ error: 'PoolID is required' }).min(1),
  Address: z.string().default(''),
  Options: nullableMap(z.string()),
});
export type RequestAddressRequest = z.infer<typeof RequestAddressRequest>;

export interface RequestAddressResponse {
  Address: string;
  Data: Record<string, string>;
}

export const ReleaseAddressRequest = z.object({
  PoolID: z.string({ error: 'PoolID is required' }).min(1),
  Address: z.string({ error: 'Address is required' }),
});
export type ReleaseAddressRequest = z.infer<typeof ReleaseAddressRequest>;

/** What every failed call answers, with HTTP 500. */
export interface ErrorResponse {
  Err: string;
}
