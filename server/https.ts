/**
 * DNS over HTTPS (RFC 8484) listeners: `Deno.serve` with the listener certificate (HTTP/2 by
 * ALPN, HTTP/1.1 otherwise) answering at `/dns-query` both `POST` with an
 * `application/dns-message` body and `GET ?dns=` (base64url, no padding), through the dispatcher
 * like every other listener (the client's address goes with each query for the access rules).
 *
 * A malformed request gets 400, a wrong content type 415, a body over 65535 bytes 413, another
 * path 404, another method 405; more requests in flight than the connection cap get 503. Idle
 * connections are closed by Deno's HTTP server, not by `tcp-idle-time`. Known limit (Deno 2.9):
 * `Deno.serve` does not time out a TLS handshake, so a client that connects and says nothing keeps
 * its socket until it goes; DoT (server/tls.ts) does not have this limit.
 *
 * @module
 */
import type { BindConfig } from "../config/schema.ts";
import type { Logger } from "../ops/log.ts";
import { encodeSockaddr } from "../net/linux_socket.ts";
import { authority } from "../upstream/upstream.ts";
import type { QueryDispatcher } from "./dispatcher.ts";
import { bindFlags, DRAIN_MS, type Listener } from "./listener.ts";
import type { ListenerCertificate } from "./tls.ts";

/** The path DoH queries are asked at (RFC 8484's example, and what every client uses). */
export const DOH_PATH = "/dns-query";
/** Largest DNS message a request may carry. */
export const MAX_BODY = 65535;
const DNS_MESSAGE = "application/dns-message";

/** Decodes base64url (padding optional); null when it is not. */
export function decodeBase64Url(text: string): Uint8Array | null {
  if (!/^[A-Za-z0-9_-]*={0,2}$/.test(text)) return null;
  const b64 = text.replace(/=+$/, "").replace(/-/g, "+").replace(/_/g, "/");
  if (b64.length % 4 === 1) return null;
  try {
    const bin = atob(b64 + "=".repeat((4 - b64.length % 4) % 4));
    return Uint8Array.from(bin, (c) => c.charCodeAt(0));
  } catch {
    return null;
  }
}

/** Reads at most `limit` bytes of `body`; null when it is longer. */
async function readLimited(
  body: ReadableStream<Uint8Array> | null,
  limit: number,
): Promise<Uint8Array | null> {
  if (!body) return new Uint8Array(0);
  const chunks: Uint8Array[] = [];
  let total = 0;
  const reader = body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.length;
    if (total > limit) {
      await reader.cancel().catch(() => {});
      return null;
    }
    chunks.push(value);
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

function plain(status: number, text: string, headers: Record<string, string> = {}): Response {
  return new Response(text + "\n", { status, headers: { "content-type": "text/plain", ...headers } });
}

/** The smallest TTL of the answer's records (for Cache-Control), or 0. */
export function minTtl(wire: Uint8Array): number {
  // A cheap walk of the answer section: past the question, each record's TTL.
  try {
    const view = new DataView(wire.buffer, wire.byteOffset, wire.byteLength);
    const qd = view.getUint16(4);
    const an = view.getUint16(6);
    let at = 12;
    const skipName = () => {
      for (;;) {
        const len = wire[at];
        if (len === undefined) throw new RangeError("cut off");
        if ((len & 0xc0) === 0xc0) return void (at += 2);
        at += 1 + len;
        if (len === 0) return;
      }
    };
    for (let i = 0; i < qd; i++) {
      skipName();
      at += 4;
    }
    let min = Infinity;
    for (let i = 0; i < an; i++) {
      skipName();
      const ttl = view.getUint32(at + 4);
      min = Math.min(min, ttl);
      at += 10 + view.getUint16(at + 8);
    }
    return Number.isFinite(min) ? min : 0;
  } catch {
    return 0;
  }
}

/** A DoH listener. */
export class HttpsListener implements Listener {
  readonly address: string;
  readonly flags: number;
  readonly group?: string;
  private inFlight = 0;
  private readonly server: Deno.HttpServer<Deno.NetAddr>;

  private constructor(
    bind: BindConfig,
    private readonly dispatcher: QueryDispatcher,
    certificate: ListenerCertificate,
    private readonly maxInFlight: number,
    private readonly log: Logger,
  ) {
    this.address = `https://${authority(bind.host, bind.port)}${DOH_PATH}`;
    this.flags = bindFlags(bind);
    this.group = bind.group;
    // SO_REUSEPORT (for a successor during a planned restart) needs --unstable-net, as in tcp.ts.
    const unstableNet = typeof (Deno as { listenDatagram?: unknown }).listenDatagram === "function";
    this.server = Deno.serve({
      hostname: bind.host,
      port: bind.port,
      reusePort: unstableNet,
      cert: certificate.cert,
      key: certificate.key,
      onListen: () => {},
      onError: (e) => {
        this.log.debug("{address}: request failed: {error}", {
          address: this.address,
          error: (e as Error).message,
        });
        return plain(500, "internal error");
      },
    }, (request, info) => this.handle(request, info));
  }

  /** Binds `bind` and starts serving. Throws if the port cannot be bound. */
  static listen(
    bind: BindConfig,
    dispatcher: QueryDispatcher,
    certificate: ListenerCertificate,
    options: { maxConnections: number },
    log: Logger,
  ): HttpsListener {
    return new HttpsListener(bind, dispatcher, certificate, options.maxConnections, log);
  }

  /** Answers one HTTP request. */
  async handle(request: Request, info: { remoteAddr: Deno.NetAddr }): Promise<Response> {
    const url = new URL(request.url);
    if (url.pathname !== DOH_PATH) return plain(404, `not found: DNS queries go to ${DOH_PATH}`);
    let wire: Uint8Array | null;
    if (request.method === "GET" || request.method === "HEAD") {
      const dns = url.searchParams.get("dns");
      if (dns === null) return plain(400, "missing ?dns= parameter");
      wire = decodeBase64Url(dns);
      if (wire === null) return plain(400, "?dns= is not base64url");
      if (wire.length > MAX_BODY) return plain(413, "query too large");
    } else if (request.method === "POST") {
      const type = request.headers.get("content-type")?.split(";")[0].trim().toLowerCase();
      if (type !== DNS_MESSAGE) return plain(415, `content type must be ${DNS_MESSAGE}`);
      const length = Number(request.headers.get("content-length") ?? "0");
      if (length > MAX_BODY) return plain(413, "query too large");
      try {
        wire = await readLimited(request.body, MAX_BODY);
      } catch {
        return plain(400, "request body cut off");
      }
      if (wire === null) return plain(413, "query too large");
    } else {
      return plain(405, "method not allowed", { allow: "GET, POST" });
    }
    if (wire.length < 12) return plain(400, "not a DNS message");
    if (this.inFlight >= this.maxInFlight) {
      this.dispatcher.stats.tcpRefused++;
      return plain(503, "too many requests in flight", { "retry-after": "1" });
    }
    let peer: Uint8Array | undefined;
    try {
      peer = encodeSockaddr(info.remoteAddr.hostname.replace(/%.*$/, ""), info.remoteAddr.port);
    } catch {
      peer = undefined;
    }
    this.inFlight++;
    try {
      const result = this.dispatcher.answer(wire, false, this, peer);
      const answer = result instanceof Promise ? await result : result;
      if (answer === null) return plain(400, "not a DNS query");
      return new Response(request.method === "HEAD" ? null : answer as Uint8Array<ArrayBuffer>, {
        status: 200,
        headers: {
          "content-type": DNS_MESSAGE,
          "cache-control": `max-age=${minTtl(answer)}`,
          "content-length": String(answer.length),
        },
      });
    } catch {
      return plain(502, "no answer");
    } finally {
      this.inFlight--;
    }
  }

  /** Stops accepting, lets answers under way go out (bounded by `drainMs`), then closes. */
  async close(drainMs = DRAIN_MS): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<boolean>((r) => timer = setTimeout(() => r(false), drainMs));
    const done = await Promise.race([this.server.shutdown().then(() => true), late]);
    clearTimeout(timer);
    if (!done) this.log.debug("{address}: closed with requests under way", { address: this.address });
  }
}
