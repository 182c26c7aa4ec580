/**
 * Picks the upstream implementation for a configured server.
 *
 * @module
 */
import type { UpstreamConfig } from "../config/schema.ts";
import type { BootstrapResolver } from "./bootstrap.ts";
import { HostNameUpstream } from "./host_name.ts";
import { HttpsUpstream } from "./https.ts";
import { QuicUpstream } from "./quic.ts";
import { TcpUpstream } from "./tcp.ts";
import { type TlsTrust, TlsUpstream } from "./tls.ts";
import { UdpUpstream } from "./udp.ts";
import { BatchedUdpUpstream, type OutgoingSocketPool } from "./udp_batched.ts";
import { type Upstream, UpstreamError } from "./upstream.ts";

/**
 * Creates the {@link Upstream} for one configured server, by its transport. UDP servers use the
 * batched outgoing sockets of `udpPool` when one is given, else node:dgram. TLS, HTTPS and QUIC
 * servers check certificates against `trust` (`ca-file`, `ca-path`) besides the built-in roots. A
 * server given by host name is resolved through `names` (the bootstrap servers), unless `-host-ip`
 * pins it.
 */
export function createUpstream(
  config: UpstreamConfig,
  udpPool?: OutgoingSocketPool,
  trust?: TlsTrust,
  names?: BootstrapResolver,
): Upstream {
  if (config.name !== undefined) {
    // Given by host name: the protocol's upstream for the address `names` resolves it to (or -host-ip).
    return new HostNameUpstream(config, {
      resolver: names,
      create: (c) => createUpstream(c, udpPool, trust),
    });
  }
  switch (config.transport) {
    case "udp":
      return udpPool
        ? new BatchedUdpUpstream(config.host, config.port, udpPool)
        : new UdpUpstream(config.host, config.port);
    case "tcp":
      return new TcpUpstream(config.host, config.port);
    case "https":
      return new HttpsUpstream(config, trust);
    case "tls":
      return new TlsUpstream(config, trust);
    case "quic":
      return new QuicUpstream(config, trust);
    default:
      return unbuilt(config);
  }
}

/** A server whose transport has no implementation yet: every exchange fails, saying why. */
function unbuilt(config: UpstreamConfig): Upstream {
  const address = `${config.transport}://${config.host}:${config.port}`;
  return {
    address,
    close() {},
    exchange: () =>
      Promise.reject(new UpstreamError(address, `${config.transport} upstreams are not built yet`)),
  };
}
