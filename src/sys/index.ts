export { Ip, LINK_NAME, type AddressInfo, type LinkInfo, type RouteInfo } from './ip.js';
export { CommandError, ExecaRunner, RecordingRunner, type RecordedCommand, type Runner } from './runner.js';
export { Sysctl } from './sysctl.js';
