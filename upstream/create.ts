/**
 * Picks the upstream implementation for a configured server.
 *
 * @module
 */
import type { UpstreamConfig } from "../config/schema.ts";
import { TcpUpstream } from "./tcp.ts";
import { UdpUpstream } from "./udp.ts";
import type { Upstream } from "./upstream.ts";

/** Creates the {@link Upstream} for one configured server, by its transport. */
export function createUpstream(config: UpstreamConfig): Upstream {
  switch (config.transport) {
    case "udp":
      return new UdpUpstream(config.host, config.port);
    case "tcp":
      return new TcpUpstream(config.host, config.port);
  }
}
