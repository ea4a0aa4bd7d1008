// A flood of random and mangled DNS packets from a separate process (so the
// sender never shares an event loop with the server under test): every
// third packet random bytes, the others a valid query with bytes changed
// and cut, one in a hundred over TCP. It then asks a valid question until
// it gets NOERROR (the server still answers) and prints what it counted.
import { createRequire } from 'node:module';
import { type CommandResult, run } from './exec.js';

/** The sender is a `node -e` script: it loads dns-packet by path. */
const DNS_PACKET = createRequire(import.meta.url).resolve('dns-packet');

const SCRIPT = String.raw`
const dgram = require('node:dgram'), net = require('node:net'), { randomBytes, randomInt } = require('node:crypto');
const [address, port, count, name, dnsPacket] = [process.argv[1], Number(process.argv[2]), Number(process.argv[3]), process.argv[4], process.argv[5]];
const packet = require(dnsPacket);
const valid = packet.encode({ type: 'query', id: 7, flags: packet.RECURSION_DESIRED, questions: [{ type: 'A', name }],
  additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 4096 }] });
function mangle(i) {
  if (i % 3 === 0) return randomBytes(randomInt(0, 600));
  const copy = Buffer.from(i % 3 === 1 ? valid : Buffer.concat([valid.subarray(0, 12), randomBytes(randomInt(0, 300))]));
  for (let flips = randomInt(1, 6); flips > 0; flips--) copy[randomInt(copy.length)] = randomInt(256);
  return copy.subarray(0, randomInt(1, copy.length + 1));
}
(async () => {
  const socket = dgram.createSocket(net.isIPv6(address) ? 'udp6' : 'udp4');
  let replies = 0, noerror = false;
  socket.on('message', (m) => { replies++; if (m.readUInt16BE(0) === 7 && (m.readUInt16BE(2) & 0x800f) === 0x8000) noerror = true; });
  for (let i = 0; i < count; i++) {
    socket.send(mangle(i), port, address);
    if (i % 100 === 0) {
      const tcp = net.connect(port, address);
      tcp.on('error', () => {});
      tcp.resume();
      const m = mangle(i + 1);
      tcp.end(Buffer.concat([Buffer.from([m.length >> 8, m.length & 255]), m]));
      await new Promise((r) => setImmediate(r));
    }
  }
  // Datagrams of the flood may still queue at the server (or be dropped by the kernel): ask until answered.
  for (let t = 0; t < 150 && !noerror; t++) { socket.send(valid, port, address); await new Promise((r) => setTimeout(r, 100)); }
  console.log(JSON.stringify({ sent: count, replies, answeredAfter: noerror }));
  process.exit(noerror ? 0 : 2);
})();
`;

export interface FuzzResult {
  sent: number;
  replies: number;
  answeredAfter: boolean;
}

/** Floods `address:port` with `count` packets, then checks `name` still resolves (NOERROR). `netns` runs it there. */
export async function runDnsFuzz(address: string, port: number, count: number, name: string, netns?: string): Promise<FuzzResult> {
  const argv = [process.execPath, '-e', SCRIPT, address, String(port), String(count), name, DNS_PACKET];
  const result: CommandResult = netns ? await run('ip', ['netns', 'exec', netns, ...argv]) : await run(argv[0]!, argv.slice(1));
  if (result.exitCode !== 0 && result.exitCode !== 2) throw new Error(`the fuzz script failed (exit ${result.exitCode}): ${result.stderr}`);
  return JSON.parse(result.stdout) as FuzzResult;
}
