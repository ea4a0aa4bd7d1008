import { z } from 'zod';

/**
 * The parts of Docker Engine API answers tsnet reads, one schema per
 * message. Fields tsnet does not read are dropped; a missing or mistyped
 * field makes the answer garbage (an error), never a half-read value.
 */

/** GET /containers/json: one running container. */
export const ContainerSummary = z.object({
  Id: z.string(),
  Names: z.array(z.string()).nullish(),
  State: z.string().optional(),
});
export type ContainerSummary = z.infer<typeof ContainerSummary>;

/** One entry of NetworkSettings.Networks, keyed by network name. */
export const EndpointSettings = z.object({
  NetworkID: z.string(),
  EndpointID: z.string(),
  /** --network-alias values; Docker adds the container's short ID. null when none. */
  Aliases: z.array(z.string()).nullish(),
  IPAddress: z.string().optional(),
  GlobalIPv6Address: z.string().optional(),
});
export type EndpointSettings = z.infer<typeof EndpointSettings>;

/** GET /containers/{id}/json. */
export const ContainerDetails = z.object({
  Id: z.string(),
  /** With a leading slash: "/web". */
  Name: z.string(),
  State: z.object({ Running: z.boolean() }),
  NetworkSettings: z.object({ Networks: z.record(z.string(), EndpointSettings).nullish() }),
});
export type ContainerDetails = z.infer<typeof ContainerDetails>;

/** GET /networks: one network. */
export const NetworkSummary = z.object({
  Id: z.string(),
  Name: z.string(),
  Driver: z.string().optional(),
  /** Driver options: com.docker.network.bridge.name names a bridge network's bridge. */
  Options: z.record(z.string(), z.string()).nullish(),
});
export type NetworkSummary = z.infer<typeof NetworkSummary>;

/** One object of the GET /events stream. */
export const DockerEvent = z.object({
  Type: z.string(),
  Action: z.string(),
  Actor: z.object({
    ID: z.string(),
    Attributes: z.record(z.string(), z.string()).nullish(),
  }),
});
export type DockerEvent = z.infer<typeof DockerEvent>;
