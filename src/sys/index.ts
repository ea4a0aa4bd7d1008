export type { EndpointForwards, Family, Firewall, FirewallNetwork, OutboundNat, PortForward, TransportProtocol } from './firewall.js';
export { Ip, LINK_NAME, type AddressInfo, type LinkInfo, type RouteInfo } from './ip.js';
export { IptablesFirewall } from './iptables/iptables-firewall.js';
export { NftablesFirewall } from './nftables/nft-firewall.js';
export { chooseFirewall, FIREWALL_KINDS, type FirewallKind, removeOtherBackend } from './firewall-choice.js';
export { CommandError, ExecaRunner, ProgramNotFound, RecordingRunner, type RecordedCommand, type RunOptions, type RunResult, type Runner } from './runner.js';
export { type HostPort, type HostPorts, SocketHostPorts, UncheckedHostPorts } from './host-ports.js';
export { Sysctl } from './sysctl.js';
