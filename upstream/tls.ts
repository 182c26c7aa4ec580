/**
 * DNS over TLS to one upstream (RFC 7858): one connection per server, reused, with queries
 * pipelined on it and answers matched by ID and question. The connection is opened on demand
 * (`Deno.connect` + `setNoDelay` + `Deno.startTls`: half the first-query time of
 * `Deno.connectTls`), closed after a while without queries, and reopened with a growing delay
 * after failed attempts.
 *
 * Deno's TLS always checks the certificate chain and the SNI name and does not expose the peer
 * certificate, so a server with `-no-check-certificate`, a `-tls-host-verify` name other than the
 * SNI name, or `-spki-pin` is connected through node:tls instead ({@link connectNodeTls}), which
 * can do each; through a proxy that is not built, and such a server is refused, saying why.
 *
 * @module
 */
import type { TlsOptions, UpstreamConfig } from "../config/schema.ts";
import { frame, FramedReader, writeAll } from "../dns/stream_framing.ts";
import { randomId } from "../dns/transaction_id.ts";
import { buildUpstreamQuery, type Question, readId, sameQuestion } from "../dns/wire.ts";
import { getLogger } from "../ops/log.ts";
import { type CaTrust, loadCaCerts } from "./ca_certs.ts";
import { dialTcp } from "./proxy_dial.ts";
import { withTcpKeepalive } from "./tcp_keepalive.ts";
import { type ByteStream, connectNodeTls } from "./node_tls_stream.ts";
import { authority, type Upstream, UpstreamError } from "./upstream.ts";
import type { Cancel } from "./cancel.ts";

export { loadCaCerts };

/** Where the CA certificates for encrypted upstreams come from (`ca-file`, `ca-path`). */
export type TlsTrust = CaTrust;

/** Tunables, mainly for tests. */
export interface TlsUpstreamOptions {
  /**
   * Milliseconds without queries after which the connection is closed (default: the server's
   * `-tcp-keepalive` timeout, else 10 s).
   */
  readonly idleMs?: number;
  /** First delay after a failed connection attempt (default 500 ms); doubles up to `maxBackoffMs`. */
  readonly backoffMs?: number;
  readonly maxBackoffMs?: number;
  /**
   * Where problems go (default: the "upstream" logger). Refusals and certificate failures are
   * errors (shown at the default log level), unreachable servers warnings.
   */
  readonly log?: (level: "error" | "warn", message: string) => void;
}

/** A query sent on a connection, waiting for its answer. */
interface Pending {
  readonly query: Uint8Array;
  readonly questionEnd: number;
  resolve(response: Uint8Array): void;
  reject(reason: string): void;
}

/** One TLS connection and the queries in flight on it. */
class Connection {
  readonly pending = new Map<number, Pending>();
  closed = false;
  private writing: Promise<void> = Promise.resolve();

  constructor(readonly conn: ByteStream, private readonly onClose: (c: Connection) => void) {
    this.readLoop();
  }

  /** Queues `data` to be written after whatever is being written. */
  write(data: Uint8Array): Promise<void> {
    const done = this.writing.then(() => writeAll(this.conn, data));
    this.writing = done.catch(() => {});
    return done;
  }

  private async readLoop(): Promise<void> {
    const reader = new FramedReader(this.conn);
    let reason = "connection closed by the server";
    try {
      for (;;) {
        const response = await reader.next();
        if (response === null) break;
        if (response.length < 12 || !(response[2] & 0x80)) continue;
        const waiting = this.pending.get(readId(response));
        if (!waiting || !sameQuestion(waiting.query, waiting.questionEnd, response)) continue;
        this.pending.delete(readId(response));
        waiting.resolve(response);
      }
    } catch (e) {
      if (!this.closed) reason = `connection failed: ${(e as Error).message}`;
    }
    this.close(reason);
  }

  /** Closes the connection; queries still waiting fail with `reason`. */
  close(reason: string): void {
    if (!this.closed) {
      this.closed = true;
      try {
        this.conn.close();
      } catch {
        // already closed
      }
      this.onClose(this);
    }
    for (const p of this.pending.values()) p.reject(reason);
    this.pending.clear();
  }
}

/** A DNS-over-TLS upstream server. */
export class TlsUpstream implements Upstream {
  readonly address: string;
  readonly host: string;
  readonly port: number;
  /** The proxy every connection goes through, if any (TLS runs end to end through it). */
  readonly proxy?: UpstreamConfig["proxy"];
  /** The name sent as SNI and checked in the certificate (the IP when none is configured). */
  readonly serverName: string;
  /** Why this server can never be used, when a setting cannot be honoured. */
  private readonly refusal?: string;
  private refusalLogged = false;
  /** The checks only node:tls can do, when the server has any of them. */
  private readonly nodeChecks?: { verifyChain: boolean; verifyName?: string; pins: readonly string[] };
  private readonly caCerts: string[] = [];
  private readonly idleMs: number;
  /** The edns-tcp-keepalive TIMEOUT sent in every query (`-tcp-keepalive`), if any. */
  private readonly keepalive?: number;
  private readonly backoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly log: (level: "error" | "warn", message: string) => void;

  private current?: Connection;
  private connecting?: Promise<Connection>;
  private idleTimer?: ReturnType<typeof setTimeout>;
  private failures = 0;
  private retryAt = 0;
  private lastFailure = "";
  private closedForGood = false;
  /** Accepted connections so far (for tests and statistics). */
  connections = 0;

  constructor(config: UpstreamConfig, trust: TlsTrust = {}, options: TlsUpstreamOptions = {}) {
    this.host = config.host;
    this.port = config.port;
    this.proxy = config.proxy;
    this.address = `tls://${authority(config.host, config.port)}`;
    this.keepalive = config.tcpKeepalive;
    this.idleMs = options.idleMs ?? (config.tcpKeepalive ? config.tcpKeepalive * 100 : 10_000);
    this.backoffMs = options.backoffMs ?? 500;
    this.maxBackoffMs = options.maxBackoffMs ?? 30_000;
    const logger = options.log ? undefined : getLogger("upstream");
    this.log = options.log ??
      ((level, message) =>
        level === "error" ? logger!.error("{message}", { message }) : logger!.warn("{message}", { message }));
    const tls: TlsOptions = config.tls ?? { verifyCertificate: true, spkiPins: [] };
    const named = tls.hostName && tls.hostName !== "-" ? tls.hostName : undefined;
    this.serverName = named ?? config.host;
    const otherName = tls.verifyName && tls.verifyName !== this.serverName ? tls.verifyName : undefined;
    if (!tls.verifyCertificate || tls.spkiPins.length > 0 || otherName) {
      this.nodeChecks = { verifyChain: tls.verifyCertificate, verifyName: otherName, pins: tls.spkiPins };
      if (this.proxy) {
        this.refusal = "-no-check-certificate, -spki-pin and -tls-host-verify are not built for servers " +
          "behind a proxy (Deno's own TLS cannot do them, and the other TLS does not run over the tunnel)";
      }
    }
    try {
      this.caCerts = loadCaCerts(trust);
    } catch (e) {
      this.refusal ??= (e as Error).message;
    }
  }

  /** Closes the connection; exchanges under way fail. Idempotent. */
  close(): void {
    this.closedForGood = true;
    this.stopIdleTimer();
    this.current?.close("upstream closed");
  }

  /** Sends `q` on the shared connection (opening it if needed) and returns the matching answer. */
  async exchange(q: Question, cancel: Cancel): Promise<Uint8Array> {
    if (this.refusal) {
      if (!this.refusalLogged) {
        this.refusalLogged = true;
        this.log("error", `${this.address}: refused: ${this.refusal}`);
      }
      throw new UpstreamError(this.address, this.refusal);
    }
    if (this.closedForGood) throw new UpstreamError(this.address, "upstream closed");
    if (cancel.cancelled) throw new UpstreamError(this.address, "aborted");
    this.stopIdleTimer();
    let connection: Connection;
    try {
      connection = await this.connection(cancel);
    } catch (e) {
      this.armIdleTimer();
      if (e instanceof UpstreamError) throw e;
      throw new UpstreamError(this.address, cancel.cancelled ? "aborted" : (e as Error).message);
    }
    let id = randomId();
    while (connection.pending.has(id)) id = randomId();
    const plain = buildUpstreamQuery(q, id);
    const query = this.keepalive === undefined ? plain : withTcpKeepalive(plain, this.keepalive);
    let onAbort = () => {};
    const answer = new Promise<Uint8Array>((resolve, reject) => {
      const fail = (reason: string) => reject(new UpstreamError(this.address, reason));
      connection.pending.set(id, { query, questionEnd: q.questionEnd, resolve, reject: fail });
      onAbort = () => {
        if (connection.pending.get(id)?.query === query) connection.pending.delete(id);
        fail("aborted");
      };
    });
    cancel.listen(onAbort);
    try {
      connection.write(frame(query)).catch((e) =>
        connection.close(`sending failed: ${(e as Error).message}`)
      );
      return await answer;
    } finally {
      cancel.unlisten(onAbort);
      this.armIdleTimer();
    }
  }

  /** The open connection, or a new one (shared by concurrent callers). */
  private connection(cancel: Cancel): Promise<Connection> {
    if (this.current && !this.current.closed) return Promise.resolve(this.current);
    if (!this.connecting) {
      const now = Date.now();
      if (now < this.retryAt) {
        return Promise.reject(
          new UpstreamError(
            this.address,
            `not retrying for ${this.retryAt - now} ms after: ${this.lastFailure}`,
          ),
        );
      }
      this.connecting = this.open().finally(() => this.connecting = undefined);
    }
    const connecting = this.connecting;
    return new Promise((resolve, reject) => {
      const onAbort = () => reject(new UpstreamError(this.address, "aborted"));
      cancel.listen(onAbort);
      connecting.then(resolve, reject).finally(() => cancel.unlisten(onAbort));
    });
  }

  /** Opens and handshakes a connection; on failure, schedules when the next attempt may start. */
  private async open(): Promise<Connection> {
    let tcp: Deno.TcpConn | undefined;
    let tls: ByteStream | undefined;
    let stage = "connect";
    try {
      if (this.nodeChecks) {
        stage = "TLS handshake";
        tls = await connectNodeTls({
          host: this.host,
          port: this.port,
          serverName: this.serverName === this.host ? undefined : this.serverName,
          caCerts: this.caCerts,
          ...this.nodeChecks,
        });
      } else {
        tcp = await dialTcp(this.host, this.port, this.proxy);
        tcp.setNoDelay(true);
        stage = "TLS handshake";
        const denoTls = await Deno.startTls(tcp, { hostname: this.serverName, caCerts: this.caCerts });
        await denoTls.handshake();
        tls = denoTls;
      }
      if (this.closedForGood) {
        tls.close();
        throw new Error("upstream closed");
      }
      this.failures = 0;
      this.connections++;
      const connection = new Connection(tls, (c) => {
        if (this.current === c) this.current = undefined;
      });
      this.current = connection;
      return connection;
    } catch (e) {
      try {
        (tls ?? tcp)?.close();
      } catch {
        // already closed
      }
      const reason = `${stage} failed (server name ${this.serverName}): ${(e as Error).message}`;
      const delay = Math.min(this.maxBackoffMs, this.backoffMs * 2 ** this.failures);
      this.failures++;
      this.retryAt = Date.now() + delay;
      if (this.failures === 1 || reason !== this.lastFailure) {
        this.log(
          stage === "connect" ? "warn" : "error",
          `${this.address}: ${reason}; retrying after ${delay} ms`,
        );
      }
      this.lastFailure = reason;
      throw new UpstreamError(this.address, reason);
    }
  }

  private stopIdleTimer(): void {
    if (this.idleTimer !== undefined) clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
  }

  /** Closes the connection `idleMs` after the last query finished, if none is in flight. */
  private armIdleTimer(): void {
    this.stopIdleTimer();
    const c = this.current;
    if (!c || c.closed || c.pending.size > 0) return;
    const timer = setTimeout(() => {
      this.idleTimer = undefined;
      if (c.pending.size === 0) c.close("idle");
    }, this.idleMs);
    Deno.unrefTimer(timer);
    this.idleTimer = timer;
  }
}
