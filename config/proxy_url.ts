/**
 * Reads a proxy URL the way SmartDNS's `proxy-server` takes one: `socks5://[user:pass@]IP[:port]`
 * (port 1080 by default), `http://[user:pass@]IP[:port]` (3128), or `direct://` / `passthrough://`
 * for a name that means "no proxy". Shared by smartdns.conf and keeldns.toml.
 *
 * @module
 */
import type { ProxyConfig } from "./schema.ts";
import { parseHostPort } from "./values.ts";

const DEFAULT_PROXY_PORTS = { socks5: 1080, http: 3128 } as const;

/** A proxy as its URL gives it (no name), or "direct" for a passthrough name. */
export type ProxyTarget = Omit<ProxyConfig, "name" | "source"> | "direct";

/** Parses a proxy URL; throws with the reason for a scheme, address or credential it cannot use. */
export function parseProxyUrl(text: string): ProxyTarget {
  const m = /^([a-z0-9]+):\/\/(.*)$/i.exec(text);
  if (!m) throw new Error(`"${text}" is not a proxy URL (socks5://IP:port or http://IP:port)`);
  const scheme = m[1].toLowerCase();
  if (scheme === "direct" || scheme === "passthrough") return "direct";
  if (scheme !== "socks5" && scheme !== "http") {
    throw new Error(`unknown proxy scheme "${scheme}://" (use socks5:// or http://)`);
  }
  let rest = m[2].replace(/\/$/, "");
  let username: string | undefined;
  let password: string | undefined;
  const at = rest.lastIndexOf("@");
  if (at >= 0) {
    const info = rest.slice(0, at);
    rest = rest.slice(at + 1);
    const colon = info.indexOf(":");
    username = colon < 0 ? info : info.slice(0, colon);
    password = colon < 0 ? "" : info.slice(colon + 1);
    if (scheme === "socks5" && (username.length > 255 || password.length > 255)) {
      throw new Error("SOCKS5 user names and passwords are at most 255 bytes (RFC 1929)");
    }
  }
  if (rest.includes("/")) throw new Error(`"${text}": a proxy URL has no path`);
  let hostPort: { host: string; port: number };
  try {
    hostPort = parseHostPort(rest, DEFAULT_PROXY_PORTS[scheme]);
  } catch (e) {
    if (!/is not an IP address/.test((e as Error).message)) throw e;
    throw new Error(`"${rest}": give the proxy's IP address (proxy host names are not resolved)`);
  }
  const { host, port } = hostPort;
  return { kind: scheme, host, port, ...(username !== undefined ? { username, password } : {}) };
}

/** The URL form of a proxy (credentials included), as `parseProxyUrl` reads it back. */
export function proxyUrl(p: Omit<ProxyConfig, "name" | "source">): string {
  const user = p.username !== undefined ? `${p.username}:${p.password ?? ""}@` : "";
  const host = p.host.includes(":") ? `[${p.host}]` : p.host;
  return `${p.kind}://${user}${host}:${p.port}`;
}
