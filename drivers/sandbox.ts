import { existsSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { EndpointRecord } from './model.js';

/**
 * Where this daemon finds the sandbox files dockerd names in Join
 * (`<exec-root>/netns/<id>`). A daemon in another mount namespace (the
 * managed plugin) sees dockerd's netns directory elsewhere: `netnsDir`.
 * When that directory is not there at all, the mount is wrong or dockerd
 * has made no sandbox yet: nothing can be told, so every sandbox counts as
 * alive rather than running containers losing their ports.
 */
export class SandboxFiles {
  constructor(private readonly netnsDir?: string) {}

  exists(sandboxKey: string): boolean {
    if (!this.netnsDir) return existsSync(sandboxKey);
    return !existsSync(this.netnsDir) || existsSync(join(this.netnsDir, basename(sandboxKey)));
  }

  /** Where this daemon finds the sandbox's netns file (dockerd's path, or its name under --netns-dir). */
  pathOf(sandboxKey: string): string {
    return this.netnsDir ? join(this.netnsDir, basename(sandboxKey)) : sandboxKey;
  }
}

/**
 * Whether a joined endpoint has lost its container. When dockerd destroys a
 * sandbox it hands the interfaces back to the host netns under the names the
 * driver gave them (even when tsnet is down and never hears of it), and
 * removes the sandbox's netns file: the container is gone, but a container
 * that is starting looks the same for a moment (dockerd joins it before it
 * makes its netns), so that is `unsure`. No netns file and the interface not
 * handed back either: it died with the netns, `certain`. An endpoint not
 * joined yet has no sandbox to lose.
 */
export function lostSandbox(endpoint: EndpointRecord, containerLink: string, hostLinks: ReadonlySet<string>, sandboxes: SandboxFiles): Loss | undefined {
  if (!endpoint.sandboxKey) return undefined;
  const handedBack = hostLinks.has(containerLink);
  const noNetns = !sandboxes.exists(endpoint.sandboxKey);
  if (noNetns && !handedBack) return 'certain';
  return handedBack || noNetns ? 'unsure' : undefined;
}

/** How sure a look is that an endpoint's container is gone. */
export type Loss = 'certain' | 'unsure';

/** The endpoints a look found gone, by how sure it is. */
export interface GoneEndpoints<E> {
  /** Their links are gone: no starting container looks so. */
  certain: E[];
  /** A container that is starting may look so for a moment. */
  unsure: E[];
}

/** Sorts endpoints by what `loss` says of each; those it says nothing of are alive. */
export function sortGone<E>(endpoints: readonly E[], loss: (endpoint: E) => Loss | undefined): GoneEndpoints<E> {
  const gone: GoneEndpoints<E> = { certain: [], unsure: [] };
  for (const endpoint of endpoints) {
    const how = loss(endpoint);
    if (how) gone[how].push(endpoint);
  }
  return gone;
}
