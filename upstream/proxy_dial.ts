/**
 * Opens the TCP stream to an upstream server: directly, or through its proxy (SOCKS5 CONNECT, or
 * an HTTP CONNECT tunnel as SmartDNS sends it). Through a proxy the stream never falls back to a
 * direct connection: a proxy that is down or refuses fails the exchange.
 *
 * @module
 */
import type { ProxyConfig } from "../config/schema.ts";
import { socks5Connect } from "./socks5.ts";
import { authority } from "./upstream.ts";
import type { Cancel } from "./cancel.ts";

/** The largest HTTP CONNECT reply head read from a proxy. */
const MAX_HEAD = 8192;

/**
 * A TCP connection carrying the stream to `host:port`, through `proxy` when one is given. The
 * connection is closed when setting up fails or `cancel` fires first.
 */
export async function dialTcp(
  host: string,
  port: number,
  proxy?: ProxyConfig,
  cancel?: Cancel,
): Promise<Deno.TcpConn> {
  if (!proxy) return await Deno.connect({ hostname: host, port, transport: "tcp" });
  let conn: Deno.TcpConn;
  try {
    conn = await Deno.connect({ hostname: proxy.host, port: proxy.port, transport: "tcp" });
  } catch (e) {
    throw new Error(`proxy ${proxy.name} (${authority(proxy.host, proxy.port)}): ${(e as Error).message}`);
  }
  const abort = () => conn.close();
  cancel?.listen(abort);
  try {
    conn.setNoDelay(true);
    if (proxy.kind === "socks5") await socks5Connect(conn, proxy, { host, port });
    else await httpConnect(conn, proxy, authority(host, port));
    return conn;
  } catch (e) {
    try {
      conn.close();
    } catch { /* closed by abort */ }
    throw new Error(`proxy ${proxy.name}: ${cancel?.cancelled ? "aborted" : (e as Error).message}`);
  } finally {
    cancel?.unlisten(abort);
  }
}

/** Asks the HTTP proxy on `conn` to CONNECT to `target` (`host:port`) and reads its reply head. */
async function httpConnect(conn: Deno.Conn, proxy: ProxyConfig, target: string): Promise<void> {
  let head = `CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n`;
  if (proxy.username !== undefined) {
    const credentials = new TextEncoder().encode(`${proxy.username}:${proxy.password ?? ""}`);
    head += `Proxy-Authorization: Basic ${btoa(String.fromCharCode(...credentials))}\r\n`;
  }
  const request = new TextEncoder().encode(head + "\r\n");
  for (let off = 0; off < request.length;) off += await conn.write(request.subarray(off));
  // Read byte by byte up to the blank line: the bytes after it belong to the server (a DNS or TLS
  // client speaks first, so there are none, but nothing of the stream is consumed either way).
  const buf = new Uint8Array(MAX_HEAD);
  let n = 0;
  while (n < 4 || buf[n - 4] !== 13 || buf[n - 3] !== 10 || buf[n - 2] !== 13 || buf[n - 1] !== 10) {
    if (n === buf.length) throw new Error("the proxy's reply head is too long");
    const got = await conn.read(buf.subarray(n, n + 1));
    if (got === null) throw new Error("the proxy closed the connection");
    n += got;
  }
  const status = new TextDecoder().decode(buf.subarray(0, n)).split("\r\n")[0];
  const code = /^HTTP\/1\.[01] (\d{3})/.exec(status)?.[1];
  if (code === undefined) throw new Error(`the proxy's reply is not HTTP: ${JSON.stringify(status)}`);
  if (code[0] !== "2") throw new Error(`the proxy replied ${status.slice(9)}`);
}
