import type { FirewallNetwork } from '../../src/sys/firewall.js';

/** A plain IPv4 bridge network as the firewall backends see it; tests spread it and change what they need. */
export const SAMPLE_NETWORK: FirewallNetwork = {
  id: '0123456789abcdef'.repeat(4),
  bridge: 'tsbr-0123456789',
  subnets: { 4: '10.1.0.0/24' },
  internal: false,
  icc: true,
  isolate: true,
  outboundNat: { 4: { kind: 'masquerade' } },
  routeLocalnetBefore: false,
  groupBefore: 'default',
};
