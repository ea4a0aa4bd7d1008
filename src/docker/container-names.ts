import type { Logger } from 'pino';
import type { DockerApi } from './docker-api.js';
import { bridgeOf } from './docker-bridges.js';
import type { ContainerDetails, DockerEvent, NetworkSummary } from './messages.js';

/** One container's attachment to one network, as Docker names it. */
export interface NamedEndpoint {
  endpointId: string;
  networkId: string;
  networkName: string;
  containerId: string;
  containerName: string;
  /** --network-alias values (and the short ID Docker adds), without the container name. */
  aliases: string[];
}

export interface ContainerNamesOptions {
  /** First wait before reconnecting after the event stream broke; doubles up to maxBackoffMs. */
  minBackoffMs?: number;
  maxBackoffMs?: number;
  /** How the operator points tsnet at dockerd's API, named when it cannot be reached. */
  turnOn?: string;
}

/** What stops working while dockerd's API cannot be reached: said when it happens, not left to be found out. */
const OFF_WITHOUT_API = "container names in tsnet's DNS, Docker's bridge networks not named docker0 or br-<id> in the isolation rules, and Docker's names in tsnet ls and inspect are off until it answers";

/** Inspects running at once during a resync. */
const RESYNC_CONCURRENCY = 8;

function endpointsOf(details: ContainerDetails): NamedEndpoint[] {
  if (!details.State.Running) return [];
  const containerName = details.Name.replace(/^\//, '');
  return Object.entries(details.NetworkSettings.Networks ?? {})
    .filter(([, settings]) => settings.EndpointID !== '')
    .map(([networkName, settings]) => ({
      endpointId: settings.EndpointID,
      networkId: settings.NetworkID,
      networkName,
      containerId: details.Id,
      containerName,
      aliases: [...new Set(settings.Aliases ?? [])].filter((a) => a !== containerName),
    }));
}

/**
 * The names Docker gives to endpoints: container names and network aliases
 * per endpoint ID, and network names per network ID. Plugin requests never
 * carry them, so they come from Docker's API: a full resync whenever the
 * event stream (re)connects, then one inspect per container event.
 *
 * Runs on its own, never inside a plugin request: dockerd may be waiting
 * for tsnet while tsnet would wait for dockerd. While dockerd is down the
 * last names stay, and the stream is reconnected with backoff.
 */
export class ContainerNames {
  private readonly containers = new Map<string, NamedEndpoint[]>();
  private readonly networks = new Map<string, string>();
  /** The Linux bridges of Docker's own bridge networks, by network ID. */
  private readonly bridges = new Map<string, string>();
  private readonly listeners = new Set<() => void>();
  /** Per container: a refresh is running; `true` = another was asked for meanwhile. */
  private readonly refreshing = new Map<string, boolean>();
  private readonly abort = new AbortController();
  private loop: Promise<void> | undefined;
  private readonly minBackoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly turnOn: string;

  constructor(
    private readonly api: DockerApi,
    private readonly log: Logger,
    options: ContainerNamesOptions = {},
  ) {
    this.minBackoffMs = options.minBackoffMs ?? 200;
    this.maxBackoffMs = options.maxBackoffMs ?? 5_000;
    this.turnOn = options.turnOn ?? "give --docker-host dockerd's API address";
  }

  /** Endpoints of running containers, by endpoint ID. */
  endpoints(): Map<string, NamedEndpoint> {
    const out = new Map<string, NamedEndpoint>();
    for (const list of this.containers.values()) for (const e of list) out.set(e.endpointId, e);
    return out;
  }

  networkName(networkId: string): string | undefined {
    return this.networks.get(networkId);
  }

  /** The Linux bridges of Docker's own bridge networks (its built-in driver's, not a plugin's). */
  dockerBridges(): string[] {
    return [...this.bridges.values()].sort();
  }

  /** `listener` runs after the names changed; returns the unsubscribe. */
  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  start(): void {
    this.loop ??= this.follow();
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.loop;
  }

  private changed(): void {
    for (const listener of this.listeners) listener();
  }

  /** Subscribe, resync, follow; after a break wait (doubling) and start again. */
  private async follow(): Promise<void> {
    let backoff = this.minBackoffMs;
    let warned = false;
    while (!this.abort.signal.aborted) {
      try {
        const events = await this.api.events(['container', 'network'], this.abort.signal);
        this.log.info('following Docker events for container names');
        backoff = this.minBackoffMs;
        warned = false;
        // Subscribed first, so nothing that happens during the resync is missed.
        const resync = this.resync().catch((error: unknown) => this.log.warn({ err: error }, 'resync with Docker failed; retrying after the next reconnect'));
        for await (const event of events) this.handle(event);
        await resync;
        this.log.warn('the Docker event stream ended; reconnecting');
      } catch (error) {
        if (this.abort.signal.aborted) break;
        // Once per outage at warn; dockerd may simply not be up yet.
        this.log[warned ? 'debug' : 'warn']({ err: error, retryInMs: backoff, turnOn: this.turnOn }, `cannot follow Docker events: ${OFF_WITHOUT_API}`);
        warned = true;
      }
      await sleep(backoff, this.abort.signal);
      backoff = Math.min(backoff * 2, this.maxBackoffMs);
    }
  }

  private handle(event: DockerEvent): void {
    const attributes = event.Actor.Attributes ?? {};
    if (event.Type === 'container' && ['start', 'die', 'destroy', 'rename'].includes(event.Action)) {
      this.refresh(event.Actor.ID);
    } else if (event.Type === 'network' && ['connect', 'disconnect'].includes(event.Action) && attributes.container) {
      if (attributes.name) this.networks.set(event.Actor.ID, attributes.name);
      this.refresh(attributes.container);
    } else if (event.Type === 'network' && event.Action === 'create' && attributes.name) {
      this.networks.set(event.Actor.ID, attributes.name);
      this.changed();
      // The event does not carry the options that may name the bridge: the listing does.
      if (attributes.type === 'bridge') void this.listNetworks().catch((error: unknown) => this.log.debug({ err: error }, 'cannot list networks'));
    } else if (event.Type === 'network' && event.Action === 'destroy') {
      const known = this.networks.delete(event.Actor.ID);
      if (this.bridges.delete(event.Actor.ID) || known) this.changed();
    }
  }

  /** Networks and every running container again; containers gone meanwhile are dropped. */
  private async resync(): Promise<void> {
    const [networks, containers] = await Promise.all([this.api.listNetworks(), this.api.listContainers()]);
    this.takeNetworks(networks);
    const running = new Set(containers.map((c) => c.Id));
    for (const id of [...this.containers.keys()]) if (!running.has(id)) this.containers.delete(id);
    this.changed();
    const ids = [...running];
    for (let i = 0; i < ids.length; i += RESYNC_CONCURRENCY) {
      await Promise.all(ids.slice(i, i + RESYNC_CONCURRENCY).map((id) => this.refresh(id)));
    }
    this.log.info({ containers: running.size, networks: networks.length }, 'container names resynced with Docker');
  }

  private async listNetworks(): Promise<void> {
    this.takeNetworks(await this.api.listNetworks());
    this.changed();
  }

  private takeNetworks(networks: readonly NetworkSummary[]): void {
    this.networks.clear();
    this.bridges.clear();
    for (const n of networks) {
      this.networks.set(n.Id, n.Name);
      const bridge = bridgeOf(n);
      if (bridge) this.bridges.set(n.Id, bridge);
    }
  }

  /**
   * Inspects the container and takes its endpoints. Refreshes of one
   * container never overlap, and one asked for while another runs runs
   * after it, so the last inspect always started after the last event.
   */
  private async refresh(id: string): Promise<void> {
    if (this.refreshing.has(id)) {
      this.refreshing.set(id, true);
      return;
    }
    this.refreshing.set(id, false);
    try {
      do {
        this.refreshing.set(id, false);
        const details = await this.api.inspectContainer(id);
        this.apply(id, details ? endpointsOf(details) : []);
      } while (this.refreshing.get(id) && !this.abort.signal.aborted);
    } catch (error) {
      // dockerd went away: keep what we had; the next resync corrects it.
      this.log.debug({ err: error, container: id }, 'cannot inspect container');
    } finally {
      this.refreshing.delete(id);
    }
  }

  private apply(id: string, endpoints: NamedEndpoint[]): void {
    const before = this.containers.get(id) ?? [];
    if (JSON.stringify(before) === JSON.stringify(endpoints)) return;
    if (endpoints.length === 0) this.containers.delete(id);
    else this.containers.set(id, endpoints);
    for (const e of endpoints) this.networks.set(e.networkId, e.networkName);
    this.changed();
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
