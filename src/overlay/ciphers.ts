import { KeyedMutex } from '../mutex.js';
import { type EspPolicy, type EspState, policyId, stateId, type Xfrm, xfrmLines, type XfrmView } from '../sys/xfrm.js';
import { type EncryptedPair, pairPolicies, pairStates } from './esp.js';

/** What one encrypted overlay network asks of the kernel's IPsec tables: the pairs of its segment, from this host. */
export interface SegmentPairs {
  vni: number;
  pairs: EncryptedPair[];
}

/** Wraps each write as tsnet's own change (the drift watcher), as the peer writes are. */
export type OwnChange = <T>(work: () => Promise<T>) => Promise<T>;

/**
 * The host's SAs and policies, for all of its encrypted segments at once:
 * a policy is per pair of hosts and VXLAN port, not per segment (the
 * kernel's selector cannot see a VNI), so two hosts that share several
 * encrypted segments protect all their VXLAN with the keys of the segment
 * of the lowest VNI, and both pick the same one. The kernel is made equal
 * to that, writing only the difference: new SAs first, then the policies
 * that use them, then what is gone, so no packet finds a policy without
 * its SA on the way in.
 */
export class HostCiphers {
  private readonly segments = new Map<string, SegmentPairs>();
  /** What this host believes the kernel holds; undefined: read it before the next write. */
  private applied: XfrmView | undefined;
  private readonly lock = new KeyedMutex();

  constructor(
    private readonly xfrm: Xfrm,
    private readonly asOwnChange: OwnChange = (work) => work(),
  ) {}

  /** Sets (or, undefined, drops) one network's pairs and brings the kernel to the whole. */
  async set(networkId: string, pairs: SegmentPairs | undefined): Promise<void> {
    if (pairs) this.segments.set(networkId, pairs);
    else this.segments.delete(networkId);
    await this.apply();
  }

  /** Reads the kernel again before the next write: someone changed it (a repair). */
  forget(): void {
    this.applied = undefined;
  }

  /** The SAs and policies the host's segments ask for, each with the network whose segment carries the pair. */
  wanted(): { states: Array<EspState & { network: string }>; policies: Array<EspPolicy & { network: string }> } {
    const carrier = new Map<string, { network: string; vni: number; pair: EncryptedPair }>();
    for (const [network, { vni, pairs }] of this.segments) {
      for (const pair of pairs) {
        const current = carrier.get(pair.peer);
        if (!current || vni < current.vni) carrier.set(pair.peer, { network, vni, pair });
      }
    }
    const chosen = [...carrier.values()];
    return {
      states: chosen.flatMap(({ network, pair }) => pairStates(pair).map((s) => ({ ...s, network }))),
      policies: chosen.flatMap(({ network, pair }) => pairPolicies(pair).map((p) => ({ ...p, network }))),
    };
  }

  /** How many SAs this host holds for its segments (metrics). */
  count(): number {
    return this.applied?.states.length ?? 0;
  }

  private apply(): Promise<void> {
    return this.lock.run('xfrm', async () => {
      const held = this.applied ?? (await this.xfrm.read());
      const wanted = this.wanted();
      const heldStates = new Set(held.states.map(stateId));
      const wantedStates = new Set(wanted.states.map(stateId));
      const heldPolicies = new Map(held.policies.map((p) => [policyId(p), p]));
      const wantedPolicies = new Set(wanted.policies.map(policyId));
      const samePolicy = (p: EspPolicy) => {
        const h = heldPolicies.get(policyId(p));
        return h !== undefined && h.reqid === p.reqid;
      };
      const lines = [
        ...wanted.states.filter((s) => !heldStates.has(stateId(s))).map(xfrmLines.addState),
        ...wanted.policies.filter((p) => !samePolicy(p)).map(xfrmLines.setPolicy),
        ...held.policies.filter((p) => !wantedPolicies.has(policyId(p))).map(xfrmLines.deletePolicy),
        ...held.states.filter((s) => !wantedStates.has(stateId(s))).map(xfrmLines.deleteState),
      ];
      this.applied = undefined;
      await this.asOwnChange(() => this.xfrm.write(lines));
      this.applied = { states: wanted.states.map(({ network: _, ...s }) => s), policies: wanted.policies.map(({ network: _, ...p }) => p) };
    });
  }
}
