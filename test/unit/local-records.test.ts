import { describe, expect, it } from 'vitest';
import type { EndpointRecord, NetworkRecord } from '../../drivers/model.js';
import type { NamedEndpoint } from '../../src/docker/container-names.js';
import { type DockerNames, LocalRecords, type Topology } from '../../src/dns/local-records.js';

const NET = 'a'.repeat(64);
const endpoint = (id: string, address: string, addressIPv6?: string): EndpointRecord =>
  ({ id, networkId: NET, address, ...(addressIPv6 ? { addressIPv6 } : {}), mac: '02:42:00:00:00:01', portBindings: [], state: {} });

function topology(endpoints: EndpointRecord[]): Topology & { fire(): void } {
  const listeners = new Set<() => void>();
  return {
    listNetworks: () => [{ id: NET } as NetworkRecord],
    listEndpoints: () => endpoints,
    hostAddresses: () => [],
    onChange: (l) => (listeners.add(l), () => listeners.delete(l)),
    fire: () => listeners.forEach((l) => l()),
  };
}

function names(named: NamedEndpoint[], networkName?: string): DockerNames {
  return { endpoints: () => new Map(named.map((n) => [n.endpointId, n])), networkName: () => networkName, onChange: () => () => undefined };
}

describe('local records', () => {
  it('joins core\'s addresses with Docker\'s names by endpoint ID, without prefix lengths', () => {
    const ep = 'e'.repeat(64);
    const records = new LocalRecords(
      topology([endpoint(ep, '10.1.0.2/24', 'fd00::2/64')]),
      names([{ endpointId: ep, networkId: NET, networkName: 'front', containerId: 'c', containerName: 'web', aliases: ['www'] }], 'front'),
    );
    expect(records.entries()).toEqual([{ networkId: NET, networkName: 'front', endpointId: ep, names: ['web', 'www'], ipv4: '10.1.0.2', ipv6: 'fd00::2' }]);
  });

  it('serves an endpoint Docker has not named, under the network\'s short ID when its name is unknown too', () => {
    const records = new LocalRecords(topology([endpoint('f'.repeat(64), '10.1.0.3/24')]), names([]));
    expect(records.entries()).toEqual([{ networkId: NET, networkName: NET.slice(0, 12), endpointId: 'f'.repeat(64), names: [], ipv4: '10.1.0.3' }]);
  });

  it('tells its listener of topology changes until unsubscribed', () => {
    const core = topology([]);
    let calls = 0;
    const off = new LocalRecords(core, names([])).onChange(() => calls++);
    core.fire();
    off();
    core.fire();
    expect(calls).toBe(1);
  });
});
