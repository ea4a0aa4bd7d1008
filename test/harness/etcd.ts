// An etcd server the test owns (Debian's etcd-server 3.4, /usr/bin/etcd):
// one member, its own data dir, listening on one address — inside a test
// netns (the "switch" the simulated hosts are wired to) or on 127.0.0.1 for
// tests whose client runs in the test process itself. Stopped, paused and
// killed strictly by PID; restart() keeps the data dir, as a restarted
// etcd service would.
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { run } from './exec.js';
import type { TestPki } from './pki.js';
import { logBlock } from './logs.js';
import { isAlive, kill9, terminate } from './processes.js';
import { waitUntil } from './wait.js';

export const ETCD_BINARY = '/usr/bin/etcd';
export const ETCDCTL_BINARY = '/usr/bin/etcdctl';

export interface EtcdOptions {
  /** Member name, also used in messages. */
  name: string;
  /** Address to listen on: an address of `netns`, or 127.0.0.1 without one. */
  address: string;
  /** Netns to run in; absent = the test process's own (then only 127.0.0.1 is allowed). */
  netns?: string;
  /** Client port (default: 2379 in a netns, a free loopback port otherwise). */
  clientPort?: number;
  peerPort?: number;
  dataDir: string;
  logFile: string;
  /** Serve clients over TLS and require client certificates signed by `pki.ca`. */
  pki?: TestPki;
}

/** A free TCP port on 127.0.0.1 (asked from the kernel, then released for etcd to bind). */
function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

export class EtcdServer {
  private child: ResultPromise | undefined;
  private childPid: number | undefined;

  private constructor(
    private readonly opts: EtcdOptions,
    readonly clientPort: number,
    private readonly peerPort: number,
  ) {}

  static async start(opts: EtcdOptions): Promise<EtcdServer> {
    if (!existsSync(ETCD_BINARY)) throw new Error(`${ETCD_BINARY} is missing: apt-get install etcd-server etcd-client (scripts/install-test-deps.sh)`);
    if (!opts.netns && opts.address !== '127.0.0.1') throw new Error(`etcd outside a test netns may only listen on 127.0.0.1, not ${opts.address}`);
    const clientPort = opts.clientPort ?? (opts.netns ? 2379 : await freeLoopbackPort());
    const peerPort = opts.peerPort ?? (opts.netns ? 2380 : await freeLoopbackPort());
    const server = new EtcdServer(opts, clientPort, peerPort);
    try {
      await server.start();
    } catch (error) {
      await server.kill9().catch(() => undefined);
      throw error;
    }
    return server;
  }

  /** `host:port` as a client dials it. */
  get endpoint(): string {
    return `${this.opts.address}:${this.clientPort}`;
  }

  /** The value of tsnet's --cluster-store. */
  get url(): string {
    return `etcd://${this.endpoint}`;
  }

  get pid(): number {
    if (this.childPid === undefined) throw new Error(`etcd ${this.opts.name} is not running`);
    return this.childPid;
  }

  private argv(): string[] {
    const peer = `http://${this.opts.address}:${this.peerPort}`;
    const { pki } = this.opts;
    const client = `${pki ? 'https' : 'http'}://${this.endpoint}`;
    const etcd = [ETCD_BINARY, '--name', this.opts.name, '--data-dir', this.opts.dataDir,
      '--listen-client-urls', client, '--advertise-client-urls', client,
      '--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer,
      '--initial-cluster', `${this.opts.name}=${peer}`, '--logger', 'zap', '--log-level', 'warn',
      ...(pki ? ['--cert-file', pki.serverCert, '--key-file', pki.serverKey, '--trusted-ca-file', pki.ca, '--client-cert-auth'] : [])];
    return this.opts.netns ? ['ip', 'netns', 'exec', this.opts.netns, ...etcd] : etcd;
  }

  /** Starts etcd (again, on the same data dir) and waits until it answers a health check. */
  async start(): Promise<void> {
    if (this.childPid !== undefined && isAlive(this.childPid)) throw new Error(`etcd ${this.opts.name} is already running`);
    mkdirSync(this.opts.dataDir, { recursive: true, mode: 0o700 });
    mkdirSync(dirname(this.opts.logFile), { recursive: true });
    const [file, ...args] = this.argv() as [string, ...string[]];
    const log = { file: this.opts.logFile, append: true } as const;
    this.child = execa(file, args, { stdin: 'ignore', stdout: log, stderr: log, reject: false });
    this.childPid = this.child.pid;
    await waitUntil(
      async () => {
        if (!isAlive(this.pid)) throw new Error(`etcd exited during start-up\n${this.logBlock()}`);
        return (await this.etcdctl(['endpoint', 'health'])).exitCode === 0;
      },
      { timeoutMs: 20_000, what: `etcd ${this.opts.name} to serve on ${this.endpoint}`, diagnostics: () => this.logBlock() },
    );
  }

  /** Runs etcdctl against this server (in its netns), e.g. `['get', '--prefix', 'tsnet/']`. */
  etcdctl(args: readonly string[]) {
    const { pki } = this.opts;
    const tls = pki ? ['--cacert', pki.ca, '--cert', pki.clientCert, '--key', pki.clientKey] : [];
    const argv = [ETCDCTL_BINARY, '--endpoints', `${pki ? 'https' : 'http'}://${this.endpoint}`, '--command-timeout', '2s', ...tls, ...args];
    const env = { ...process.env, ETCDCTL_API: '3' };
    return this.opts.netns ? run('ip', ['netns', 'exec', this.opts.netns, ...argv], { env }) : run(argv[0]!, argv.slice(1), { env });
  }

  /** SIGSTOP: the process keeps its sockets but answers nothing, like a hung server. */
  /** SIGSTOP, and back once every thread of etcd is stopped: a signal is only queued when kill returns. */
  async pause(): Promise<void> {
    process.kill(this.pid, 'SIGSTOP');
    await waitUntil(() => readdirSync(`/proc/${this.pid}/task`).every((task) => /^\d+ \(.*\) [Tt] /.test(readFileSync(`/proc/${this.pid}/task/${task}/stat`, 'utf8'))), { timeoutMs: 5_000, what: `etcd ${this.opts.name} stopped by SIGSTOP` });
  }

  resume(): void {
    process.kill(this.pid, 'SIGCONT');
  }

  async kill9(): Promise<void> {
    const pid = this.childPid;
    if (pid === undefined) return;
    process.kill(pid, 'SIGCONT');
    await kill9(pid);
    await this.reap();
  }

  /** SIGTERM (SIGCONT first, in case it is paused); the data dir stays for restart(). */
  async stop(): Promise<void> {
    const pid = this.childPid;
    if (pid === undefined) return;
    if (isAlive(pid)) process.kill(pid, 'SIGCONT');
    await terminate(pid, 10_000);
    await this.reap();
  }

  /** Stops it and removes its data dir. */
  async destroy(): Promise<void> {
    await this.stop();
    rmSync(this.opts.dataDir, { recursive: true, force: true });
  }

  logBlock(): string {
    return logBlock(`etcd log (${this.opts.name})`, this.opts.logFile);
  }

  private async reap(): Promise<void> {
    await this.child;
    this.child = undefined;
    this.childPid = undefined;
  }
}

export const startEtcd = (opts: EtcdOptions): Promise<EtcdServer> => EtcdServer.start(opts);
