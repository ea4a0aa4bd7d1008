import { IpSessionRunner } from './ip-session.js';
import { NftSessionRunner } from './nft-session.js';
import type { Runner } from './runner.js';

/**
 * The daemon's door to the kernel: ip writes and nft transactions through
 * their long-lived sessions, everything else to `inner`, which starts
 * programs. `onSessionStart` is told of each session process started.
 */
export function sessionRunner(inner: Runner, onSessionStart: (program: 'ip' | 'nft') => void = () => {}): Runner {
  return new IpSessionRunner(new NftSessionRunner(inner, () => onSessionStart('nft')), () => onSessionStart('ip'));
}
