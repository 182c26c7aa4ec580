/**
 * DNS over QUIC to one upstream (RFC 9250): one QUIC connection per server (ALPN "doq", or the
 * tokens of `-alpn`), reused;
 * each query on its own bidirectional stream, sent with message ID 0 (§4.2.1) and a 2-byte length
 * prefix, the stream's send side closed (FIN) after it; the answer is the one message the server
 * sends back on that stream. The connection is opened on demand from one UDP endpoint the server
 * keeps, closed after a while without queries, and reopened with a growing delay after failed
 * attempts.
 *
 * Deno's QUIC API (`Deno.connectQuic`, `--unstable-net`, Deno 2.9.6) always checks the certificate
 * chain against the built-in roots plus `caCerts`, checks the `serverName` it sends as SNI, and
 * does not expose the peer certificate. So, as for DoT, `-no-check-certificate`, a
 * `-tls-host-verify` name other than the SNI name, and `-spki-pin` make the server fail every
 * exchange with a reason saying so (logged once). A query given up cannot stop its stream: Deno
 * 2.9.6 sends no STOP_SENDING for a read under way (and could not send DOQ_REQUEST_CANCELLED:
 * stream error codes cannot be chosen), so the stream stays open until the server answers; with
 * 50 of them left unanswered for 5 s the connection is replaced. A reused connection found closed by the
 * server is replaced and the query sent once more.
 *
 * @module
 */
import type { TlsOptions, UpstreamConfig } from "../config/schema.ts";
import { frame } from "../dns/stream_framing.ts";
import { buildUpstreamQuery, type Question, readId, sameQuestion } from "../dns/wire.ts";
import { type CaTrust, loadCaCerts } from "./ca_certs.ts";
import { authority, type Upstream, UpstreamError } from "./upstream.ts";
import type { Cancel } from "./cancel.ts";
import { OpenFailure, ReusedConnection, type UpstreamLog } from "./reused_connection.ts";

/** The ALPN token of DNS over QUIC (RFC 9250 §4.1.1). */
export const DOQ_ALPN = "doq";

/** Tunables, mainly for tests. */
export interface QuicUpstreamOptions {
  /** Milliseconds without queries after which the connection is closed (default 10 s). */
  readonly idleMs?: number;
  /** First delay after a failed connection attempt (default 500 ms); doubles up to `maxBackoffMs`. */
  readonly backoffMs?: number;
  readonly maxBackoffMs?: number;
  /** A given-up stream still unanswered after this long counts as stuck (default 5 s). */
  readonly stuckMs?: number;
  /**
   * Where problems go (default: the "upstream" logger). Refusals and certificate failures are
   * errors, unreachable servers warnings.
   */
  readonly log?: UpstreamLog;
}

/** Why the unstable QUIC API is missing, when it is. */
function quicMissing(): string | undefined {
  const api = Deno as { connectQuic?: unknown; QuicEndpoint?: unknown };
  if (typeof api.connectQuic === "function" && typeof api.QuicEndpoint === "function") return undefined;
  return "DNS over QUIC needs Deno's QUIC API: run with --unstable-net";
}

/** Why Deno's QUIC client cannot check this server the way its options ask (undefined when it can). */
function refusalOf(tls: TlsOptions, serverName: string): string | undefined {
  if (!tls.verifyCertificate) {
    return "-no-check-certificate is not supported: Deno's QUIC client always checks certificates " +
      "(only --unsafely-ignore-certificate-errors, for the whole process, skips it); give the " +
      "server's CA with ca-file instead";
  }
  if (tls.spkiPins.length > 0) {
    return "-spki-pin is not supported: Deno's QUIC connection does not expose the server's certificate, " +
      "so the pin cannot be checked; remove the pin or the server";
  }
  if (tls.verifyName && tls.verifyName.toLowerCase() !== serverName.toLowerCase()) {
    return `-tls-host-verify ${tls.verifyName} is not supported: Deno checks the certificate against ` +
      `the SNI name (${serverName}); set -host-name ${tls.verifyName}`;
  }
  return undefined;
}

/** The message of whatever was thrown. */
function reasonOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/**
 * Given-up streams left unanswered by the server (for `stuckMs`) at which the connection is closed
 * and a new one opened: servers allow about 100 open streams per connection.
 */
const MAX_STUCK_STREAMS = 50;

/** One QUIC connection and how many exchanges are using it. */
class Connection {
  inFlight = 0;
  /** Given-up streams the server has not answered within `stuckMs`. */
  stuck = 0;
  closed = false;

  constructor(readonly conn: Deno.QuicConn, private readonly onClose: (c: Connection) => void) {
    // The promise rejects when the connection ends other than by a CONNECTION_CLOSE (idle timeout).
    conn.closed.then(() => this.close(), () => this.close());
  }

  /** True while exchanges use the connection. */
  get busy(): boolean {
    return this.inFlight > 0;
  }

  /** Closes the connection (DOQ_NO_ERROR); streams still open fail. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.conn.close({ closeCode: 0, reason: "" });
    } catch {
      // already closed
    }
    this.onClose(this);
  }
}

/**
 * Resolves as `promise` does, or rejects as soon as `cancel` fires; what `promise` brings after
 * the cancel is handed to `discard`.
 */
function abortable<T>(promise: Promise<T>, cancel: Cancel, discard: (value: T) => void): Promise<T> {
  if (cancel.cancelled) {
    promise.then(discard, () => {});
    return Promise.reject(new Error("aborted"));
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => {
      promise.then(discard, () => {});
      reject(new Error("aborted"));
    };
    cancel.listen(onAbort);
    promise.then(resolve, reject).finally(() => cancel.unlisten(onAbort));
  });
}

/** Ends both halves of a stream not used after all (STOP_SENDING and RESET_STREAM). */
function resetStream(stream: Deno.QuicBidirectionalStream): void {
  stream.readable.cancel().catch(() => {});
  stream.writable.abort().catch(() => {});
}

/** Reads what is left of a stream in the background, to its end (or its failure). */
function drain(reader: ReadableStreamDefaultReader<Uint8Array>): void {
  (async () => {
    for (;;) if ((await reader.read()).done) return;
  })().catch(() => {});
}

/** Reads one length-prefixed DNS message from a DoQ stream; throws when the stream ends early. */
async function readAnswer(reader: ReadableStreamDefaultReader<Uint8Array>): Promise<Uint8Array> {
  let buffer = new Uint8Array(0);
  for (;;) {
    if (buffer.length >= 2) {
      const length = (buffer[0] << 8) | buffer[1];
      if (buffer.length >= 2 + length) {
        if (buffer.length > 2 + length) throw new Error("more than one message on the stream");
        drain(reader); // the server's FIN, so the stream is done with on both sides
        return buffer.subarray(2);
      }
    }
    const { value, done } = await reader.read();
    if (done) {
      throw new Error(
        buffer.length === 0 ? "stream closed without an answer" : "stream ended inside the answer",
      );
    }
    const joined = new Uint8Array(buffer.length + value.length);
    joined.set(buffer);
    joined.set(value, buffer.length);
    buffer = joined;
  }
}

/** A DNS-over-QUIC upstream server. */
export class QuicUpstream implements Upstream {
  readonly address: string;
  readonly host: string;
  readonly port: number;
  /** The name sent as SNI and checked in the certificate (the IP when none is configured). */
  readonly serverName: string;
  /** Why this server can never be used, when a setting cannot be honoured. */
  readonly refusal?: string;
  private readonly caCerts: string[] = [];
  /** The ALPN tokens offered (`-alpn`; "doq" by default). */
  readonly alpn: readonly string[];
  private readonly idleMs: number;
  private readonly stuckMs: number;
  /** The shared connection: opened on demand, closed when idle, retried after a delay. */
  private readonly reused: ReusedConnection<Connection>;
  private endpoint?: Deno.QuicEndpoint;

  constructor(config: UpstreamConfig, trust: CaTrust = {}, options: QuicUpstreamOptions = {}) {
    this.host = config.host;
    this.port = config.port;
    this.address = `quic://${authority(config.host, config.port)}`;
    this.idleMs = options.idleMs ?? 10_000;
    this.stuckMs = options.stuckMs ?? 5_000;
    const tls: TlsOptions = config.tls ?? { verifyCertificate: true, spkiPins: [] };
    const named = tls.hostName && tls.hostName !== "-" ? tls.hostName : undefined;
    this.serverName = named ?? config.host;
    this.alpn = tls.alpn?.length ? tls.alpn : [DOQ_ALPN];
    let refusal = quicMissing() ?? refusalOf(tls, this.serverName);
    if (!refusal) {
      try {
        this.caCerts = loadCaCerts(trust);
      } catch (e) {
        refusal = reasonOf(e);
      }
    }
    if (refusal) this.refusal = refusal;
    this.reused = new ReusedConnection({
      ...options,
      address: this.address,
      idleMs: this.idleMs,
      refusal: this.refusal,
      open: () => this.open(),
    });
  }

  /** Completed handshakes so far (for tests and statistics). */
  get connections(): number {
    return this.reused.opened;
  }

  /** Closes the connection and the endpoint; exchanges under way fail. Idempotent. */
  close(): void {
    this.reused.close("upstream closed");
    try {
      this.endpoint?.close({ closeCode: 0, reason: "" });
    } catch {
      // already closed
    }
    this.endpoint = undefined;
  }

  /** Sends `q` on a new stream of the shared connection (opening it if needed); returns the answer. */
  async exchange(q: Question, cancel: Cancel): Promise<Uint8Array> {
    this.reused.begin(cancel);
    try {
      for (let attempt = 0;; attempt++) {
        const reused = this.reused.isOpen;
        const connection = await this.reused.connection(cancel);
        connection.inFlight++;
        try {
          const stream = await abortable(
            connection.conn.createBidirectionalStream({ waitUntilAvailable: true }),
            cancel,
            resetStream,
          );
          return await this.ask(q, stream, cancel, connection);
        } catch (e) {
          // A reused connection the server had closed (restart, its idle timeout): once more on a new one.
          if (cancel.cancelled || !reused || !connection.closed || attempt > 0) throw e;
        } finally {
          connection.inFlight--;
        }
      }
    } catch (e) {
      if (e instanceof UpstreamError) throw e;
      throw new UpstreamError(this.address, cancel.cancelled ? "aborted" : reasonOf(e));
    } finally {
      this.reused.end();
    }
  }

  /** Writes the query (ID 0) and FIN on `stream`, reads the one answer and checks it. */
  private async ask(
    q: Question,
    stream: Deno.QuicBidirectionalStream,
    cancel: Cancel,
    connection: Connection,
  ): Promise<Uint8Array> {
    const query = buildUpstreamQuery(q, 0);
    const reader = stream.readable.getReader();
    const writer = stream.writable.getWriter();
    let sent = false;
    writer.write(frame(query)).then(() => writer.close()).then(() => sent = true, () => {
      // a send side the server reset shows up as a failed read as well
    });
    // The read goes on to the stream's end whatever becomes of this exchange: Deno 2.9.6 cannot
    // stop a pending read (it sends no STOP_SENDING then), so a stream given up stays open until
    // the server answers it, and counts as abandoned until then.
    const reading = readAnswer(reader);
    let answer: Uint8Array;
    try {
      answer = await abortable(reading, cancel, () => {});
    } catch (e) {
      if (cancel.cancelled) {
        if (!sent) writer.abort().catch(() => {}); // RESET_STREAM for a query not sent whole
        // Still unanswered after `stuckMs`: the server holds the stream; with too many such
        // streams the connection is replaced.
        let stuck = false;
        const timer = setTimeout(() => {
          stuck = true;
          if (++connection.stuck >= MAX_STUCK_STREAMS) connection.close();
        }, this.stuckMs);
        Deno.unrefTimer(timer);
        reading.catch(() => {}).finally(() => {
          clearTimeout(timer);
          if (stuck) connection.stuck--;
        });
      }
      throw e;
    }
    if (answer.length < 12 || !(answer[2] & 0x80)) throw new Error("not a DNS response");
    if (readId(answer) !== 0) throw new Error(`answer has ID ${readId(answer)}, not 0 (RFC 9250 §4.2.1)`);
    if (!sameQuestion(query, q.questionEnd, answer)) throw new Error("answer is for another question");
    return answer;
  }

  /** The UDP endpoint every connection of this server is opened from. */
  private clientEndpoint(): Deno.QuicEndpoint {
    this.endpoint ??= new Deno.QuicEndpoint({
      hostname: this.host.includes(":") ? "::" : "0.0.0.0",
      port: 0,
    });
    return this.endpoint;
  }

  /** Opens and handshakes a connection; a failure is logged as an error when it is the server's. */
  private async open(): Promise<Connection> {
    let conn: Deno.QuicConn | undefined;
    try {
      conn = await Deno.connectQuic({
        hostname: this.host,
        port: this.port,
        serverName: this.serverName,
        alpnProtocols: [...this.alpn],
        endpoint: this.clientEndpoint(),
        ...(this.caCerts.length ? { caCerts: this.caCerts } : {}),
        // A server that went silent is noticed within this time even while queries wait.
        maxIdleTimeout: Math.max(this.idleMs, 5_000) + 5_000,
      });
      await conn.handshake;
      if (!conn.protocol || !this.alpn.includes(conn.protocol)) {
        throw new Error(`the server chose ALPN ${conn.protocol ?? "none"}`);
      }
      if (this.reused.closed) throw new Error("upstream closed");
      return new Connection(conn, (c) => this.reused.forget(c));
    } catch (e) {
      try {
        conn?.close({ closeCode: 0, reason: "" });
      } catch {
        // already closed
      }
      const reason = `QUIC handshake failed (server name ${this.serverName}): ${reasonOf(e)}`;
      throw new OpenFailure(
        reason,
        /certificate|handshake failed|ALPN|protocol/i.test(reasonOf(e)) ? "error" : "warn",
      );
    }
  }
}
