/**
 * What the DNS server serves, as plain data: one entry per endpoint. Entries
 * come from record sources (LocalRecords: this host's endpoints joined with
 * Docker's names; with --cluster-store, RemoteNames: other hosts' endpoints
 * on shared networks) and cross into the DNS worker thread as they are.
 */
export interface NameEntry {
  networkId: string;
  /** Docker's name of the network; the 12-hex short ID while Docker has not told it. */
  networkName: string;
  endpointId: string;
  /** The container name first, then its network aliases; empty while Docker has not named the endpoint. */
  names: string[];
  /** Plain addresses, no prefix length. */
  ipv4?: string;
  ipv6?: string;
}

/**
 * A provider of entries. The DNS service serves the union of its sources
 * and rebuilds the record table after any of them changed.
 */
export interface RecordSource {
  entries(): NameEntry[];
  /** `listener` runs after the entries changed; returns the unsubscribe. */
  onChange(listener: () => void): () => void;
}

/** The name every endpoint has, container name known or not: `ep-<12 hex of the endpoint ID>`. */
export const endpointLabel = (endpointId: string) => `ep-${endpointId.slice(0, 12)}`;
