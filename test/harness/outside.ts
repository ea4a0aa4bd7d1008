// The "outside world" of a simulated docker host: a netns behind a veth that
// acts as the upstream router and, on 203.0.113.10, as a remote server that
// answers "you are <client address>". It has no route to container subnets,
// so a container's traffic gets an answer only when it was masqueraded.
// Small node servers run in any netns (a container's too, through its PID).
import { execa, type ResultPromise } from 'execa';
import { type CleanupStack } from './cleanup.js';
import { createNetns, createVethPair, deleteNetns, ipIn, netnsPath } from './netns.js';
import { terminate } from './processes.js';
import { waitUntil } from './wait.js';

export const UPLINK_HOST = '198.51.100.1';
export const UPLINK_OUTSIDE = '198.51.100.2';
export const REMOTE_SERVER = '203.0.113.10';

/** Answers every HTTP request on REMOTE_SERVER:80 with the client address it sees. */
const WHOAMI_SERVER = `require('http').createServer((q, s) => s.end('you are ' + q.socket.remoteAddress + '\\n'))
  .listen(80, '${REMOTE_SERVER}', () => console.log('ready'));`;

/** Echoes every UDP datagram on port PORT back with an "udp:" prefix. */
export const udpEchoServer = (port: number) => `const s = require('dgram').createSocket('udp4');
  s.on('message', (m, r) => s.send('udp:' + m, r.port, r.address));
  s.bind(${port}, () => console.log('ready'));`;

/** Sends one datagram and prints the answer; exits 3 when none comes within 3 s. */
export const udpAsk = (address: string, port: number, text: string) => `const s = require('dgram').createSocket('udp4');
  s.on('message', (m) => { console.log(String(m)); process.exit(0); });
  s.send('${text}', ${port}, '${address}');
  setTimeout(() => process.exit(3), 3000);`;

/**
 * Runs a node script in the netns at `path` (a named netns, or
 * /proc/<pid>/ns/net of a container's process) until the cleanup stack stops it, by PID. Resolves once the
 * script printed "ready", with the stop (for a test that stops it earlier);
 * `onOutput` hears everything it prints.
 */
export async function nodeInNetns(path: string, script: string, cleanup: CleanupStack, onOutput?: (chunk: string) => void): Promise<() => Promise<void>> {
  const child: ResultPromise = execa('nsenter', [`--net=${path}`, process.execPath, '-e', script], { reject: false, stdin: 'ignore' });
  const pid = child.pid;
  if (pid === undefined) throw new Error('could not spawn a node server');
  const stop = async () => {
    await terminate(pid, 5_000);
    await child;
  };
  cleanup.defer(`stop node server ${pid}`, stop);
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    output += chunk.toString();
    onOutput?.(chunk.toString());
  });
  await waitUntil(() => output.includes('ready'), { timeoutMs: 10_000, what: `node server in ${path} to listen` });
  return stop;
}

/**
 * Creates the outside netns `name`, wires it to `hostNetns` (uplink
 * 198.51.100.1/24, default route via .2) and starts the remote server.
 */
export async function createOutside(hostNetns: string, name: string, cleanup: CleanupStack): Promise<void> {
  await createNetns(name);
  cleanup.defer(`delete netns ${name}`, () => deleteNetns(name));
  await createVethPair({ netns: hostNetns, name: 'uplink', address: `${UPLINK_HOST}/24` }, { netns: name, name: 'eth0', address: `${UPLINK_OUTSIDE}/24` });
  await ipIn(hostNetns, ['route', 'add', 'default', 'via', UPLINK_OUTSIDE]);
  await ipIn(name, ['address', 'add', `${REMOTE_SERVER}/32`, 'dev', 'lo']);
  await nodeInNetns(netnsPath(name), WHOAMI_SERVER, cleanup);
}
