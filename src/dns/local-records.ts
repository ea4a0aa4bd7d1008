import type { EndpointRecord, NetworkRecord } from '../../drivers/model.js';
import type { NamedEndpoint } from '../docker/container-names.js';
import type { NameEntry, RecordSource } from './name-entry.js';

/** What the DNS room reads of core's networks and endpoints. */
export interface Topology {
  listNetworks(): NetworkRecord[];
  listEndpoints(): EndpointRecord[];
  hostAddresses(networkId: string): string[];
  onChange(listener: () => void): () => void;
}

/** What it reads of Docker's names (src/docker's ContainerNames). */
export interface DockerNames {
  endpoints(): Map<string, NamedEndpoint>;
  networkName(networkId: string): string | undefined;
  onChange(listener: () => void): () => void;
}

/** A network's name in the DNS: Docker's name, or its 12-hex short ID while Docker has not told it. */
export const networkLabel = (names: DockerNames, networkId: string): string => names.networkName(networkId) ?? networkId.slice(0, 12);

const plain = (cidr: string | undefined) => cidr?.slice(0, cidr.indexOf('/'));

/**
 * This host's endpoints with their names: addresses from core (the truth
 * of what is attached), names from Docker matched by endpoint ID. An
 * endpoint Docker has not named yet is still served, as ep-<12 hex>.
 */
export class LocalRecords implements RecordSource {
  constructor(
    private readonly topology: Topology,
    private readonly names: DockerNames,
  ) {}

  entries(): NameEntry[] {
    const named = this.names.endpoints();
    return this.topology.listEndpoints().map((endpoint) => {
      const docker = named.get(endpoint.id);
      const ipv4 = plain(endpoint.address);
      const ipv6 = plain(endpoint.addressIPv6);
      return {
        networkId: endpoint.networkId,
        networkName: networkLabel(this.names, endpoint.networkId),
        endpointId: endpoint.id,
        names: docker ? [docker.containerName, ...docker.aliases] : [],
        ...(ipv4 ? { ipv4 } : {}),
        ...(ipv6 ? { ipv6 } : {}),
      };
    });
  }

  onChange(listener: () => void): () => void {
    const offTopology = this.topology.onChange(listener);
    const offNames = this.names.onChange(listener);
    return () => {
      offTopology();
      offNames();
    };
  }
}

