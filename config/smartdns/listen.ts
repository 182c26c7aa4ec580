/**
 * SmartDNS's listener directives: `bind`, `bind-tcp`, `bind-tls`, `bind-https`, `bind-cert-*`,
 * `tcp-idle-time`. The model half is `ServerConfig` in config/schema.ts.
 *
 * @module
 */
import { DNS_PORT } from "../defaults.ts";
import type { ListenerTransport } from "../schema.ts";
import { parseHostPort } from "../values.ts";
import { type DirectiveTable, type Draft, type Line, relativeTo } from "./reader.ts";

/** Default ports of the encrypted listeners (RFC 7858, RFC 8484, RFC 9250: keeldns.toml only). */
const DEFAULT_PORTS: Record<ListenerTransport, number> = {
  udp: DNS_PORT,
  tcp: DNS_PORT,
  tls: 853,
  https: 443,
  quic: 853,
};

/** `bind` options that take a value. */
export const WITH_VALUE = new Set(["group", "ipset", "nftset", "alpn"]);
/** `bind` options that are flags. */
export const FLAGS = new Set([
  "no-rule-addr",
  "no-rule-nameserver",
  "no-rule-ipset",
  "no-rule-soa",
  "no-speed-check",
  "no-cache",
  "no-dualstack-selection",
  "no-ip-alias",
  "force-aaaa-soa",
  "force-https-soa",
  "no-serve-expired",
  "no-rules",
  "acl",
  "ddr",
  "no-rule-sni-proxy",
]);
/** Bind options without which this listener's clients would get another policy (other servers, no ACL). */
export const CRITICAL = new Map([
  ["acl", "it would answer clients the ACL refuses"],
  ["ipset", "answer addresses would not be added to the set"],
  ["nftset", "answer addresses would not be added to the set"],
]);

/**
 * Bind flags keeldns honours (server/listener.ts turns them into BindFlag bits; `ddr` adds the
 * listener to the DDR answer, resolver/designated_resolvers.ts).
 */
export const HONOURED = new Set([
  "ddr",
  "no-rule-addr",
  "no-rule-nameserver",
  "no-rule-soa",
  "no-rules",
  "no-cache",
  "force-aaaa-soa",
  "no-speed-check",
  "no-dualstack-selection",
  "no-serve-expired",
]);

function bind(d: Draft, l: Line, transport: ListenerTransport): void {
  let spec = d.text(l, 1);
  const at = spec.indexOf("@");
  if (at >= 0) {
    d.notSupportedCritical(
      `${l.words[0]} @device`,
      l,
      "the listener would not be tied to that interface and would answer on every one",
      1,
    );
    spec = spec.slice(0, at);
  }
  const { host, port } = d.value(l, 1, () => parseHostPort(spec, DEFAULT_PORTS[transport], "::"));
  let group: string | undefined;
  const flags: string[] = [];
  d.options(l, 2, { withValue: WITH_VALUE, flags: FLAGS }, (opt, value) => {
    const why = CRITICAL.get(opt);
    if (why) d.notSupportedCritical(`${l.words[0]} -${opt}`, l, why);
    else if (opt === "group") group = value;
    else if (HONOURED.has(opt)) flags.push(opt);
    else d.notSupported(`${l.words[0]} -${opt}`, l, 0, "the listener works without it");
  });
  d.binds.push({
    transport,
    host,
    port,
    ...(group !== undefined ? { group } : {}),
    ...(flags.length > 0 ? { flags } : {}),
    source: d.at(l, 1),
  });
}

/** The listener directives. */
export const LISTEN: DirectiveTable = {
  "bind": {
    toml: "server.bind-udp",
    status: "partly",
    note: "address, port, -group and the rule/cache flags; -acl, -ipset, -nftset and @device are not " +
      "honoured yet (a file using them is refused)",
    handle: (d, l) => bind(d, l, "udp"),
  },
  "bind-tcp": {
    toml: "server.bind-tcp",
    status: "partly",
    note: "as bind",
    handle: (d, l) => bind(d, l, "tcp"),
  },
  "tcp-idle-time": {
    toml: "server.tcp-idle-time",
    status: "supported",
    handle: (d, l) => d.tcpIdleTime = d.integer(l, 1, 0, 3600),
  },
  "bind-tls": {
    toml: "server.listen (tls://)",
    status: "partly",
    note: "DNS over TLS, default port 853, options as bind; bind-cert-file and bind-cert-key-file, or " +
      "without them a CA and certificate made once into the data directory (tls/ beside the cache file); " +
      "-ddr advertises it in the answer to _dns.resolver.arpa SVCB (RFC 9462)",
    handle: (d, l) => bind(d, l, "tls"),
  },
  "bind-https": {
    toml: "server.listen (https://)",
    status: "partly",
    note: "DNS over HTTPS at /dns-query (POST and GET, HTTP/2 and HTTP/1.1), default port 443, options as " +
      "bind; the certificate and -ddr as bind-tls (the DDR record also carries dohpath)",
    handle: (d, l) => bind(d, l, "https"),
  },
  "bind-cert-file": {
    toml: "server.cert-file",
    status: "supported",
    handle: (d, l) => d.certFile = relativeTo(l.file, d.text(l, 1)),
  },
  "bind-cert-key-file": {
    toml: "server.key-file",
    status: "supported",
    handle: (d, l) => d.keyFile = relativeTo(l.file, d.text(l, 1)),
  },
  "bind-cert-key-pass": {
    toml: "server.key-pass",
    status: "partly",
    note: "read, but Deno cannot load an encrypted key: start is refused (decrypt the key first)",
    handle: (d, l) => d.keyPass = d.text(l, 1),
  },
};
