/**
 * DNS over QUIC listeners (RFC 9250) on `Deno.QuicEndpoint` (needs `--unstable-net`): ALPN
 * "doq", each query on its own client-opened bidirectional stream, read to the client's FIN,
 * answered through the dispatcher like every other listener (the client's address goes with each
 * query for the access rules), then the answer written and the stream finished.
 *
 * Limits, as for DoT (server/tls.ts): connections open or in their handshake are capped at the
 * TCP connection cap (`tcpRefused` counts the refused ones), a connection without a query for
 * the idle time (`tcp-idle-time`) is closed, and so is one whose stream does not deliver its
 * query within that time. QUIC itself caps each connection at 100 open streams (queries in
 * flight) and refuses unidirectional ones. A query whose ID is not 0, or a stream that is not one
 * length-prefixed message, closes the connection with DOQ_PROTOCOL_ERROR (RFC 9250 §4.2.1,
 * §4.3.3).
 *
 * Deno 2.9.6 cannot bind a QUIC endpoint beside another on the same port (no SO_REUSEPORT for
 * `Deno.QuicEndpoint`: "Address already in use"), so a child started beside its predecessor in a
 * planned restart keeps trying to bind the port until the predecessor lets it go: DoQ clients
 * reconnect then, as they must anyway (QUIC connections live in the process).
 *
 * @module
 */
import type { BindConfig } from "../config/schema.ts";
import { frame } from "../dns/stream_framing.ts";
import type { Logger } from "../ops/log.ts";
import { encodeSockaddr } from "../net/linux_socket.ts";
import { authority } from "../upstream/upstream.ts";
import type { QueryDispatcher } from "./dispatcher.ts";
import { bindFlags, DRAIN_MS, type Listener } from "./listener.ts";
import type { ListenerCertificate } from "./tls.ts";

/** DoQ error codes (RFC 9250 §4.3). */
const DOQ_NO_ERROR = 0;
const DOQ_PROTOCOL_ERROR = 2;
/** Streams a client may have open at once on one connection (queries in flight). */
const MAX_STREAMS = 100;
/** How often a successor tries the port its predecessor still holds. */
const BIND_RETRY_MS = 100;

/** How a DoQ listener is limited. */
export interface QuicListenOptions {
  readonly idleSeconds: number;
  readonly maxConnections: number;
  /** Keep trying a busy port (a predecessor holds it during a planned restart) instead of failing. */
  readonly waitForPort?: boolean;
}

/** One client connection: its address as a sockaddr, its idle clock. */
interface Client {
  readonly conn: Deno.QuicConn;
  readonly peer?: Uint8Array;
  idle?: ReturnType<typeof setTimeout>;
}

/** A DNS-over-QUIC listener. */
export class QuicListener implements Listener {
  readonly address: string;
  readonly flags: number;
  readonly group?: string;
  private endpoint?: Deno.QuicEndpoint;
  private listener?: Deno.QuicListener;
  private readonly clients = new Set<Client>();
  /** Connections still in their handshake (they count against the cap). */
  private handshaking = 0;
  private closed = false;
  private readonly idleMs: number;
  private retry?: ReturnType<typeof setTimeout>;

  private constructor(
    private readonly bind: BindConfig,
    private readonly dispatcher: QueryDispatcher,
    private readonly certificate: ListenerCertificate,
    private readonly maxConnections: number,
    idleSeconds: number,
    private readonly log: Logger,
  ) {
    this.address = `quic://${authority(bind.host, bind.port)}`;
    this.flags = bindFlags(bind);
    this.group = bind.group;
    this.idleMs = (idleSeconds > 0 ? idleSeconds : 3600) * 1000;
  }

  /**
   * Binds `bind` (UDP) and starts serving. Throws if the port cannot be bound, unless
   * `waitForPort` is set and the port is only busy: then it keeps trying in the background.
   */
  static listen(
    bind: BindConfig,
    dispatcher: QueryDispatcher,
    certificate: ListenerCertificate,
    options: QuicListenOptions,
    log: Logger,
  ): QuicListener {
    const quic = Deno as { QuicEndpoint?: unknown };
    if (typeof quic.QuicEndpoint !== "function") {
      throw new Error("DNS over QUIC needs Deno's QUIC API: run with --unstable-net");
    }
    const listener = new QuicListener(
      bind,
      dispatcher,
      certificate,
      options.maxConnections,
      options.idleSeconds,
      log,
    );
    try {
      listener.start();
    } catch (e) {
      if (!(options.waitForPort && e instanceof Deno.errors.AddrInUse)) throw e;
      log.warn("{address}: the port is still held (by the child this one replaces?); retrying", {
        address: listener.address,
      });
      listener.retryBind();
    }
    return listener;
  }

  /** Binds the endpoint and starts accepting. Throws what binding throws. */
  private start(): void {
    const endpoint = new Deno.QuicEndpoint({ hostname: this.bind.host, port: this.bind.port });
    try {
      this.listener = endpoint.listen({
        alpnProtocols: ["doq"],
        cert: this.certificate.cert,
        key: this.certificate.key,
        maxIdleTimeout: this.idleMs,
        maxConcurrentBidirectionalStreams: MAX_STREAMS,
        maxConcurrentUnidirectionalStreams: 0,
      });
    } catch (e) {
      endpoint.close();
      throw e;
    }
    this.endpoint = endpoint;
    this.acceptLoop(this.listener);
  }

  private retryBind(): void {
    this.retry = setTimeout(() => {
      this.retry = undefined;
      if (this.closed) return;
      try {
        this.start();
        this.log.info("{address}: bound", { address: this.address });
      } catch (e) {
        if (e instanceof Deno.errors.AddrInUse) return this.retryBind();
        this.log.error("{address}: cannot bind: {error}", {
          address: this.address,
          error: (e as Error).message,
        });
      }
    }, BIND_RETRY_MS);
  }

  private async acceptLoop(listener: Deno.QuicListener): Promise<void> {
    for (;;) {
      let incoming: Deno.QuicIncoming;
      try {
        incoming = await listener.incoming();
      } catch {
        return; // stopped
      }
      if (this.closed) return incoming.refuse();
      if (this.clients.size + this.handshaking >= this.maxConnections) {
        this.dispatcher.stats.tcpRefused++;
        incoming.refuse();
        continue;
      }
      this.handshaking++;
      incoming.accept<false>().then(
        (conn) => {
          this.handshaking--;
          if (this.closed) return conn.close({ closeCode: DOQ_NO_ERROR, reason: "" });
          this.dispatcher.stats.tcpAccepted++;
          this.serve(conn);
        },
        () => this.handshaking--, // a failed handshake (wrong ALPN, garbage, timeout) ends only that one
      );
    }
  }

  private async serve(conn: Deno.QuicConn): Promise<void> {
    let peer: Uint8Array | undefined;
    try {
      const remote = conn.remoteAddr;
      peer = encodeSockaddr(remote.hostname.replace(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/i, "$1"), remote.port);
    } catch {
      peer = undefined;
    }
    const client: Client = { conn, peer };
    this.clients.add(client);
    this.touch(client);
    conn.closed.catch(() => {}).finally(() => {
      clearTimeout(client.idle);
      this.clients.delete(client);
    });
    try {
      for await (const stream of conn.incomingBidirectionalStreams) {
        this.touch(client);
        this.answer(client, stream);
      }
    } catch {
      // the connection closed
    }
  }

  /** Restarts the connection's idle clock: closed after `idleMs` without a new query. */
  private touch(client: Client): void {
    clearTimeout(client.idle);
    client.idle = setTimeout(() => close(client.conn, DOQ_NO_ERROR, "idle"), this.idleMs);
  }

  /** Reads one query to FIN, answers it on the same stream, and finishes the stream. */
  private async answer(client: Client, stream: Deno.QuicBidirectionalStream): Promise<void> {
    const reader = stream.readable.getReader();
    // A stream that does not deliver its query in time ends its connection (its slot is held).
    const deadline = setTimeout(() => close(client.conn, DOQ_PROTOCOL_ERROR, "query not sent"), this.idleMs);
    let query: Uint8Array | null;
    try {
      query = await readQuery(reader);
    } catch {
      return; // reset by the client, or the connection closed
    } finally {
      clearTimeout(deadline);
    }
    if (query === null || query.length < 12 || query[0] !== 0 || query[1] !== 0) {
      // Not one length-prefixed message, or an ID other than 0.
      this.dispatcher.stats.malformed++;
      return close(client.conn, DOQ_PROTOCOL_ERROR, "not a DoQ query");
    }
    const result = this.dispatcher.answer(query, false, this, client.peer);
    const answer = result instanceof Promise ? await result : result;
    const writer = stream.writable.getWriter();
    try {
      if (answer) await writer.write(frame(answer));
      await writer.close();
    } catch {
      // the client stopped the stream or went away
    }
  }

  /** Stops accepting, lets answers under way go out, then closes open connections. */
  async close(drainMs = DRAIN_MS): Promise<void> {
    this.closed = true;
    clearTimeout(this.retry);
    try {
      this.listener?.stop();
    } catch {
      // already stopped
    }
    await this.dispatcher.whenIdle(drainMs);
    for (const client of this.clients) close(client.conn, DOQ_NO_ERROR, "");
    try {
      this.endpoint?.close({ closeCode: DOQ_NO_ERROR, reason: "" });
    } catch {
      // already closed
    }
  }
}

/** Closes a connection with a DoQ error code; quiet when it is already closed. */
function close(conn: Deno.QuicConn, code: number, reason: string): void {
  try {
    conn.close({ closeCode: code, reason });
  } catch {
    // already closed
  }
}

/**
 * Reads a stream to its end; the DNS message when it held exactly one length-prefixed message,
 * else null (also when it grows past one message).
 */
async function readQuery(reader: ReadableStreamDefaultReader<Uint8Array>): Promise<Uint8Array | null> {
  let buffer = new Uint8Array(0);
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    const joined = new Uint8Array(buffer.length + value.length);
    joined.set(buffer);
    joined.set(value, buffer.length);
    buffer = joined;
    if (buffer.length > 2 + 65535) {
      reader.cancel().catch(() => {});
      return null;
    }
  }
  if (buffer.length < 2) return null;
  const length = (buffer[0] << 8) | buffer[1];
  return buffer.length === 2 + length ? buffer.subarray(2) : null;
}
