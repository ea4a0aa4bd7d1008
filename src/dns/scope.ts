/** What one listener serves one class of askers. */
export interface Scope {
  /** Only this network's names and addresses; undefined = every network's (--dns-listen). */
  readonly networkId?: string;
  /** Whether names tsnet does not own go upstream (never from an --internal network's listener, nor for a stranger). */
  readonly forward: boolean;
  /** The largest UDP answer, whatever buffer the asker's EDNS offers (askers that are not tsnet's get no amplifier). */
  readonly udpLimit?: number;
}

/** A scope by value: listeners alike serve alike. */
export const scopeValue = (scope: Scope): string => `${scope.networkId ?? '*'}${scope.forward ? 'f' : ''}${scope.udpLimit ?? ''}`;
