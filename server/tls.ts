/**
 * DNS over TLS (RFC 7858) listeners, and the certificate both encrypted listeners (this one and
 * DoH, server/https.ts) present. A DoT connection is a TCP one inside TLS: the same 2-byte framing,
 * per-connection budget, idle timeout and connection cap ({@link TcpListener}).
 *
 * The TLS socket is `node:tls`, not `Deno.listenTls`: a `Deno.listenTls` connection closed while
 * its handshake is pending keeps its socket open until the client goes (Deno 2.9), so a client
 * that connects and says nothing would hold a descriptor for ever. Here a handshake that does not
 * finish within the idle time is dropped, connections still in their handshake count against the
 * cap, and garbage instead of a ClientHello only ends that connection.
 *
 * Certificates: `bind-cert-file` and `bind-cert-key-file` (`[server] cert-file`, `key-file`), or,
 * with neither, the one keeldns makes once in its data directory (server/self_signed_cert.ts).
 * Deno cannot load an encrypted private key, so `bind-cert-key-pass` (or a key that says it is
 * encrypted) is refused with a clear message.
 *
 * @module
 */
import { createServer, type Server, type TLSSocket } from "node:tls";
import type { BindConfig, ServerConfig } from "../config/schema.ts";
import type { Logger } from "../ops/log.ts";
import type { QueryDispatcher } from "./dispatcher.ts";
import type { StreamLimits } from "./stream_budget.ts";
import { type StreamAcceptor, type StreamConn, TcpListener } from "./tcp.ts";

/** The PEM certificate chain and key an encrypted listener presents. */
export interface ListenerCertificate {
  readonly cert: string;
  readonly key: string;
  /** SHA-256 of the first (leaf) certificate, as colon-separated hex. */
  readonly fingerprint: string;
}

/** The DER bytes of the first `-----BEGIN CERTIFICATE-----` block of `pem`, or null. */
export function firstCertificateDer(pem: string): Uint8Array<ArrayBuffer> | null {
  const m = /-----BEGIN CERTIFICATE-----([A-Za-z0-9+/=\s]+)-----END CERTIFICATE-----/.exec(pem);
  if (!m) return null;
  try {
    const bin = atob(m[1].replace(/\s+/g, ""));
    return Uint8Array.from(bin, (c) => c.charCodeAt(0));
  } catch {
    return null;
  }
}

/** SHA-256 fingerprint (`AB:CD:…`) of the leaf certificate of `pem`. */
export async function certificateFingerprint(pem: string): Promise<string> {
  const der = firstCertificateDer(pem);
  if (!der) throw new Error("no PEM certificate in it");
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", der));
  return [...digest].map((b) => b.toString(16).padStart(2, "0").toUpperCase()).join(":");
}

/**
 * Reads the encrypted listeners' certificate and key; throws a message naming what to do when
 * they are missing, unreadable, or the key is encrypted.
 */
export async function loadListenerCertificate(
  server: Pick<ServerConfig, "certFile" | "keyFile" | "keyPass">,
  readTextFile: (path: string) => Promise<string> = Deno.readTextFile,
): Promise<ListenerCertificate> {
  if (!server.certFile || !server.keyFile) {
    throw new Error(
      `${
        server.certFile
          ? "bind-cert-file needs bind-cert-key-file"
          : "bind-cert-key-file needs bind-cert-file"
      }` +
        " too (or neither: keeldns then makes its own certificate in the data directory)",
    );
  }
  if (server.keyPass !== undefined) {
    throw new Error(
      "bind-cert-key-pass: Deno cannot load an encrypted private key; decrypt it once " +
        "(openssl pkey -in KEY -out PLAIN.key) and drop bind-cert-key-pass",
    );
  }
  let cert: string;
  let key: string;
  try {
    cert = await readTextFile(server.certFile);
  } catch (e) {
    throw new Error(`bind-cert-file ${server.certFile}: ${(e as Error).message}`);
  }
  try {
    key = await readTextFile(server.keyFile);
  } catch (e) {
    throw new Error(`bind-cert-key-file ${server.keyFile}: ${(e as Error).message}`);
  }
  if (/-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type: 4,ENCRYPTED/.test(key)) {
    throw new Error(
      `bind-cert-key-file ${server.keyFile}: the key is encrypted, which Deno cannot load; decrypt it ` +
        "once (openssl pkey -in KEY -out PLAIN.key)",
    );
  }
  if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(key)) {
    throw new Error(`bind-cert-key-file ${server.keyFile}: no PEM private key in it`);
  }
  let fingerprint: string;
  try {
    fingerprint = await certificateFingerprint(cert);
  } catch (e) {
    throw new Error(`bind-cert-file ${server.certFile}: ${(e as Error).message}`);
  }
  return { cert, key, fingerprint };
}

/** Past this many bytes read and not yet taken, the socket is paused (and resumed below a quarter). */
const READ_HIGH_WATER = 64 * 1024;

/** A `node:tls` socket as the stream connection the TCP listener serves. */
export class TlsSocketConn implements StreamConn {
  readonly remoteAddr: Deno.NetAddr;
  private readonly chunks: Uint8Array[] = [];
  private buffered = 0;
  private ended = false;
  private error?: Error;
  private wake?: () => void;

  constructor(private readonly socket: TLSSocket) {
    const host = (socket.remoteAddress ?? "").replace(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/i, "$1");
    this.remoteAddr = { transport: "tcp", hostname: host, port: socket.remotePort ?? 0 };
    socket.on("data", (data: Uint8Array) => {
      this.chunks.push(data);
      this.buffered += data.length;
      if (this.buffered > READ_HIGH_WATER) socket.pause();
      this.notify();
    });
    socket.on("end", () => this.finish());
    socket.on("close", () => this.finish());
    socket.on("error", (e: Error) => {
      this.error = e;
      this.notify();
    });
  }

  setNoDelay(noDelay = true): void {
    this.socket.setNoDelay(noDelay);
  }

  private finish(): void {
    this.ended = true;
    this.notify();
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  async read(p: Uint8Array): Promise<number | null> {
    while (this.chunks.length === 0) {
      if (this.error) throw this.error;
      if (this.ended) return null;
      await new Promise<void>((resolve) => this.wake = resolve);
    }
    const head = this.chunks[0];
    const n = Math.min(p.length, head.length);
    p.set(head.subarray(0, n));
    if (n === head.length) this.chunks.shift();
    else this.chunks[0] = head.subarray(n);
    this.buffered -= n;
    if (this.buffered < READ_HIGH_WATER / 4 && this.socket.isPaused()) this.socket.resume();
    return n;
  }

  /** Resolves once the bytes are handed to the socket (a client that does not read holds it). */
  write(p: Uint8Array): Promise<number> {
    return new Promise((resolve, reject) => {
      if (this.socket.destroyed) return reject(new Error("connection closed"));
      const copy = p.slice();
      this.socket.write(copy, (e?: Error | null) => e ? reject(e) : resolve(p.length));
    });
  }

  close(): void {
    this.socket.destroy();
    this.finish();
  }
}

/** A bound `node:tls` server handing out connections whose handshake is done. */
class TlsAcceptor implements StreamAcceptor {
  private readonly ready: StreamConn[] = [];
  private waiter?: { resolve: (c: StreamConn) => void; reject: (e: Error) => void };
  private closed = false;

  /** The handshake clock of each TCP socket still in its handshake. */
  private readonly handshakes = new WeakMap<object, ReturnType<typeof setTimeout>>();

  constructor(private readonly server: Server, handshakeMs: number) {
    // node:tls's own handshakeTimeout is not honoured by Deno's node:tls: a clock of ours.
    server.on("connection", (raw: { destroy(): void; once(e: string, f: () => void): void }) => {
      const timer = setTimeout(() => raw.destroy(), handshakeMs);
      this.handshakes.set(raw, timer);
      raw.once("close", () => clearTimeout(timer));
    });
    server.on("secureConnection", (socket: TLSSocket) => {
      const raw = (socket as unknown as { _parent?: object })._parent;
      if (raw) clearTimeout(this.handshakes.get(raw));
      const conn = new TlsSocketConn(socket);
      if (this.closed) return conn.close();
      const waiter = this.waiter;
      this.waiter = undefined;
      if (waiter) waiter.resolve(conn);
      else this.ready.push(conn);
    });
    // A failed handshake (garbage, a wrong version, the timeout) ends that socket only.
    server.on("tlsClientError", () => {});
  }

  accept(): Promise<StreamConn> {
    const conn = this.ready.shift();
    if (conn) return Promise.resolve(conn);
    if (this.closed) return Promise.reject(new Error("listener closed"));
    return new Promise((resolve, reject) => this.waiter = { resolve, reject });
  }

  close(): void {
    this.closed = true;
    this.server.close();
    for (const conn of this.ready.splice(0)) conn.close();
    this.waiter?.reject(new Error("listener closed"));
    this.waiter = undefined;
  }
}

/** Binds a DoT listener on `bind` and serves it as a TCP one. Rejects if it cannot be bound. */
export async function listenTls(
  bind: BindConfig,
  dispatcher: QueryDispatcher,
  certificate: ListenerCertificate,
  options: { idleSeconds: number; maxConnections: number; budget?: Partial<StreamLimits> },
  log: Logger,
): Promise<TcpListener> {
  const idleMs = (options.idleSeconds > 0 ? options.idleSeconds : 3600) * 1000;
  const server = createServer({
    cert: certificate.cert,
    key: certificate.key,
    ALPNProtocols: ["dot"],
    handshakeTimeout: idleMs,
  });
  // Connections still in their handshake count too (the listener's own cap counts served ones).
  server.maxConnections = options.maxConnections;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    // SO_REUSEPORT, as the TCP listener: a successor binds the same port during a planned restart.
    const shared = { host: bind.host, port: bind.port, exclusive: true, reusePort: true };
    server.listen(shared, () => {
      server.off("error", reject);
      resolve();
    });
  });
  server.on("error", (e: Error) => log.warn("tls listener: {error}", { error: e.message }));
  return TcpListener.on(new TlsAcceptor(server, idleMs), "tls", bind, dispatcher, options, log);
}
