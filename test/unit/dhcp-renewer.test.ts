// The lease renewer's schedule: renew at T1, rebind from T2, tell expiry
// once and keep asking, forget a released lease; on vitest's fake clock.
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { Lease } from '../../src/dhcp/client.js';
import { type LeaseBook, LeaseRenewer } from '../../src/dhcp/renewer.js';

const lease = (address: string, seconds: { t1: number; t2: number; lease: number }): Lease => ({
  address,
  server: '10.0.0.1',
  routers: [],
  dnsServers: [],
  renewalSeconds: seconds.t1,
  rebindingSeconds: seconds.t2,
  leaseSeconds: seconds.lease,
  grantedAt: Date.now(),
});

/** A book whose server answers `answers` (true: ACK) and records what was asked. */
function book(leases: Lease[], answers: boolean) {
  const asked: Array<[string, string]> = [];
  const expired: string[] = [];
  const b: LeaseBook<Lease> = {
    leases: () => leases,
    extend: async (l, how) => {
      asked.push([l.address, how]);
      if (!answers) throw new Error('no server');
      leases[leases.indexOf(l)] = { ...l, grantedAt: Date.now() };
    },
    expired: (l) => expired.push(l.address),
  };
  return { b, asked, expired };
}

const sleep = (ms: number) => vi.advanceTimersByTimeAsync(ms);

describe('lease renewer', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('renews at T1, again after each ACK, and nothing before', async () => {
    const leases = [lease('10.0.0.5', { t1: 60, t2: 105, lease: 120 })];
    const { b, asked } = book(leases, true);
    const renewer = new LeaseRenewer(b, pino({ level: 'silent' }));
    renewer.reschedule();
    await sleep(59_000);
    expect(asked).toEqual([]);
    await sleep(2_000);
    expect(asked).toEqual([['10.0.0.5', 'renew']]);
    await sleep(60_000);
    renewer.stop();
    expect(asked).toEqual([['10.0.0.5', 'renew'], ['10.0.0.5', 'renew']]);
  });

  it('rebinds from T2 when renewing fails, tells expiry once, and keeps asking', async () => {
    const leases = [lease('10.0.0.6', { t1: 60, t2: 105, lease: 120 })];
    const { b, asked, expired } = book(leases, false);
    const renewer = new LeaseRenewer(b, pino({ level: 'silent' }));
    renewer.reschedule();
    await sleep(61_000);
    expect(asked).toEqual([['10.0.0.6', 'renew']]);
    // Retries at half the time left to T2, then rebinds from T2 on.
    await sleep(45_000);
    expect(asked.at(-1)).toEqual(['10.0.0.6', 'rebind']);
    expect(expired).toEqual([]);
    await sleep(200_000);
    renewer.stop();
    expect(expired).toEqual(['10.0.0.6']);
    // Past expiry it keeps asking, once a minute at most.
    const afterExpiry = asked.filter(([, how]) => how === 'rebind').length;
    expect(afterExpiry).toBeGreaterThan(2);
    expect(afterExpiry).toBeLessThan(20);
  });

  it('forgets a released lease', async () => {
    const leases = [lease('10.0.0.7', { t1: 60, t2: 105, lease: 120 })];
    const { b, asked } = book(leases, true);
    const renewer = new LeaseRenewer(b, pino({ level: 'silent' }));
    renewer.reschedule();
    leases.splice(0);
    renewer.forget('10.0.0.7');
    await sleep(300_000);
    renewer.stop();
    expect(asked).toEqual([]);
  });
});
