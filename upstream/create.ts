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
import { BatchedUdpUpstream, OutgoingSocketPool } from "./udp_batched.ts";
import { Socks5UdpUpstream } from "./udp_socks5.ts";
import { authority, type Upstream, UpstreamError } from "./upstream.ts";

/**
 * Creates the {@link Upstream} for one configured server, by its transport. UDP servers use the
 * batched outgoing sockets of `udpPool` when one is given, else node:dgram; a UDP server with
 * `-set-mark`/`-interface` gets batched sockets of its own carrying them, and one with a SOCKS5
 * proxy goes through UDP ASSOCIATE. TLS, HTTPS and QUIC servers check certificates against `trust`
 * (`ca-file`, `ca-path`) besides the built-in roots; a QUIC server cannot go through a proxy. A server given by host name is resolved through `names`
 * (the bootstrap servers, asked as they are configured: through their own proxies, not this
 * server's), unless `-host-ip` pins it; its proxy, mark and interface then apply to the
 * connections to the address it resolved to, as SmartDNS does. A server whose settings cannot be
 * honoured is refused: every exchange fails with the reason (in its `refusal`), it is never asked
 * another way.
 */
export function createUpstream(
  config: UpstreamConfig,
  udpPool?: OutgoingSocketPool,
  trust?: TlsTrust,
  names?: BootstrapResolver,
): Upstream {
  const refusal = refusalOf(config, udpPool);
  if (refusal) return refused(config, refusal);
  if (config.name !== undefined) {
    // Given by host name: the protocol's upstream for the address `names` resolves it to (or -host-ip).
    return new HostNameUpstream(config, {
      resolver: names,
      create: (c) => createUpstream(c, udpPool, trust),
    });
  }
  const marked = config.setMark !== undefined || config.interface !== undefined;
  switch (config.transport) {
    case "udp":
      if (config.proxy) return new Socks5UdpUpstream(config.host, config.port, config.proxy);
      if (marked) return markedUdp(config);
      return udpPool
        ? new BatchedUdpUpstream(config.host, config.port, udpPool)
        : new UdpUpstream(config.host, config.port);
    case "tcp":
      return new TcpUpstream(config.host, config.port, config.proxy, config.tcpKeepalive);
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

/** Why `config` cannot be honoured whatever address it has (known before any name resolves), if it cannot. */
function refusalOf(config: UpstreamConfig, udpPool: OutgoingSocketPool | undefined): string | undefined {
  const marked = config.setMark !== undefined || config.interface !== undefined;
  if (marked && (config.transport !== "udp" || config.proxy)) {
    return "-set-mark and -interface are only honoured on plain UDP servers";
  }
  if (marked && !udpPool) return `${markedWhat(config)} ${NEEDS_BATCHED}`;
  if (config.transport === "quic" && config.proxy) return `proxy ${config.proxy.name}: ${QUIC_NO_PROXY}`;
  if (config.transport === "udp" && config.proxy && config.proxy.kind !== "socks5") {
    return `proxy ${config.proxy.name} is an HTTP proxy, which carries no UDP (SmartDNS: only socks5 ` +
      "supports udp); use a socks5:// proxy or a tcp:// server";
  }
  return undefined;
}

/**
 * A UDP server whose sockets carry SO_MARK / SO_BINDTODEVICE (needs the shared batched sockets to
 * exist, see {@link refusalOf}): batched sockets of its own, opened
 * once here so a refused option (no capability, no such interface) refuses the server. Its
 * truncated answers are not retried over TCP (that socket could not carry the options).
 */
function markedUdp(config: UpstreamConfig): Upstream {
  const what = markedWhat(config);
  const pool = new OutgoingSocketPool({ mark: config.setMark, device: config.interface });
  try {
    pool.probe(config.host.includes(":") ? "v6" : "v4");
  } catch (e) {
    pool.close();
    return refused(config, `${what}: ${(e as Error).message}`);
  }
  const address = `udp://${authority(config.host, config.port)}`;
  const tcp: Pick<Upstream, "exchange"> = {
    exchange: () =>
      Promise.reject(
        new UpstreamError(address, `the answer came truncated and a TCP retry could not carry ${what}`),
      ),
  };
  return new BatchedUdpUpstream(config.host, config.port, pool, { tcp, ownPool: true });
}

/** Why a DoQ server with a proxy is refused (config/smartdns/proxies.ts and config/toml.ts say so too). */
export const QUIC_NO_PROXY = "DNS over QUIC cannot go through a proxy: Deno's QUIC endpoint sends its " +
  "own UDP packets (no SOCKS5 UDP ASSOCIATE, no HTTP CONNECT for UDP); remove -proxy or use a " +
  "tls:// or https:// server";

/** Why a marked server without the batched sockets is refused. */
const NEEDS_BATCHED = "needs the batched UDP sockets (Linux, --allow-ffi, udp-transport not portable)";

/** The socket options of a marked server, as written in smartdns.conf. */
function markedWhat(config: UpstreamConfig): string {
  return [
    config.setMark !== undefined ? `-set-mark ${config.setMark}` : "",
    config.interface !== undefined ? `-interface ${config.interface}` : "",
  ].filter(Boolean).join(" ");
}

/** A server that is never asked: every exchange fails with `reason`, also its `refusal`. */
function refused(config: UpstreamConfig, reason: string): Upstream & { refusal: string } {
  const address = `${config.transport}://${authority(config.host, config.port)}`;
  return {
    address,
    refusal: reason,
    close() {},
    exchange: () => Promise.reject(new UpstreamError(address, `refused: ${reason}`)),
  };
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
