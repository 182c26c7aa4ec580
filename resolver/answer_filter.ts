/**
 * The IP rules on upstream answers, applied inside the race to each server's answer before it may
 * win (SmartDNS's `bogus-nxdomain`, `blacklist-ip`, `whitelist-ip`, `ignore-ip`, `ip-alias`,
 * `ip-rules`, `ip-set`): the answer's A and AAAA addresses are read in place and looked up in one
 * {@link CidrSet}. A refused answer makes the race wait for the other servers; a bogus one turns
 * into NXDOMAIN; an aliased one has the matching addresses replaced.
 *
 * @module
 */
import { readFailure } from "../config/errors.ts";
import { parseIpList } from "../config/ip_list.ts";
import type { IpRuleConfig, IpSetConfig } from "../config/schema.ts";
import { decodePacket, encodePacket } from "../dns/packet.ts";
import { HEADER_LENGTH, skipName } from "../dns/wire.ts";
import { ipBytes } from "../net/address.ts";
import { CidrSet } from "../net/cidr_set.ts";
import type { TracedIpRule } from "./query_trace.ts";

const BLACKLIST = 1;
const WHITELIST = 2;
const BOGUS = 4;
const IGNORE = 8;

/** What the filter says of one answer. */
export type FilterVerdict =
  /** Take it as it is. */
  | { readonly kind: "accept" }
  /** Refuse it; the race waits for the other servers. `why` is for the log. */
  | { readonly kind: "refuse"; readonly why: string }
  /** Answer NXDOMAIN instead (bogus-nxdomain). */
  | { readonly kind: "nxdomain" }
  /** Take this answer instead (ip-alias applied). */
  | { readonly kind: "rewritten"; readonly wire: Uint8Array };

const ACCEPT: FilterVerdict = Object.freeze({ kind: "accept" });

/** How a server's answers are filtered (its `-blacklist-ip` / `-whitelist-ip` flags). */
export interface ServerFilterFlags {
  readonly blacklistIp?: boolean;
  readonly whitelistIp?: boolean;
}

/** One rule as the filter keeps it: its flags and its alias addresses. */
interface FilterRule {
  readonly flags: number;
  readonly alias?: readonly string[];
}

/** The IP rules of one configuration, compiled. */
export class AnswerFilter {
  private readonly set = new CidrSet();
  private readonly rules: FilterRule[] = [];
  private readonly hasAlias: boolean;
  /** The rules as configured, by index (for {@link rulesMatching}). */
  private readonly configs: readonly IpRuleConfig[];

  /**
   * Builds the filter from the rules and their ip-set files (read now; a file that cannot be
   * read is reported through `warn` and holds nothing).
   */
  constructor(
    rules: readonly IpRuleConfig[],
    sets: readonly IpSetConfig[],
    warn: (message: string) => void,
    readFile: (path: string) => string = Deno.readTextFileSync,
  ) {
    this.configs = rules;
    const setCidrs = new Map<string, string[]>();
    for (const set of sets) {
      try {
        const { cidrs, problems } = parseIpList(readFile(set.file), set.file);
        for (const p of problems) warn(`${p.file}:${p.line}:${p.col}: ${p.reason}`);
        setCidrs.set(set.name, cidrs);
      } catch (e) {
        warn(`ip-set "${set.name}": ${set.file}: ${readFailure(e)}; the set is empty`);
        setCidrs.set(set.name, []);
      }
    }
    for (const rule of rules) {
      const flags = (rule.blacklist ? BLACKLIST : 0) | (rule.whitelist ? WHITELIST : 0) |
        (rule.bogusNxdomain ? BOGUS : 0) | (rule.ignore ? IGNORE : 0);
      const index = this.rules.push({ flags, alias: rule.alias }) - 1;
      for (const cidr of rule.cidrs) {
        const set = /^ip-set:(.*)$/.exec(cidr)?.[1];
        for (const c of set !== undefined ? setCidrs.get(set) ?? [] : [cidr]) this.set.add(c, index);
      }
    }
    this.hasAlias = rules.some((r) => r.alias);
  }

  /** Whether there is any rule (an empty filter is left out of the race). */
  get empty(): boolean {
    return this.set.prefixes === 0;
  }

  /** Judges a checked upstream answer from a server with `server` flags. */
  judge(wire: Uint8Array, server: ServerFilterFlags): FilterVerdict {
    let pos = HEADER_LENGTH;
    const qd = (wire[4] << 8) | wire[5];
    for (let i = 0; i < qd; i++) pos = skipName(wire, pos) + 4;
    const an = (wire[6] << 8) | wire[7];
    let aliased = false;
    let addresses = 0;
    for (let i = 0; i < an; i++) {
      const end = skipName(wire, pos);
      if (end < 0 || end + 10 > wire.length) return ACCEPT; // checked before: cannot happen
      const type = (wire[end] << 8) | wire[end + 1];
      const rdlength = (wire[end + 8] << 8) | wire[end + 9];
      const rdata = end + 10;
      pos = rdata + rdlength;
      if (!((type === 1 && rdlength === 4) || (type === 28 && rdlength === 16))) continue;
      addresses++;
      let flags = 0;
      let alias = false;
      this.set.match(wire, rdata, rdlength, (index) => {
        flags |= this.rules[index].flags;
        if (this.rules[index].alias) alias = true;
      });
      if (flags & BOGUS) return { kind: "nxdomain" };
      if (flags & IGNORE) return { kind: "refuse", why: "an address is on ignore-ip" };
      if (server.blacklistIp && (flags & BLACKLIST)) {
        return { kind: "refuse", why: "an address is blacklisted" };
      }
      if (server.whitelistIp && !(flags & WHITELIST)) {
        return { kind: "refuse", why: "an address is not whitelisted" };
      }
      aliased ||= alias;
    }
    if (!aliased || !this.hasAlias || addresses === 0) return ACCEPT;
    return this.alias(wire);
  }

  /**
   * The rules that match an A or AAAA address of a checked answer, each once, as smartdns.conf
   * lines with their place (for `explain`; not on the query path).
   */
  rulesMatching(wire: Uint8Array): TracedIpRule[] {
    const found = new Set<number>();
    try {
      for (const r of decodePacket(wire).answers ?? []) {
        if (r.type !== "A" && r.type !== "AAAA") continue;
        const bytes = ipBytes(String(r.data));
        this.set.match(bytes, 0, bytes.length, (index) => found.add(index));
      }
    } catch {
      // records dns-packet cannot read: nothing to name
    }
    return [...found].sort((a, b) => a - b).map((i) => {
      const rule = this.configs[i];
      return { text: ipRuleText(rule), source: rule.source };
    });
  }

  /** Replaces the addresses that have an ip-alias rule by the rule's addresses (miss path only). */
  private alias(wire: Uint8Array): FilterVerdict {
    try {
      const packet = decodePacket(wire);
      const answers = [];
      const seen = new Set<string>();
      for (const r of packet.answers ?? []) {
        if (r.type !== "A" && r.type !== "AAAA") {
          answers.push(r);
          continue;
        }
        const text = String(r.data);
        const bytes = ipBytes(text);
        let alias: readonly string[] | undefined;
        this.set.match(bytes, 0, bytes.length, (index) => alias = this.rules[index].alias ?? alias);
        // The record's own family only: an A answer stays A records.
        const same = (alias ?? []).filter((ip) => ip.includes(":") === (r.type === "AAAA"));
        for (const ip of same.length > 0 ? same : [text]) {
          if (seen.has(ip)) continue;
          seen.add(ip);
          answers.push({ ...r, data: ip });
        }
      }
      packet.answers = answers;
      return { kind: "rewritten", wire: encodePacket(packet) };
    } catch {
      return ACCEPT; // records dns-packet cannot rebuild: sent as they came
    }
  }
}

/** An IP rule as a smartdns.conf line says it (`ignore-ip 192.0.2.1/32`, `ip-rules … -flags`). */
function ipRuleText(rule: IpRuleConfig): string {
  const flags = [
    rule.bogusNxdomain ? "bogus-nxdomain" : "",
    rule.blacklist ? "blacklist-ip" : "",
    rule.whitelist ? "whitelist-ip" : "",
    rule.ignore ? "ignore-ip" : "",
    rule.alias ? "ip-alias" : "",
  ].filter((f) => f !== "");
  const cidrs = rule.cidrs.join(",");
  if (flags.length === 1 && !rule.alias) return `${flags[0]} ${cidrs}`;
  if (flags.length === 1) return `ip-alias ${cidrs} ${rule.alias!.join(",")}`;
  return `ip-rules ${cidrs} ${
    flags.map((f) => f === "ip-alias" ? `-ip-alias ${rule.alias!.join(",")}` : `-${f}`).join(" ")
  }`;
}
