/**
 * The UDP listener sockets the guardian holds for its children. The guardian binds each UDP
 * listener a child would serve with the batched transport once, and every child inherits the
 * descriptor (ops/inherited_sockets.ts) instead of binding its own. The socket then outlives any
 * child: datagrams that arrive while a child is dead (kill -9, a crash) or hung queue in the
 * kernel, in a receive buffer made large for that, and the next child answers them; in a planned
 * restart both children read the same queue while they overlap.
 *
 * Only UDP: the child's TCP, DoT and DoH listeners are `Deno.listen` sockets (no way to wrap a
 * descriptor), DoQ has no descriptor either; they stay bound by the child, and a planned restart
 * binds them beside the old child with SO_REUSEPORT. (`node:net`'s `server.listen({ fd })` does
 * serve an inherited listening socket in Deno 2.9.6, should the TCP listener ever move to it.)
 *
 * A bind the guardian cannot take (a port below 1024 once it has dropped to `user`, an address
 * gone) is reported, and the child binds that listener itself, as it does without a guardian.
 *
 * @module
 */
import type { BindConfig, Config } from "../config/schema.ts";
import { LinuxUdpSocket, loadLibc } from "../net/linux_socket.ts";
import { formatInheritedSockets, NO_HELD_SOCKETS_ENV, udpListenerKey } from "../ops/inherited_sockets.ts";
import type { Logger } from "../ops/log.ts";

/**
 * The receive buffer asked for (the kernel doubles it for its bookkeeping): a small query takes
 * about 1 KB of it queued, so ~30k queries, over a second at 20k per second, wait for the next
 * child. Past net.core.rmem_max only with CAP_NET_ADMIN (SO_RCVBUFFORCE).
 */
export const HELD_RECEIVE_BUFFER_BYTES = 16 * 1024 * 1024;

/**
 * The UDP binds of `config` that a child serves with the batched transport, and so can take from
 * the guardian: none when `udp-transport` is `portable`, or batched syscalls are not usable here
 * (the child's own choice, child.ts, rests on the same check). One per address.
 */
export function batchedUdpBinds(config: Config): BindConfig[] {
  if (config.server.udpTransport === "portable") return [];
  try {
    loadLibc();
  } catch {
    return [];
  }
  const seen = new Set<string>();
  return config.server.binds.filter((b) => {
    if (b.transport !== "udp") return false;
    const key = udpListenerKey(b.host, b.port);
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

/** The UDP listener sockets the guardian binds and every child inherits. */
export class HeldUdpSockets {
  private readonly held = new Map<string, LinuxUdpSocket>();
  private sizeLogged = false;
  /** False when {@link NO_HELD_SOCKETS_ENV} is set: children bind everything themselves. */
  readonly enabled: boolean;

  constructor(private readonly log: Logger) {
    let off = false;
    try {
      off = Deno.env.get(NO_HELD_SOCKETS_ENV) === "1";
    } catch {
      // no env access: the default
    }
    this.enabled = !off;
  }

  /** How many sockets are held. */
  get size(): number {
    return this.held.size;
  }

  /**
   * Binds those of `config`'s batched UDP listeners not held yet. One that cannot be bound is
   * logged and left to the child.
   */
  bindFor(config: Config): void {
    if (!this.enabled) return;
    for (const bind of batchedUdpBinds(config)) {
      const key = udpListenerKey(bind.host, bind.port);
      if (this.held.has(key)) continue;
      try {
        const socket = LinuxUdpSocket.bindInheritable(bind.host, bind.port, {
          receiveBufferBytes: HELD_RECEIVE_BUFFER_BYTES,
        });
        this.held.set(key, socket);
        if (!this.sizeLogged) {
          this.sizeLogged = true;
          this.log.info("guardian holds the UDP listeners for its children; receive buffer {kb} KB", {
            kb: Math.round(socket.receiveBufferBytes() / 1024),
          });
        }
        this.log.debug("guardian holds {key} (descriptor {fd})", { key, fd: socket.fd });
      } catch (e) {
        this.log.warn("guardian cannot hold {key} ({error}); each child binds it itself", {
          key,
          error: (e as Error).message,
        });
      }
    }
  }

  /** Closes the held sockets `config` no longer lists (its children have stopped using them). */
  keepOnly(config: Config): void {
    const wanted = new Set(batchedUdpBinds(config).map((b) => udpListenerKey(b.host, b.port)));
    for (const [key, socket] of this.held) {
      if (this.enabled && wanted.has(key)) continue;
      socket.close();
      this.held.delete(key);
      this.log.info("guardian no longer holds {key}", { key });
    }
  }

  /** The value of the child's inherited-sockets variable; undefined when nothing is held. */
  environment(): string | undefined {
    if (this.held.size === 0) return undefined;
    return formatInheritedSockets(new Map([...this.held].map(([key, socket]) => [key, socket.fd])));
  }

  /** Closes every held socket (the guardian stops). */
  closeAll(): void {
    for (const socket of this.held.values()) socket.close();
    this.held.clear();
  }
}
