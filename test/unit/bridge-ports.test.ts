import { describe, expect, it } from 'vitest';
import { allocatePorts, type AllocationContext, PortTable, portForwards } from '../../drivers/bridge/ports.js';
import type { PortBinding } from '../../drivers/model.js';
import type { HostPort, HostPorts } from '../../src/sys/index.js';
import { parsePortSpec } from '../../src/admin/port-spec.js';

/** A host where a service listens on the ports in `busy` (`proto hostport`, any address). */
function hostWith(...busy: string[]): HostPorts {
  const taken = (p: HostPort) => busy.includes(`${p.proto} ${p.hostPort}`);
  return { inUse: async (p) => taken(p), reserve: async (p) => !taken(p), release: async () => undefined };
}

const tcp = (hostPort: number, port: number, hostIp = '', hostPortEnd = hostPort): PortBinding => ({ proto: 'tcp', hostIp, hostPort, hostPortEnd, port });

function context(table = new PortTable(hostWith()), extra: Partial<AllocationContext> = {}): AllocationContext {
  return {
    table,
    endpointId: 'ep-new',
    defaultHostIp: '0.0.0.0',
    hasIPv6: false,
    isHostAddress: async (ip) => ip === '198.51.100.1',
    ephemeralRange: async () => [40000, 40002],
    previous: [],
    field: (i) => `portmap.${i}`,
    ...extra,
  };
}

describe('host port allocation', () => {
  it('takes the first free port of a range and any free ephemeral port for 0', async () => {
    const table = new PortTable(hostWith());
    await table.hold('other', [{ binding: tcp(8000, 80), hostIp: '', hostPort: 8000 }]);
    const ports = await allocatePorts([tcp(8000, 80, '', 8002), tcp(0, 81)], context(table));
    expect(ports.map((p) => p.hostPort)).toEqual([8001, 40000]);
  });

  it('refuses a port another endpoint holds on an overlapping address, naming it; another address or protocol is fine', async () => {
    const table = new PortTable(hostWith());
    await table.hold('e1e1e1e1e1e1e1', [{ binding: tcp(8080, 80, '198.51.100.1'), hostIp: '198.51.100.1', hostPort: 8080 }]);
    await expect(allocatePorts([tcp(8080, 80)], context(table))).rejects.toThrow(/^portmap\.0\.HostPort: host port 8080\/tcp on all addresses is already published by tsnet endpoint e1e1e1e1e1e1/);
    expect(await allocatePorts([tcp(8080, 80, '127.0.0.1')], context(table))).toHaveLength(1);
    expect(await allocatePorts([{ ...tcp(8080, 80), proto: 'udp' }], context(table))).toHaveLength(1);
  });

  it('refuses the same host port twice in one request and host IPs the host does not have', async () => {
    await expect(allocatePorts([tcp(8080, 80), tcp(8080, 81)], context())).rejects.toThrow(/^portmap\.1\.HostPort: .*another binding of this endpoint/);
    await expect(allocatePorts([tcp(8080, 80, '192.0.2.9')], context())).rejects.toThrow(/^portmap\.0\.HostIP: 192\.0\.2\.9 is not an address of this host/);
    await expect(allocatePorts([tcp(8080, 80, '::')], context())).rejects.toThrow(/^portmap\.0\.HostIP: .*no IPv6 address/);
  });

  it('refuses a host port a host service listens on, naming it, and skips such ports when it chooses', async () => {
    const table = new PortTable(hostWith('tcp 5432', 'tcp 40000'));
    await expect(allocatePorts([tcp(5432, 80, '127.0.0.1')], context(table))).rejects.toThrow(/^portmap\.0\.HostPort: host port 5432\/tcp on 127\.0\.0\.1 is in use by a host process$/);
    expect((await allocatePorts([tcp(0, 80)], context(table))).map((p) => p.hostPort)).toEqual([40001]);
    expect((await allocatePorts([{ ...tcp(5432, 80), proto: 'udp' }], context(table))).map((p) => p.hostPort)).toEqual([5432]);
  });

  it('holds nothing of a port a host service took: hold reports it', async () => {
    const table = new PortTable(hostWith('tcp 8081'));
    const ports = [{ binding: tcp(8080, 80), hostIp: '', hostPort: 8080 }, { binding: tcp(8081, 81), hostIp: '', hostPort: 8081 }];
    expect(await table.hold('ep', ports)).toEqual([ports[1]]);
    expect(table.holder(ports[0]!, 'other')).toBe('ep');
    expect(table.holder(ports[1]!, 'other')).toBeUndefined();
  });

  it('keeps the host port an unchanged binding already had', async () => {
    const previous = [{ binding: tcp(0, 80), hostIp: '', hostPort: 40002 }];
    const ports = await allocatePorts([tcp(0, 80), tcp(0, 81)], context(new PortTable(hostWith()), { previous }));
    expect(ports.map((p) => p.hostPort)).toEqual([40002, 40000]);
  });

  it('publishes a binding without host IP on both families when the endpoint has both', () => {
    const forwards = portForwards([{ binding: tcp(8080, 80), hostIp: '', hostPort: 8080 }], { 4: '10.1.0.2', 6: 'fd01::2' });
    expect(forwards.map((f) => `${f.family} ${f.hostIp ?? '*'} ${f.containerIp}`)).toEqual(['4 * 10.1.0.2', '6 * fd01::2']);
  });
});

describe('tsnet port specs', () => {
  it('reads [hostip:]hostport:port[/proto]', () => {
    expect(parsePortSpec('8080:80')).toEqual(tcp(8080, 80));
    expect(parsePortSpec('127.0.0.1:5353:53/udp')).toEqual({ proto: 'udp', hostIp: '127.0.0.1', hostPort: 5353, hostPortEnd: 5353, port: 53 });
    expect(parsePortSpec('[fd00::1]:8080:80/sctp')).toMatchObject({ proto: 'sctp', hostIp: 'fd00::1' });
  });

  it.each(['80', '70000:80', '8080:80/icmp', '1.2.3:80:80', '0:80'])('refuses %s', (spec) => {
    expect(() => parsePortSpec(spec)).toThrow(/^port: /);
  });
});
