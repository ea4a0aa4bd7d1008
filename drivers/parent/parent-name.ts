import { RequestError } from '../../src/errors.js';
import { OptionReader } from '../option-values.js';

export const VLAN_ID_MIN = 1;
export const VLAN_ID_MAX = 4094;

/** Where a network's child links (macvlan, ipvlan) hang: a plain interface, or an 802.1Q subinterface of one. */
export interface ParentName {
  /** The link the children are created on: `eth1` or `eth1.10`. */
  name: string;
  /** Set when `name` is `<base>.<id>`: the VLAN tsnet creates if the link is missing. */
  vlan?: { base: string; id: number };
}

/**
 * Reads `-o parent=` and `-o tsnet.vlan=` into the link name and, when it
 * names one, the VLAN. `parent=eth1 tsnet.vlan=10` is the same as `parent=eth1.10`.
 */
export function parseParentName(options: OptionReader, parentKey: string, vlanKey: string, kind: string): ParentName {
  const given = options.linkName(parentKey);
  if (given === undefined) {
    // This kernel family has no dummy links, so there is no parent-less (host-local) mode.
    throw new RequestError(parentKey, `${kind} networks need a parent interface (-o parent=<interface>)`);
  }
  const vlanOption = options.integer(vlanKey, VLAN_ID_MIN, VLAN_ID_MAX);
  if (vlanOption !== undefined) {
    if (vlanSuffix(given)) throw new RequestError(vlanKey, `parent ${given} already names a VLAN; give either parent=<if>.<id> or ${vlanKey}`);
    const name = `${given}.${vlanOption}`;
    if (Buffer.byteLength(name) > 15) throw new RequestError(vlanKey, `the VLAN interface name ${name} would be longer than 15 bytes`);
    return { name, vlan: { base: given, id: vlanOption } };
  }
  const suffix = vlanSuffix(given);
  if (!suffix) return { name: given };
  if (suffix.id < VLAN_ID_MIN || suffix.id > VLAN_ID_MAX) {
    throw new RequestError(parentKey, `VLAN id ${suffix.id} of ${given} is not from ${VLAN_ID_MIN} to ${VLAN_ID_MAX}`);
  }
  return { name: given, vlan: suffix };
}

/** `eth1.10` → eth1 and 10; undefined when the name has no numeric dot suffix. */
function vlanSuffix(name: string): { base: string; id: number } | undefined {
  const match = /^(.+)\.(\d+)$/.exec(name);
  return match ? { base: match[1]!, id: Number(match[2]) } : undefined;
}
