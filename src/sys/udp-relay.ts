import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

/**
 * The program that holds a UDP port in another network namespace. Node has
 * no setns(2), so the socket lives in a child started inside the namespace
 * (`nsenter --net=`, `unshare --net`); it only relays datagrams, as hex
 * lines, so every byte from the wire is judged by the daemon (the DHCP
 * client's parser). Inline, so the same text runs from the sources (tests),
 * the build and the managed plugin, with no file to find. Its arguments:
 * the local port it binds (on every address), the remote port it sends to.
 */
const RELAY = `
const dgram = require('node:dgram');
const socket = dgram.createSocket({ type: 'udp4', reuseAddr: true });
const say = (line) => process.stdout.write(line + '\\n');
socket.on('message', (m) => say('recv ' + m.toString('hex')));
socket.on('error', (e) => { say('error ' + e.message); process.exit(1); });
socket.bind(Number(process.argv[1]), '0.0.0.0', () => { socket.setBroadcast(true); say('ready'); });
require('node:readline').createInterface({ input: process.stdin }).on('line', (line) => {
  const [to, hex] = line.split(' ');
  socket.send(Buffer.from(hex, 'hex'), Number(process.argv[2]), to, (e) => say(e ? 'unsent ' + e.message : 'sent'));
}).on('close', () => process.exit(0));
`;

/** How long the relay may take to start and bind (a node start on a busy host). */
const START_TIMEOUT_MS = 10_000;

/**
 * Where the relay runs: in a container's sandbox (`nsenter --net=`), or in a
 * new network namespace of its own (`unshare --net`), which lives exactly as
 * long as the relay: nothing is left to clean up after a crash.
 */
export type Namespace = { path: string } | 'new';

/** The ports of a relay: the one it binds, the one it sends to. */
export interface RelayPorts {
  local: number;
  remote: number;
}

/** A relay child: datagrams out to `remote` (broadcast unless told), datagrams in as they come; close() ends it. */
export class UdpRelay {
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly arrived: Buffer[] = [];
  /** Sends the relay has not confirmed yet, oldest first: a datagram is out once the kernel took it. */
  private readonly sending: Array<{ resolve: () => void; reject: (error: Error) => void }> = [];
  private waiter: (() => void) | undefined;
  private failure: Error | undefined;

  private constructor(namespace: Namespace, ports: RelayPorts) {
    const node = [process.execPath, '-e', RELAY, String(ports.local), String(ports.remote)];
    const [file, args] = namespace === 'new' ? ['unshare', ['--net', ...node]] : ['nsenter', [`--net=${namespace.path}`, ...node]];
    this.child = spawn(file, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stderr.setEncoding('utf8').on('data', (text: string) => (this.failure ??= new Error(`UDP relay: ${text.trim()}`)));
    this.child.on('error', (error) => this.fail(new Error(`UDP relay: ${error.message}`)));
    this.child.on('exit', (code) => this.fail(new Error(`UDP relay exited (${code})`)));
    this.child.stdin.on('error', () => undefined);
  }

  /** Starts the relay in `namespace` and waits until it holds its port. */
  static async open(namespace: Namespace, ports: RelayPorts): Promise<UdpRelay> {
    const relay = new UdpRelay(namespace, ports);
    await relay.ready();
    return relay;
  }

  private ready(): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('UDP relay did not start within 10 s')), START_TIMEOUT_MS);
      const lines = createInterface({ input: this.child.stdout });
      lines.on('line', (line) => {
        if (line === 'ready') {
          clearTimeout(timer);
          resolve();
        } else if (line.startsWith('recv ')) {
          this.arrived.push(Buffer.from(line.slice(5), 'hex'));
          this.wake();
        } else if (line === 'sent' || line.startsWith('unsent ')) {
          const pending = this.sending.shift();
          if (line === 'sent') pending?.resolve();
          else pending?.reject(new Error(`UDP relay could not send: ${line.slice(7)}`));
        } else if (line.startsWith('error ')) {
          clearTimeout(timer);
          this.fail(new Error(`UDP relay: ${line.slice(6)}`));
          reject(this.failure);
        }
      });
      this.child.on('exit', () => {
        clearTimeout(timer);
        reject(this.failure ?? new Error('UDP relay exited before it started'));
      });
    });
  }

  private fail(error: Error): void {
    this.failure ??= error;
    for (const pending of this.sending.splice(0)) pending.reject(this.failure);
    this.wake();
  }

  private wake(): void {
    const waiter = this.waiter;
    this.waiter = undefined;
    waiter?.();
  }

  send(bytes: Buffer, to = '255.255.255.255'): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.sending.push({ resolve, reject });
      this.child.stdin.write(`${to} ${bytes.toString('hex')}\n`);
    });
  }

  async receive(deadline: number): Promise<Buffer | undefined> {
    for (;;) {
      const next = this.arrived.shift();
      if (next) return next;
      if (this.failure) throw this.failure;
      const wait = deadline - Date.now();
      if (wait <= 0) return undefined;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, wait);
        this.waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }

  /** The relay's process: its network namespace is `ip link add … netns <pid>`'s target. */
  get pid(): number {
    return this.child.pid!;
  }

  close(): void {
    this.child.stdin.end();
    this.child.kill('SIGKILL');
  }
}

