/**
 * SmartDNS's nftset/ipset directives (answer addresses added to firewall sets). The model half is
 * `DomainRule.nftset` and `RulesConfig.nftsetTimeout` in config/schema.ts; resolver/nftset_stage.ts
 * and ops/nft_batch.ts add the addresses.
 *
 * keeldns speaks nftables only. An `ipset` line is mapped onto it: `ipset /d/NAME` adds to the
 * nftables set NAME in table `inet fw4`, the table OpenWrt's firewall4 makes its `config ipset`
 * sets in (as OpenWrt's dnsmasq does with `ipset`); elsewhere, create `table inet fw4 { set NAME
 * {…} }`, or write the line as `nftset`. A bare NAME takes both families, as SmartDNS's does; a set
 * that takes only one has the other refused once, logged, and not sent again for a while.
 *
 * @module
 */
import type { AddressSetRule, NftSetTarget } from "../schema.ts";
import type { DirectiveTable, Draft, Line } from "./reader.ts";

/** The nftables families a set can live in. */
export const NFT_FAMILIES = ["inet", "ip", "ip6", "bridge", "netdev"] as const;

/** The table `ipset NAME` is mapped to (OpenWrt firewall4's). */
export const IPSET_FAMILY = "inet";
export const IPSET_TABLE = "fw4";

/** nftables identifiers: a letter or `_`, then letters, digits, `_`, `-`, `.`, `/`. */
const NFT_NAME = /^[A-Za-z_][A-Za-z0-9_./-]*$/;

function nftName(text: string, what: string): string {
  if (!NFT_NAME.test(text) || text.length > 255) {
    throw new Error(`${what} "${text}" is not an nftables name (letters, digits, _ - . /)`);
  }
  return text;
}

/** `family#table#set` (the part after `#4:`), checked against the family the addresses have. */
export function parseNftTarget(text: string, v6?: boolean): NftSetTarget {
  const parts = text.split("#");
  if (parts.length !== 3 || parts.some((p) => p === "")) {
    throw new Error(`"${text}" is not family#table#set (e.g. inet#mytable#myset)`);
  }
  const [family, table, set] = parts;
  if (!(NFT_FAMILIES as readonly string[]).includes(family)) {
    throw new Error(`"${family}" is not an nftables family (${NFT_FAMILIES.join(", ")})`);
  }
  if (v6 === true && family === "ip") throw new Error(`an ip table holds no IPv6 addresses ("${text}")`);
  if (v6 === false && family === "ip6") throw new Error(`an ip6 table holds no IPv4 addresses ("${text}")`);
  return { family, table: nftName(table, "table"), set: nftName(set, "set") };
}

/** Splits `#4:X,#6:Y` / `-` into per-family parts, as SmartDNS's nftset and ipset parsers do. */
function perFamily(
  text: string,
  what: string,
  bare: ((value: string) => AddressSetRule) | undefined,
  target: (value: string, v6: boolean) => NftSetTarget,
): AddressSetRule {
  const out: { v4?: NftSetTarget | "-"; v6?: NftSetTarget | "-" } = {};
  const tokens = text.split(",").map((t) => t.trim()).filter((t) => t !== "");
  if (tokens.length === 0) throw new Error(`${what} is missing (e.g. ${EXAMPLE[what]})`);
  for (const token of tokens) {
    if (token === "-") {
      out.v4 = out.v6 = "-";
      continue;
    }
    const m = /^#([46]):(.*)$/.exec(token);
    if (!m) {
      if (!bare) throw new Error(`"${token}" must start with #4: or #6: (e.g. ${EXAMPLE[what]})`);
      Object.assign(out, bare(token));
      continue;
    }
    const v6 = m[1] === "6";
    const value = m[2] === "-" ? "-" : target(m[2], v6);
    if (v6) out.v6 = value;
    else out.v4 = value;
  }
  return out;
}

const EXAMPLE: Record<string, string> = {
  "nftset": "#4:inet#mytable#myset4,#6:inet#mytable#myset6",
  "ipset": "myset or #4:myset4,#6:myset6",
};

/** The value of `nftset /d/VALUE`: `#4:family#table#set`, `#6:…`, either `-`, or `-` alone. */
export function parseNftsetSpec(text: string): AddressSetRule {
  return perFamily(text, "nftset", undefined, parseNftTarget);
}

/** The nftables set `ipset NAME` stands for (see the module doc). */
export function ipsetTarget(name: string): NftSetTarget {
  return { family: IPSET_FAMILY, table: IPSET_TABLE, set: nftName(name, "ipset name") };
}

/** The value of `ipset /d/VALUE`: `NAME` (both families), `#4:NAME`, `#6:NAME`, `-`. */
export function parseIpsetSpec(text: string): AddressSetRule {
  return perFamily(text, "ipset", (name) => {
    const target = ipsetTarget(name);
    return { v4: target, v6: target };
  }, (name) => ipsetTarget(name));
}

/** A target as nftset writes it (`inet#t#s`). */
export function nftTargetText(t: NftSetTarget | "-"): string {
  return t === "-" ? "-" : `${t.family}#${t.table}#${t.set}`;
}

/** A rule's sets as an nftset value (`#4:inet#t#s,#6:-`). */
export function nftsetText(r: AddressSetRule): string {
  if (r.v4 === "-" && r.v6 === "-") return "-";
  const parts: string[] = [];
  if (r.v4) parts.push(`#4:${nftTargetText(r.v4)}`);
  if (r.v6) parts.push(`#6:${nftTargetText(r.v6)}`);
  return parts.join(",");
}

/** Lays `b` over `a`, family by family (several set options on one line). */
export function mergeSets(a: AddressSetRule | undefined, b: AddressSetRule): AddressSetRule {
  return { ...a, ...Object.fromEntries(Object.entries(b).filter(([, v]) => v !== undefined)) };
}

function setRule(d: Draft, l: Line, parse: (text: string) => AddressSetRule): void {
  const { domains, value } = d.domains(l, 1);
  const nftset = d.value(l, 1, () => parse(value));
  d.domainRules.push({ domains, source: d.at(l, 1), text: l.words.join(" "), nftset });
}

const NO_SPEED = "there is no speed check yet, so no address is found unreachable; the set stays empty";

/** The nftset/ipset directives. */
export const NFTSET: DirectiveTable = {
  "nftset": {
    toml: "rule.nftset",
    status: "supported",
    handle: (d, l) => setRule(d, l, parseNftsetSpec),
  },
  "ipset": {
    toml: "rule.nftset",
    status: "partly",
    note: `mapped onto nftables (no ipset): NAME is the nftables set NAME in table ` +
      `${IPSET_FAMILY} ${IPSET_TABLE} (OpenWrt firewall4's), e.g. #4:inet#${IPSET_TABLE}#NAME`,
    handle: (d, l) => setRule(d, l, parseIpsetSpec),
  },
  "nftset-timeout": {
    toml: "rules.nftset-timeout",
    status: "supported",
    handle: (d, l) => d.nftsetTimeout = d.yesNo(l, 1),
  },
  "ipset-timeout": {
    toml: "rules.nftset-timeout",
    status: "supported",
    note: "the same switch as nftset-timeout",
    handle: (d, l) => d.nftsetTimeout = d.yesNo(l, 1),
  },
  "nftset-debug": {
    toml: "rules.nftset-debug",
    status: "supported",
    note: "logs every batch written to nft (info level)",
    handle: (d, l) => d.nftsetDebug = d.yesNo(l, 1),
  },
  "nftset-no-speed": {
    toml: "(read, not honoured)",
    status: "partly",
    note: NO_SPEED,
    handle: (d, l) => {
      d.nftsetNoSpeed = d.value(l, 1, parseNftsetSpec);
      d.notSupported("nftset-no-speed", l, 0, NO_SPEED);
    },
  },
  "ipset-no-speed": {
    toml: "(read, not honoured)",
    status: "partly",
    note: NO_SPEED,
    handle: (d, l) => {
      d.nftsetNoSpeed = d.value(l, 1, parseIpsetSpec);
      d.notSupported("ipset-no-speed", l, 0, NO_SPEED);
    },
  },
};
