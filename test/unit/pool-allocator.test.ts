import { describe, expect, it } from 'vitest';
import { formatIp, parseCidr, parseIp, type Ip } from '../../src/net/address.js';
import { PoolAllocator } from '../../src/ipam/pool-allocator.js';

const cidr = (text: string) => parseCidr(text)!.cidr;
const ip = (text: string) => parseIp(text)!;

/** Hands out the next automatic address, as the IPAM does. */
function next(allocator: PoolAllocator): string | undefined {
  const found = allocator.peekNext();
  if (found) allocator.take(found, true);
  return found && formatIp(found);
}

describe('PoolAllocator', () => {
  it('never hands out the network or broadcast address of an IPv4 pool', () => {
    const allocator = new PoolAllocator(cidr('10.0.0.0/30'));
    expect([next(allocator), next(allocator), next(allocator)]).toEqual(['10.0.0.1', '10.0.0.2', undefined]);
  });

  it('hands out the next address after the last one, not a just-released one', () => {
    const allocator = new PoolAllocator(cidr('10.0.0.0/24'));
    expect(next(allocator)).toBe('10.0.0.1');
    expect(next(allocator)).toBe('10.0.0.2');
    allocator.release(ip('10.0.0.1'));
    expect(next(allocator)).toBe('10.0.0.3');
  });

  it('wraps around to free addresses at the start of the range', () => {
    const allocator = new PoolAllocator(cidr('10.0.0.0/29'));
    const all = Array.from({ length: 6 }, () => next(allocator));
    expect(all).toEqual(['10.0.0.1', '10.0.0.2', '10.0.0.3', '10.0.0.4', '10.0.0.5', '10.0.0.6']);
    allocator.release(ip('10.0.0.2'));
    expect(next(allocator)).toBe('10.0.0.2');
    expect(next(allocator)).toBeUndefined();
  });

  it('allocates only inside the ip-range, but lets given addresses anywhere in the pool', () => {
    const allocator = new PoolAllocator(cidr('10.0.0.0/24'), cidr('10.0.0.128/30'));
    expect(allocator.contains(ip('10.0.0.2'))).toBe(true);
    allocator.take(ip('10.0.0.2'), false);
    expect([next(allocator), next(allocator), next(allocator), next(allocator), next(allocator)]).toEqual([
      '10.0.0.128',
      '10.0.0.129',
      '10.0.0.130',
      '10.0.0.131',
      undefined,
    ]);
    expect(allocator.has(ip('10.0.0.2'))).toBe(true);
  });

  it('gives the first free address of the pool for a gateway', () => {
    const allocator = new PoolAllocator(cidr('10.0.0.0/24'), cidr('10.0.0.128/25'));
    expect(formatIp(allocator.peekFirstInPool()!)).toBe('10.0.0.1');
  });

  it('reserves only the subnet-router anycast address of an IPv6 pool and handles /64s sparsely', () => {
    const allocator = new PoolAllocator(cidr('fd00:1::/64'));
    expect(allocator.isReserved(ip('fd00:1::'))).toBe(true);
    expect(next(allocator)).toBe('fd00:1::1');
    allocator.take(ip('fd00:1::2'), false);
    expect(next(allocator)).toBe('fd00:1::3');
    expect(allocator.contains(ip('fd00:2::1'))).toBe(false);
  });

  it('matches a simple model over random allocate/release sequences', () => {
    let seed = 42;
    const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    for (const [pool, range] of [
      ['10.1.0.0/26', undefined],
      ['10.2.0.0/24', '10.2.0.64/27'],
      ['fd00:9::/120', undefined],
    ] as const) {
      const allocator = new PoolAllocator(cidr(pool), range ? cidr(range) : undefined);
      const model = new ModelAllocator(cidr(pool).family, rangeOf(range ?? pool, pool));
      for (let step = 0; step < 3000; step++) {
        if (random() < 0.6) {
          expect(next(allocator)).toBe(model.allocate());
        } else if (model.taken.length > 0) {
          const victim = model.taken[Math.floor(random() * model.taken.length)]!;
          model.release(victim);
          expect(allocator.release(ip(victim))).toBe(true);
        }
      }
    }
  });
});

/** Offsets a range covers inside its pool, as a list of candidate addresses in order, minus reserved ones. */
function rangeOf(range: string, pool: string): string[] {
  const r = cidr(range);
  const p = cidr(pool);
  const bits = r.family === 4 ? 32 : 128;
  const size = 1n << BigInt(bits - r.prefix);
  const poolSize = 1n << BigInt(bits - p.prefix);
  const out: string[] = [];
  for (let v = r.network; v < r.network + size; v++) {
    const offset = v - p.network;
    const reserved = offset === 0n || (r.family === 4 && offset === poolSize - 1n);
    if (!reserved) out.push(formatIp({ family: r.family, value: v } as Ip));
  }
  return out;
}

/** The specification, as plainly as possible: a list, a cursor, wrap once. */
class ModelAllocator {
  taken: string[] = [];
  private cursor = -1;

  constructor(
    readonly family: 4 | 6,
    private readonly candidates: string[],
  ) {}

  allocate(): string | undefined {
    const n = this.candidates.length;
    for (let i = 1; i <= n; i++) {
      const index = (this.cursor + i) % n;
      const candidate = this.candidates[index]!;
      if (!this.taken.includes(candidate)) {
        this.taken.push(candidate);
        this.cursor = index;
        return candidate;
      }
    }
    return undefined;
  }

  release(address: string): void {
    this.taken = this.taken.filter((a) => a !== address);
  }
}
