import { run } from '../test/harness/index.js';

/** Mbit/s of one iperf3 TCP run of `seconds` from the netns `client` to `server` (netns paths), the server listening on `address`. */
export async function iperf(server: string, client: string, address: string, seconds: number): Promise<number> {
  const listening = run('nsenter', [`--net=${server}`, 'iperf3', '-s', '-1', '-B', address]);
  await new Promise((resolve) => setTimeout(resolve, 500));
  const r = await run('nsenter', [`--net=${client}`, 'iperf3', '-c', address, '-t', String(seconds), '-J']);
  await listening;
  if (r.exitCode !== 0) throw new Error(`iperf3 failed: ${r.stderr}${r.stdout.slice(0, 500)}`);
  return (JSON.parse(r.stdout) as { end: { sum_received: { bits_per_second: number } } }).end.sum_received.bits_per_second / 1e6;
}
