// dig (bind9-dnsutils) from a netns, its answer read back: status, header
// flags and the answer section's records, so tests assert on what a real
// resolver client saw.
import { createSocket } from 'node:dgram';
import { type CommandResult, run } from './exec.js';
import { execInNetns } from './netns.js';

export interface DigAnswer {
  /** NOERROR, NXDOMAIN, REFUSED, SERVFAIL, BADVERS…; undefined when nothing answered. */
  status: string | undefined;
  /** Header flags: qr, aa, tc, rd, ra. */
  flags: string[];
  /** Answer section records as `type data`, e.g. `A 10.1.0.2`, in answer order. */
  answers: string[];
  /** Records of the authority section as `name type`, e.g. `tsnet. SOA`. */
  authority: string[];
  /** The whole output, for failure messages. */
  text: string;
}

function section(lines: string[], title: string): string[] {
  const start = lines.indexOf(`;; ${title} SECTION:`);
  if (start < 0) return [];
  const end = lines.indexOf('', start);
  return lines.slice(start + 1, end < 0 ? undefined : end);
}

export function parseDig(result: CommandResult): DigAnswer {
  const text = result.stdout + result.stderr;
  const lines = result.stdout.split('\n');
  // The last header wins: with a TCP retry after TC, dig prints the UDP answer's warning first.
  const headers = [...text.matchAll(/->>HEADER<<- opcode: \w+, status: (\w+), id: \d+/g)];
  const flags = [...text.matchAll(/;; flags:([^;]*);/g)];
  const record = (line: string) => line.split(/\s+/);
  return {
    status: headers.at(-1)?.[1],
    flags: (flags.at(-1)?.[1] ?? '').trim().split(/\s+/).filter(Boolean),
    answers: section(lines, 'ANSWER').map((l) => record(l).slice(3).join(' ')),
    authority: section(lines, 'AUTHORITY').map((l) => `${record(l)[0]} ${record(l)[3]}`),
    text,
  };
}

/**
 * `dig @server -p port <args>` with one try of 2 s. `netns` undefined runs
 * it right here (loopback tests); a name runs it in that netns, a path
 * (`/proc/<pid>/ns/net`, a container's) in the netns at that path.
 */
export async function dig(server: string, port: number, args: readonly string[], netns?: string): Promise<DigAnswer> {
  const argv = ['dig', `@${server}`, '-p', String(port), '+tries=1', '+time=2', ...args];
  if (netns === undefined) return parseDig(await run(argv[0]!, argv.slice(1)));
  if (netns.startsWith('/')) return parseDig(await run('nsenter', [`--net=${netns}`, ...argv]));
  return parseDig(await execInNetns(netns, argv));
}

/** One raw datagram to a DNS server on this netns; its reply undecoded, or undefined after 1 s of silence. */
export function rawUdpQuery(server: string, port: number, message: Buffer): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const socket = createSocket(server.includes(':') ? 'udp6' : 'udp4');
    const timer = setTimeout(() => done(undefined), 1_000);
    function done(reply: Buffer | undefined) {
      clearTimeout(timer);
      socket.close();
      resolve(reply);
    }
    socket.on('message', (reply) => done(reply));
    socket.send(message, port, server);
  });
}
