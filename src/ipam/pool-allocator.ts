import { RequestError } from '../errors.js';
import { type Cidr, type Ip, cidrContains, cidrSize, parseIp } from '../net/address.js';
import { type OffsetSet, offsetSetFor } from './offset-set.js';

/**
 * Addresses of one pool. Offsets are relative to the pool's network address;
 * automatic allocation stays inside the range (the sub-pool from --ip-range,
 * else the pool) and continues after the last address it handed out, so an
 * address just released is not given to the next container.
 */
export class PoolAllocator {
  private readonly taken: OffsetSet;
  private readonly size: bigint;
  private readonly rangeStart: bigint;
  private readonly rangeEnd: bigint;
  /** Offset of the address handed out last; the next search starts after it. */
  cursor: bigint;

  constructor(
    readonly pool: Cidr,
    readonly range: Cidr = pool,
  ) {
    this.size = cidrSize(pool);
    this.taken = offsetSetFor(this.size);
    this.rangeStart = range.network - pool.network;
    this.rangeEnd = this.rangeStart + cidrSize(range);
    this.cursor = this.rangeStart - 1n;
    for (const offset of this.reservedOffsets()) this.taken.add(offset);
  }

  /**
   * The network address is never handed out; for IPv4 pools with room for
   * hosts the broadcast address neither (IPv6 has no broadcast; offset 0 is
   * its subnet-router anycast address).
   */
  private reservedOffsets(): bigint[] {
    if (this.pool.family === 4 && this.size <= 2n) return [];
    return this.pool.family === 4 ? [0n, this.size - 1n] : [0n];
  }

  private offsetOf(ip: Ip): bigint | undefined {
    return cidrContains(this.pool, ip) ? ip.value - this.pool.network : undefined;
  }

  isReserved(ip: Ip): boolean {
    const offset = this.offsetOf(ip);
    return offset !== undefined && this.reservedOffsets().includes(offset);
  }

  has(ip: Ip): boolean {
    const offset = this.offsetOf(ip);
    return offset !== undefined && this.taken.has(offset);
  }

  contains(ip: Ip): boolean {
    return this.offsetOf(ip) !== undefined;
  }

  /** The next free address of the range after the cursor, wrapping once; it is not taken yet. */
  peekNext(): Ip | undefined {
    const after = this.cursor + 1n;
    const offset =
      this.taken.firstFree(after < this.rangeEnd ? after : this.rangeStart, this.rangeEnd) ??
      this.taken.firstFree(this.rangeStart, this.rangeEnd);
    return offset === undefined ? undefined : { family: this.pool.family, value: this.pool.network + offset };
  }

  /** The first free address of the whole pool (the default gateway: .1 when free). */
  peekFirstInPool(): Ip | undefined {
    const offset = this.taken.firstFree(0n, this.size);
    return offset === undefined ? undefined : { family: this.pool.family, value: this.pool.network + offset };
  }

  /**
   * Marks a free address of the pool taken. `advance` moves the cursor to it
   * (automatic container addresses), so the next search starts after it.
   */
  take(ip: Ip, advance: boolean): void {
    const offset = ip.value - this.pool.network;
    this.taken.add(offset);
    if (advance && offset >= this.rangeStart && offset < this.rangeEnd) this.cursor = offset;
  }

  release(ip: Ip): boolean {
    const offset = this.offsetOf(ip);
    if (offset === undefined || !this.taken.has(offset) || this.reservedOffsets().includes(offset)) return false;
    this.taken.delete(offset);
    return true;
  }

  /** Free addresses left in the range, for errors and metrics. */
  freeInRange(): bigint {
    return this.rangeEnd - this.rangeStart - this.taken.countIn(this.rangeStart, this.rangeEnd);
  }
}

/** Parses an address the user chose (--gateway, --aux-address, --ip): inside the pool, not its network or broadcast address. */
export function checkChosenAddress(allocator: PoolAllocator, text: string, poolLabel: string): Ip {
  const ip = parseIp(text);
  if (!ip) throw new RequestError('Address', `"${text}" is not an IP address`);
  if (!allocator.contains(ip)) throw new RequestError('Address', `${text} is outside ${poolLabel}`);
  if (allocator.isReserved(ip)) throw new RequestError('Address', `${text} is the network or broadcast address of ${poolLabel}`);
  return ip;
}
