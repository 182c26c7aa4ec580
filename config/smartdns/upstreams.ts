/**
 * SmartDNS's upstream directives: `server`, `server-tcp`, `resolv-file`, and the encrypted kinds
 * not built yet. The model half is `UpstreamConfig` in config/schema.ts.
 *
 * @module
 */
import type { Transport } from "../schema.ts";
import { parseUpstreamAddress, type UpstreamAddress } from "../values.ts";
import type { DirectiveTable, Draft, Line } from "./reader.ts";

/** `server` options that take a value, by every name SmartDNS accepts. */
export const WITH_VALUE = new Set([
  "group",
  "g",
  "proxy",
  "p",
  "host-name",
  "tls-host-verify",
  "spki-pin",
  "http-host",
  "host-ip",
  "subnet",
  "interface",
  "set-mark",
  "tcp-keepalive",
  "alpn",
  "drop-packet-latency",
]);
/** `server` options that are flags. */
export const FLAGS = new Set([
  "exclude-default-group",
  "e",
  "blacklist-ip",
  "whitelist-ip",
  "check-edns",
  "bootstrap-dns",
  "b",
  "no-check-certificate",
  "k",
  "subnet-all-query-types",
  "fallback",
  "hitchhiking",
]);
/** Options without which queries would go another way than the file says. */
export const CRITICAL = new Map([
  ["proxy", "queries would go to the server directly, not through the proxy"],
  ["p", "queries would go to the server directly, not through the proxy"],
  ["interface", "queries would leave by the default route, not that interface"],
  ["set-mark", "queries would not carry the mark policy routing uses"],
  ["fallback", "the fallback server would be asked every question, not only when the others fail"],
]);
/** Options that only mean something for encrypted servers. */
export const TLS_ONLY = new Set([
  "host-name",
  "tls-host-verify",
  "spki-pin",
  "http-host",
  "no-check-certificate",
  "k",
  "alpn",
]);

function server(d: Draft, l: Line, transport: Transport): void {
  const text = d.text(l, 1);
  let address: UpstreamAddress;
  try {
    address = parseUpstreamAddress(text, transport);
  } catch (e) {
    const reason = (e as Error).message;
    if (reason.includes("not supported yet") && reason.includes("://")) {
      d.notSupported(
        `${l.words[0]} ${reason.split(":")[0]}://`,
        l,
        1,
        "encrypted upstreams are not built yet",
      );
      d.unusableServers.push(d.at(l, 1));
      return;
    }
    d.fail(l, 1, `${l.words[0]}: ${reason}`);
  }
  const groups: string[] = [];
  let excludeDefault = false;
  let blacklistIp = false;
  let whitelistIp = false;
  d.options(l, 2, { withValue: WITH_VALUE, flags: FLAGS }, (opt, value) => {
    if (opt === "group" || opt === "g") {
      if (value && !groups.includes(value)) groups.push(value);
    } else if (opt === "exclude-default-group" || opt === "e") {
      excludeDefault = true;
    } else if (opt === "blacklist-ip") {
      blacklistIp = true;
    } else if (opt === "whitelist-ip") {
      whitelistIp = true;
    } else if (CRITICAL.has(opt)) {
      d.notSupportedCritical(`${l.words[0]} -${opt}`, l, CRITICAL.get(opt)!);
    } else if (TLS_ONLY.has(opt)) {
      d.warn(l, 0, `${l.words[0]}: -${opt} only applies to encrypted servers; ignored`);
    } else {
      d.notSupported(`${l.words[0]} -${opt}`, l, 0, "the server is used without it");
    }
  });
  d.upstreams.push({
    ...address,
    groups,
    excludeDefault,
    ...(blacklistIp ? { blacklistIp } : {}),
    ...(whitelistIp ? { whitelistIp } : {}),
    source: d.at(l, 1),
  });
}

/** An encrypted server kind not built yet: reported, and counted as a server line keeldns cannot use. */
function encrypted(name: string): DirectiveTable[string] {
  return {
    toml: "upstream.address",
    status: "partly",
    note: "not built yet: reported, and never replaced by resolv.conf",
    handle: (d, l) => {
      d.notSupported(name, l, 0, "encrypted upstreams are not built yet");
      d.unusableServers.push(d.at(l, 1));
    },
  };
}

/** The upstream directives. */
export const UPSTREAMS: DirectiveTable = {
  "server": {
    toml: "upstream.address",
    status: "partly",
    note: "udp:// and tcp:// with -group, -exclude-default-group, -blacklist-ip, -whitelist-ip; " +
      "other options reported",
    handle: (d, l) => server(d, l, "udp"),
  },
  "server-tcp": {
    toml: "upstream.address (tcp://)",
    status: "partly",
    note: "as server",
    handle: (d, l) => server(d, l, "tcp"),
  },
  "resolv-file": {
    toml: "(none: list the servers)",
    status: "supported",
    handle: (d, l) => d.resolvFile = d.text(l, 1),
  },
  "server-tls": encrypted("server-tls"),
  "server-https": encrypted("server-https"),
  "server-quic": encrypted("server-quic"),
  "server-h3": encrypted("server-h3"),
  "server-http3": encrypted("server-http3"),
};
