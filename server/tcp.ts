/**
 * The TCP listener (RFC 7766): 2-byte framing, several queries per connection answered as they
 * complete, an idle timeout, a cap on open connections, and per-connection backpressure
 * ({@link StreamBudget}): reading stops while a connection has too many answers in flight or too
 * many bytes waiting to be written, and a connection whose socket stops taking its answers is
 * closed and counted (`tcpClosedOverBudget`, `tcpWriteTimeouts`).
 *
 * @module
 */
import type { BindConfig } from "../config/schema.ts";
import { frame, FramedReader } from "../dns/stream_framing.ts";
import type { Logger } from "../ops/log.ts";
import { authority } from "../upstream/upstream.ts";
import { encodeSockaddr } from "../net/linux_socket.ts";
import type { QueryDispatcher } from "./dispatcher.ts";
import { bindFlags, DRAIN_MS, type Listener } from "./listener.ts";
import { StreamBudget, type StreamCloseReason, type StreamLimits } from "./stream_budget.ts";

/**
 * Listens with SO_REUSEPORT so a successor can bind the same port during a planned restart. That
 * option is unstable in Deno: without --unstable-net (which also defines `Deno.listenDatagram`, the
 * only way to tell) using it would end the process, so the listener is then exclusive.
 */
function listenShared(bind: BindConfig): Deno.TcpListener {
  const unstableNet = typeof (Deno as { listenDatagram?: unknown }).listenDatagram === "function";
  return Deno.listen({ hostname: bind.host, port: bind.port, transport: "tcp", reusePort: unstableNet });
}

/** What the listener needs of a stream connection (a `Deno.Conn`, or server/tls.ts's TLS one). */
export type StreamConn = Pick<Deno.Conn, "read" | "write" | "close" | "remoteAddr"> & {
  setNoDelay?: (noDelay?: boolean) => void;
};

/** What the listener needs of a bound stream socket. */
export interface StreamAcceptor {
  accept(): Promise<StreamConn>;
  close(): void;
}

/** A TCP DNS listener. */
export class TcpListener implements Listener {
  readonly address: string;
  readonly flags: number;
  readonly group?: string;
  private readonly connections = new Set<StreamConn>();
  private closed = false;
  private readonly accepting: Promise<void>;

  private constructor(
    private readonly listener: StreamAcceptor,
    scheme: string,
    bind: BindConfig,
    private readonly dispatcher: QueryDispatcher,
    private readonly idleMs: number,
    private readonly maxConnections: number,
    private readonly limits: Partial<StreamLimits>,
    private readonly log: Logger,
  ) {
    this.address = `${scheme}://${authority(bind.host, bind.port)}`;
    this.flags = bindFlags(bind);
    this.group = bind.group;
    this.accepting = this.acceptLoop();
  }

  /**
   * Binds `bind` and starts serving. Throws if the port cannot be bound. `budget` overrides the
   * per-connection limits of {@link StreamBudget} (the defaults suit every deployment so far).
   */
  static listen(
    bind: BindConfig,
    dispatcher: QueryDispatcher,
    options: { idleSeconds: number; maxConnections: number; budget?: Partial<StreamLimits> },
    log: Logger,
  ): TcpListener {
    return TcpListener.on(listenShared(bind), "tcp", bind, dispatcher, options, log);
  }

  /**
   * Serves DNS over a stream `listener` that is already bound, e.g. the TLS one of DNS over TLS
   * (server/tls.ts): the same framing, budget, idle timeout and connection cap.
   */
  static on(
    listener: StreamAcceptor,
    scheme: string,
    bind: BindConfig,
    dispatcher: QueryDispatcher,
    options: { idleSeconds: number; maxConnections: number; budget?: Partial<StreamLimits> },
    log: Logger,
  ): TcpListener {
    const idleMs = (options.idleSeconds > 0 ? options.idleSeconds : 3600) * 1000;
    const { maxConnections, budget = {} } = options;
    return new TcpListener(listener, scheme, bind, dispatcher, idleMs, maxConnections, budget, log);
  }

  private async acceptLoop(): Promise<void> {
    for (;;) {
      let conn: StreamConn;
      try {
        conn = await this.listener.accept();
      } catch (e) {
        if (this.closed) return;
        this.log.warn("{address}: accept failed: {error}", {
          address: this.address,
          error: (e as Error).message,
        });
        continue;
      }
      if (this.connections.size >= this.maxConnections) {
        this.dispatcher.stats.tcpRefused++;
        conn.close();
        continue;
      }
      this.dispatcher.stats.tcpAccepted++;
      this.connections.add(conn);
      this.serve(conn).finally(() => {
        this.connections.delete(conn);
        try {
          conn.close();
        } catch {
          // already closed
        }
      });
    }
  }

  private async serve(conn: StreamConn): Promise<void> {
    conn.setNoDelay?.(true);
    const reader = new FramedReader(conn);
    const closeConn = () => {
      try {
        conn.close();
      } catch {
        // already closed
      }
    };
    const budget = new StreamBudget(conn, (reason) => {
      this.countClosed(reason);
      closeConn();
    }, this.limits);
    let idle = setTimeout(closeConn, this.idleMs);
    // The client's address as a sockaddr, once per connection, for the access rules.
    const remote = conn.remoteAddr as Deno.NetAddr;
    let peer: Uint8Array | undefined;
    try {
      peer = encodeSockaddr(remote.hostname.replace(/%.*$/, ""), remote.port);
    } catch {
      peer = undefined;
    }
    try {
      // Reads only while under budget: a client that does not read its answers stops being read.
      while (await budget.ready()) {
        const message = await reader.next();
        if (message === null) break;
        clearTimeout(idle);
        idle = setTimeout(closeConn, this.idleMs);
        budget.admit();
        const answer = this.dispatcher.answer(message, false, this, peer);
        if (answer instanceof Uint8Array) budget.send(frame(answer));
        else if (answer) answer.then((a) => budget.send(frame(a)));
        else budget.release();
      }
    } catch {
      // reset, idle close, or a message cut off mid-way: the connection is simply done
    }
    // The client may half-close after its last query: answer what is still being resolved. The
    // budget's write clocks bound this wait.
    if (!this.closed) await budget.drained();
    clearTimeout(idle);
    budget.close();
  }

  /** Counts a connection a budget rule closed. */
  private countClosed(reason: StreamCloseReason): void {
    if (reason === "over-budget") this.dispatcher.stats.tcpClosedOverBudget++;
    else this.dispatcher.stats.tcpWriteTimeouts++;
  }

  /** Stops accepting, lets answers under way go out, then closes open connections. */
  async close(drainMs = DRAIN_MS): Promise<void> {
    this.closed = true;
    this.listener.close();
    await this.dispatcher.whenIdle(drainMs);
    for (const conn of this.connections) {
      try {
        conn.close();
      } catch {
        // already closed
      }
    }
    await this.accepting;
  }
}
