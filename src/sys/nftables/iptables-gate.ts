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
/** The same for iptables' INPUT chain: DNS from a bridge to its own address (the gateway's listener), past an INPUT policy of DROP. */
export const INPUT_GATE = 'TSNET-GATE-IN';

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
    if (family === 4) {
      // --limit-iface-in: an address of the bridge the query came in on, i.e. its gateway; tsnet's nft input chain drops the rest.
      const local = ['-m', 'addrtype', '--dst-type', 'LOCAL', '--limit-iface-in'];
      script.replaceChain({
        table: 'filter',
        name: INPUT_GATE,
        rules: (['udp', 'tcp'] as const).map((p) => ['-p', p, '-m', 'devgroup', '--src-group', BRIDGE_GROUP, '-m', p, '--dport', '53', ...local, '-j', 'ACCEPT']),
      });
      const inputHook = { table: 'filter' as const, chain: 'INPUT', rule: ['-j', INPUT_GATE], first: true };
      if (!saved.filter.rules.has(hookText(inputHook))) script.addHook(inputHook, 1);
    }
    await iptablesRestore(runner, family, script);
  }
}
