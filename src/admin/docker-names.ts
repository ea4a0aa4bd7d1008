/**
 * Docker's names for what tsnet knows by ID, as far as they are known: the
 * Docker API client's event watcher fills them in the background, so a
 * lookup never waits for dockerd and an unknown name is simply absent.
 */
export interface DockerNames {
  /** The network's name (`docker network ls`). */
  networkName(networkId: string): string | undefined;
  /** The name of the container the endpoint belongs to. */
  containerOfEndpoint(endpointId: string): string | undefined;
}

/** A daemon that does not talk to dockerd: IDs only. */
export const NO_DOCKER_NAMES: DockerNames = {
  networkName: () => undefined,
  containerOfEndpoint: () => undefined,
};
