/**
 * DNS over HTTPS (RFC 8484) to one upstream: POST `application/dns-message` through `fetch` over
 * one `Deno.HttpClient` per server, so HTTP/2 carries every exchange over one reused connection.
 *
 * Names: Deno's fetch sends the URL's host as SNI and checks the certificate against it, and
 * `Deno.createHttpClient` has no resolver option. A server with `-host-name NAME` is therefore
 * fetched as `https://NAME:port/path` through a tiny in-process HTTP CONNECT tunnel on loopback that
 * always connects to the configured IP (whatever the name resolves to, it is never resolved): the
 * TLS handshake runs end to end through the tunnel, with SNI NAME and the certificate checked for
 * NAME. Without a name (or with "-") the URL is `https://IP:port/path`: no SNI, and the certificate
 * must carry the IP. `-http-host` sets the Host header only. A server with `-proxy` always goes
 * through the tunnel, which reaches the server through the proxy (SOCKS5 or HTTP CONNECT). What Deno cannot do, keeldns refuses
 * rather than checking differently: `-no-check-certificate`, `-spki-pin`, and a `-tls-host-verify`
 * name that differs from the SNI name.
 *
 * @module
 */
import type { UpstreamConfig } from "../config/schema.ts";
import { buildUpstreamQuery, type Question, readId, sameQuestion } from "../dns/wire.ts";
import { type CaTrust, loadCaCerts } from "./ca_certs.ts";
import { dialTcp } from "./proxy_dial.ts";
import { authority, type Upstream, UpstreamError } from "./upstream.ts";
import type { Cancel } from "./cancel.ts";

/** Where the CA certificates come from (`ca-file`, `ca-path`). */
export type HttpsTrust = CaTrust;

/** The largest DNS message a DoH answer may hold. */
const MAX_MESSAGE = 65535;
const DNS_MESSAGE = "application/dns-message";

/** A DoH upstream server. */
export class HttpsUpstream implements Upstream {
  readonly address: string;
  /** Why this server is never asked (an option Deno cannot honour, an unreadable CA), if so. */
  readonly refusal?: string;
  private readonly url: string;
  private readonly headers: Record<string, string>;
  private readonly caCerts: string[] = [];
  private client?: Deno.HttpClient;
  private tunnel?: ConnectTunnel;
  private closed = false;

  constructor(
    config: Pick<UpstreamConfig, "host" | "port" | "path" | "tls" | "proxy">,
    trust: HttpsTrust = {},
  ) {
    const path = config.path || "/dns-query";
    const ip = authority(config.host, config.port);
    this.address = `https://${ip}${path}`;
    const tls = config.tls ?? { verifyCertificate: true, spkiPins: [] };
    const sni = tls.hostName && tls.hostName !== "-" ? tls.hostName.toLowerCase() : undefined;
    this.headers = { "content-type": DNS_MESSAGE, "accept": DNS_MESSAGE };
    if (tls.httpHost) this.headers.host = tls.httpHost;
    this.url = sni && !isIpLiteral(sni) ? `https://${authority(sni, config.port)}${path}` : this.address;
    this.refusal = refusalOf(tls, sni, config.host);
    if (!this.refusal) {
      try {
        this.caCerts = loadCaCerts(trust);
      } catch (e) {
        this.refusal = (e as Error).message;
      }
    }
    if (!this.refusal && (this.url !== this.address || config.proxy)) {
      const expected = this.url === this.address ? ip : authority(sni!, config.port);
      const proxy = config.proxy;
      this.tunnel = new ConnectTunnel(() => dialTcp(config.host, config.port, proxy), expected.toLowerCase());
    }
  }

  /** Closes the HTTP client (and its connection) and the tunnel. Idempotent. */
  close(): void {
    this.closed = true;
    try {
      this.client?.close();
    } catch { /* already closed */ }
    this.client = undefined;
    this.tunnel?.close();
  }

  /** POSTs `q` (ID 0, RFC 8484 §4.1) and returns the answer once it matches the question. */
  async exchange(q: Question, cancel: Cancel): Promise<Uint8Array> {
    if (this.refusal) throw new UpstreamError(this.address, `refused: ${this.refusal}`);
    if (this.closed) throw new UpstreamError(this.address, "closed");
    if (cancel.cancelled) throw new UpstreamError(this.address, "aborted");
    const query = buildUpstreamQuery(q, 0);
    // fetch takes an AbortSignal: one made here, following the exchange's cancel
    const controller = new AbortController();
    const onCancel = (reason: unknown) => controller.abort(reason);
    cancel.listen(onCancel);
    const signal = controller.signal;
    try {
      const response = await fetch(this.url, {
        method: "POST",
        client: this.httpClient(),
        headers: this.headers,
        body: query as Uint8Array<ArrayBuffer>,
        signal,
        redirect: "error",
      });
      if (response.status !== 200) {
        await response.body?.cancel();
        throw new Error(`HTTP status ${response.status}`);
      }
      const type = response.headers.get("content-type")?.split(";")[0].trim().toLowerCase();
      const length = Number(response.headers.get("content-length") ?? 0);
      if (type !== DNS_MESSAGE || length > MAX_MESSAGE) {
        await response.body?.cancel();
        throw new Error(type !== DNS_MESSAGE ? `content type ${type ?? "missing"}` : "answer too long");
      }
      const answer = new Uint8Array(await response.arrayBuffer());
      if (answer.length > MAX_MESSAGE) throw new Error("answer too long");
      if (answer.length < 12 || !(answer[2] & 0x80)) throw new Error("not a DNS response");
      if (readId(answer) !== 0) throw new Error(`answer has ID ${readId(answer)}, not 0`);
      if (!sameQuestion(query, q.questionEnd, answer)) throw new Error("answer is for another question");
      return answer;
    } catch (e) {
      if (e instanceof UpstreamError) throw e;
      const tunnel = this.tunnel?.lastFailure ? ` (tunnel: ${this.tunnel.lastFailure})` : "";
      throw new UpstreamError(this.address, signal.aborted ? "aborted" : reasonOf(e) + tunnel);
    } finally {
      cancel.unlisten(onCancel);
    }
  }

  private httpClient(): Deno.HttpClient {
    if (this.client) return this.client;
    const options: Deno.CreateHttpClientOptions = {
      http2: true,
      http1: true,
      allowHost: this.headers.host !== undefined,
      ...(this.caCerts.length ? { caCerts: this.caCerts } : {}),
    };
    if (this.tunnel) {
      const { port, secret } = this.tunnel.start();
      options.proxy = {
        url: `http://127.0.0.1:${port}`,
        basicAuth: { username: "keeldns", password: secret },
      };
    }
    this.client = Deno.createHttpClient(options);
    return this.client;
  }
}

/** Why Deno cannot check this server the way its options ask (undefined when it can). */
function refusalOf(tls: NonNullable<UpstreamConfig["tls"]>, sni: string | undefined, ip: string) {
  if (!tls.verifyCertificate) {
    return "-no-check-certificate is not supported (Deno's fetch always verifies certificates)";
  }
  if (tls.spkiPins.length) return "-spki-pin is not supported (Deno's fetch does not expose the peer's key)";
  const checked = sni ?? ip;
  if (tls.verifyName && tls.verifyName.toLowerCase() !== checked.toLowerCase()) {
    return `-tls-host-verify ${tls.verifyName} differs from the name sent and checked (${checked}); ` +
      "Deno's fetch checks the certificate against the SNI name only";
  }
  return undefined;
}

function isIpLiteral(name: string): boolean {
  return name.includes(":") || /^\d+\.\d+\.\d+\.\d+$/.test(name);
}

/** fetch's "fetch failed" plus its cause (the TLS or connection error), shortened. */
function reasonOf(e: unknown): string {
  const error = e as Error & { cause?: unknown };
  const cause = error.cause instanceof Error ? error.cause.message : "";
  const text = cause || error.message || String(e);
  return text.replace(/^error sending request for url \([^)]*\): /, "").replace(
    /^client error \(Connect\): /,
    "",
  );
}

/**
 * A loopback HTTP CONNECT endpoint that tunnels to one fixed server: fetch asks for `expected`
 * (`name:port`) with a per-upstream secret, and the tunnel connects to the configured IP (with
 * `dial`, through the server's proxy if it has one) instead of resolving the name. TLS runs end to
 * end through it; the tunnel sees only ciphertext.
 */
class ConnectTunnel {
  private listener?: Deno.TcpListener;
  private readonly conns = new Set<Deno.Conn>();
  private readonly secret = crypto.randomUUID();
  /** Why the last connection to the server (or its proxy) failed, cleared by the next success. */
  lastFailure?: string;

  constructor(
    private readonly dial: () => Promise<Deno.TcpConn>,
    private readonly expected: string,
  ) {}

  /** Listens (once) and returns the port and the secret fetch must present. */
  start(): { port: number; secret: string } {
    if (!this.listener) {
      this.listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      this.accept(this.listener);
    }
    return { port: this.listener.addr.port, secret: this.secret };
  }

  close(): void {
    try {
      this.listener?.close();
    } catch { /* closed */ }
    this.listener = undefined;
    for (const conn of this.conns) {
      try {
        conn.close();
      } catch { /* closed */ }
    }
    this.conns.clear();
  }

  private async accept(listener: Deno.TcpListener): Promise<void> {
    try {
      for await (const conn of listener) this.serve(conn);
    } catch { /* listener closed */ }
  }

  private async serve(client: Deno.Conn): Promise<void> {
    this.conns.add(client);
    let server: Deno.TcpConn | undefined;
    try {
      const head = await readHead(client);
      const auth = `Basic ${btoa(`keeldns:${this.secret}`)}`;
      const line = head.split("\r\n")[0].split(" ");
      const authorized = head.split("\r\n").some((h) =>
        h.slice(0, 20).toLowerCase() === "proxy-authorization:" && h.slice(20).trim() === auth
      );
      if (line[0] !== "CONNECT" || line[1]?.toLowerCase() !== this.expected || !authorized) {
        await client.write(new TextEncoder().encode("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n"));
        throw new Error("refused");
      }
      try {
        server = await this.dial();
        this.lastFailure = undefined;
      } catch (e) {
        this.lastFailure = (e as Error).message;
        await client.write(new TextEncoder().encode("HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n"));
        throw e;
      }
      this.conns.add(server);
      server.setNoDelay(true);
      (client as Deno.TcpConn).setNoDelay?.(true);
      await client.write(new TextEncoder().encode("HTTP/1.1 200 Connection established\r\n\r\n"));
      await Promise.allSettled([pipe(server, client), pipe(client, server)]);
    } catch {
      /* connect failed or either side closed: fetch reports the failure */
    } finally {
      for (const conn of [client, server]) {
        if (!conn) continue;
        this.conns.delete(conn);
        try {
          conn.close();
        } catch { /* closed */ }
      }
    }
  }
}

/** Reads an HTTP request head (up to 8 KiB); the client sends nothing more before the reply. */
async function readHead(conn: Deno.Conn): Promise<string> {
  const buf = new Uint8Array(8192);
  let n = 0;
  while (n < buf.length) {
    const got = await conn.read(buf.subarray(n));
    if (got === null) throw new Error("closed");
    n += got;
    const text = new TextDecoder().decode(buf.subarray(0, n));
    if (text.includes("\r\n\r\n")) return text;
  }
  throw new Error("request head too long");
}

/** Copies `from` to `to` until `from` ends, then half-closes `to`'s write side. */
async function pipe(from: Deno.Conn, to: Deno.Conn): Promise<void> {
  const buf = new Uint8Array(16384);
  try {
    for (;;) {
      const n = await from.read(buf);
      if (n === null) break;
      for (let off = 0; off < n;) off += await to.write(buf.subarray(off, n));
    }
  } finally {
    try {
      await to.closeWrite();
    } catch { /* closed */ }
  }
}
