/**
 * Picks the upstream implementation for a configured server.
 *
 * @module
 */
import type { UpstreamConfig } from "../config/schema.ts";
import { TcpUpstream } from "./tcp.ts";
import { UdpUpstream } from "./udp.ts";
import { BatchedUdpUpstream, type OutgoingSocketPool } from "./udp_batched.ts";
import type { Upstream } from "./upstream.ts";

/**
 * Creates the {@link Upstream} for one configured server, by its transport. UDP servers use the
 * batched outgoing sockets of `udpPool` when one is given, else node:dgram.
 */
export function createUpstream(config: UpstreamConfig, udpPool?: OutgoingSocketPool): Upstream {
  switch (config.transport) {
    case "udp":
      return udpPool
        ? new BatchedUdpUpstream(config.host, config.port, udpPool)
        : new UdpUpstream(config.host, config.port);
    case "tcp":
      return new TcpUpstream(config.host, config.port);
  }
}
