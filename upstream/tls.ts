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
import { type CaTrust, loadCaCerts } from "./ca_certs.ts";
import { dialTcp } from "./proxy_dial.ts";
import { withTcpKeepalive } from "./tcp_keepalive.ts";
import { type ByteStream, connectNodeTls } from "./node_tls_stream.ts";
import { authority, type Upstream, UpstreamError } from "./upstream.ts";
import type { Cancel } from "./cancel.ts";
import { OpenFailure, ReusedConnection, type UpstreamLog } from "./reused_connection.ts";

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
  readonly log?: UpstreamLog;
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
  /** Frames waiting for the write under way, and whom to tell when they are out. */
  private queued: Uint8Array[] = [];
  private queuedBytes = 0;
  private writers: { resolve: () => void; reject: (e: unknown) => void }[] = [];
  private flushing = false;

  constructor(readonly conn: ByteStream, private readonly onClose: (c: Connection) => void) {
    this.readLoop();
  }

  /** True while queries wait for their answers. */
  get busy(): boolean {
    return this.pending.size > 0;
  }

  /**
   * Queues `data` to be written. The first frame goes out at once; frames queued while a write is
   * under way go out together in the next one (one TLS record and one system call for many
   * pipelined queries, instead of one each).
   */
  write(data: Uint8Array): Promise<void> {
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    this.queued.push(data);
    this.queuedBytes += data.length;
    this.writers.push({ resolve, reject });
    if (!this.flushing) this.flush();
    return promise;
  }

  private async flush(): Promise<void> {
    this.flushing = true;
    while (this.queued.length > 0) {
      const chunks = this.queued;
      const writers = this.writers;
      const bytes = chunks.length === 1 ? chunks[0] : new Uint8Array(this.queuedBytes);
      if (chunks.length > 1) {
        let at = 0;
        for (const c of chunks) bytes.set(c, at), at += c.length;
      }
      this.queued = [];
      this.writers = [];
      this.queuedBytes = 0;
      try {
        await writeAll(this.conn, bytes);
        for (const w of writers) w.resolve();
      } catch (e) {
        for (const w of writers) w.reject(e);
      }
    }
    this.flushing = false;
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
  /** The checks only node:tls can do, when the server has any of them. */
  private readonly nodeChecks?: { verifyChain: boolean; verifyName?: string; pins: readonly string[] };
  private readonly caCerts: string[] = [];
  /** The edns-tcp-keepalive TIMEOUT sent in every query (`-tcp-keepalive`), if any. */
  private readonly keepalive?: number;
  /** The shared connection: opened on demand, closed when idle, retried after a delay. */
  private readonly reused: ReusedConnection<Connection>;

  constructor(config: UpstreamConfig, trust: TlsTrust = {}, options: TlsUpstreamOptions = {}) {
    this.host = config.host;
    this.port = config.port;
    this.proxy = config.proxy;
    this.address = `tls://${authority(config.host, config.port)}`;
    this.keepalive = config.tcpKeepalive;
    let refusal: string | undefined;
    const tls: TlsOptions = config.tls ?? { verifyCertificate: true, spkiPins: [] };
    const named = tls.hostName && tls.hostName !== "-" ? tls.hostName : undefined;
    this.serverName = named ?? config.host;
    const otherName = tls.verifyName && tls.verifyName !== this.serverName ? tls.verifyName : undefined;
    if (!tls.verifyCertificate || tls.spkiPins.length > 0 || otherName) {
      this.nodeChecks = { verifyChain: tls.verifyCertificate, verifyName: otherName, pins: tls.spkiPins };
      if (this.proxy) {
        refusal = "-no-check-certificate, -spki-pin and -tls-host-verify are not built for servers " +
          "behind a proxy (Deno's own TLS cannot do them, and the other TLS does not run over the tunnel)";
      }
    }
    try {
      this.caCerts = loadCaCerts(trust);
    } catch (e) {
      refusal ??= (e as Error).message;
    }
    this.reused = new ReusedConnection({
      ...options,
      address: this.address,
      idleMs: options.idleMs ?? (config.tcpKeepalive ? config.tcpKeepalive * 100 : 10_000),
      refusal,
      open: () => this.open(),
    });
  }

  /** Accepted connections so far (for tests and statistics). */
  get connections(): number {
    return this.reused.opened;
  }

  /** Closes the connection; exchanges under way fail. Idempotent. */
  close(): void {
    this.reused.close("upstream closed");
  }

  /** Sends `q` on the shared connection (opening it if needed) and returns the matching answer. */
  async exchange(q: Question, cancel: Cancel): Promise<Uint8Array> {
    this.reused.begin(cancel);
    let connection: Connection;
    try {
      connection = await this.reused.connection(cancel);
    } catch (e) {
      this.reused.end();
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
      this.reused.end();
    }
  }

  /** Opens and handshakes a connection; a failure says at which stage. */
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
      if (this.reused.closed) {
        tls.close();
        throw new Error("upstream closed");
      }
      return new Connection(tls, (c) => this.reused.forget(c));
    } catch (e) {
      try {
        (tls ?? tcp)?.close();
      } catch {
        // already closed
      }
      const reason = `${stage} failed (server name ${this.serverName}): ${(e as Error).message}`;
      throw new OpenFailure(reason, stage === "connect" ? "warn" : "error");
    }
  }
}
