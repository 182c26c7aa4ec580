/**
 * Front-end for SmartDNS's `smartdns.conf`: reads an existing file as-is into the model. Known
 * directives that keeldns does not implement yet are reported (once each, with their line); unknown
 * words are errors with a "did you mean".
 *
 * @module
 */
import {
  DEFAULT_CACHE,
  DEFAULT_LOG,
  DEFAULT_MAX_TCP_CONNECTIONS,
  DEFAULT_TCP_IDLE_TIME,
} from "./defaults.ts";
import { DEFAULT_GUARDIAN, DEFAULT_UPSTREAM_TIMEOUT, DNS_PORT } from "./defaults.ts";
import { ConfigError, didYouMean, readFailure } from "./errors.ts";
import type {
  BindConfig,
  CacheConfig,
  Config,
  LogConfig,
  LogLevel,
  SourcePosition,
  Transport,
  UnsupportedDirective,
  UpstreamConfig,
} from "./schema.ts";
import { LOG_LEVELS } from "./schema.ts";
import {
  AUTO_CACHE_SIZE,
  parseHostPort,
  parseInteger,
  parseSize,
  parseUpstreamAddress,
  parseYesNo,
  type UpstreamAddress,
} from "./values.ts";

/** Every directive SmartDNS's `_config_item[]` table accepts (current source). */
export const SMARTDNS_DIRECTIVES: readonly string[] = (
  "server-name resolv-hostname bind bind-tcp bind-tls bind-https bind-http bind-cert-root-key-file " +
  "bind-cert-generate bind-cert-san bind-cert-validity-days bind-cert-file bind-cert-key-file " +
  "bind-cert-key-pass server server-tcp server-tls server-https server-h3 server-http3 server-quic " +
  "mdns-lookup local-ptr-enable nameserver expand-ptr-from-address address cname srv-record " +
  "https-record txt-record proxy-server ipset-timeout ipset ipset-no-speed nftset-timeout nftset-debug " +
  "nftset nftset-no-speed speed-check-mode tcp-idle-time cache-size cache-mem-size cache-file data-dir " +
  "cache-persist cache-checkpoint-time prefetch-domain serve-expired serve-expired-ttl " +
  "serve-expired-reply-ttl serve-expired-prefetch-time dualstack-ip-selection " +
  "dualstack-ip-allow-force-AAAA dualstack-ip-selection-threshold dns64 log-level log-file log-size " +
  "log-num log-color log-console log-syslog log-file-mode audit-enable audit-SOA audit-file " +
  "audit-file-mode audit-size audit-num audit-console audit-syslog acl-enable rr-ttl rr-ttl-min " +
  "rr-ttl-max rr-ttl-reply-max local-ttl max-reply-ip-num max-query-limit response-mode " +
  "force-AAAA-SOA force-no-CNAME force-qtype-SOA blacklist-ip whitelist-ip ip-alias ip-rules ip-set " +
  "bogus-nxdomain ignore-ip edns-client-subnet domain-rules domain-set ddns-domain local-domain " +
  "dnsmasq-lease-file odhcpd-lease-file hosts-file group-begin group-end group-match client-rules " +
  "ca-file ca-path user debug-save-fail-packet no-pidfile no-daemon restart-on-crash socket-buff-size " +
  "plugin resolv-file debug-save-fail-packet-dir conf-file"
).split(" ");

/** `server` options that take a value, by every name SmartDNS accepts. */
const SERVER_OPTIONS_WITH_VALUE = new Set([
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
const SERVER_FLAGS = new Set([
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
/** `bind` options that take a value. */
const BIND_OPTIONS_WITH_VALUE = new Set(["group", "ipset", "nftset", "alpn"]);
/** `bind` options that are flags. */
const BIND_FLAGS = new Set([
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

/** One directive as read: its words and where each word starts. */
interface Line {
  readonly words: string[];
  readonly cols: number[];
  readonly line: number;
  readonly file: string;
}

/** Splits the text into directives: `#` comments at line start, `\` continuation, quotes. */
function* readLines(text: string, file: string): Generator<Line> {
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

/** Reads a file for `conf-file`; injectable for tests. */
export type FileReader = (path: string) => string;

/** Lists the files a `conf-file` pattern names (a `*`/`?` glob in the last path part). */
function expandInclude(pattern: string): string[] {
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
function relativeTo(file: string, path: string): string {
  if (path.startsWith("/")) return path;
  const slash = file.lastIndexOf("/");
  return slash < 0 ? path : file.slice(0, slash + 1) + path;
}

/** Mutable state while reading one smartdns.conf and its includes. */
class SmartdnsConfReader {
  readonly binds: BindConfig[] = [];
  readonly upstreams: UpstreamConfig[] = [];
  cache: { -readonly [K in keyof CacheConfig]: CacheConfig[K] } = { ...DEFAULT_CACHE };
  log: { -readonly [K in keyof LogConfig]: LogConfig[K] } = { ...DEFAULT_LOG };
  tcpIdleTime = DEFAULT_TCP_IDLE_TIME;
  resolvFile = "/etc/resolv.conf";
  /** `cache-persist` as written; SmartDNS's "auto" (unset) persists when a cache-file is named. */
  persistSet?: boolean;
  cacheFileSet = false;
  readonly unsupported = new Map<string, UnsupportedDirective>();
  readonly includeStack: string[] = [];

  constructor(readonly readFile: FileReader) {}

  at(l: Line, word: number): SourcePosition {
    return { file: l.file, line: l.line, col: l.cols[Math.min(word, l.cols.length - 1)] ?? 1 };
  }

  fail(l: Line, word: number, reason: string): never {
    throw new ConfigError(reason, this.at(l, word));
  }

  /** Runs a value parser; its error becomes a ConfigError at word `word`. */
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

  notSupported(name: string, l: Line, word = 0): void {
    if (!this.unsupported.has(name)) this.unsupported.set(name, { name, source: this.at(l, word) });
  }

  read(text: string, file: string): void {
    if (this.includeStack.includes(file)) {
      throw new ConfigError(`conf-file includes itself (${[...this.includeStack, file].join(" -> ")})`, {
        file,
        line: 1,
        col: 1,
      });
    }
    this.includeStack.push(file);
    for (const l of readLines(text, file)) this.directive(l);
    this.includeStack.pop();
  }

  directive(l: Line): void {
    const name = l.words[0];
    switch (name) {
      case "bind":
        return this.bind(l, "udp");
      case "bind-tcp":
        return this.bind(l, "tcp");
      case "server":
        return this.server(l, "udp");
      case "server-tcp":
        return this.server(l, "tcp");
      case "cache-size": {
        const n = this.value(l, 1, (t) => parseInteger(t, -1, 2 ** 31 - 1));
        this.cache.size = n < 0 ? AUTO_CACHE_SIZE : n;
        return;
      }
      case "rr-ttl":
        this.cache.rrTtl = this.value(l, 1, (t) => parseInteger(t, 0, 2 ** 31 - 1));
        return;
      case "rr-ttl-min":
        this.cache.rrTtlMin = this.value(l, 1, (t) => parseInteger(t, 0, 2 ** 31 - 1));
        return;
      case "rr-ttl-max":
        this.cache.rrTtlMax = this.value(l, 1, (t) => parseInteger(t, 0, 2 ** 31 - 1));
        return;
      case "cache-persist":
        this.persistSet = this.value(l, 1, parseYesNo);
        return;
      case "cache-file":
        this.cache.file = this.value(l, 1, (t) => relativeTo(l.file, t));
        this.cacheFileSet = true;
        return;
      case "cache-checkpoint-time":
        this.cache.checkpointTime = this.value(l, 1, (t) => parseInteger(t, 0, 7 * 86400));
        return;
      case "tcp-idle-time":
        this.tcpIdleTime = this.value(l, 1, (t) => parseInteger(t, 0, 3600));
        return;
      case "log-level":
        this.log.level = this.value(l, 1, (t) => {
          const level = t.toLowerCase() === "warning" ? "warn" : t.toLowerCase();
          if (!LOG_LEVELS.includes(level as LogLevel)) {
            throw new Error(`"${t}" is not a level (${LOG_LEVELS.join(", ")})${didYouMean(t, LOG_LEVELS)}`);
          }
          return level as LogLevel;
        });
        return;
      case "log-file":
        this.log.file = this.value(l, 1, (t) => t);
        return;
      case "log-size":
        this.log.size = this.value(l, 1, parseSize);
        return;
      case "log-num":
        this.log.num = this.value(l, 1, (t) => parseInteger(t, 0, 1024));
        return;
      case "resolv-file":
        this.resolvFile = this.value(l, 1, (t) => t);
        return;
      case "conf-file":
        return this.include(l);
      case "restart-on-crash":
        // keeldns always runs its guardian (--no-guardian is the way out); "yes" is what it does.
        if (!this.value(l, 1, parseYesNo)) this.notSupported("restart-on-crash no (use --no-guardian)", l);
        return;
      case "no-daemon":
        this.value(l, 1, parseYesNo); // keeldns never daemonizes: it runs in the foreground either way
        return;
    }
    if (SMARTDNS_DIRECTIVES.includes(name) || name.includes(".")) {
      this.notSupported(name, l);
      return;
    }
    this.fail(l, 0, `unknown directive "${name}"${didYouMean(name, SMARTDNS_DIRECTIVES)}`);
  }

  bind(l: Line, transport: Transport): void {
    let spec = this.value(l, 1, (t) => t);
    const at = spec.indexOf("@");
    if (at >= 0) {
      this.notSupported(`${l.words[0]} @device`, l, 1);
      spec = spec.slice(0, at);
    }
    const { host, port } = this.value(l, 1, () => parseHostPort(spec, DNS_PORT, "::"));
    this.options(
      l,
      2,
      BIND_OPTIONS_WITH_VALUE,
      BIND_FLAGS,
      (opt) => this.notSupported(`${l.words[0]} -${opt}`, l),
    );
    this.binds.push({ transport, host, port, source: this.at(l, 1) });
  }

  server(l: Line, transport: Transport): void {
    let address: UpstreamAddress;
    const text = this.value(l, 1, (t) => t);
    try {
      address = parseUpstreamAddress(text, transport);
    } catch (e) {
      const reason = (e as Error).message;
      if (reason.includes("not supported yet") && reason.includes("://")) {
        this.notSupported(`${l.words[0]} ${reason.split(":")[0]}://`, l, 1);
        return;
      }
      this.fail(l, 1, `${l.words[0]}: ${reason}`);
    }
    const groups: string[] = [];
    let excludeDefault = false;
    this.options(l, 2, SERVER_OPTIONS_WITH_VALUE, SERVER_FLAGS, (opt, value) => {
      if (opt === "group" || opt === "g") {
        if (value && !groups.includes(value)) groups.push(value);
      } else if (opt === "exclude-default-group" || opt === "e") {
        excludeDefault = true;
      } else {
        this.notSupported(`${l.words[0]} -${opt}`, l);
      }
    });
    this.upstreams.push({ ...address, groups, excludeDefault, source: this.at(l, 1) });
  }

  /** Walks `-option [value]` words from `first`; a word starting with `#` ends the line. */
  options(
    l: Line,
    first: number,
    withValue: Set<string>,
    flags: Set<string>,
    use: (option: string, value?: string) => void,
  ): void {
    for (let i = first; i < l.words.length; i++) {
      const word = l.words[i];
      if (word.startsWith("#")) return;
      const opt = word.replace(/^--?/, "");
      if (!word.startsWith("-") || opt === "") {
        this.fail(l, i, `${l.words[0]}: unexpected argument "${word}"`);
      }
      if (withValue.has(opt)) {
        if (i + 1 >= l.words.length) this.fail(l, i, `${l.words[0]}: option ${word} needs a value`);
        use(opt, l.words[++i]);
      } else if (flags.has(opt)) {
        use(opt);
      } else {
        this.fail(
          l,
          i,
          `${l.words[0]}: unknown option "${word}"${didYouMean(opt, [...withValue, ...flags])}`,
        );
      }
    }
  }

  include(l: Line): void {
    const pattern = relativeTo(l.file, this.value(l, 1, (t) => t));
    this.options(l, 2, new Set(["group", "g"]), new Set(), () => this.notSupported("conf-file -group", l));
    let files: string[];
    try {
      files = expandInclude(pattern);
    } catch (e) {
      this.fail(l, 1, `conf-file: cannot list "${pattern}": ${(e as Error).message}`);
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

  /** SmartDNS's fallback when no `server` line exists: the nameservers of `resolv-file`. */
  upstreamsFromResolvFile(file: string): UpstreamConfig[] {
    let text: string;
    try {
      text = this.readFile(this.resolvFile);
    } catch (e) {
      throw new ConfigError(
        `no server lines, and resolv-file "${this.resolvFile}" cannot be read: ${readFailure(e)}`,
        { file, line: 0, col: 0 },
      );
    }
    const found: UpstreamConfig[] = [];
    for (const line of text.split("\n")) {
      const m = /^\s*nameserver\s+(\S+)/.exec(line);
      if (!m) continue;
      try {
        found.push({ transport: "udp", ...parseHostPort(m[1], DNS_PORT), groups: [], excludeDefault: false });
      } catch {
        // resolv.conf may hold scoped or odd entries; they are simply not usable upstreams.
      }
    }
    if (found.length === 0) {
      throw new ConfigError(`no server lines, and no usable nameserver in "${this.resolvFile}"`, {
        file,
        line: 0,
        col: 0,
      });
    }
    return found;
  }
}

/** Parses smartdns.conf text (and the files it includes) into the model. */
export function parseSmartdnsConf(
  text: string,
  file: string,
  readFile: FileReader = Deno.readTextFileSync,
): Config {
  const reader = new SmartdnsConfReader(readFile);
  reader.read(text, file);
  const binds = reader.binds.length > 0
    ? reader.binds
    : [{ transport: "udp" as const, host: "::", port: DNS_PORT }];
  const upstreams = reader.upstreams.length > 0 ? reader.upstreams : reader.upstreamsFromResolvFile(file);
  reader.cache.persist = reader.persistSet ?? reader.cacheFileSet;
  if (
    reader.cache.rrTtlMin > 0 && reader.cache.rrTtlMax > 0 && reader.cache.rrTtlMin > reader.cache.rrTtlMax
  ) {
    reader.cache.rrTtlMin = reader.cache.rrTtlMax; // SmartDNS: min above max becomes max
  }
  return {
    path: file,
    format: "smartdns",
    server: {
      binds,
      udpTransport: "auto",
      tcpIdleTime: reader.tcpIdleTime,
      maxTcpConnections: DEFAULT_MAX_TCP_CONNECTIONS,
      upstreamTimeout: DEFAULT_UPSTREAM_TIMEOUT,
    },
    upstreams,
    cache: reader.cache,
    log: reader.log,
    guardian: DEFAULT_GUARDIAN,
    unsupported: [...reader.unsupported.values()],
  };
}
