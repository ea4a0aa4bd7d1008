import type { Logger } from 'pino';
import { GENERATED_LINK } from '../../drivers/names.js';
import type { NetworkService } from '../core/network-service.js';
import type { Ip } from '../sys/index.js';

/**
 * Start-up: deletes the links that a crash between a kernel change and its
 * commit left behind. Only names tsnet generates (tsbr-<10 hex>,
 * ts[vcms]<12 hex>) that no stored network or endpoint owns are touched; a
 * user's link, or a bridge a network adopted, never is. Assumes one tsnet
 * per network namespace, as one dockerd has one plugin of a name.
 */
export async function removeLeftoverLinks(ip: Ip, networks: NetworkService, log: Logger): Promise<string[]> {
  const owned = networks.ownedLinks();
  const leftovers = [...(await ip.linkNames())].filter((name) => GENERATED_LINK.test(name) && !owned.has(name));
  // All in one kernel batch (a crash may leave many); a veth pair's two ends both in it is fine.
  await ip.deleteLinks(leftovers);
  for (const link of leftovers) log.warn({ link }, 'removed a link no stored network or endpoint owns (left by a crash)');
  return leftovers;
}
