import { DHCP_NETWORK_OPTIONS } from '../../src/dhcp/options.js';
import type { NetworkRecord, NetworkSpec } from '../model.js';
import { OptionReader } from '../option-values.js';
import { type ParentConfig, type ParentLinks, PARENT_OPTIONS, parseParentConfig } from '../parent/parent-config.js';
import type { ParentName } from '../parent/parent-name.js';

/** Docker's macvlan keys (`parent`, `macvlan_mode`) mean the same with tsnet; the rest are tsnet's own. */
export const MACVLAN_OPTIONS = { ...PARENT_OPTIONS, mode: 'macvlan_mode', dhcpTimeout: DHCP_NETWORK_OPTIONS.timeout, dhcpHold: DHCP_NETWORK_OPTIONS.hold } as const;

/** How long a DHCP server may take to answer an attach, by default (docs/dhcp.md). */
export const DEFAULT_DHCP_TIMEOUT_SECONDS = 5;
/** How long a lease is held for the next attach after its container went, by default: a `docker restart` fits in it. */
export const DEFAULT_DHCP_HOLD_SECONDS = 60;

export const MACVLAN_MODES = ['bridge', 'vepa', 'private', 'passthru'] as const;
export type MacvlanMode = (typeof MACVLAN_MODES)[number];

export interface MacvlanConfig extends ParentConfig {
  mode: MacvlanMode;
  /** -o tsnet.dhcp_timeout (seconds), for a network on a DHCP pool. */
  dhcpTimeoutSeconds?: number;
  /** -o tsnet.dhcp_hold (seconds), for a network on a DHCP pool. */
  dhcpHoldSeconds?: number;
}

/**
 * Checks a macvlan network's options against the kernel and the other tsnet
 * networks and returns its config. Changes nothing.
 */
export function parseMacvlanConfig(spec: NetworkSpec, others: readonly NetworkRecord[], parent: ParentName, links: ParentLinks): MacvlanConfig {
  const options = new OptionReader(spec.options);
  const mode = options.oneOf(MACVLAN_OPTIONS.mode, MACVLAN_MODES, 'bridge');
  const dhcpTimeoutSeconds = options.integer(MACVLAN_OPTIONS.dhcpTimeout, 1, 120);
  const dhcpHoldSeconds = options.integer(MACVLAN_OPTIONS.dhcpHold, 0, 3600);
  // The shim is a bridge-mode sibling; private and vepa children never hear it, passthru allows no sibling.
  const shimRefusal = mode === 'bridge' ? undefined : `needs macvlan_mode=bridge, not ${mode}`;
  return { ...parseParentConfig(spec, others, parent, links, { kind: 'macvlan', ...(shimRefusal ? { shimRefusal } : {}) }), mode, ...(dhcpTimeoutSeconds ? { dhcpTimeoutSeconds } : {}), ...(dhcpHoldSeconds !== undefined ? { dhcpHoldSeconds } : {}) };
}
