/**
 * An in-memory etcd for unit tests of the shared pools' logic: keys with
 * revisions, transactions with etcd's compare semantics, and faults a test
 * injects into the next matching call (etcd refused it, or etcd applied it
 * and the answer was lost, or it was lost before etcd saw it).
 */
import { type ClusterKv, ClusterUnreachableError, type Compare, type Entry, type Op, type TxnResult } from '../../src/cluster/etcd-client.js';

interface Stored {
  value: string;
  modRevision: number;
  lease: string;
}

/** What a fault does to the call it hits. */
export type Fault =
  /** Never reaches etcd; the caller sees the store unreachable. */
  | 'lost-before'
  /** etcd applies it; the answer is lost (the caller sees the store unreachable). */
  | 'lost-after'
  /** etcd answers with an error of its own. */
  | { refuse: Error };

export class FakeClusterKv implements ClusterKv {
  readonly keys = new Map<string, Stored>();
  /** Leases granted by expiringLease, with their TTL. */
  readonly leases = new Map<string, number>();
  private revision = 1;
  private readonly faults: Array<{ when: (success: readonly Op[]) => boolean; fault: Fault }> = [];

  /** The next transaction whose success branch matches `when` meets `fault`. */
  failNext(when: (success: readonly Op[]) => boolean, fault: Fault): void {
    this.faults.push({ when, fault });
  }

  /** Faults injected and not met yet. */
  get pendingFaults(): number {
    return this.faults.length;
  }

  value(key: string): string | undefined {
    return this.keys.get(key)?.value;
  }

  async get(key: string): Promise<Entry | undefined> {
    return this.entry(key);
  }

  async list(prefix: string, _deadline: number, keysOnly = false): Promise<Entry[]> {
    return [...this.keys.keys()].filter((k) => k.startsWith(prefix)).sort().map((k) => ({ ...this.entry(k)!, ...(keysOnly ? { value: '' } : {}) }));
  }

  async txn(compares: readonly Compare[], success: readonly Op[], failure: readonly Op[]): Promise<TxnResult> {
    const hit = this.faults.findIndex((f) => f.when(success));
    const fault = hit >= 0 ? this.faults.splice(hit, 1)[0]!.fault : undefined;
    if (fault === 'lost-before') throw new ClusterUnreachableError('fake', 'the request was lost');
    if (typeof fault === 'object') throw fault.refuse;
    const succeeded = compares.every((c) => this.holds(c));
    const found = this.apply(succeeded ? success : failure);
    if (fault === 'lost-after') throw new ClusterUnreachableError('fake', 'the answer was lost');
    return { succeeded, found };
  }

  async expiringLease(ttlSeconds: number): Promise<string> {
    const id = String(this.leases.size + 1);
    this.leases.set(id, ttlSeconds);
    return id;
  }

  private entry(key: string): Entry | undefined {
    const stored = this.keys.get(key);
    return stored && { key, value: stored.value, modRevision: String(stored.modRevision), lease: stored.lease };
  }

  private holds(c: Compare): boolean {
    const stored = this.keys.get(c.key);
    if ('absent' in c) return stored === undefined;
    if ('present' in c) return stored !== undefined;
    if ('value' in c) return stored?.value === c.value;
    return String(stored?.modRevision ?? 0) === c.modRevision;
  }

  private apply(ops: readonly Op[]): Entry[] {
    const found: Entry[] = [];
    const revision = ++this.revision;
    for (const op of ops) {
      if ('put' in op) this.keys.set(op.put, { value: op.value, modRevision: revision, lease: op.lease ?? '0' });
      else if ('delete' in op) this.keys.delete(op.delete);
      else if ('deletePrefix' in op) {
        for (const key of [...this.keys.keys()]) if (key.startsWith(op.deletePrefix)) this.keys.delete(key);
      } else {
        const entry = this.entry(op.get);
        if (entry) found.push(entry);
      }
    }
    return found;
  }
}
