/**
 * SmartDNS's `proxy-server URL -name NAME`: a SOCKS5 or HTTP CONNECT proxy that servers marked
 * `-proxy NAME` are reached through (src/dns_conf/proxy_server.c). The model half is
 * `ProxyConfig` in config/schema.ts; `server -proxy` is read in upstreams.ts and resolved here
 * once the whole file is read, so a server never silently goes around a proxy it names.
 *
 * @module
 */
import { ConfigError } from "../errors.ts";
import { parseProxyUrl } from "../proxy_url.ts";

/** Why a DoQ server cannot have a proxy (upstream/create.ts refuses one too). */
const QUIC_NO_PROXY = "Deno's QUIC endpoint sends its own UDP packets, so the queries would go around " +
  "the proxy; use a server-tls or server-https server through it";
import type { DirectiveTable, Draft, Line } from "./reader.ts";

function proxyServer(d: Draft, l: Line): void {
  let name = "";
  d.options(l, 2, { withValue: new Set(["name", "n"]), flags: new Set(["fallback", "k"]) }, (o, v) => {
    if (o === "name" || o === "n") name = v ?? "";
    else d.notSupported("proxy-server -fallback", l, 0, "the proxy is used without a fallback");
  });
  const target = d.value(l, 1, parseProxyUrl);
  if (name === "") d.fail(l, 0, `proxy-server: -name is missing (servers name a proxy with -proxy NAME)`);
  if (!/^[A-Za-z0-9_-]+$/.test(name)) {
    d.fail(l, 0, `proxy-server: name "${name}" may hold only [A-Za-z0-9_-]`);
  }
  if (d.proxies.has(name)) d.fail(l, 0, `proxy-server: "${name}" is defined twice`);
  d.proxies.set(name, target === "direct" ? "direct" : { name, ...target, source: d.at(l, 1) });
}

/**
 * Puts each `-proxy NAME` server's proxy into its model; a name no `proxy-server` defines refuses
 * the file at the `-proxy` option (the server would otherwise be asked directly). Call it before
 * the critical directives are refused: `-set-mark`/`-interface` with a real proxy are critical.
 */
export function resolveProxies(d: Draft): void {
  for (const ref of d.proxyRefs) {
    const proxy = d.proxies.get(ref.name);
    if (proxy === undefined) {
      const known = [...d.proxies.keys()];
      throw new ConfigError(
        `-proxy ${ref.name}: no proxy-server is named "${ref.name}"` +
          (known.length ? ` (defined: ${known.join(", ")})` : ""),
        ref.source,
      );
    }
    if (proxy === "direct") continue;
    for (const name of ref.marked) {
      d.notSupportedCritical(name, ref.line, "the connection to the proxy cannot carry it");
    }
    if (d.upstreams[ref.upstream].transport === "quic") {
      // Deno's QUIC endpoint cannot be tunnelled: asked directly, queries would go around the proxy.
      d.notSupportedCritical(`${ref.line.words[0]} -proxy (DNS over QUIC)`, ref.line, QUIC_NO_PROXY);
    }
    d.upstreams[ref.upstream] = { ...d.upstreams[ref.upstream], proxy };
  }
}

/** The proxy directives. */
export const PROXIES: DirectiveTable = {
  "proxy-server": {
    toml: "proxy (name, url)",
    status: "partly",
    note: "socks5:// (TCP servers through CONNECT, UDP servers through UDP ASSOCIATE) and http:// " +
      "(CONNECT; TCP, TLS and HTTPS servers only) with user:pass@, direct://; IP addresses only; " +
      "-fallback reported",
    handle: proxyServer,
  },
};
