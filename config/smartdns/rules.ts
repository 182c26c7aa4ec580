/**
 * SmartDNS's domain-rule directives: `address`, `nameserver`, `cname`, `srv-record`,
 * `txt-record`, `domain-rules`, `domain-set`, and the forced answers `force-AAAA-SOA`,
 * `force-qtype-SOA`, with `local-ttl`, `hosts-file` and `expand-ptr-from-address`. The model
 * half is `RulesConfig` in config/schema.ts; the stage that answers them is resolver/rules_stage.ts.
 *
 * @module
 */
import { type DomainRule, parseResponseMode, parseSpeedCheckModes } from "../schema.ts";
import { parseYesNo } from "../values.ts";
import {
  parseAddressAction,
  parseDns64Prefix,
  parseHttpsRecord,
  parseSrvRecord as srvRecord,
  parseTargetName as targetName,
} from "../values.ts";
import { mergeSets, parseIpsetSpec, parseNftsetSpec } from "./nftset.ts";
import { type DirectiveTable, type Draft, type Line, relativeTo } from "./reader.ts";

/** Addresses an `address` rule may give per family (SmartDNS keeps 8). */
export const MAX_ADDRESSES = 8;

/** Adds a rule for the domains of word `word` (SmartDNS's `/a.com/b.com/` form). */
function rule(
  d: Draft,
  l: Line,
  domains: string[],
  options: Omit<DomainRule, "domains" | "source" | "text">,
): void {
  d.domainRules.push({
    domains,
    source: d.at(l, 1),
    text: l.words.join(" "),
    ...(d.group !== undefined ? { group: d.group } : {}),
    ...options,
  });
}

/** `address /d/VALUE`. */
function address(d: Draft, l: Line): void {
  const { domains, value } = d.domains(l, 1);
  const action = d.value(l, 1, () => parseAddressAction(value));
  if (action.kind === "ips" && (action.v4.length > MAX_ADDRESSES || action.v6.length > MAX_ADDRESSES)) {
    d.warn(
      l,
      1,
      `address: more than ${MAX_ADDRESSES} addresses of a family; the first ${MAX_ADDRESSES} are used`,
    );
    rule(d, l, domains, {
      address: { kind: "ips", v4: action.v4.slice(0, MAX_ADDRESSES), v6: action.v6.slice(0, MAX_ADDRESSES) },
    });
    return;
  }
  rule(d, l, domains, { address: action });
}

/** `force-qtype-SOA`: `65 28`, `65,28`, `65-68`; `-` clears all; `-,65-68` clears those. */
function forceQtypeSoa(d: Draft, l: Line): void {
  for (let i = 1; i < l.words.length; i++) {
    const word = l.words[i];
    if (word.startsWith("#")) break;
    const parts = word.split(",").map((p) => p.trim()).filter((p) => p !== "");
    const clearing = parts[0] === "-";
    if (clearing && parts.length === 1) {
      d.forceQtypeSoa.clear();
      continue;
    }
    for (const part of clearing ? parts.slice(1) : parts) {
      const m = /^(\d+)(?:-(\d+))?$/.exec(part);
      if (!m) d.fail(l, i, `force-qtype-SOA: "${part}" is not a type number or range (e.g. 65, 64-66)`);
      const from = Number(m[1]);
      const to = m[2] === undefined ? from : Number(m[2]);
      if (from > 65535 || to > 65535 || to < from) {
        d.fail(l, i, `force-qtype-SOA: "${part}" is not a range of 0..65535`);
      }
      for (let t = from; t <= to; t++) clearing ? d.forceQtypeSoa.delete(t) : d.forceQtypeSoa.add(t);
    }
  }
}

/** `domain-rules` options that take a value. */
export const RULE_OPTIONS_WITH_VALUE = new Set([
  "address",
  "a",
  "nameserver",
  "n",
  "cname",
  "A",
  "speed-check-mode",
  "c",
  "response-mode",
  "r",
  "dualstack-ip-selection",
  "d",
  "ipset",
  "p",
  "nftset",
  "t",
  "https-record",
  "h",
  "txt-record",
  "T",
  "group",
  "g",
  "rr-ttl",
  "rr-ttl-min",
  "rr-ttl-max",
]);
/** `domain-rules` options that are flags. */
export const RULE_FLAGS = new Set([
  "no-serve-expired",
  "no-cache",
  "enable-cache",
  "no-ip-alias",
  "no-ignore-ip",
  "delete",
]);
/** Options kept for features not built yet; the rule works without them. */
export const RULE_DEFERRED = new Set([
  "https-record",
  "h",
  "rr-ttl",
  "rr-ttl-min",
  "rr-ttl-max",
  "no-cache",
  "enable-cache",
  "no-ip-alias",
  "no-ignore-ip",
]);
/** Options without which the rule would route or block differently. */
export const RULE_CRITICAL = new Map([
  ["group", "the rule would apply to every client, not the group"],
  ["g", "the rule would apply to every client, not the group"],
  ["delete", "the rules it deletes would still apply"],
]);

/** `domain-rules /d/ -option value …`: several rules of one domain at once. */
function domainRules(d: Draft, l: Line): void {
  const { domains, value } = d.domains(l, 1);
  if (value !== "") {
    d.fail(l, 1, `domain-rules: the domains end with "/", options follow ("${value}" is left over)`);
  }
  const options: { -readonly [K in keyof DomainRule]?: DomainRule[K] } = {};
  const deferred: string[] = [];
  d.options(l, 2, { withValue: RULE_OPTIONS_WITH_VALUE, flags: RULE_FLAGS }, (opt, v) => {
    const text = v ?? "";
    if (opt === "address" || opt === "a") options.address = d.value(l, 2, () => parseAddressAction(text));
    else if (opt === "nameserver" || opt === "n") options.nameserver = text;
    else if (opt === "cname" || opt === "A") options.cname = d.value(l, 2, () => targetName(text));
    else if (opt === "txt-record" || opt === "T") options.txt = [...(options.txt ?? []), text];
    else if (opt === "nftset" || opt === "t") {
      options.nftset = mergeSets(options.nftset, d.value(l, 2, () => parseNftsetSpec(text)));
    } else if (opt === "ipset" || opt === "p") {
      options.nftset = mergeSets(options.nftset, d.value(l, 2, () => parseIpsetSpec(text)));
    } else if (opt === "speed-check-mode" || opt === "c") {
      options.speedCheck = d.value(l, 2, () => parseSpeedCheckModes(text));
    } else if (opt === "response-mode" || opt === "r") {
      options.responseMode = d.value(l, 2, () => parseResponseMode(text));
    } else if (opt === "dualstack-ip-selection" || opt === "d") {
      options.dualstack = d.value(l, 2, () => parseYesNo(text));
    } else if (opt === "no-serve-expired") {
      options.noServeExpired = true;
    } else if (RULE_CRITICAL.has(opt)) {
      d.notSupportedCritical(`domain-rules -${opt}`, l, RULE_CRITICAL.get(opt)!);
    } else if (RULE_DEFERRED.has(opt)) {
      deferred.push(opt);
      d.notSupported(`domain-rules -${opt}`, l, 0, "read and kept; the feature is not built yet");
    }
  });
  rule(d, l, domains, { ...options, deferred });
}

/** The domain-rule directives. */
export const RULES: DirectiveTable = {
  "address": {
    toml: "rule.address",
    status: "supported",
    handle: address,
  },
  "nameserver": {
    toml: "rule.nameserver",
    status: "supported",
    handle: (d, l) => {
      const { domains, value } = d.domains(l, 1);
      if (value === "") d.fail(l, 1, `nameserver: a group name (or "-") must follow the domains`);
      rule(d, l, domains, { nameserver: value });
    },
  },
  "cname": {
    toml: "rule.cname",
    status: "supported",
    handle: (d, l) => {
      const { domains, value } = d.domains(l, 1);
      rule(d, l, domains, { cname: d.value(l, 1, () => targetName(value)) });
    },
  },
  "srv-record": {
    toml: "rule.srv",
    status: "supported",
    handle: (d, l) => {
      const { domains, value } = d.domains(l, 1);
      rule(d, l, domains, { srv: [d.value(l, 1, () => srvRecord(value))] });
    },
  },
  "https-record": {
    toml: "rule.https",
    status: "partly",
    note: "a local HTTPS record (target, port, priority, alpn, ech, ipv4hint, ipv6hint); " +
      "filtering hints in upstream answers (noipv4hint, noipv6hint) is not built yet",
    handle: (d, l) => {
      const { domains, value } = d.domains(l, 1);
      if (/(^|,)\s*no(ipv4|ipv6)hint/.test(value)) {
        d.notSupported("https-record noipv4hint/noipv6hint", l, 1, "upstream HTTPS answers keep their hints");
        return;
      }
      rule(d, l, domains, { https: d.value(l, 1, () => parseHttpsRecord(value)) });
    },
  },
  "txt-record": {
    toml: "rule.txt",
    status: "supported",
    handle: (d, l) => {
      const { domains, value } = d.domains(l, 1);
      if (new TextEncoder().encode(value).length > 255) {
        d.fail(l, 1, "txt-record: a text longer than 255 bytes");
      }
      rule(d, l, domains, { txt: [value] });
    },
  },
  "domain-rules": {
    toml: "rule.*",
    status: "partly",
    note: "-address, -nameserver, -cname, -txt-record, -nftset, -ipset, -speed-check-mode, -response-mode, " +
      "-dualstack-ip-selection, -no-serve-expired; the others are read and kept for " +
      "later features",
    handle: domainRules,
  },
  "domain-set": {
    toml: "domain-set",
    status: "supported",
    handle: (d, l) => void d.domainSets.push(d.namedList(l, d.domainSets)),
  },
  "force-AAAA-SOA": {
    toml: "rules.force-aaaa-soa",
    status: "supported",
    handle: (d, l) => d.forceAAAASOA = d.yesNo(l, 1),
  },
  "force-qtype-SOA": {
    toml: "rules.force-qtype-soa",
    status: "supported",
    handle: forceQtypeSoa,
  },
  "local-ttl": {
    toml: "rules.local-ttl",
    status: "supported",
    note: "honoured as documented; SmartDNS's source parses it but reads a field nothing sets, so " +
      "there local answers take rr-ttl, else rr-ttl-min, else 60 s (as keeldns does without it)",
    handle: (d, l) => d.localTtl = d.integer(l, 1, 0, 2 ** 31 - 1),
  },
  "hosts-file": {
    toml: "rules.hosts-files",
    status: "supported",
    handle: (d, l) => d.hostsFiles.push(relativeTo(l.file, d.text(l, 1))),
  },
  "dnsmasq-lease-file": {
    toml: "rules.lease-files",
    status: "supported",
    handle: (d, l) => d.leaseFiles.push(relativeTo(l.file, d.text(l, 1))),
  },
  "server-name": {
    toml: "rules.server-name",
    status: "supported",
    handle: (d, l) => d.serverName = d.value(l, 1, (t) => targetName(t)),
  },
  "resolv-hostname": {
    toml: "rules.resolv-hostname",
    status: "supported",
    handle: (d, l) => d.resolvHostname = d.yesNo(l, 1),
  },
  "dns64": {
    toml: "rules.dns64",
    status: "supported",
    handle: (d, l) => {
      const text = d.text(l, 1);
      d.dns64Prefix = text === "-" ? undefined : d.value(l, 1, parseDns64Prefix);
    },
  },
  "max-reply-ip-num": {
    toml: "rules.max-reply-ip-num",
    status: "supported",
    handle: (d, l) => d.maxReplyIpNum = d.integer(l, 1, 1, 16),
  },
  "expand-ptr-from-address": {
    toml: "rules.expand-ptr-from-address",
    status: "supported",
    handle: (d, l) => d.expandPtrFromAddress = d.yesNo(l, 1),
  },
};
