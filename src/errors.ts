/**
 * A request tsnet refuses. The message is what dockerd shows the user, so it
 * always names the field (or option) at fault and says why.
 */
export class RequestError extends Error {
  constructor(
    readonly field: string,
    readonly reason: string,
  ) {
    super(`${field}: ${reason}`);
    this.name = 'RequestError';
  }
}
