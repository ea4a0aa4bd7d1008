// Requests for different networks (and different pools) do not wait for
// each other; what really conflicts across networks still does.
import type { GoneEndpoints } from '../../drivers/sandbox.js';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import type { Driver } from '../../drivers/driver.js';
import type { DriverKind, EndpointRecord, NetworkRecord, NetworkSpec } from '../../drivers/model.js';
import { NetworkService } from '../../src/core/network-service.js';
import { RequestError } from '../../src/errors.js';
import { IpamService, LOCAL_ADDRESS_SPACE } from '../../src/ipam/ipam-service.js';
import { MemoryStore } from '../../src/store/memory.js';

/** A promise and the function that settles it. */
function gate(): { opened: Promise<void>; open: () => void } {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { opened, open };
}

/** Whether the promise is still unsettled after the event loop had time to run everything that was not waiting. */
async function stillPending(promise: Promise<unknown>): Promise<boolean> {
  const late = new Promise((resolve) => setTimeout(() => resolve(true), 50));
  return (await Promise.race([promise.then(() => false, () => false), late])) as boolean;
}

/** A driver whose kernel work for a network waits until the test opens that network's gate. */
class GatedDriver implements Driver {
  readonly kind = 'bridge' as const;
  readonly optionKeys = [];
  readonly gates = new Map<string, Promise<void>>();

  async prepareNetwork(spec: NetworkSpec, others: readonly NetworkRecord[]): Promise<unknown> {
    const clash = others.find((o) => o.ipv4[0]?.pool === spec.ipv4[0]?.pool);
    if (clash) throw new RequestError('Pool', `${spec.ipv4[0]!.pool} is taken by ${clash.id.slice(0, 12)}`);
    return {};
  }
  async createNetwork(network: NetworkRecord): Promise<void> {
    await this.gates.get(network.id);
  }
  async deleteNetwork(network: NetworkRecord): Promise<void> {
    await this.gates.get(network.id);
  }
  async createEndpoint(): Promise<unknown> {
    return {};
  }
  async deleteEndpoint(): Promise<void> {}
  join(_network: NetworkRecord, endpoint: EndpointRecord) {
    return { srcName: endpoint.id.slice(0, 8) };
  }
  async programExternalConnectivity(_network: NetworkRecord, endpoint: EndpointRecord): Promise<unknown> {
    return endpoint.state;
  }
  async revokeExternalConnectivity(_network: NetworkRecord, endpoint: EndpointRecord): Promise<unknown> {
    return endpoint.state;
  }
  async goneEndpoints(): Promise<GoneEndpoints<EndpointRecord>> {
    return { certain: [], unsure: [] };
  }
  ownedLinks(): string[] {
    return [];
  }
  hostAddresses(): string[] {
    return [];
  }
  async restore(): Promise<void> {}
  drift(): [] {
    return [];
  }
  async removeLeftovers(): Promise<string[]> {
    return [];
  }
}

const NET_A = 'a'.repeat(64);
const NET_B = 'b'.repeat(64);
const NET_C = 'c'.repeat(64);
const network = (id: string, subnet: string) => ({
  networkId: id,
  options: {},
  ipv4: [{ pool: `${subnet}.0/24`, gateway: `${subnet}.1/24`, auxAddresses: {} }],
  ipv6: [],
});

async function service(driver: GatedDriver): Promise<NetworkService> {
  const networks = new NetworkService(new MemoryStore(), new Map<DriverKind, Driver>([['bridge', driver]]), pino({ level: 'silent' }), { releaseStale: async () => undefined });
  await networks.load();
  return networks;
}

describe('network locks', () => {
  it('serves another network while one network\'s kernel work is slow', async () => {
    const driver = new GatedDriver();
    const networks = await service(driver);
    await networks.createNetwork(network(NET_B, '10.2.0'));
    const slow = gate();
    driver.gates.set(NET_A, slow.opened);
    const creatingA = networks.createNetwork(network(NET_A, '10.1.0'));

    const attachB = (async () => {
      await networks.createEndpoint({ networkId: NET_B, endpointId: 'e'.repeat(64), address: '10.2.0.2/24', addressIPv6: '', macAddress: '', options: {} });
      await networks.join(NET_B, 'e'.repeat(64), '');
      await networks.programExternalConnectivity(NET_B, 'e'.repeat(64));
    })();
    // Waiting on A's lock would hang here (and time the test out).
    await attachB;
    expect(await stillPending(creatingA)).toBe(true);

    // A request for the network being created waits for it.
    const endpointOfA = networks.createEndpoint({ networkId: NET_A, endpointId: 'f'.repeat(64), address: '10.1.0.2/24', addressIPv6: '', macAddress: '', options: {} });
    expect(await stillPending(endpointOfA)).toBe(true);
    slow.open();
    await creatingA;
    await endpointOfA;
  });

  it('checks a new network against one still being created, and against one being deleted', async () => {
    const driver = new GatedDriver();
    const networks = await service(driver);
    const slow = gate();
    driver.gates.set(NET_A, slow.opened);
    const creatingA = networks.createNetwork(network(NET_A, '10.1.0'));
    await expect(networks.createNetwork(network(NET_C, '10.1.0'))).rejects.toThrow(/^Pool: 10\.1\.0\.0\/24 is taken by aaaaaaaaaaaa/);
    slow.open();
    await creatingA;

    const slowDelete = gate();
    driver.gates.set(NET_A, slowDelete.opened);
    const deletingA = networks.deleteNetwork(NET_A);
    await expect(networks.createNetwork(network(NET_C, '10.1.0'))).rejects.toThrow(/is taken by aaaaaaaaaaaa/);
    slowDelete.open();
    await deletingA;
    await networks.createNetwork(network(NET_C, '10.1.0'));
    expect(networks.listNetworks().map((n) => n.id)).toEqual([NET_C]);
  });
});

describe('IPAM locks', () => {
  it('hands out addresses of a pool while an automatic pool choice waits for the host\'s routes', async () => {
    const routes = gate();
    const ipam = new IpamService(new MemoryStore(), { defaultPoolsV4: '10.90.0.0/16/24', hostNetworks: async () => (await routes.opened, []) });
    await ipam.load();
    const { poolId } = await ipam.requestPool({ addressSpace: LOCAL_ADDRESS_SPACE, pool: '10.5.0.0/24', subPool: '', options: {}, v6: false });
    const automatic = ipam.requestPool({ addressSpace: LOCAL_ADDRESS_SPACE, pool: '', subPool: '', options: {}, v6: false });
    expect((await ipam.requestAddress({ poolId, address: '', options: {} })).address).toBe('10.5.0.1/24');
    expect(await stillPending(automatic)).toBe(true);
    routes.open();
    expect((await automatic).pool).toBe('10.90.0.0/24');
  });
});
