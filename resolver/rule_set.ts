/**
 * The domain rules of a configuration, compiled once when it loads: every rule line and every
 * domain of every domain set goes into one {@link DomainTable}, whose values are ids of merged
 * rule records. A record says, kind by kind (IPv4 address, IPv6 address, other types, upstream
 * group, CNAME, SRV, TXT, hosts names), what the most specific rule of that kind is, as SmartDNS's
 * rule walk does (`_dns_server_get_rules` keeps the deepest rule of each kind); merges of two
 * records are made once and shared, so a million-name list costs one record. Local answers are
 * built once per record and type.
 *
 * @module
 */
import { scanDomainList } from "../config/domain_list.ts";
import { readFailure } from "../config/errors.ts";
import { type HostEntry, parseHostsFile } from "../config/hosts_file.ts";
import { parseDnsmasqLeases } from "../config/lease_file.ts";
import { expandInclude } from "../config/smartdns/reader.ts";
import type {
  AddressAction,
  CacheConfig,
  DomainRule,
  NftSetTarget,
  ResponseMode,
  RulesConfig,
  SourcePosition,
  SpeedCheckMode,
} from "../config/schema.ts";
import type { Answer } from "../dns/answer.ts";
import { encodeName, LocalAnswer, type LocalRecord, RecordType } from "../dns/local_answer.ts";
import { type SvcbParams, svcbRdata } from "../dns/svcb.ts";
import { Rcode } from "../dns/wire.ts";
import { ipBytes, reverseName } from "../net/address.ts";
import { DDR_NAME } from "./designated_resolvers.ts";
import { DomainTable, NO_RULE } from "./domain_table.ts";
import { Reason, type ReasonCode } from "./query_context.ts";

/** SmartDNS's TTL of local records (DNS_SERVER_ADDR_TTL) when neither local-ttl nor rr-ttl* say. */
const LOCAL_TTL = 60;

/**
 * The TTL of local answers (address, hosts, PTR, DNS64, local CNAME), in SmartDNS's order
 * (`_dns_server_get_local_ttl`): `local-ttl`, else `rr-ttl`, else `rr-ttl-min`, else 60 s; then at
 * most `rr-ttl-reply-max` (local TTLs do not count down, so capping them once is capping each
 * reply). `rr-ttl-max` does not lower it.
 */
export function localAnswerTtl(
  localTtl: number,
  policy: Pick<CacheConfig, "rrTtl" | "rrTtlMin"> & Partial<Pick<CacheConfig, "rrTtlReplyMax">>,
): number {
  const ttl = localTtl > 0
    ? localTtl
    : policy.rrTtl > 0
    ? policy.rrTtl
    : policy.rrTtlMin > 0
    ? policy.rrTtlMin
    : LOCAL_TTL;
  const cap = policy.rrTtlReplyMax ?? 0;
  return cap > 0 && ttl > cap ? cap : ttl;
}

/** A rule file could not be used while rebuilding rules that are already serving. */
export class RuleFileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "RuleFileError";
  }
}

/** One kind of one rule: what it decides, and which rule line said so. */
interface Decision<T> {
  readonly value: T;
  /** Index into {@link RuleSet.rules}. */
  readonly rule: number;
}

/** What an address kind decides for its family: addresses, NXDOMAIN, an empty answer, or nothing. */
type AddressDecision =
  | { readonly kind: "ips"; readonly records: readonly LocalRecord[] }
  | { readonly kind: "nxdomain" }
  | { readonly kind: "empty" }
  | { readonly kind: "exempt" };

/** The kinds of a rule record; each is the deepest rule of that kind on the name's path. */
interface RuleRecord {
  readonly v4?: Decision<AddressDecision>;
  readonly v6?: Decision<AddressDecision>;
  /** For every other type: `#` makes it NXDOMAIN, `-` exempts. */
  readonly other?: Decision<AddressDecision>;
  /** Upstream group index (0 = default). */
  readonly group?: Decision<number>;
  /** CNAME target, or "" for an exemption. */
  readonly cname?: Decision<string>;
  readonly srv?: Decision<readonly LocalRecord[]>;
  readonly txt?: Decision<readonly LocalRecord[]>;
  readonly https?: Decision<readonly LocalRecord[]>;
  readonly ptr?: Decision<readonly LocalRecord[]>;
  /** SVCB records (the DDR answer of `_dns.resolver.arpa`). */
  readonly svcb?: Decision<readonly LocalRecord[]>;
  /** nftset/ipset, per family as in SmartDNS (`#4:` and `#6:` are separate kinds); null exempts. */
  readonly nftset4?: Decision<NftSetTarget | null>;
  readonly nftset6?: Decision<NftSetTarget | null>;
  /** `domain-rules -speed-check-mode`, `-response-mode`, `-dualstack-ip-selection`: each its own kind. */
  readonly speedCheck?: Decision<readonly SpeedCheckMode[]>;
  readonly responseMode?: Decision<ResponseMode>;
  readonly dualstack?: Decision<boolean>;
  /** `domain-rules -no-serve-expired`. */
  readonly noServeExpired?: Decision<boolean>;
}

const KINDS = [
  "v4",
  "v6",
  "other",
  "group",
  "cname",
  "srv",
  "txt",
  "https",
  "ptr",
  "svcb",
  "nftset4",
  "nftset6",
  "speedCheck",
  "responseMode",
  "dualstack",
  "noServeExpired",
] as const;

/** The names `explain` gives the kinds of a rule record. */
const KIND_NAMES: Record<typeof KINDS[number], string> = {
  v4: "address (A)",
  v6: "address (AAAA)",
  other: "address (other types)",
  group: "nameserver",
  cname: "cname",
  srv: "srv-record",
  txt: "txt-record",
  https: "https-record",
  ptr: "ptr",
  svcb: "svcb (DDR)",
  nftset4: "nftset (IPv4)",
  nftset6: "nftset (IPv6)",
  speedCheck: "speed-check-mode",
  responseMode: "response-mode",
  dualstack: "dualstack-ip-selection",
  noServeExpired: "no-serve-expired",
};

/** The dotted, lower-cased name at `wire[at]` (uncompressed, checked). */
function nameAt(wire: Uint8Array, at: number): string {
  const labels: string[] = [];
  for (let p = at; wire[p] !== 0 && p < wire.length; p += wire[p] + 1) {
    labels.push(new TextDecoder().decode(wire.subarray(p + 1, p + 1 + wire[p])));
  }
  return labels.join(".").toLowerCase();
}

/** A rule line as the rule set keeps it (for `explain`, logs, the audit log). */
export interface RuleSource {
  readonly text: string;
  readonly source: SourcePosition;
}

/** A rule line that applies to a name, as `explain` reports it. */
export interface RuleMatch extends RuleSource {
  /** Its index in {@link RuleSet.rules}. */
  readonly rule: number;
  /** The kinds it sets for the name (address4, address6, nameserver, cname, speed-check-mode …). */
  readonly kinds: readonly string[];
  /** Of those, the kinds where it is the most specific rule: it decides them. */
  readonly decides: readonly string[];
  /** For a rule on a `domain-set`: the list line that named the domain. */
  readonly listLine?: ListLine;
}

/** The line of a domain list that covers a name. */
export interface ListLine {
  readonly file: string;
  readonly line: number;
  /** The domain as the line gives it. */
  readonly domain: string;
  /** `exception` for an adblock `@@` line (it exempts the name). */
  readonly kind: "block" | "exception";
}

/** What the rules say for one question. */
export interface RuleVerdict {
  /** A local answer, or undefined to go on resolving. */
  readonly answer?: Answer;
  /** Why (set with `answer`). */
  readonly reason: ReasonCode;
  /** The upstream group to ask (0 = default). */
  readonly group: number;
  /** A CNAME target to resolve instead, with the rule that said so. */
  readonly cname?: string;
  /** The rule that decided (index into {@link RuleSet.rules}), or -1. */
  readonly rule: number;
  /**
   * The nftables set this question's answer addresses go to (A: the `#4:` set, AAAA: the `#6:`
   * one); one object per set, shared by every verdict that names it.
   */
  readonly nftset?: NftSetTarget;
  /** The names' own speed check settings (`domain-rules -c/-r/-d`), when a rule gives any. */
  readonly speed?: SpeedOverride;
  /** `domain-rules -no-serve-expired`: never answered from an expired entry. */
  readonly noServeExpired?: boolean;
}

/** What `domain-rules` says of a name's speed check; unset fields follow the policy. */
export interface SpeedOverride {
  readonly speedCheck?: readonly SpeedCheckMode[];
  readonly responseMode?: ResponseMode;
  readonly dualstack?: boolean;
}

/** Everything a rule set needs from around it. */
export interface RuleSetOptions {
  /** The index of an upstream group by name, -1 if it has no servers. */
  readonly groupIndex: (name: string) => number;
  /** The TTL settings local answers take their TTL from when `local-ttl` is not set. */
  readonly ttl:
    & Pick<CacheConfig, "rrTtl" | "rrTtlMin" | "rrTtlMax">
    & Partial<Pick<CacheConfig, "rrTtlReplyMax">>;
  /** Reports a problem met while loading (a list file missing, a bad line). */
  readonly warn: (message: string) => void;
  /** Reads a list or hosts file (injectable for tests). */
  readonly readFile?: (path: string) => Uint8Array;
  /**
   * A list file that cannot be read, or is not text, fails the whole build instead of leaving its
   * rules empty: on a reload or a rebuild the running rules then stay (a block list that a cron
   * job is halfway through replacing must not unblock everything).
   */
  readonly strict?: boolean;
  /** This machine's name and addresses (for `smartdns`, `server-name`, `resolv-hostname`). */
  readonly self?: {
    readonly hostname: string;
    readonly v4: readonly string[];
    readonly v6: readonly string[];
  };
  /** The SVCB records of the encrypted listeners advertised by DDR (resolver/designated_resolvers.ts). */
  readonly designatedResolvers?: readonly SvcbParams[];
}

const NO_VERDICT: RuleVerdict = Object.freeze({ reason: Reason.UPSTREAM, group: -1, rule: -1 });

/** The compiled domain rules of one configuration. */
export class RuleSet {
  /** The rule lines, by index. */
  readonly rules: RuleSource[] = [];
  private readonly table: DomainTable;
  private readonly records: RuleRecord[] = [{}];
  private readonly merges = new Map<number, Map<number, number>>();
  private readonly answers: Map<number, Answer | null>[] = [];
  private readonly verdicts: Map<number, RuleVerdict>[] = [];
  private readonly forced: ReadonlySet<number>;
  private readonly soa = LocalAnswer.soa(Rcode.NOERROR);
  private readonly nxdomain = LocalAnswer.soa(Rcode.NXDOMAIN);
  private readonly ttl: number;
  /** nftset targets by text, so that one set is one object. */
  private readonly setTargets = new Map<string, NftSetTarget>();
  /** Domains loaded from domain sets and hosts files. */
  listDomains = 0;
  /** Files the rules were read from, to be watched for changes. */
  readonly files = new Set<string>();

  constructor(private readonly config: RulesConfig, private readonly options: RuleSetOptions) {
    this.table = new DomainTable((outer, inner) => this.merge(outer, inner));
    this.ttl = localAnswerTtl(config.localTtl, options.ttl);
    const forced = new Set(config.forceQtypeSoa);
    if (config.forceAAAASOA) forced.add(RecordType.AAAA);
    this.forced = forced;
    this.load();
  }

  /** Whether there is anything to match at all (an empty set is left out of the chain). */
  get empty(): boolean {
    return this.table.nodes === 1 && this.records.length === 1 && this.forced.size === 0;
  }

  /** Whether any rule adds answer addresses to an nftables set. */
  get hasNftset(): boolean {
    return this.setTargets.size > 0;
  }

  /** Nodes in the domain table (for memory figures). */
  get nodes(): number {
    return this.table.nodes;
  }

  /** Bytes the domain table holds. */
  get tableBytes(): number {
    return this.table.byteSize;
  }

  private load(): void {
    const setUsers = new Map<string, number[]>();
    const localByDomain = new Map<string, Pick<RuleRecord, "srv" | "txt">>();
    this.config.domainRules.forEach((rule) => {
      const index = this.rules.push({ text: rule.text, source: rule.source }) - 1;
      const id = this.addRecord(this.recordOf(rule, index));
      for (const domain of rule.domains) {
        const set = /^domain-set:(.*)$/.exec(domain)?.[1];
        if (set !== undefined) setUsers.set(set, [...(setUsers.get(set) ?? []), id]);
        else this.table.add(domain, this.accumulate(localByDomain, domain, id));
      }
    });
    for (const set of this.config.domainSets) {
      const users = setUsers.get(set.name);
      if (users) this.loadSet(set.name, set.file, users);
    }
    for (const pattern of this.config.hostsFiles) this.loadHosts(pattern);
    for (const file of this.config.leaseFiles) this.loadLeases(file);
    this.loadSelfNames();
    this.loadDesignatedResolvers();
    if (this.config.expandPtrFromAddress) this.expandPtr();
    this.table.finish();
  }

  /** Reads a file as bytes, remembering it for the watcher; undefined (and a warning) if it cannot. */
  private read(file: string, what: string): Uint8Array | undefined {
    this.files.add(file);
    try {
      return (this.options.readFile ?? Deno.readFileSync)(file);
    } catch (e) {
      if (this.options.strict) throw new RuleFileError(`${what}: ${file}: ${readFailure(e)}`);
      this.options.warn(`${what}: ${file}: ${readFailure(e)}; nothing from it until it can be read`);
      return undefined;
    }
  }

  /** Names with their addresses (hosts files, leases, this machine): each name only, with PTRs. */
  private addHosts(entries: readonly HostEntry[], text: string, source: SourcePosition): void {
    const byName = new Map<string, { v4: string[]; v6: string[] }>();
    for (const e of entries) {
      const ips = byName.get(e.name) ?? { v4: [], v6: [] };
      (e.ip.includes(":") ? ips.v6 : ips.v4).push(e.ip);
      byName.set(e.name, ips);
      if (e.canonical) this.addPtr(e.ip, e.name, -1);
    }
    const index = this.rules.push({ text, source }) - 1;
    for (const [name, ips] of byName) {
      this.table.add(`-.${name}`, this.addRecord(this.addressKinds({ kind: "ips", ...ips }, index)));
    }
    this.listDomains += byName.size;
  }

  /** dnsmasq-lease-file: the leases' host names. */
  private loadLeases(file: string): void {
    const bytes = this.read(file, "dnsmasq-lease-file");
    if (!bytes) return;
    this.addHosts(parseDnsmasqLeases(new TextDecoder().decode(bytes)), `dnsmasq-lease-file ${file}`, {
      file,
      line: 0,
      col: 0,
    });
  }

  /** `smartdns`, the server name and (resolv-hostname) the host name: this machine's addresses. */
  private loadSelfNames(): void {
    const self = this.options.self;
    const { selfNames, serverName, resolvHostname } = this.config;
    if (!self || (!selfNames && !resolvHostname) || self.v4.length + self.v6.length === 0) return;
    const names = new Set<string>();
    if (selfNames) names.add("smartdns").add((serverName ?? self.hostname).toLowerCase());
    if (resolvHostname && self.hostname) names.add(self.hostname.toLowerCase());
    const entries: HostEntry[] = [];
    for (const name of names) {
      if (!/^[a-z0-9_-]+(\.[a-z0-9_-]+)*$/.test(name)) continue;
      for (const ip of [...self.v4, ...self.v6]) entries.push({ name, ip, canonical: false });
    }
    this.addHosts(entries, "this machine's names (server-name, resolv-hostname)", {
      file: "",
      line: 0,
      col: 0,
    });
  }

  /** DDR: `_dns.resolver.arpa` type SVCB answers the advertised encrypted listeners (that name only). */
  private loadDesignatedResolvers(): void {
    const endpoints = this.options.designatedResolvers ?? [];
    if (endpoints.length === 0) return;
    const rule = this.rules.push({
      text: "DDR: the encrypted listeners marked -ddr",
      source: { file: "", line: 0, col: 0 },
    }) - 1;
    const value = endpoints.map((e) => ({ type: RecordType.SVCB, ttl: this.ttl, rdata: svcbRdata(e) }));
    this.table.add(`-.${DDR_NAME}`, this.addRecord({ svcb: { value, rule } }));
  }

  /** Adds the domains of one list file with the record of every rule that names the set. */
  private loadSet(name: string, file: string, users: number[]): void {
    const bytes = this.read(file, `domain-set "${name}"`);
    if (!bytes) return;
    // About one new node per 12 bytes of list (a name of 20-30 bytes adds 2-3 nodes, its TLD
    // shared): make room once; a list denser than that grows the table once or twice.
    this.table.reserve(this.table.nodes + Math.ceil(bytes.length / 12), 0);
    const exempt = this.exemptionOf(users);
    const scan = scanDomainList(bytes, file, (src, start, end, kind, scope) => {
      if (kind === "exception") this.table.addBytes(src, start, end, exempt, scope);
      else for (const id of users) this.table.addBytes(src, start, end, id, scope);
    });
    // A file that is not text adds nothing (it is refused before any line is read).
    if (this.options.strict && scan.problems[0]?.line === 0) {
      throw new RuleFileError(`domain-set "${name}": ${file}: ${scan.problems[0].reason}`);
    }
    this.listDomains += scan.domains + scan.exceptions;
    for (const p of scan.problems) this.options.warn(`${p.file}:${p.line}:${p.col}: ${p.reason}`);
    if (scan.problemCount > scan.problems.length) {
      this.options.warn(`${file}: ${scan.problemCount - scan.problems.length} more lines could not be read`);
    }
  }

  /** The record an adblock `@@` exception gets: every kind the set's rules set, exempted. */
  private exemptionOf(users: number[]): number {
    const exempt: { -readonly [K in keyof RuleRecord]: RuleRecord[K] } = {};
    for (const id of users) {
      const r = this.records[id];
      const rule = (r.v4 ?? r.v6 ?? r.other ?? r.group)?.rule ?? -1;
      if (r.v4 || r.v6 || r.other) {
        exempt.v4 = exempt.v6 = exempt.other = { value: { kind: "exempt" }, rule };
      }
      if (r.group) exempt.group = { value: 0, rule };
      if (r.nftset4 || r.nftset6) exempt.nftset4 = exempt.nftset6 = { value: null, rule };
    }
    return this.addRecord(exempt);
  }

  /** hosts-file: each name answers its addresses (and the other family empty); PTRs for each address. */
  private loadHosts(pattern: string): void {
    let files: string[];
    try {
      files = expandInclude(pattern);
    } catch (e) {
      this.options.warn(`hosts-file ${pattern}: ${readFailure(e)}`);
      return;
    }
    for (const file of files) {
      const bytes = this.read(file, "hosts-file");
      if (!bytes) continue;
      const { entries, problems } = parseHostsFile(new TextDecoder().decode(bytes), file);
      for (const p of problems) this.options.warn(`${p.file}:${p.line}:${p.col}: ${p.reason}`);
      this.addHosts(entries, `hosts-file ${file}`, { file, line: 0, col: 0 });
    }
  }

  /** expand-ptr-from-address: a PTR for each address of an `address` rule on a plain name. */
  private expandPtr(): void {
    this.config.domainRules.forEach((rule, index) => {
      if (rule.address?.kind !== "ips") return;
      for (const domain of rule.domains) {
        if (/^[*\-.]|^domain-set:|^$/.test(domain)) continue;
        for (const ip of [...rule.address.v4, ...rule.address.v6]) this.addPtr(ip, domain, index);
      }
    });
  }

  private addPtr(ip: string, name: string, rule: number): void {
    const id = this.addRecord({
      ptr: { value: [{ type: RecordType.PTR, ttl: this.ttl, rdata: encodeName(name) }], rule },
    });
    this.table.add(`-.${reverseName(ip)}`, id);
  }

  /** The record of one rule line (its index `rule`). */
  private recordOf(r: DomainRule, rule: number): RuleRecord {
    const record: { -readonly [K in keyof RuleRecord]: RuleRecord[K] } = {};
    if (r.address) Object.assign(record, this.addressKinds(r.address, rule));
    if (r.nameserver !== undefined) {
      const group = r.nameserver === "-" ? 0 : this.options.groupIndex(r.nameserver);
      if (group >= 0) record.group = { value: group, rule };
    }
    if (r.cname !== undefined) record.cname = { value: r.cname === "-" ? "" : r.cname, rule };
    if (r.srv) {
      record.srv = {
        value: r.srv.map((s) => ({ type: RecordType.SRV, ttl: this.ttl, rdata: srvRdata(s) })),
        rule,
      };
    }
    if (r.https) {
      record.https = { value: [{ type: RecordType.HTTPS, ttl: this.ttl, rdata: svcbRdata(r.https) }], rule };
    }
    if (r.txt) {
      record.txt = {
        value: r.txt.map((t) => ({ type: RecordType.TXT, ttl: this.ttl, rdata: txtRdata(t) })),
        rule,
      };
    }
    if (r.nftset?.v4) record.nftset4 = { value: this.setTarget(r.nftset.v4), rule };
    if (r.nftset?.v6) record.nftset6 = { value: this.setTarget(r.nftset.v6), rule };
    if (r.speedCheck) record.speedCheck = { value: r.speedCheck, rule };
    if (r.responseMode) record.responseMode = { value: r.responseMode, rule };
    if (r.dualstack !== undefined) record.dualstack = { value: r.dualstack, rule };
    if (r.noServeExpired) record.noServeExpired = { value: true, rule };
    return record;
  }

  /** The one object for an nftset target (null for "-"). */
  private setTarget(t: NftSetTarget | "-"): NftSetTarget | null {
    if (t === "-") return null;
    const key = `${t.family}#${t.table}#${t.set}`;
    let known = this.setTargets.get(key);
    if (!known) {
      this.setTargets.set(key, known = Object.freeze({ family: t.family, table: t.table, set: t.set }));
    }
    return known;
  }

  /** How an address action sets the v4, v6 and other kinds. */
  private addressKinds(a: AddressAction, rule: number): Partial<RuleRecord> {
    const d = (value: AddressDecision) => ({ value, rule });
    switch (a.kind) {
      case "block":
        if (a.families === "v4") return { v4: d({ kind: "empty" }) };
        if (a.families === "v6") return { v6: d({ kind: "empty" }) };
        return { v4: d({ kind: "nxdomain" }), v6: d({ kind: "nxdomain" }), other: d({ kind: "nxdomain" }) };
      case "exempt":
        if (a.families === "v4") return { v4: d({ kind: "exempt" }) };
        if (a.families === "v6") return { v6: d({ kind: "exempt" }) };
        return { v4: d({ kind: "exempt" }), v6: d({ kind: "exempt" }), other: d({ kind: "exempt" }) };
      case "ips": {
        const out: { v4?: Decision<AddressDecision>; v6?: Decision<AddressDecision> } = {};
        if (a.v4.length > 0) {
          out.v4 = d({
            kind: "ips",
            records: a.v4.map((ip) => ({ type: RecordType.A, ttl: this.ttl, rdata: ipBytes(ip) })),
          });
        }
        if (a.v6.length > 0) {
          out.v6 = d({
            kind: "ips",
            records: a.v6.map((ip) => ({ type: RecordType.AAAA, ttl: this.ttl, rdata: ipBytes(ip) })),
          });
        }
        return out;
      }
    }
  }

  private addRecord(record: RuleRecord): number {
    return this.records.push(record) - 1;
  }

  /**
   * srv-record and txt-record lines add up on one domain (SmartDNS answers every line): the
   * record of a later line on `domain` also carries the records of the earlier ones.
   */
  private accumulate(seen: Map<string, Pick<RuleRecord, "srv" | "txt">>, domain: string, id: number): number {
    const r = this.records[id];
    if (!r.srv && !r.txt) return id;
    const before: { -readonly [K in "srv" | "txt"]?: RuleRecord[K] } = { ...seen.get(domain) };
    const joined: { -readonly [K in keyof RuleRecord]: RuleRecord[K] } = { ...r };
    let changed = false;
    for (const kind of ["srv", "txt"] as const) {
      const mine = r[kind];
      const earlier = before[kind];
      if (mine && earlier) {
        joined[kind] = { value: [...earlier.value, ...mine.value], rule: mine.rule };
        changed = true;
      }
      if (joined[kind]) before[kind] = joined[kind];
    }
    seen.set(domain, before);
    return changed ? this.addRecord(joined) : id;
  }

  /** The record of `inner` laid over `outer`, kind by kind; made once per pair. */
  private merge(outer: number, inner: number): number {
    if (outer === NO_RULE || outer === inner) return inner;
    if (inner === NO_RULE) return outer;
    let byInner = this.merges.get(outer);
    if (!byInner) this.merges.set(outer, byInner = new Map());
    const known = byInner.get(inner);
    if (known !== undefined) return known;
    const a = this.records[outer];
    const b = this.records[inner];
    const merged: Record<string, unknown> = {};
    for (const kind of KINDS) {
      const value = b[kind] ?? a[kind];
      if (value !== undefined) merged[kind] = value;
    }
    const id = this.addRecord(merged as RuleRecord);
    byInner.set(inner, id);
    return id;
  }

  /**
   * What the rules say for the question whose name is at `wire[12]` and whose type is `qtype`.
   * Reads bytes only; the verdict is shared (one per record and type), so a hit allocates nothing.
   */
  judge(wire: Uint8Array, qtype: number): RuleVerdict {
    const id = this.table.match(wire, 12);
    if (id === NO_RULE) return this.forced.has(qtype) ? this.verdict(0, qtype) : NO_VERDICT;
    return this.verdict(id, qtype);
  }

  /** The verdict of record `id` for `qtype` (id 0 with a forced type: the forced SOA). */
  private verdict(id: number, qtype: number): RuleVerdict {
    let byType = this.verdicts[id];
    if (!byType) byType = this.verdicts[id] = new Map();
    const known = byType.get(qtype);
    if (known) return known;
    let made = this.withSpeed(this.withNftset(this.makeVerdict(id, qtype), id, qtype), id);
    if (this.records[id].noServeExpired?.value) made = { ...made, noServeExpired: true };
    byType.set(qtype, made);
    return made;
  }

  /** `verdict` with the speed check settings of record `id`, if it has any. */
  private withSpeed(verdict: RuleVerdict, id: number): RuleVerdict {
    const r = this.records[id];
    if (!r.speedCheck && !r.responseMode && !r.dualstack) return verdict;
    const speed: SpeedOverride = {
      ...(r.speedCheck ? { speedCheck: r.speedCheck.value } : {}),
      ...(r.responseMode ? { responseMode: r.responseMode.value } : {}),
      ...(r.dualstack ? { dualstack: r.dualstack.value } : {}),
    };
    return { ...verdict, speed };
  }

  /** `verdict` with the nftset of record `id` for `qtype`'s family, if it has one. */
  private withNftset(verdict: RuleVerdict, id: number, qtype: number): RuleVerdict {
    const r = this.records[id];
    const set = qtype === RecordType.A ? r.nftset4 : qtype === RecordType.AAAA ? r.nftset6 : undefined;
    return set?.value ? { ...verdict, nftset: set.value } : verdict;
  }

  private makeVerdict(id: number, qtype: number): RuleVerdict {
    const r = this.records[id];
    const group = r.group?.value ?? -1;
    const local = (answer: Answer, reason: ReasonCode, rule: number): RuleVerdict => ({
      answer,
      reason,
      group,
      rule,
    });
    const address = (
      own?: Decision<AddressDecision>,
      other?: Decision<AddressDecision>,
    ): RuleVerdict | null => {
      const v = own?.value;
      if (v?.kind === "ips") return local(new LocalAnswer(Rcode.NOERROR, v.records), Reason.RULE, own!.rule);
      if (v?.kind === "nxdomain") return local(this.nxdomain, Reason.BLOCKED, own!.rule);
      if (v?.kind === "empty") return local(this.soa, Reason.BLOCKED, own!.rule);
      // An address for the other family only: this one gets an empty answer (SmartDNS HEAD).
      if (v === undefined && other?.value.kind === "ips") return local(this.soa, Reason.RULE, other.rule);
      return null;
    };
    let decided: RuleVerdict | null = null;
    if (qtype === RecordType.A) decided = address(r.v4, r.v6);
    else if (qtype === RecordType.AAAA) decided = address(r.v6, r.v4);
    else if (r.other?.value.kind === "nxdomain") decided = local(this.nxdomain, Reason.BLOCKED, r.other.rule);
    else if (qtype === RecordType.SRV && r.srv) {
      decided = local(new LocalAnswer(Rcode.NOERROR, r.srv.value), Reason.RULE, r.srv.rule);
    } else if (qtype === RecordType.TXT && r.txt) {
      decided = local(new LocalAnswer(Rcode.NOERROR, r.txt.value), Reason.RULE, r.txt.rule);
    } else if (qtype === RecordType.HTTPS && r.https) {
      decided = local(new LocalAnswer(Rcode.NOERROR, r.https.value), Reason.RULE, r.https.rule);
    } else if (qtype === RecordType.SVCB && r.svcb) {
      decided = local(new LocalAnswer(Rcode.NOERROR, r.svcb.value), Reason.RULE, r.svcb.rule);
    } else if (qtype === RecordType.PTR && r.ptr) {
      decided = local(new LocalAnswer(Rcode.NOERROR, r.ptr.value), Reason.RULE, r.ptr.rule);
    }
    if (decided) return decided;
    // force-AAAA-SOA / force-qtype-SOA come after the name's own answers and exemptions, as in
    // SmartDNS HEAD (address and `-` are processed before _dns_server_qtype_soa).
    const own = qtype === RecordType.A ? r.v4 : qtype === RecordType.AAAA ? r.v6 : r.other;
    if (this.forced.has(qtype) && own?.value.kind !== "exempt") {
      return { answer: this.soa, reason: Reason.SOA, group, rule: -1 };
    }
    if (r.cname && r.cname.value !== "") {
      return { reason: Reason.RULE, group, cname: r.cname.value, rule: r.cname.rule };
    }
    return { reason: Reason.UPSTREAM, group, rule: r.group?.rule ?? -1 };
  }

  /**
   * Every rule line that applies to the question whose name is at `wire[12]`, outer (least
   * specific) first, each with the kinds it sets and the ones it decides (for `explain`: it walks
   * the merged records back to the rules they came from, and reads the list files of domain sets
   * to find the line that names the domain; not for the query path).
   */
  matches(wire: Uint8Array): RuleMatch[] {
    const id = this.table.match(wire, 12);
    if (id === NO_RULE) return [];
    const parts = new Map<number, [number, number]>();
    for (const [outer, byInner] of this.merges) {
      for (const [inner, merged] of byInner) parts.set(merged, [outer, inner]);
    }
    const leaves: number[] = [];
    const walk = (r: number, depth: number): void => {
      const pair = parts.get(r);
      if (pair && depth < 4096) {
        walk(pair[0], depth + 1);
        walk(pair[1], depth + 1);
      } else if (!leaves.includes(r)) leaves.push(r);
    };
    walk(id, 0);
    const final = this.records[id];
    const kindsOf = new Map<number, string[]>();
    for (const leaf of leaves) {
      const record = this.records[leaf];
      for (const kind of KINDS) {
        const rule = record[kind]?.rule;
        if (rule === undefined || rule < 0) continue;
        const kinds = kindsOf.get(rule) ?? [];
        if (!kinds.includes(KIND_NAMES[kind])) kinds.push(KIND_NAMES[kind]);
        kindsOf.set(rule, kinds);
      }
    }
    const name = nameAt(wire, 12);
    return [...kindsOf.entries()].sort(([a], [b]) => a - b).map(([rule, kinds]) => {
      const decides = KINDS.filter((k) => final[k]?.rule === rule).map((k) => KIND_NAMES[k]);
      const listLine = this.listLineFor(rule, name);
      return { rule, ...this.rules[rule], kinds, decides, ...(listLine ? { listLine } : {}) };
    });
  }

  /** The line of a domain set of rule `rule` that covers `name` (the most specific one), if any. */
  private listLineFor(rule: number, name: string): ListLine | undefined {
    const domains = this.config.domainRules[rule]?.domains ?? [];
    let best: ListLine | undefined;
    for (const domain of domains) {
      const setName = /^domain-set:(.*)$/.exec(domain)?.[1];
      const set = setName === undefined ? undefined : this.config.domainSets.find((s) => s.name === setName);
      if (!set) continue;
      let bytes: Uint8Array;
      try {
        bytes = (this.options.readFile ?? Deno.readFileSync)(set.file);
      } catch {
        continue;
      }
      let line = 1;
      let counted = 0;
      const decoder = new TextDecoder();
      scanDomainList(bytes, set.file, (src, start, end, kind, scope) => {
        for (let i = counted; i < start; i++) if (src[i] === 0x0a) line++;
        counted = start;
        const entry = decoder.decode(src.subarray(start, end)).toLowerCase().replace(/^\.+|\.$/g, "");
        const covers = (scope !== "sub" && name === entry) ||
          (scope !== "self" && (entry === "" || name.endsWith(`.${entry}`)));
        if (covers && (!best || entry.length > best.domain.length)) {
          best = { file: set.file, line, domain: entry, kind };
        }
      });
    }
    return best;
  }

  /** {@link judge} for a dotted name (tools, `explain`, tests). */
  judgeName(name: string, qtype: number): RuleVerdict {
    const encoded = encodeName(name);
    const wire = new Uint8Array(12 + encoded.length + 4);
    wire.set(encoded, 12);
    return this.judge(wire, qtype);
  }
}

/** SRV rdata: priority, weight, port, target. */
function srvRdata(s: { target: string; port: number; priority: number; weight: number }): Uint8Array {
  const target = encodeName(s.target);
  const out = new Uint8Array(6 + target.length);
  out[0] = s.priority >> 8;
  out[1] = s.priority & 0xff;
  out[2] = s.weight >> 8;
  out[3] = s.weight & 0xff;
  out[4] = s.port >> 8;
  out[5] = s.port & 0xff;
  out.set(target, 6);
  return out;
}

/** TXT rdata: one character-string. */
function txtRdata(text: string): Uint8Array {
  const bytes = new TextEncoder().encode(text);
  const out = new Uint8Array(1 + bytes.length);
  out[0] = bytes.length;
  out.set(bytes, 1);
  return out;
}
