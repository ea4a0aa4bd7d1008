export type { Family, Firewall, FirewallNetwork, OutboundNat, PortForward, TransportProtocol } from './firewall.js';
export { Ip, LINK_NAME, type AddressInfo, type LinkInfo, type RouteInfo } from './ip.js';
export { IptablesFirewall } from './iptables/iptables-firewall.js';
export { CommandError, ExecaRunner, RecordingRunner, type RecordedCommand, type RunOptions, type RunResult, type Runner } from './runner.js';
export { type HostPort, type HostPorts, SocketHostPorts, UncheckedHostPorts } from './host-ports.js';
export { Sysctl } from './sysctl.js';
