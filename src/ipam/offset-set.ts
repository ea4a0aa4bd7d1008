/**
 * Which offsets of a pool are taken. Pools up to 2^24 addresses use a dense
 * bitmap (2 MiB at most); larger ones, IPv6 /64s above all, a sparse set.
 */
export interface OffsetSet {
  has(offset: bigint): boolean;
  add(offset: bigint): void;
  delete(offset: bigint): void;
  /** The first free offset in [from, end), or undefined. */
  firstFree(from: bigint, end: bigint): bigint | undefined;
  /** How many offsets in [start, end) are taken. */
  countIn(start: bigint, end: bigint): bigint;
}

export const DENSE_LIMIT = 1n << 24n;

export function offsetSetFor(size: bigint): OffsetSet {
  return size <= DENSE_LIMIT ? new DenseBitmap(Number(size)) : new SparseSet();
}

const FULL = 0xffffffff;

export class DenseBitmap implements OffsetSet {
  private readonly words: Uint32Array;

  constructor(size: number) {
    this.words = new Uint32Array(Math.ceil(size / 32));
  }

  has(offset: bigint): boolean {
    const n = Number(offset);
    return ((this.words[n >>> 5]! >>> (n & 31)) & 1) === 1;
  }

  add(offset: bigint): void {
    const n = Number(offset);
    this.words[n >>> 5]! |= 1 << (n & 31);
  }

  delete(offset: bigint): void {
    const n = Number(offset);
    this.words[n >>> 5]! &= ~(1 << (n & 31));
  }

  firstFree(from: bigint, end: bigint): bigint | undefined {
    let n = Number(from);
    const stop = Number(end);
    while (n < stop) {
      const word = this.words[n >>> 5]!;
      // Skip whole words that are full: 32 offsets per comparison.
      if (word === FULL && (n & 31) === 0) {
        n += 32;
        continue;
      }
      if (((word >>> (n & 31)) & 1) === 0) return BigInt(n);
      n++;
    }
    return undefined;
  }

  countIn(start: bigint, end: bigint): bigint {
    let count = 0;
    for (let n = Number(start); n < Number(end); n++) if (((this.words[n >>> 5]! >>> (n & 31)) & 1) === 1) count++;
    return BigInt(count);
  }
}

export class SparseSet implements OffsetSet {
  private readonly taken = new Set<bigint>();

  has(offset: bigint): boolean {
    return this.taken.has(offset);
  }

  add(offset: bigint): void {
    this.taken.add(offset);
  }

  delete(offset: bigint): void {
    this.taken.delete(offset);
  }

  firstFree(from: bigint, end: bigint): bigint | undefined {
    // Only as many steps as there are taken offsets can be needed.
    for (let n = from; n < end; n++) if (!this.taken.has(n)) return n;
    return undefined;
  }

  countIn(start: bigint, end: bigint): bigint {
    let count = 0n;
    for (const n of this.taken) if (n >= start && n < end) count++;
    return count;
  }
}
