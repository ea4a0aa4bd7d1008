import type { DriverKind, NetworkSpec, SubnetRecord } from '../../drivers/model.js';
import { OptionReader } from '../../drivers/option-values.js';
import { RequestError } from '../errors.js';
import { type Family, parseCidr, parseCidrWithIp } from '../net/address.js';

/** Options every kind understands. */
export const COMMON_OPTIONS = {
  mode: 'tsnet.mode',
  mtu: 'com.docker.network.driver.mtu',
  ifacePrefix: 'com.docker.network.container_iface_prefix',
  /** off: no DNS listener of tsnet on the network's gateway (or host shim). */
  dns: 'tsnet.dns',
} as const;

/** Keys dockerd itself puts into CreateNetwork's Options. */
const GENERIC = 'com.docker.network.generic';
const ENABLE_IPV6 = 'com.docker.network.enable_ipv6';
const INTERNAL = 'com.docker.network.internal';

export interface IpamDataInput {
  pool: string;
  gateway?: string;
  auxAddresses: Record<string, string>;
}

export interface CreateNetworkInput {
  networkId: string;
  options: Record<string, unknown>;
  ipv4: IpamDataInput[];
  ipv6: IpamDataInput[];
}

/** The -o map: dockerd sends it under com.docker.network.generic, values as strings. */
export function genericOptions(options: Record<string, unknown>): Record<string, string> {
  const generic = options[GENERIC] ?? {};
  if (typeof generic !== 'object' || generic === null || Array.isArray(generic)) {
    throw new RequestError(`Options.${GENERIC}`, 'must be a map of strings');
  }
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(generic)) {
    if (typeof value !== 'string') throw new RequestError(key, `value must be a string, got ${JSON.stringify(value)}`);
    out[key] = value;
  }
  return out;
}

function flag(options: Record<string, unknown>, key: string): boolean {
  const value = options[key];
  if (value === undefined || value === null) return false;
  if (typeof value === 'boolean') return value;
  if (value === 'true' || value === 'false') return value === 'true';
  throw new RequestError(`Options.${key}`, `must be a boolean, got ${JSON.stringify(value)}`);
}

/** Docker's ipvlan keys: either one makes a network ipvlan, as `-d ipvlan` would. */
const IPVLAN_KEYS = ['ipvlan_mode', 'ipvlan_flag'];

/**
 * The kind asked for (tsnet.mode), else the one Docker's options imply:
 * ipvlan for its ipvlan keys, macvlan for a parent, bridge otherwise. An
 * overlay is a bridge network whose bridge has a VXLAN port (drivers/bridge/overlay.ts).
 */
export function kindOf(generic: Record<string, string>): DriverKind {
  const ipvlanKey = IPVLAN_KEYS.find((key) => generic[key] !== undefined);
  const implied = ipvlanKey ? 'ipvlan' : generic.parent !== undefined ? 'macvlan' : 'bridge';
  const mode = new OptionReader(generic).oneOf(COMMON_OPTIONS.mode, ['bridge', 'macvlan', 'ipvlan', 'overlay'] as const, implied);
  if (ipvlanKey && mode !== 'ipvlan') throw new RequestError(ipvlanKey, `only ipvlan networks take it, not tsnet.mode=${mode}`);
  if (generic.parent !== undefined && mode !== 'macvlan' && mode !== 'ipvlan') throw new RequestError('parent', 'only macvlan and ipvlan networks take a parent interface');
  return mode === 'overlay' ? 'bridge' : mode;
}

/** Whether the user chose a subnet's gateway (--gateway): only tsnet's IPAM knows. */
export type GatewayChosen = (subnet: string, gateway: string) => boolean;

/** Checks one IPAM data entry and turns dockerd's `ip/len` gateways into plain IPs. */
function subnetRecord(data: IpamDataInput, index: number, family: Family, chosen: GatewayChosen): SubnetRecord {
  const field = `IPv${family}Data.${index}`;
  const pool = parseCidr(data.pool);
  if (!pool || pool.cidr.family !== family) throw new RequestError(`${field}.Pool`, `"${data.pool}" is not an IPv${family} subnet`);
  const plainInPool = (text: string, what: string): string => {
    const parsed = parseCidrWithIp(text);
    if (!parsed || parsed.ip.family !== family || parsed.cidr.network !== pool.cidr.network || parsed.cidr.prefix !== pool.cidr.prefix) {
      throw new RequestError(what, `"${text}" is not an address of ${data.pool}`);
    }
    return text.slice(0, text.indexOf('/'));
  };
  const aux: Record<string, string> = {};
  for (const [name, address] of Object.entries(data.auxAddresses)) aux[name] = plainInPool(address, `${field}.AuxAddresses.${name}`);
  const gateway = data.gateway ? plainInPool(data.gateway, `${field}.Gateway`) : undefined;
  return {
    pool: data.pool,
    ...(gateway ? { gateway } : {}),
    ...(gateway && chosen(data.pool, gateway) ? { gatewayChosen: true as const } : {}),
    aux,
  };
}

/** The kind-independent part of a CreateNetwork, validated. */
export function networkSpec(input: CreateNetworkInput, gatewayChosen: GatewayChosen = () => false): { kind: DriverKind; spec: NetworkSpec } {
  const generic = genericOptions(input.options);
  const reader = new OptionReader(generic);
  const ifacePrefix = generic[COMMON_OPTIONS.ifacePrefix] ?? 'eth';
  if (!/^[a-z]{1,10}$/.test(ifacePrefix)) throw new RequestError(COMMON_OPTIONS.ifacePrefix, `"${ifacePrefix}" must be 1 to 10 lower-case letters`);
  const mtu = reader.integer(COMMON_OPTIONS.mtu, 68, 65535);
  const ipv6 = flag(input.options, ENABLE_IPV6);
  return {
    kind: kindOf(generic),
    spec: {
      id: input.networkId,
      internal: flag(input.options, INTERNAL),
      ipv6,
      ipv4: input.ipv4.map((d, i) => subnetRecord(d, i, 4, gatewayChosen)),
      ipv6Subnets: input.ipv6.map((d, i) => subnetRecord(d, i, 6, gatewayChosen)),
      ...(mtu !== undefined ? { mtu } : {}),
      ifacePrefix,
      dns: reader.onOff(COMMON_OPTIONS.dns, true),
      options: generic,
    },
  };
}
