/** `--ipam-opt tsnet.dhcp=on`: the pool's addresses come from the DHCP server on its network's wire. */
export const DHCP_OPTION = 'tsnet.dhcp';

/** The -o options of a network on a DHCP pool (the macvlan driver reads them): meaningless on any other network. */
export const DHCP_NETWORK_OPTIONS = { timeout: 'tsnet.dhcp_timeout', hold: 'tsnet.dhcp_hold' } as const;
