/**
 * One way the kernel differs from what tsnet's records say it should hold.
 * `tsnet doctor` prints these; the drift watcher repairs the networks they name.
 */
export interface Drift {
  /** The network whose record wants the object (shared pieces: every network that needs them). */
  network: string;
  object: DriftObject;
  problem: 'missing' | 'extra' | 'changed';
  /** What, in the kernel's words: `link tsbr-0123456789`, `rule -A TSNET-FWD-… -j DROP`. */
  detail: string;
}

export type DriftObject = 'link' | 'address' | 'route' | 'port-flag' | 'promisc' | 'neighbour' | 'fdb' | 'xfrm-state' | 'xfrm-policy' | 'table' | 'chain' | 'rule' | 'hook' | 'element';

/** Whether the difference is in the packet filter's rules (as opposed to links, addresses, routes, flags). */
export const isRuleDrift = (d: Drift) => RULE_OBJECTS.has(d.object);
const RULE_OBJECTS: ReadonlySet<DriftObject> = new Set(['table', 'chain', 'rule', 'hook', 'element']);

export const drift = (network: string, object: DriftObject, problem: Drift['problem'], detail: string): Drift => ({ network, object, problem, detail });

/** One line for a person: `missing link tsbr-0123456789 (network 0123456789ab)`. */
export const describeDrift = (d: Drift) => `${d.problem} ${d.object} ${d.detail} (network ${d.network.slice(0, 12)})`;
