/**
 * The line reader under every SmartDNS directive table: splits a smartdns.conf into directives
 * (comments, `\` continuation, quotes), follows `conf-file` includes, and hands each directive's
 * handler a {@link Draft}: the model being filled in, with the value parsers SmartDNS's own
 * parser behaves like (sizes with k/m/g, integers read the way `atoi` reads them and clamped with
 * a warning, `/domain/` arguments) and `file:line:col` for every error and warning.
 *
 * @module
 */
import {
  DEFAULT_AUDIT,
  DEFAULT_CACHE,
  DEFAULT_LOG,
  DEFAULT_TCP_IDLE_TIME,
  SMARTDNS_AUDIT_FILE,
  SMARTDNS_RR_TTL_MIN,
} from "../defaults.ts";
import { ConfigError, didYouMean, readFailure } from "../errors.ts";
import type {
  AddressSetRule,
  AuditConfig,
  BindConfig,
  CacheConfig,
  ConfigWarning,
  DomainRule,
  DomainSetConfig,
  IpRuleConfig,
  IpSetConfig,
  LogConfig,
  ProxyConfig,
  SourcePosition,
  UnsupportedDirective,
  UpstreamConfig,
} from "../schema.ts";
import { type ResponseMode, SMARTDNS_SPEED_CHECK, type SpeedCheckMode } from "../schema.ts";
import { parseSize, parseYesNo } from "../values.ts";

/** One directive as read: its words and where each word starts. */
export interface Line {
  readonly words: string[];
  readonly cols: number[];
  readonly line: number;
  readonly file: string;
}

/** What one SmartDNS directive does here. */
export interface DirectiveHandler {
  /** Reads the directive into the draft; throws a ConfigError for a line SmartDNS refuses too. */
  readonly handle: (d: Draft, l: Line) => void;
  /** Where it lives in keeldns.toml (for the compat table and `convert`). */
  readonly toml: string;
  /** `partly` when some of its forms or options are not honoured yet (`note` says which). */
  readonly status: "supported" | "partly";
  readonly note?: string;
}

/** Directives by name, one table per feature. */
export type DirectiveTable = Readonly<Record<string, DirectiveHandler>>;

/** Reads a file for `conf-file`; injectable for tests. */
export type FileReader = (path: string) => string;

/** Splits the text into directives: `#` comments at line start, `\` continuation, quotes. */
export function* readLines(text: string, file: string): Generator<Line> {
  const raw = text.split(/\r?\n/);
  for (let i = 0; i < raw.length; i++) {
    const lineNo = i + 1;
    let content = raw[i];
    while (content.endsWith("\\") && i + 1 < raw.length) {
      content = content.slice(0, -1) + " " + raw[++i].trimStart();
    }
    const words: string[] = [];
    const cols: number[] = [];
    let pos = 0;
    while (pos < content.length) {
      while (pos < content.length && /\s/.test(content[pos])) pos++;
      if (pos >= content.length) break;
      const start = pos;
      let word = "";
      const quote = content[pos] === '"' || content[pos] === "'" ? content[pos++] : "";
      while (pos < content.length && (quote ? content[pos] !== quote : !/\s/.test(content[pos]))) {
        if (content[pos] === "\\" && pos + 1 < content.length) pos++;
        word += content[pos++];
      }
      if (quote) pos++;
      words.push(word);
      cols.push(start + 1);
    }
    if (words.length === 0 || words[0].startsWith("#")) continue;
    yield { words, cols, line: lineNo, file };
  }
}

/** Lists the files a `conf-file` pattern names (a `*`/`?` glob in the last path part). */
export function expandInclude(pattern: string): string[] {
  const slash = pattern.lastIndexOf("/");
  const dir = slash < 0 ? "." : pattern.slice(0, slash) || "/";
  const base = pattern.slice(slash + 1);
  if (!/[*?]/.test(base)) return [pattern];
  const re = new RegExp(
    "^" + base.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".") + "$",
  );
  const names: string[] = [];
  for (const entry of Deno.readDirSync(dir)) if (entry.isFile && re.test(entry.name)) names.push(entry.name);
  return names.sort().map((n) => `${dir === "/" ? "" : dir}/${n}`);
}

/** Resolves `path` against the directory of `file`. */
export function relativeTo(file: string, path: string): string {
  if (path.startsWith("/")) return path;
  const slash = file.lastIndexOf("/");
  return slash < 0 ? path : file.slice(0, slash + 1) + path;
}

/** How to read the options after a directive's arguments. */
export interface OptionSpec {
  /** Options that take a value, by every name accepted (`group`, `g`). */
  readonly withValue: ReadonlySet<string>;
  /** Options that are flags. */
  readonly flags: ReadonlySet<string>;
}

/** Converts a domain to its ASCII (punycode) form; keeps SmartDNS's prefixes and `domain-set:`. */
export function asciiDomain(domain: string): string {
  // deno-lint-ignore no-control-regex
  if (/^[\x00-\x7f]*$/.test(domain) || domain.startsWith("domain-set:")) return domain.toLowerCase();
  const prefix = /^(\*-\.|\*\.|-\.|\*|\.)/.exec(domain)?.[0] ?? "";
  const name = domain.slice(prefix.length);
  try {
    return prefix + new URL(`http://${name}/`).hostname;
  } catch {
    throw new Error(`"${domain}" is not a domain name`);
  }
}

/** The speed check, response mode and dual-stack settings of a policy, as read. */
export interface SpeedSettings {
  speedCheck: readonly SpeedCheckMode[];
  responseMode: ResponseMode;
  dualstack: boolean;
  dualstackThreshold: number;
  dualstackAllowForceAAAA: boolean;
}

/** A client group as read (`group-begin NAME` … `group-end`, `client-rules CIDR -group NAME`). */
export interface GroupDraft {
  /** Its own speed settings (from the default's at `group-begin`, as SmartDNS copies them). */
  speed?: SpeedSettings;
  forceAAAASOA?: boolean;
  forceQtypeSoa?: Set<number>;
  /** Its own `edns-client-subnet` lines (one per family), laid over the default's. */
  clientSubnet?: string[];
  /** The clients (prefixes) whose queries the group's rules answer. */
  readonly clients: string[];
  /** Where the group was begun. */
  source?: SourcePosition;
}

/** The configuration being read: the model's parts and what was noticed on the way. */
export class Draft {
  readonly binds: BindConfig[] = [];
  readonly upstreams: UpstreamConfig[] = [];
  /** `proxy-server` definitions by name ("direct" for a passthrough one). */
  readonly proxies = new Map<string, ProxyConfig | "direct">();
  /** `server … -proxy NAME`, resolved once the whole file is read (the proxy may come later). */
  readonly proxyRefs: {
    upstream: number;
    name: string;
    source: SourcePosition;
    /** The socket options the server also asks for (refused with a real proxy). */
    marked: string[];
    line: Line;
  }[] = [];
  /** Server lines of a kind keeldns cannot use yet (they would otherwise decide where queries go). */
  readonly unusableServers: SourcePosition[] = [];
  /** SmartDNS's cache defaults where they differ from keeldns.toml's: serve-expired on, rr-ttl-min 600. */
  cache: { -readonly [K in keyof CacheConfig]: CacheConfig[K] } = {
    ...DEFAULT_CACHE,
    serveExpired: true,
    rrTtlMin: SMARTDNS_RR_TTL_MIN,
  };
  log: { -readonly [K in keyof LogConfig]: LogConfig[K] } = { ...DEFAULT_LOG };
  /** The audit settings, once an `audit-*` line is read (see {@link auditDraft}). */
  audit?: { -readonly [K in keyof AuditConfig]: AuditConfig[K] };

  /** The audit settings being read, from SmartDNS's defaults (its file, no SOA answers) at first. */
  auditDraft(): { -readonly [K in keyof AuditConfig]: AuditConfig[K] } {
    return this.audit ??= { ...DEFAULT_AUDIT, file: SMARTDNS_AUDIT_FILE, soa: false };
  }
  tcpIdleTime = DEFAULT_TCP_IDLE_TIME;
  resolvFile = "/etc/resolv.conf";
  persistSet?: boolean;
  cacheFileSet = false;
  readonly domainRules: DomainRule[] = [];
  readonly domainSets: DomainSetConfig[] = [];
  localTtl = 0;
  private defaultForceAAAASOA = false;
  private readonly defaultForceQtypeSoa = new Set<number>();
  /** The client group being read (between `group-begin` and `group-end`), or none. */
  group?: string;
  /** Each group's own settings and clients, by name, in the order begun. */
  readonly groups = new Map<string, GroupDraft>();

  /** `force-AAAA-SOA` of the default policy, or of the group being read. */
  get forceAAAASOA(): boolean {
    return this.group ? this.groupDraft().forceAAAASOA ?? this.defaultForceAAAASOA : this.defaultForceAAAASOA;
  }

  set forceAAAASOA(on: boolean) {
    if (this.group) this.groupDraft().forceAAAASOA = on;
    else this.defaultForceAAAASOA = on;
  }

  /** `force-qtype-SOA` types of the default policy, or of the group being read (a copy of them). */
  get forceQtypeSoa(): Set<number> {
    if (!this.group) return this.defaultForceQtypeSoa;
    const g = this.groupDraft();
    return g.forceQtypeSoa ??= new Set(this.defaultForceQtypeSoa);
  }

  /** The group being read; `name` one that is mentioned (client-rules -group) is created too. */
  groupDraft(name = this.group!): GroupDraft {
    let g = this.groups.get(name);
    if (!g) this.groups.set(name, g = { clients: [] });
    return g;
  }
  readonly hostsFiles: string[] = [];
  expandPtrFromAddress = false;
  readonly leaseFiles: string[] = [];
  serverName?: string;
  /** SmartDNS's default: the machine's host name is answered with its addresses. */
  resolvHostname = true;
  /** SmartDNS's default: at most 8 addresses of each family. */
  maxReplyIpNum = 8;
  /** The default policy's speed settings (SmartDNS's defaults until set). */
  readonly defaultSpeed: SpeedSettings = {
    speedCheck: SMARTDNS_SPEED_CHECK,
    responseMode: "first-ping",
    dualstack: true,
    dualstackThreshold: 10,
    dualstackAllowForceAAAA: false,
  };

  /** The speed settings being set: the default policy's, or the group's being read (a copy at first). */
  get speed(): SpeedSettings {
    if (!this.group) return this.defaultSpeed;
    const g = this.groupDraft();
    return g.speed ??= { ...this.defaultSpeed };
  }
  dns64Prefix?: string;
  nftsetTimeout = false;
  nftsetDebug = false;
  nftsetNoSpeed?: AddressSetRule;
  readonly ipRules: IpRuleConfig[] = [];
  readonly ipSets: IpSetConfig[] = [];
  aclEnable = false;
  caFile?: string;
  caPath?: string;
  /** `edns-client-subnet`: one `IP/len` per family (a later line replaces its family's). */
  clientSubnet: string[] = [];
  /** `bind-cert-file`, `bind-cert-key-file`, `bind-cert-key-pass`. */
  certFile?: string;
  keyFile?: string;
  keyPass?: string;
  readonly allowedClients: string[] = [];
  /** `client-rules CIDR -group NAME`, checked once the whole file is read (the group may come later). */
  readonly clientRuleGroups: { group: string; cidr: string; source: SourcePosition }[] = [];
  rateLimit?: number;
  /** `user NAME`: run as this user once the listeners are bound. */
  user?: string;
  readonly unsupported = new Map<string, UnsupportedDirective>();
  /** Directives whose absence would change where queries go or what is blocked (start is refused). */
  readonly critical: UnsupportedDirective[] = [];
  readonly warnings: ConfigWarning[] = [];
  private readonly includeStack: string[] = [];

  constructor(
    private readonly directives: DirectiveTable,
    readonly known: ReadonlySet<string>,
    readonly readFile: FileReader,
    /** Whether a directive may be inside a group (the domain rules and forced answers). */
    private readonly groupScoped: (name: string) => boolean = () => false,
  ) {}

  /** Where word `word` of `l` starts. */
  at(l: Line, word: number): SourcePosition {
    return { file: l.file, line: l.line, col: l.cols[Math.min(word, l.cols.length - 1)] ?? 1 };
  }

  /** Throws a ConfigError at word `word` of `l`. */
  fail(l: Line, word: number, reason: string): never {
    throw new ConfigError(reason, this.at(l, word));
  }

  /** Records a warning at word `word` of `l`: the line was read, with a change it says. */
  warn(l: Line, word: number, message: string): void {
    this.warnings.push({ message, source: this.at(l, word) });
  }

  /** Records `name` as read but not honoured yet (once, at its first position). */
  notSupported(name: string, l: Line, word = 0, reason?: string): void {
    if (!this.unsupported.has(name)) this.unsupported.set(name, { name, source: this.at(l, word), reason });
  }

  /**
   * Records `name` as not honoured yet where going on without it would send queries elsewhere or
   * leave something unblocked: starting is refused (see {@link finishCritical}).
   */
  notSupportedCritical(name: string, l: Line, reason: string, word = 0): void {
    this.critical.push({ name, source: this.at(l, word), reason });
  }

  /** Runs a value parser on word `word`; its error becomes a ConfigError there. */
  value<T>(l: Line, word: number, parse: (text: string) => T): T {
    const text = l.words[word];
    if (text === undefined) this.fail(l, l.words.length - 1, `${l.words[0]}: missing value`);
    try {
      return parse(text);
    } catch (e) {
      if (e instanceof ConfigError) throw e; // already placed (a parser that reads further words)
      this.fail(l, word, `${l.words[0]}: ${(e as Error).message}`);
    }
  }

  /** Word `word` as it is (required). */
  text(l: Line, word: number): string {
    return this.value(l, word, (t) => t);
  }

  /**
   * An integer the way SmartDNS reads one (`atoi`: leading digits count, `10ms` is 10, a word
   * without digits is an error here, as it is almost always a mistake); outside [min, max] it is
   * clamped, with a warning.
   */
  integer(l: Line, word: number, min: number, max: number): number {
    const text = this.text(l, word);
    const m = /^\s*([+-]?\d+)/.exec(text);
    if (!m) this.fail(l, word, `${l.words[0]}: "${text}" is not a number`);
    let n = Number(m[1]);
    if (m[0].trim() !== text.trim()) this.warn(l, word, `${l.words[0]}: "${text}" read as ${n}`);
    if (n < min || n > max) {
      const clamped = n < min ? min : max;
      this.warn(l, word, `${l.words[0]}: ${n} is out of range (${min}..${max}), using ${clamped}`);
      n = clamped;
    }
    return n;
  }

  /** A size with an optional k/m/g suffix, as SmartDNS takes for sizes (`128k`, `8M`). */
  size(l: Line, word: number): number {
    return this.value(l, word, parseSize);
  }

  /** SmartDNS's yes/no. */
  yesNo(l: Line, word: number): boolean {
    return this.value(l, word, parseYesNo);
  }

  /**
   * Walks `-option [value]` words from `first`; a word starting with `#` ends the line. An unknown
   * option is a warning with a "did you mean" (SmartDNS carries on too) and is skipped.
   */
  options(l: Line, first: number, spec: OptionSpec, use: (option: string, value?: string) => void): void {
    for (let i = first; i < l.words.length; i++) {
      const word = l.words[i];
      if (word.startsWith("#")) return;
      const opt = word.replace(/^--?/, "");
      if (!word.startsWith("-") || opt === "") {
        this.fail(l, i, `${l.words[0]}: unexpected argument "${word}"`);
      }
      if (spec.withValue.has(opt)) {
        if (i + 1 >= l.words.length) this.fail(l, i, `${l.words[0]}: option ${word} needs a value`);
        use(opt, l.words[++i]);
      } else if (spec.flags.has(opt)) {
        use(opt);
      } else {
        this.warn(
          l,
          i,
          `${l.words[0]}: unknown option "${word}" ignored${
            didYouMean(opt, [...spec.withValue, ...spec.flags])
          }`,
        );
        // Its value, if it has one, goes with it.
        const following = l.words[i + 1];
        if (following !== undefined && !following.startsWith("-") && !following.startsWith("#")) i++;
      }
    }
  }

  /**
   * Splits a `/a.com/b.com/value` argument (SmartDNS `_get_domain`): the domains between slashes
   * (IDN names to punycode, leading dots kept for the matcher to drop), and what follows the last
   * slash. Without a leading `/` the domain is every name (""), and the whole word is the value.
   */
  domains(l: Line, word: number): { domains: string[]; value: string } {
    const text = this.text(l, word);
    if (!text.startsWith("/")) return { domains: [""], value: text };
    const last = text.lastIndexOf("/");
    if (last === 0) this.fail(l, word, `${l.words[0]}: "${text}" has no closing "/"`);
    const domains = text.slice(1, last).split("/").filter((d) => d !== "");
    if (domains.length === 0) domains.push("");
    const converted = domains.map((d) => this.value(l, word, () => asciiDomain(d)));
    return { domains: converted, value: text.slice(last + 1) };
  }

  /**
   * Reads a named list line (`domain-set`, `ip-set`): `-name N -type list -file F`, the file
   * relative to the including one. A missing part, another type, or a name in `taken` is an error.
   */
  namedList(
    l: Line,
    taken: readonly { name: string }[],
  ): { name: string; file: string; source: SourcePosition } {
    const what = l.words[0];
    let name = "";
    let file = "";
    let type = "list";
    this.options(
      l,
      1,
      { withValue: new Set(["name", "n", "type", "t", "file", "f"]), flags: new Set() },
      (o, v) => {
        if (o === "name" || o === "n") name = v ?? "";
        else if (o === "type" || o === "t") type = v ?? "";
        else file = v ?? "";
      },
    );
    if (name === "") this.fail(l, 0, `${what}: -name is missing`);
    if (file === "") this.fail(l, 0, `${what}: -file is missing`);
    if (type !== "list") this.fail(l, 0, `${what}: -type "${type}" is not known (SmartDNS has "list")`);
    if (taken.some((s) => s.name === name)) this.fail(l, 0, `${what}: "${name}" is defined twice`);
    return { name, file: relativeTo(l.file, file), source: this.at(l, 0) };
  }

  /** Reads `text` (the contents of `file`), directive by directive. */
  read(text: string, file: string): void {
    if (this.includeStack.includes(file)) {
      throw new ConfigError(`conf-file includes itself (${[...this.includeStack, file].join(" -> ")})`, {
        file: this.includeStack[this.includeStack.length - 1],
        line: 0,
        col: 0,
      });
    }
    this.includeStack.push(file);
    for (const l of readLines(text, file)) this.directive(l);
    this.includeStack.pop();
  }

  /** `conf-file PATTERN`: reads each file the glob names, relative to the including file. */
  include(l: Line): void {
    const pattern = relativeTo(l.file, this.text(l, 1));
    this.options(
      l,
      2,
      { withValue: new Set(["group", "g"]), flags: new Set() },
      () =>
        this.notSupportedCritical(
          "conf-file -group",
          l,
          "its lines would apply to every client, not the group",
        ),
    );
    let files: string[];
    try {
      files = expandInclude(pattern);
    } catch (e) {
      this.fail(l, 1, `conf-file: cannot list "${pattern}": ${readFailure(e)}`);
    }
    for (const path of files) {
      let text: string;
      try {
        text = this.readFile(path);
      } catch (e) {
        this.fail(l, 1, `conf-file: cannot read "${path}": ${readFailure(e)}`);
      }
      this.read(text, path);
    }
  }

  private directive(l: Line): void {
    const name = l.words[0];
    const handler = Object.hasOwn(this.directives, name) ? this.directives[name] : undefined;
    if (this.group && handler && !this.groupScoped(name)) {
      this.fail(
        l,
        0,
        `${name} cannot be inside group-begin ${this.group} … group-end: it is not per client group`,
      );
    }
    if (handler) return handler.handle(this, l);
    if (this.known.has(name) || name.includes(".")) return this.notSupported(name, l);
    // SmartDNS logs "unsupported config" and carries on; so does keeldns, loudly.
    this.warn(l, 0, `unknown directive "${name}" ignored${didYouMean(name, this.known)}`);
  }
}
