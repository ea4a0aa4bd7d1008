import { forwardHookPosition, hookText, iptablesRestore, iptablesSave, RestoreScript } from '../iptables/restore-script.js';
import { type Runner, ProgramNotFound } from '../runner.js';

/**
 * The interface group tsnet's bridges join with the nftables backend
 * ("ts"). iptables' filter FORWARD chain (Docker's, with its DROP policy)
 * sees every forwarded packet too, whatever tsnet's nft chains decided: an
 * accept in one table does not bypass a drop in another. So two static rules
 * there let traffic to and from this group through, and tsnet's own chains
 * (which drop what they must, and a drop anywhere is final) decide.
 */
export const BRIDGE_GROUP = '0x7473';

export const GATE = 'TSNET-GATE';

/**
 * Puts the gate into iptables, once per family: a chain TSNET-GATE hooked
 * into FORWARD at the top (below DOCKER-USER). Without iptables on the host
 * there is no FORWARD chain to pass: nothing to do.
 */
export async function openIptablesGate(runner: Runner): Promise<void> {
  for (const family of [4, 6] as const) {
    let saved;
    try {
      saved = await iptablesSave(runner, family, 'filter');
    } catch (error) {
      if (error instanceof ProgramNotFound) return;
      throw error;
    }
    const script = new RestoreScript().replaceChain({
      table: 'filter',
      name: GATE,
      rules: [
        ['-m', 'devgroup', '--dst-group', BRIDGE_GROUP, '-j', 'ACCEPT'],
        ['-m', 'devgroup', '--src-group', BRIDGE_GROUP, '-j', 'ACCEPT'],
      ],
    });
    const hook = { table: 'filter' as const, chain: 'FORWARD', rule: ['-j', GATE], first: true };
    if (!saved.filter.rules.has(hookText(hook))) script.addHook(hook, forwardHookPosition(saved.filter));
    await iptablesRestore(runner, family, script);
  }
}
