import { connect, createServer } from 'node:net';
import { listenUnix } from './unix-listen.js';

/**
 * One tsnet per network namespace. A second daemon on the same netns (the
 * managed plugin beside the systemd service) would take the first one's
 * links, set elements and rules for a crash's leftovers and delete them.
 *
 * The claim is a listening abstract unix socket. Abstract names live in the
 * network namespace, which is exactly the scope wanted: whatever their
 * --name, socket dir or mount namespace, two daemons of one netns meet on
 * the same fixed name, and daemons of different netns never do. The kernel
 * frees the name when its holder dies, SIGKILL included, so there is no
 * stale lock to clean up. Whoever connects is told who holds it.
 */
const CLAIM_NAME = 'tsnet/netns-claim';

/** How long a daemon that finds the claim taken waits for the holder to say who it is. */
const HOLDER_ANSWER_MS = 2_000;

/** What the holder tells a daemon that finds the claim taken (paths and PID as the holder sees them). */
export interface ClaimHolder {
  pid: number;
  /** Its plugin socket. */
  socket: string;
}

export interface NetnsClaim {
  /** Gives the netns up: the last step of a clean stop. */
  release(): Promise<void>;
}

/** Claims this network namespace for `holder`; refuses, naming the other daemon's socket, while another tsnet holds it. */
export async function claimNetns(holder: ClaimHolder): Promise<NetnsClaim> {
  const server = createServer((client) => {
    // Anyone in the netns may connect: a client that resets must not crash the daemon.
    client.on('error', () => undefined);
    client.end(`${JSON.stringify(holder)}\n`);
  });
  try {
    await listenUnix(server, `\0${CLAIM_NAME}`);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw error;
    throw new Error(await describeHolder());
  }
  return { release: () => new Promise((resolve) => server.close(() => resolve())) };
}

/** The refusal, with what the holder says of itself (or that it said nothing). */
async function describeHolder(): Promise<string> {
  const why = 'one tsnet per network namespace: a second one would delete the first one\'s links and rules as leftovers';
  const other = await askHolder();
  if (!other) return `another program holds tsnet's claim on this network namespace (abstract unix socket @${CLAIM_NAME}) and does not say which tsnet it is; ${why}`;
  return `another tsnet daemon (pid ${other.pid}) serves ${other.socket} in this network namespace; ${why}. Stop it first (the managed plugin and the systemd service are two ways to run tsnet: use one)`;
}

function askHolder(): Promise<ClaimHolder | undefined> {
  return new Promise((resolve) => {
    const socket = connect(`\0${CLAIM_NAME}`);
    let answer = '';
    const done = (holder: ClaimHolder | undefined) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(holder);
    };
    const timer = setTimeout(() => done(undefined), HOLDER_ANSWER_MS);
    socket.setEncoding('utf8');
    // A holder's answer is one short line: more is not a tsnet talking.
    socket.on('data', (chunk: string) => (answer = (answer + chunk).slice(0, 4096)));
    socket.on('end', () => done(parseHolder(answer)));
    socket.on('error', () => done(undefined));
  });
}

function parseHolder(text: string): ClaimHolder | undefined {
  try {
    const parsed = JSON.parse(text) as Partial<ClaimHolder>;
    return typeof parsed.pid === 'number' && typeof parsed.socket === 'string' ? { pid: parsed.pid, socket: parsed.socket } : undefined;
  } catch {
    return undefined;
  }
}
