/**
 * A SOCKS5 client (RFC 1928, user/password authentication RFC 1929): CONNECT gives a TCP stream to
 * the target through the proxy, UDP ASSOCIATE gives the relay address UDP datagrams go to, each
 * with the RFC 1928 §7 header. Targets are always IP addresses (keeldns never asks a proxy to
 * resolve a name), as SmartDNS sends them for servers given by IP.
 *
 * @module
 */
import type { ProxyConfig } from "../config/schema.ts";
import { ipBytes } from "../net/address.ts";

const VERSION = 5;
const NO_AUTH = 0;
const USER_PASS = 2;
const NO_ACCEPTABLE = 0xff;
const CMD_CONNECT = 1;
const CMD_UDP_ASSOCIATE = 3;
const ATYP_IPV4 = 1;
const ATYP_DOMAIN = 3;
const ATYP_IPV6 = 4;

/** The reply codes of RFC 1928 §6, by number. */
const REPLIES = [
  "succeeded",
  "general SOCKS server failure",
  "connection not allowed by ruleset",
  "network unreachable",
  "host unreachable",
  "connection refused",
  "TTL expired",
  "command not supported",
  "address type not supported",
];

/** An address and port as SOCKS5 carries them. */
export interface SocksAddress {
  readonly host: string;
  readonly port: number;
}

/** Reads exactly `n` bytes (the proxy's replies are parsed without reading past them). */
async function readExact(conn: Deno.Conn, n: number): Promise<Uint8Array> {
  const out = new Uint8Array(n);
  for (let got = 0; got < n;) {
    const r = await conn.read(out.subarray(got));
    if (r === null) throw new Error("the proxy closed the connection");
    got += r;
  }
  return out;
}

async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  for (let off = 0; off < data.length;) off += await conn.write(data.subarray(off));
}

/** ATYP, address and port of `host:port` (an IP address), as RFC 1928 §4 and §7 lay them out. */
export function encodeAddress(host: string, port: number): Uint8Array {
  const ip = ipBytes(host);
  const out = new Uint8Array(1 + ip.length + 2);
  out[0] = ip.length === 4 ? ATYP_IPV4 : ATYP_IPV6;
  out.set(ip, 1);
  out[1 + ip.length] = port >> 8;
  out[2 + ip.length] = port & 0xff;
  return out;
}

/** The text form of a 4- or 16-byte address. */
function ipText(b: Uint8Array): string {
  if (b.length === 4) return b.join(".");
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((b[i] << 8) | b[i + 1]).toString(16));
  return new URL(`http://[${groups.join(":")}]/`).hostname.slice(1, -1);
}

/** Greets the proxy, authenticates if it asks, sends `command` and returns the bound address. */
async function request(
  conn: Deno.Conn,
  proxy: ProxyConfig,
  command: number,
  target: SocksAddress,
): Promise<SocksAddress> {
  const withAuth = proxy.username !== undefined;
  await writeAll(conn, new Uint8Array(withAuth ? [VERSION, 2, NO_AUTH, USER_PASS] : [VERSION, 1, NO_AUTH]));
  const choice = await readExact(conn, 2);
  if (choice[0] !== VERSION) throw new Error(`the proxy is not SOCKS5 (version ${choice[0]})`);
  if (choice[1] === NO_ACCEPTABLE) {
    throw new Error(
      withAuth ? "the proxy accepts none of no-auth, user/password" : "the proxy wants a user name",
    );
  }
  if (choice[1] === USER_PASS) {
    if (!withAuth) throw new Error("the proxy wants a user name and none is configured");
    const user = new TextEncoder().encode(proxy.username);
    const pass = new TextEncoder().encode(proxy.password ?? "");
    if (user.length > 255 || pass.length > 255) {
      throw new Error("user name or password longer than 255 bytes");
    }
    await writeAll(conn, new Uint8Array([1, user.length, ...user, pass.length, ...pass]));
    const status = await readExact(conn, 2);
    if (status[1] !== 0) throw new Error("the proxy refused the user name and password");
  } else if (choice[1] !== NO_AUTH) {
    throw new Error(`the proxy chose an unknown authentication method ${choice[1]}`);
  }
  await writeAll(conn, new Uint8Array([VERSION, command, 0, ...encodeAddress(target.host, target.port)]));
  const head = await readExact(conn, 4);
  if (head[0] !== VERSION) throw new Error(`the proxy replied with version ${head[0]}`);
  if (head[1] !== 0) throw new Error(`the proxy replied: ${REPLIES[head[1]] ?? `error ${head[1]}`}`);
  let host: string;
  if (head[3] === ATYP_IPV4) host = ipText(await readExact(conn, 4));
  else if (head[3] === ATYP_IPV6) host = ipText(await readExact(conn, 16));
  else if (head[3] === ATYP_DOMAIN) {
    const len = (await readExact(conn, 1))[0];
    host = new TextDecoder().decode(await readExact(conn, len));
  } else throw new Error(`the proxy replied with address type ${head[3]}`);
  const p = await readExact(conn, 2);
  return { host, port: (p[0] << 8) | p[1] };
}

/**
 * Asks the SOCKS5 proxy on `conn` (a fresh connection to it) to CONNECT to `target`. Resolves once
 * the proxy says it is connected: `conn` then carries the target's stream. Rejects with the
 * proxy's reason.
 */
export async function socks5Connect(
  conn: Deno.Conn,
  proxy: ProxyConfig,
  target: SocksAddress,
): Promise<void> {
  await request(conn, proxy, CMD_CONNECT, target);
}

/**
 * Asks the SOCKS5 proxy on `conn` for a UDP association and returns where to send datagrams: the
 * relay address it names, or the proxy's own address when it names 0.0.0.0/:: (RFC 1928 §6 allows
 * it; SmartDNS does the same). The association lasts as long as `conn` stays open.
 */
export async function socks5Associate(
  conn: Deno.TcpConn,
  proxy: ProxyConfig,
  family: "v4" | "v6",
): Promise<SocksAddress> {
  const bound = await request(conn, proxy, CMD_UDP_ASSOCIATE, {
    host: family === "v4" ? "0.0.0.0" : "::",
    port: 0,
  });
  if (bound.host === "0.0.0.0" || bound.host === "::") {
    return { host: (conn.remoteAddr as Deno.NetAddr).hostname, port: bound.port };
  }
  return bound;
}

/** `payload` with the UDP request header for `target` before it (RFC 1928 §7, no fragments). */
export function udpDatagram(target: SocksAddress, payload: Uint8Array): Uint8Array {
  const address = encodeAddress(target.host, target.port);
  const out = new Uint8Array(3 + address.length + payload.length);
  out.set(address, 3);
  out.set(payload, 3 + address.length);
  return out;
}

/**
 * Splits a datagram from the relay into the address it came from and its payload; undefined for a
 * fragment (never asked for) or a malformed header.
 */
export function parseUdpDatagram(d: Uint8Array): { from: SocksAddress; payload: Uint8Array } | undefined {
  if (d.length < 4 || d[0] !== 0 || d[1] !== 0 || d[2] !== 0) return undefined;
  const len = d[3] === ATYP_IPV4 ? 4 : d[3] === ATYP_IPV6 ? 16 : 0;
  if (len === 0 || d.length < 4 + len + 2) return undefined;
  const host = ipText(d.subarray(4, 4 + len));
  const port = (d[4 + len] << 8) | d[5 + len];
  return { from: { host, port }, payload: d.subarray(6 + len) };
}
