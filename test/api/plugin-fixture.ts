import { pino } from 'pino';
import supertest from 'supertest';
import { createPlugin, type Plugin } from '../../src/plugin.js';
import { MemoryStore } from '../../src/store/memory.js';
import { CommandError, CommandSysctl, RecordingRunner, UncheckedHostPorts } from '../../src/sys/index.js';

export const NET_A = 'a'.repeat(64);
export const NET_B = 'b'.repeat(64);
export const EP_1 = '1'.repeat(64);
export const EP_2 = '2'.repeat(64);

/**
 * The plugin over a memory store and a recording runner that answers like
 * an empty host: no links yet, no routes, no addresses, no nft rules.
 */
export async function pluginFixture(): Promise<{ plugin: Plugin; runner: RecordingRunner; post: (method: string, body?: unknown) => supertest.Test }> {
  const runner = new RecordingRunner()
    .reply('ip -json -details link show dev', new CommandError('ip link show', 1, 'Device "x" does not exist.'))
    .reply('ip -json', '[]')
    .reply('nft -j', '{"nftables": []}');
  const plugin = await createPlugin({ store: new MemoryStore(), runner, hostPorts: new UncheckedHostPorts(), sysctl: new CommandSysctl(runner) }, {}, pino({ level: 'silent' }));
  const agent = supertest(plugin.app);
  // dockerd sends no Content-Type and raw JSON text followed by a newline.
  const post = (method: string, body?: unknown) => {
    const raw = body === undefined ? '' : typeof body === 'string' ? body : `${JSON.stringify(body)}\n`;
    return agent.post(`/${method}`).set('Accept', 'application/vnd.docker.plugins.v1.2+json').send(Buffer.from(raw));
  };
  return { plugin, runner, post };
}

/** Everything a refused request must leave as it was: stored records and kernel writes. */
export function snapshot(plugin: Plugin, runner: RecordingRunner): string {
  const pools = plugin.ipam.list();
  return JSON.stringify({
    networks: plugin.networks.listNetworks(),
    endpoints: plugin.networks.listEndpoints(),
    pools,
    addresses: pools.flatMap((p) => plugin.ipam.addressesOf(p.id)),
    kernelWrites: runner.lines().filter((line) => !line.startsWith('ip -json')),
  });
}
