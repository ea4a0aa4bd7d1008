import { ExponentialBackoff, handleWhen, noop, retry } from 'cockatiel';
import { Etcd3, type IKeyValue, type IRequestOp, type IResponseOp, isRecoverableError, type Lease } from 'etcd3';
import { RequestError } from '../errors.js';
import type { ClusterConfig } from './cluster-config.js';

/**
 * A request that needs the store gives up this long after it arrived, so that
 * dockerd gets its answer within 5 s even when etcd hangs (SIGSTOP, a
 * partition): grpc calls carry it as their deadline.
 */
export const REQUEST_BUDGET_MS = 4000;

export const deadlineFromNow = (ms = REQUEST_BUDGET_MS): number => Date.now() + ms;

/** Keys per page of a range read: ~300 KB of tsnet's records, far below grpc-js's 4 MiB answer limit. */
const PAGE_KEYS = 1000;

/** The most operations etcd takes in one transaction branch (its --max-txn-ops default). */
export const MAX_TXN_OPS = 128;

/**
 * etcd failed a call: a write of it may have been applied (an answer lost on
 * the way, a proposal that timed out), so whoever wrote notes an undo.
 * `failure` is kept to say more once the caller knows it (time spent in line).
 */
export abstract class ClusterStoreError extends RequestError {
  protected constructor(readonly store: string, readonly failure: string, message: string) {
    super('cluster store', message);
  }

  /** The same failure, with what the caller knows about it. */
  abstract explained(context: string): ClusterStoreError;
}

/** The store did not answer (down, hung, refused TLS): nothing was changed by the request. */
export class ClusterUnreachableError extends ClusterStoreError {
  constructor(store: string, reason: string) {
    super(store, reason, `${store} is unreachable (${reason}); nothing was allocated or released`);
    this.name = 'ClusterUnreachableError';
  }

  explained(context: string): ClusterUnreachableError {
    return new ClusterUnreachableError(this.store, `${this.failure}; ${context}`);
  }
}

/** etcd answered, with an error of its own (no leader, too many requests, a request too large): it is reachable. */
export class ClusterAnsweredError extends ClusterStoreError {
  constructor(store: string, reason: string) {
    super(store, reason, `${store} answered with an error (${reason}); nothing was allocated or released`);
    this.name = 'ClusterAnsweredError';
  }

  explained(context: string): ClusterAnsweredError {
    return new ClusterAnsweredError(this.store, `${this.failure}; ${context}`);
  }
}

/** etcd refused who tsnet says it is, or what its user may do (etcd with auth enabled): nothing was changed by the request. */
export class ClusterAuthError extends RequestError {
  constructor(store: string, user: string | undefined, reason: string) {
    const hint = user === undefined
      ? 'etcd has authentication enabled: give tsnet its user with --cluster-store-user and --cluster-store-password-file'
      : /permission denied/.test(reason)
        ? `user ${user} needs a role with readwrite on the key prefix tsnet/ (docs/cluster.md)`
        : `check --cluster-store-user ${user} and the password in --cluster-store-password-file`;
    super('cluster store', `${store} refused ${user === undefined ? 'tsnet' : `user ${user}`} (${reason}): ${hint}; nothing was allocated or released`);
    this.name = 'ClusterAuthError';
  }
}

/** What etcd says when it refuses a user, a password or a key (etcd3 has no one class for them). */
const AUTH_REFUSAL = /etcdserver: (user name is empty|authentication failed, invalid user ID or password|permission denied|invalid auth token|user name not found)/;

/** How etcd's own errors begin (etcd 3.4 rpctypes): the server answered, it is not unreachable. */
const ETCD_ANSWER = /^(?:\d+ \w+: )?((?:etcdserver|mvcc|auth|lease): .*)$/s;
/**
 * gRPC refusing a message for its size or shape (`8 RESOURCE_EXHAUSTED:
 * grpc: received message larger than max`, on either side): an answer about
 * this one call, not a store gone; the next call may well pass.
 */
const GRPC_REFUSAL = /^(?:3 INVALID_ARGUMENT|8 RESOURCE_EXHAUSTED): (.*)$/s;

/** The store answered something tsnet did not write (a foreign or damaged key). */
export class ClusterDataError extends RequestError {
  constructor(key: string, reason: string) {
    super('cluster store', `key ${key}: ${reason}`);
    this.name = 'ClusterDataError';
  }
}

export interface Entry {
  key: string;
  value: string;
  modRevision: string;
  lease: string;
}

export type Compare =
  | { key: string; absent: true }
  | { key: string; present: true }
  | { key: string; value: string }
  | { key: string; modRevision: string };

export type Op =
  | { put: string; value: string; lease?: string }
  | { delete: string }
  | { deletePrefix: string }
  | { get: string };

/** What a watch reports; every handler must return without throwing (etcd3 would rethrow it as an uncaught error). */
export interface WatchHandlers {
  put(entry: Entry): void;
  /** `modRevision`: the revision of the deletion. */
  delete(key: string, modRevision: string): void;
  /** The stream broke: changes until the next `reconnected` may be missed. */
  disconnected(reason: string): void;
  /** The stream is back (etcd3 replays from the last revision it saw, which a compaction may have removed). */
  reconnected(): void;
  /** etcd ended the watch (its start revision was compacted away): nothing more comes through it. */
  cancelled(reason: string): void;
}

export interface WatchHandle {
  /** Stops the watch; never waits on etcd. */
  cancel(): void;
}

export interface TxnResult {
  succeeded: boolean;
  /** What the `get` ops of the branch that ran found (absent keys are left out). */
  found: Entry[];
}

/** The key-value calls of the shared pools' logic (EtcdClient; an in-memory fake in unit tests). */
export interface ClusterKv {
  get(key: string, deadline: number): Promise<Entry | undefined>;
  list(prefix: string, deadline: number, keysOnly?: boolean): Promise<Entry[]>;
  txn(compares: readonly Compare[], success: readonly Op[], failure: readonly Op[], deadline: number): Promise<TxnResult>;
  /** A lease nobody keeps alive: what is put with it goes by itself after `ttlSeconds`. */
  expiringLease(ttlSeconds: number, deadline: number): Promise<string>;
}

/** The end of the key range that holds exactly the keys starting with `prefix`. */
function prefixEnd(prefix: string): Buffer {
  const end = Buffer.from(prefix);
  end[end.length - 1]! += 1;
  return end;
}

function toCompare(c: Compare) {
  const key = Buffer.from(c.key);
  if ('absent' in c) return { key, target: 'Create' as const, result: 'Equal' as const, create_revision: 0 };
  if ('present' in c) return { key, target: 'Create' as const, result: 'Greater' as const, create_revision: 0 };
  if ('value' in c) return { key, target: 'Value' as const, result: 'Equal' as const, value: Buffer.from(c.value) };
  return { key, target: 'Mod' as const, result: 'Equal' as const, mod_revision: c.modRevision };
}

function toRequestOp(op: Op): IRequestOp {
  if ('put' in op) return { request_put: { key: Buffer.from(op.put), value: Buffer.from(op.value), ...(op.lease ? { lease: op.lease } : {}) } };
  if ('delete' in op) return { request_delete_range: { key: Buffer.from(op.delete) } };
  if ('deletePrefix' in op) return { request_delete_range: { key: Buffer.from(op.deletePrefix), range_end: prefixEnd(op.deletePrefix) } };
  return { request_range: { key: Buffer.from(op.get) } };
}

const toEntry = (kv: Pick<IKeyValue, 'key' | 'value' | 'mod_revision' | 'lease'>): Entry => ({
  key: kv.key.toString(),
  value: kv.value.toString(),
  modRevision: kv.mod_revision,
  lease: kv.lease,
});

/**
 * The etcd v3 client tsnet uses: a few key-value primitives, each bounded by
 * the caller's deadline, every transport failure turned into a
 * ClusterUnreachableError that names the store. No circuit breaker: a call
 * after etcd came back goes through at once.
 */
export class EtcdClient implements ClusterKv {
  readonly url: string;
  private readonly etcd: Etcd3;
  private readonly user: string | undefined;
  /** When a call last found etcd unreachable (ms since the epoch; 0: never). */
  lastUnreachableAt = 0;

  /** `pageKeys`: keys per range read (tests make pages small). */
  constructor(config: Pick<ClusterConfig, 'endpoints' | 'tls' | 'auth'>, private readonly pageKeys = PAGE_KEYS) {
    this.url = `etcd://${config.endpoints.join(',')}`;
    this.user = config.auth?.username;
    const scheme = config.tls ? 'https' : 'http';
    this.etcd = new Etcd3({
      hosts: config.endpoints.map((e) => `${scheme}://${e}`),
      ...(config.tls
        ? { credentials: { rootCertificate: config.tls.ca, ...(config.tls.cert ? { certChain: config.tls.cert, privateKey: config.tls.key! } : {}) } }
        : {}),
      ...(config.auth ? { auth: { username: config.auth.username, password: config.auth.password } } : {}),
      // One try per member, within the same deadline.
      faultHandling: {
        host: () => noop,
        global: config.endpoints.length > 1 ? retry(handleWhen(isRecoverableError), { maxAttempts: config.endpoints.length - 1 }) : noop,
        // Watches come back within a second of etcd, not after up to 30 s.
        // (etcd3 types this as a backoff step and calls next() on it for each reconnection.)
        watchBackoff: new ExponentialBackoff({ initialDelay: 200, maxDelay: 1000 }).next(),
      },
      // A restarted etcd is dialled again within a second, not after grpc's default backoff of up to two minutes.
      grpcOptions: { 'grpc.initial_reconnect_backoff_ms': 200, 'grpc.max_reconnect_backoff_ms': 1000 },
    });
  }

  private async call<T>(what: string, deadline: number, work: (options: { deadline: number }) => Promise<T>): Promise<T> {
    if (Date.now() >= deadline) throw this.unreachable(`no answer within ${REQUEST_BUDGET_MS / 1000} s`);
    try {
      return await work({ deadline });
    } catch (error) {
      if (error instanceof RequestError) throw error;
      throw this.classify(what, error instanceof Error ? error.message : String(error));
    }
  }

  /** etcd refusing who tsnet is, etcd answering with an error, or no answer at all. */
  private classify(what: string, message: string): RequestError {
    const refusal = AUTH_REFUSAL.exec(message);
    if (refusal) return new ClusterAuthError(this.url, this.user, refusal[1]!);
    const answer = ETCD_ANSWER.exec(message) ?? GRPC_REFUSAL.exec(message);
    if (answer) return new ClusterAnsweredError(this.url, `${what}: ${answer[1]}`);
    return this.unreachable(/deadline/i.test(message) ? `no answer within ${REQUEST_BUDGET_MS / 1000} s` : `${what}: ${message}`);
  }

  private unreachable(reason: string): ClusterUnreachableError {
    this.lastUnreachableAt = Date.now();
    return new ClusterUnreachableError(this.url, reason);
  }

  get(key: string, deadline: number): Promise<Entry | undefined> {
    return this.call('get', deadline, async (options) => {
      const response = await this.etcd.kv.range({ key: Buffer.from(key) }, options);
      const kv = response.kvs[0];
      return kv ? toEntry(kv) : undefined;
    });
  }

  /** Every key under `prefix`; `keysOnly` skips the values (a pool's taken addresses). */
  async list(prefix: string, deadline: number, keysOnly = false): Promise<Entry[]> {
    return (await this.readPrefix(prefix, deadline, keysOnly)).entries;
  }

  /** Every key under `prefix` and the store revision they were read at (a watch from the next revision misses nothing). */
  snapshot(prefix: string, deadline: number): Promise<{ entries: Entry[]; revision: string }> {
    return this.readPrefix(prefix, deadline, false);
  }

  /**
   * Reads a prefix in pages of PAGE_KEYS, every page at the first page's
   * revision (one consistent picture, however long it is): one answer for
   * a whole prefix would pass grpc-js's 4 MiB limit at some 20k records.
   * A revision compacted away mid-read fails the read (the caller retries).
   */
  private readPrefix(prefix: string, deadline: number, keysOnly: boolean): Promise<{ entries: Entry[]; revision: string }> {
    return this.call('list', deadline, async (options) => {
      const rangeEnd = prefixEnd(prefix);
      const entries: Entry[] = [];
      let from = Buffer.from(prefix);
      let revision: string | undefined;
      for (;;) {
        const page = await this.etcd.kv.range({ key: from, range_end: rangeEnd, keys_only: keysOnly, limit: this.pageKeys, ...(revision ? { revision } : {}) }, options);
        revision ??= page.header.revision;
        for (const kv of page.kvs) entries.push(toEntry(kv));
        const last = page.kvs.at(-1);
        if (!page.more || !last) return { entries, revision };
        // The smallest key after the last one read.
        from = Buffer.concat([last.key, Buffer.from([0])]);
      }
    });
  }

  /**
   * Watches the keys under `prefix` from `fromRevision` on. Never waits for
   * etcd: the watch connects (and reconnects) on its own and reports through
   * the handlers.
   */
  watchPrefix(prefix: string, fromRevision: string, handlers: WatchHandlers): WatchHandle {
    const watcher = this.etcd.watch().prefix(prefix).startRevision(fromRevision).watcher();
    let connectedBefore = false;
    let live = true;
    const report = (what: () => void) => () => live && what();
    watcher.on('put', (kv) => live && handlers.put(toEntry(kv)));
    watcher.on('delete', (kv) => live && handlers.delete(kv.key.toString(), kv.mod_revision));
    watcher.on('disconnected', (error) => live && handlers.disconnected(error.message));
    watcher.on('connected', report(() => {
      if (connectedBefore) handlers.reconnected();
      connectedBefore = true;
    }));
    // Always listened to: an 'error' nobody listens to would crash the daemon.
    watcher.on('error', (error) => live && handlers.cancelled(error.message));
    return {
      cancel: () => {
        live = false;
        // Waits for etcd's confirmation, which a hung etcd never sends: nobody waits on it.
        watcher.cancel().catch(() => undefined);
      },
    };
  }

  /** One etcd transaction: `success` runs when every comparison holds, `failure` otherwise. */
  txn(compares: readonly Compare[], success: readonly Op[], failure: readonly Op[], deadline: number): Promise<TxnResult> {
    return this.call('transaction', deadline, async (options) => {
      const response = await this.etcd.kv.txn(
        { compare: compares.map(toCompare), success: success.map(toRequestOp), failure: failure.map(toRequestOp) },
        options,
      );
      const found = response.responses.flatMap((r: IResponseOp) => (r.response_range ? r.response_range.kvs.map(toEntry) : []));
      return { succeeded: response.succeeded, found };
    });
  }

  /** A lease that etcd3 keeps alive until it is lost (etcd unreachable for longer than the TTL) or revoked. */
  async grantLease(ttlSeconds: number, deadline: number): Promise<{ id: string; lease: Lease }> {
    return this.call('lease', deadline, async (options) => {
      const lease = this.etcd.lease(ttlSeconds, { deadline: options.deadline });
      lease.on('lost', () => undefined); // the caller watches state; an unhandled 'lost' must not crash the daemon
      return { id: await lease.grant(), lease };
    });
  }

  /** A lease nobody keeps alive: what is put with it goes by itself after `ttlSeconds`. */
  expiringLease(ttlSeconds: number, deadline: number): Promise<string> {
    return this.call('lease', deadline, async (options) => (await this.etcd.leaseClient.leaseGrant({ TTL: ttlSeconds }, options)).ID);
  }

  revokeLease(id: string, deadline: number): Promise<void> {
    return this.call('revoke', deadline, async (options) => {
      await this.etcd.leaseClient.leaseRevoke({ ID: id }, options).catch((error: unknown) => {
        // Already expired: what revoking wanted.
        if (!(error instanceof Error && /lease not found/i.test(error.message))) throw error;
      });
    });
  }

  close(): void {
    this.etcd.close();
  }
}
