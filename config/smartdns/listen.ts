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
  ["acl", "it would answer clients the ACL refuses"],
  ["ipset", "answer addresses would not be added to the set"],
  ["nftset", "answer addresses would not be added to the set"],
]);

/** Bind flags keeldns honours (server/listener.ts turns them into BindFlag bits). */
export const HONOURED = new Set([
  "no-rule-addr",
  "no-rule-nameserver",
  "no-rule-soa",
  "no-rules",
  "no-cache",
  "force-aaaa-soa",
]);
/** Bind flags that turn off a feature keeldns does not have yet: already so. */
export const ALREADY = new Set(["no-speed-check", "no-dualstack-selection", "no-serve-expired"]);

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
  let group: string | undefined;
  const flags: string[] = [];
  d.options(l, 2, { withValue: WITH_VALUE, flags: FLAGS }, (opt, value) => {
    const why = CRITICAL.get(opt);
    if (why) d.notSupportedCritical(`${l.words[0]} -${opt}`, l, why);
    else if (opt === "group") group = value;
    else if (HONOURED.has(opt)) flags.push(opt);
    else if (ALREADY.has(opt)) return; // the feature it turns off is not built: nothing to do
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
};
