/**
 * SmartDNS's IP-rule directives: filters on the addresses of upstream answers — `bogus-nxdomain`,
 * `blacklist-ip`, `whitelist-ip`, `ignore-ip`, `ip-alias`, `ip-rules` and `ip-set` lists. The
 * model half is `RulesConfig.ipRules` / `ipSets` in config/schema.ts; the filter that applies
 * them inside the upstream race is resolver/answer_filter.ts.
 *
 * @module
 */
import type { IpRuleConfig } from "../schema.ts";
import { isIPv4, isIPv6 } from "../values.ts";
import { parseCidr } from "../../net/cidr_set.ts";
import type { DirectiveTable, Draft, Line } from "./reader.ts";

/** Checks one prefix or `ip-set:NAME` word; returns it as written. */
function cidr(text: string): string {
  if (text.startsWith("ip-set:")) return text;
  parseCidr(text);
  return text;
}

/** A comma list of addresses for `ip-alias`. */
function addresses(text: string): string[] {
  const ips = text.split(",").map((t) => t.trim()).filter((t) => t !== "");
  for (const ip of ips) if (!isIPv4(ip) && !isIPv6(ip)) throw new Error(`"${ip}" is not an IP address`);
  if (ips.length === 0) throw new Error("no address to alias to");
  return ips;
}

const NONE = { blacklist: false, whitelist: false, bogusNxdomain: false, ignore: false } as const;

/** A rule of one kind on the prefixes in words 1…; `ip-alias` takes its addresses from word 2. */
function simple(kind: keyof typeof NONE | "alias"): DirectiveTable[string]["handle"] {
  return (d: Draft, l: Line) => {
    const cidrs = [d.value(l, 1, cidr)];
    const rule: { -readonly [K in keyof IpRuleConfig]: IpRuleConfig[K] } = {
      cidrs,
      ...NONE,
      source: d.at(l, 1),
    };
    if (kind === "alias") rule.alias = d.value(l, 2, addresses);
    else rule[kind] = true;
    d.ipRules.push(rule);
  };
}

/** `ip-rules CIDR [-blacklist-ip] [-whitelist-ip] [-bogus-nxdomain] [-ignore-ip] [-ip-alias ips]`. */
function ipRules(d: Draft, l: Line): void {
  const rule: { -readonly [K in keyof IpRuleConfig]: IpRuleConfig[K] } = {
    cidrs: [d.value(l, 1, cidr)],
    ...NONE,
    source: d.at(l, 1),
  };
  d.options(l, 2, {
    withValue: new Set(["ip-alias", "a"]),
    flags: new Set(["blacklist-ip", "b", "whitelist-ip", "w", "bogus-nxdomain", "n", "ignore-ip", "i"]),
  }, (opt, value) => {
    if (opt === "blacklist-ip" || opt === "b") rule.blacklist = true;
    else if (opt === "whitelist-ip" || opt === "w") rule.whitelist = true;
    else if (opt === "bogus-nxdomain" || opt === "n") rule.bogusNxdomain = true;
    else if (opt === "ignore-ip" || opt === "i") rule.ignore = true;
    else rule.alias = d.value(l, 2, () => addresses(value ?? ""));
  });
  d.ipRules.push(rule);
}

/** The IP-rule directives. */
export const IP_RULES: DirectiveTable = {
  "bogus-nxdomain": { toml: "ip-rule.bogus-nxdomain", status: "supported", handle: simple("bogusNxdomain") },
  "blacklist-ip": { toml: "ip-rule.blacklist", status: "supported", handle: simple("blacklist") },
  "whitelist-ip": { toml: "ip-rule.whitelist", status: "supported", handle: simple("whitelist") },
  "ignore-ip": { toml: "ip-rule.ignore", status: "supported", handle: simple("ignore") },
  "ip-alias": { toml: "ip-rule.alias", status: "supported", handle: simple("alias") },
  "ip-rules": { toml: "ip-rule", status: "supported", handle: ipRules },
  "ip-set": {
    toml: "ip-set",
    status: "supported",
    handle: (d, l) => void d.ipSets.push(d.namedList(l, d.ipSets)),
  },
};
