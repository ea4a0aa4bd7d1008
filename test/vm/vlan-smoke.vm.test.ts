// Real 802.1Q tagging between two simulated hosts. Runs INSIDE the guest
// (scripts/vm-test.sh); on a kernel without 8021q it fails, it never skips.
//
// Every case builds its own pair of netns joined by a veth "wire" and pairs
// each negative check with a positive control on the same wire, so a "no reply"
// means "the frame carried the wrong tag", not "the wire was broken".
// Negative cases never give the target IP to a second interface of the peer:
// with the default arp_ignore=0 the peer would answer ARP on any interface.
import { afterEach, beforeAll, describe, expect, test } from 'vitest';
import { requireVlanKernel, Wire } from './guest.js';

describe('802.1Q VLAN sub-interfaces (guest kernel)', () => {
  beforeAll(() => requireVlanKernel());

  const wires: Wire[] = [];
  const wire = (tag: string): Wire => {
    const w = new Wire(tag);
    wires.push(w);
    return w;
  };
  afterEach(() => {
    for (const w of wires.splice(0)) w.destroy();
  });

  test('VLAN 10 on both ends of the wire: hosts reach each other', () => {
    const w = wire('v10');
    w.vlan('a', 10, '10.210.0.1/24');
    const dev = w.vlan('b', 10, '10.210.0.2/24');
    expect(w.ping('a', '10.210.0.2')).toBe(true);
    // The reply came through b's VLAN 10 device, i.e. the frames were tagged 10.
    expect(w.rxPackets('b', dev)).toBeGreaterThan(0);
  });

  test('an address held only untagged is not reachable from VLAN 10', () => {
    const w = wire('utg');
    w.vlan('a', 10, '10.211.0.1/24');
    w.addr('b', '10.211.0.2/24'); // b has no VLAN 10 device at all
    // positive control: untagged traffic crosses this wire
    w.addr('a', '10.212.0.1/24');
    w.addr('b', '10.212.0.2/24');
    expect(w.ping('a', '10.212.0.2'), 'control: untagged ping over the wire').toBe(true);
    expect(w.ping('a', '10.211.0.2'), 'tagged VLAN 10 frames reached an untagged-only address').toBe(false);
  });

  test('VLAN 10 and VLAN 20 with the same subnet are isolated', () => {
    const w = wire('mis');
    w.vlan('a', 10, '10.213.0.1/24');
    w.vlan('b', 20, '10.213.0.2/24'); // the only owner of 10.213.0.2
    // positive control: b's VLAN 20 device answers when addressed on VLAN 20
    w.vlan('a', 20, '10.214.0.1/24');
    w.addr('b', '10.214.0.2/24', 'wire.20');
    expect(w.ping('a', '10.214.0.2'), 'control: VLAN 20 ping').toBe(true);
    expect(w.ping('a', '10.213.0.2'), 'VLAN 10 frames reached a VLAN 20 address').toBe(false);
  });
});

