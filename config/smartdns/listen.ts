/**
 * SmartDNS's listener directives: `bind`, `bind-tcp`, `tcp-idle-time`. The model half is
 * `ServerConfig` in config/schema.ts.
 *
 * @module
 */
import { DNS_PORT } from "../defaults.ts";
import type { Transport } from "../schema.ts";
import { parseHostPort } from "../values.ts";
import type { DirectiveTable, Draft, Line } from "./reader.ts";

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
  ["group", "its clients would get the default group's rules and servers"],
  ["no-rule-nameserver", "its queries would follow nameserver rules to other servers"],
  ["no-rules", "rules meant for other listeners would apply to it"],
  ["acl", "it would answer clients the ACL refuses"],
  ["ipset", "answer addresses would not be added to the set"],
  ["nftset", "answer addresses would not be added to the set"],
]);

function bind(d: Draft, l: Line, transport: Transport): void {
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
  const { host, port } = d.value(l, 1, () => parseHostPort(spec, DNS_PORT, "::"));
  d.options(l, 2, { withValue: WITH_VALUE, flags: FLAGS }, (opt) => {
    const why = CRITICAL.get(opt);
    if (why) d.notSupportedCritical(`${l.words[0]} -${opt}`, l, why);
    else d.notSupported(`${l.words[0]} -${opt}`, l, 0, "the listener works without it");
  });
  d.binds.push({ transport, host, port, source: d.at(l, 1) });
}

/** The listener directives. */
export const LISTEN: DirectiveTable = {
  "bind": {
    toml: "server.bind-udp",
    status: "partly",
    note: "address and port; the per-listener flags and -group are not honoured yet",
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
};
