/**
 * Front-end for keeldns's own TOML format. Keys mirror SmartDNS directive names where one exists,
 * so `keeldns convert` output reads familiar. Unknown keys are errors with a "did you mean".
 *
 * @module
 */
import {
  DEFAULT_AUDIT,
  DEFAULT_CACHE,
  DEFAULT_GUARDIAN,
  DEFAULT_LOG,
  DEFAULT_MAX_TCP_CONNECTIONS,
  DEFAULT_RATE_BURST,
  DEFAULT_RATE_LIMIT,
  DEFAULT_TCP_IDLE_TIME,
  DEFAULT_UPSTREAM_TIMEOUT,
  DNS_PORT,
} from "./defaults.ts";
import { didYouMean } from "./errors.ts";
import type {
  AddressSetRule,
  AdminConfig,
  AuditConfig,
  BindConfig,
  ClientGroupConfig,
  Config,
  DomainRule,
  DomainSetConfig,
  ListenerTransport,
  LogLevel,
  NftSetTarget,
  ProxyConfig,
  RulesConfig,
  TlsOptions,
  Transport,
  UdpTransportChoice,
  UpstreamConfig,
} from "./schema.ts";
import { LOG_LEVELS, parseResponseMode, parseSpeedCheckModes, RESPONSE_MODES } from "./schema.ts";
import { TomlSource } from "./toml_source.ts";
import { parseProxyUrl } from "./proxy_url.ts";
import { parseNftsetSpec, parseNftTarget } from "./smartdns/nftset.ts";
import { parseCidr } from "../net/cidr_set.ts";
import { formatClientSubnet, overlaySubnets, parseClientSubnet } from "../dns/client_subnet.ts";
import { checkIpSetReferences, checkRuleReferences } from "./rule_references.ts";
import { asciiDomain } from "./smartdns/reader.ts";
import { HONOURED } from "./smartdns/listen.ts";
import { checkNameResolution } from "./bootstrap_servers.ts";
import {
  ADMIN_TOML_KEYS,
  checkPasswordHash,
  DEFAULT_ADMIN_HOST,
  DEFAULT_ADMIN_PORT,
  DEFAULT_SESSION_SECONDS,
  parseAdminListen,
} from "./admin.ts";
import {
  AUTO_CACHE_SIZE,
  isIPv4,
  isIPv6,
  parseAddressAction,
  parseDns64Prefix,
  parseFileMode,
  parseHostPort,
  parseHttpsRecord,
  parseSize,
  parseSrvRecord,
  parseTargetName,
  parseUpstreamAddress,
} from "./values.ts";

type Table = Record<string, unknown>;

/** The flags a `[[server.listen]]` takes: SmartDNS's bind options keeldns honours, one list for both formats. */
const LISTEN_FLAGS = [...HONOURED];

/** The keys each table accepts. */
const SCHEMA: Record<string, readonly string[]> = {
  "": [
    "admin",
    "server",
    "upstream",
    "proxy",
    "cache",
    "log",
    "audit",
    "guardian",
    "metrics",
    "rules",
    "rule",
    "domain-set",
    "ip-rule",
    "ip-set",
    "group",
  ],
  group: [
    "name",
    "clients",
    "force-aaaa-soa",
    "force-qtype-soa",
    "edns-client-subnet",
    "speed-check-mode",
    "response-mode",
    "dualstack-ip-selection",
    "dualstack-ip-selection-threshold",
    "dualstack-ip-allow-force-aaaa",
    "rule",
  ],
  listen: ["address", "group", "flags"],
  rules: [
    "local-ttl",
    "force-aaaa-soa",
    "force-qtype-soa",
    "hosts-files",
    "expand-ptr-from-address",
    "lease-files",
    "server-name",
    "resolv-hostname",
    "max-reply-ip-num",
    "speed-check-mode",
    "response-mode",
    "blocking-answer-vote",
    "dualstack-ip-selection",
    "dualstack-ip-selection-threshold",
    "dualstack-ip-allow-force-aaaa",
    "dns64",
    "nftset-timeout",
    "nftset-debug",
  ],
  rule: [
    "domains",
    "address",
    "nameserver",
    "cname",
    "srv",
    "txt",
    "https",
    "nftset",
    "speed-check-mode",
    "response-mode",
    "dualstack-ip-selection",
    "no-serve-expired",
  ],
  "domain-set": ["name", "file"],
  "ip-rule": ["cidrs", "blacklist", "whitelist", "bogus-nxdomain", "ignore", "alias"],
  "ip-set": ["name", "file"],
  metrics: ["enable"],
  guardian: ["watchdog-timeout", "startup-timeout", "max-memory", "crash-files", "optimize-for", "user"],
  server: [
    "bind",
    "bind-udp",
    "bind-tcp",
    "tcp-idle-time",
    "max-tcp-connections",
    "upstream-timeout",
    "udp-transport",
    "clients",
    "allowed-clients",
    "rate-limit",
    "rate-burst",
    "listen",
    "ca-file",
    "ca-path",
    "cert-file",
    "key-file",
    "key-pass",
    "edns-client-subnet",
  ],
  upstream: [
    "address",
    "groups",
    "exclude-default-group",
    "blacklist-ip",
    "whitelist-ip",
    "fallback",
    "subnet",
    "subnet-all-query-types",
    "check-edns",
    "bootstrap",
    "host-ip",
    "host-name",
    "tls-host-verify",
    "verify-certificate",
    "spki-pins",
    "http-host",
    "alpn",
    "proxy",
    "set-mark",
    "interface",
    "tcp-keepalive",
  ],
  proxy: ["name", "url"],
  cache: [
    "size",
    "mem-size",
    "rr-ttl",
    "rr-ttl-min",
    "rr-ttl-max",
    "rr-ttl-reply-max",
    "serve-expired",
    "serve-expired-ttl",
    "serve-expired-reply-ttl",
    "serve-expired-prefetch-time",
    "prefetch",
    "persist",
    "file",
    "checkpoint-time",
    "write-budget",
  ],
  log: ["level", "file", "size", "num", "console", "file-mode"],
  audit: ["enable", "file", "size", "num", "file-mode", "console", "soa", "query-log-size"],
  admin: ADMIN_TOML_KEYS,
};

/** Reads the TOML model out of a parsed document, pointing errors at their keys. */
class TomlConfigReader {
  constructor(readonly src: TomlSource) {}

  table(value: unknown, path: string, schemaName: string): Table {
    if (value === undefined) return {};
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      this.src.fail(path, `"${path}" must be a table`);
    }
    const table = value as Table;
    const allowed = SCHEMA[schemaName];
    for (const key of Object.keys(table)) {
      if (!allowed.includes(key)) {
        const where = path ? `${path}.${key}` : key;
        this.src.fail(
          where,
          `unknown key "${key}"${path ? ` in [${schemaName}]` : ""}${didYouMean(key, allowed)}`,
        );
      }
    }
    return table;
  }

  integer(table: Table, key: string, path: string, min: number, max: number, fallback: number): number {
    const v = table[key];
    if (v === undefined) return fallback;
    if (typeof v !== "number" && typeof v !== "bigint") {
      this.src.fail(`${path}.${key}`, `${key} must be an integer`);
    }
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) {
      this.src.fail(`${path}.${key}`, `${key} must be an integer in ${min}..${max}, not ${n}`);
    }
    return n;
  }

  /** A size given as bytes or as text such as "128k". */
  size(table: Table, key: string, path: string, fallback: number): number {
    const v = table[key];
    if (typeof v === "string") return this.parsed(`${path}.${key}`, key, () => parseSize(v));
    return this.integer(table, key, path, 0, Number.MAX_SAFE_INTEGER, fallback);
  }

  /** A permission mode: an octal integer (`0o640`) or octal digits as text (`"640"`). */
  mode(table: Table, key: string, path: string, fallback: number): number {
    const v = table[key];
    if (v === undefined) return fallback;
    if (typeof v === "string") return this.parsed(`${path}.${key}`, key, () => parseFileMode(v));
    const n = this.integer(table, key, path, 0, Number.MAX_SAFE_INTEGER, fallback);
    if (n > 0o777) {
      this.src.fail(`${path}.${key}`, `${key} must be an octal mode such as 0o640 or "640", not ${n}`);
    }
    return n;
  }

  /** The `[audit]` table. */
  audit(root: Table): AuditConfig {
    const a = this.table(root.audit, "audit", "audit");
    return {
      enable: this.boolean(a, "enable", "audit", DEFAULT_AUDIT.enable),
      file: this.string(a, "file", "audit") ?? DEFAULT_AUDIT.file,
      size: this.size(a, "size", "audit", DEFAULT_AUDIT.size),
      num: this.integer(a, "num", "audit", 0, 1024, DEFAULT_AUDIT.num),
      fileMode: this.mode(a, "file-mode", "audit", DEFAULT_AUDIT.fileMode),
      console: this.boolean(a, "console", "audit", DEFAULT_AUDIT.console),
      soa: this.boolean(a, "soa", "audit", DEFAULT_AUDIT.soa),
      queryLogSize: this.integer(a, "query-log-size", "audit", 0, 10_000_000, DEFAULT_AUDIT.queryLogSize),
    };
  }

  boolean(table: Table, key: string, path: string, fallback: boolean): boolean {
    const v = table[key];
    if (v === undefined) return fallback;
    if (typeof v !== "boolean") this.src.fail(`${path}.${key}`, `${key} must be true or false`);
    return v;
  }

  string(table: Table, key: string, path: string): string | undefined {
    const v = table[key];
    if (v === undefined) return undefined;
    if (typeof v !== "string") this.src.fail(`${path}.${key}`, `${key} must be a string`);
    return v;
  }

  strings(table: Table, key: string, path: string): string[] {
    const v = table[key];
    if (v === undefined) return [];
    if (typeof v === "string") return [v];
    if (!Array.isArray(v) || v.some((x) => typeof x !== "string")) {
      this.src.fail(`${path}.${key}`, `${key} must be a string or an array of strings`);
    }
    return v as string[];
  }

  /** Runs a value parser; its error becomes a ConfigError at the key. */
  parsed<T>(path: string, key: string, parse: () => T): T {
    try {
      return parse();
    } catch (e) {
      this.src.fail(path, `${key}: ${(e as Error).message}`);
    }
  }

  binds(server: Table): BindConfig[] {
    const binds: BindConfig[] = [];
    const add = (key: string, transports: Transport[]) => {
      for (const text of this.strings(server, key, "server")) {
        const source = this.src.position(`server.${key}`);
        const scheme = /^(udp|tcp):\/\//i.exec(text);
        const only = scheme ? [scheme[1].toLowerCase() as Transport] : transports;
        const rest = scheme ? text.slice(scheme[0].length) : text;
        const { host, port } = this.parsed(`server.${key}`, key, () => parseHostPort(rest, DNS_PORT, "::"));
        for (const transport of only) binds.push({ transport, host, port, source });
      }
    };
    add("bind", ["udp", "tcp"]);
    add("bind-udp", ["udp"]);
    add("bind-tcp", ["tcp"]);
    // [[server.listen]]: a listener with SmartDNS's bind options (group, flags).
    this.list(server.listen, "server.listen").forEach((item, i) => {
      const path = `server.listen[${i}]`;
      const t = this.table(item, path, "listen");
      const text = this.string(t, "address", path);
      if (!text) this.src.fail(path, `[[server.listen]] #${i + 1} has no address`);
      const scheme = /^(udp|tcp|tls|https|quic):\/\//i.exec(text);
      const only = scheme
        ? [scheme[1].toLowerCase() as ListenerTransport]
        : ["udp", "tcp"] as ListenerTransport[];
      const rest = scheme ? text.slice(scheme[0].length) : text;
      const defaultPort = only[0] === "tls" || only[0] === "quic"
        ? 853
        : only[0] === "https"
        ? 443
        : DNS_PORT;
      const { host, port } = this.parsed(
        `${path}.address`,
        "address",
        () => parseHostPort(rest, defaultPort, "::"),
      );
      const group = this.string(t, "group", path);
      const flags = this.strings(t, "flags", path);
      for (const f of flags) {
        if (!LISTEN_FLAGS.includes(f)) {
          this.src.fail(
            `${path}.flags`,
            `"${f}" is not a listener flag (${LISTEN_FLAGS.join(", ")})${didYouMean(f, LISTEN_FLAGS)}`,
          );
        }
      }
      for (const transport of only) {
        binds.push({
          transport,
          host,
          port,
          ...(group !== undefined ? { group } : {}),
          ...(flags.length > 0 ? { flags } : {}),
          source: this.src.position(`${path}.address`),
        });
      }
    });
    if (binds.length === 0) {
      binds.push({ transport: "udp", host: "::", port: DNS_PORT }, {
        transport: "tcp",
        host: "::",
        port: DNS_PORT,
      });
    }
    return binds;
  }

  udpTransport(server: Table): UdpTransportChoice {
    return this.choice(server, "udp-transport", "server", ["auto", "batched", "portable"] as const, "auto");
  }

  /**
   * `[guardian] user`: a user name (whether it exists is only known where keeldns runs: start-up
   * refuses an unknown one, `check` warns). Returns `{ user }`, or nothing when unset.
   */
  userName(guardian: Table): { user?: string } {
    const user = this.string(guardian, "user", "guardian");
    if (user === undefined) return {};
    if (!/^[A-Za-z0-9_.][A-Za-z0-9_.-]*\$?$/.test(user)) {
      this.src.fail("guardian.user", `user must be a user name, not ${JSON.stringify(user)}`);
    }
    return { user };
  }

  /** A string that must be one of `choices`. */
  choice<T extends string>(table: Table, key: string, path: string, choices: readonly T[], fallback: T): T {
    const value = this.string(table, key, path) ?? fallback;
    if (!choices.includes(value as T)) {
      this.src.fail(
        `${path}.${key}`,
        `${key} must be one of ${choices.join(", ")}${didYouMean(value, choices)}`,
      );
    }
    return value as T;
  }

  /** `[[proxy]]` name/url: the proxies `[[upstream]] proxy = "name"` refers to. */
  proxies(value: unknown): Map<string, ProxyConfig | "direct"> {
    const proxies = new Map<string, ProxyConfig | "direct">();
    this.list(value, "proxy").forEach((item, i) => {
      const path = `proxy[${i}]`;
      const t = this.table(item, path, "proxy");
      const name = this.string(t, "name", path);
      const url = this.string(t, "url", path);
      if (!name || !url) this.src.fail(path, `[[proxy]] #${i + 1} needs a name and a url`);
      if (proxies.has(name)) this.src.fail(`${path}.name`, `proxy "${name}" is defined twice`);
      const target = this.parsed(`${path}.url`, "url", () => parseProxyUrl(url));
      proxies.set(
        name,
        target === "direct" ? "direct" : { name, ...target, source: this.src.position(`${path}.url`) },
      );
    });
    return proxies;
  }

  upstreams(value: unknown, proxies: Map<string, ProxyConfig | "direct">): readonly UpstreamConfig[] {
    if (value === undefined) this.src.fail("", "no [[upstream]] servers are configured");
    const list = Array.isArray(value) ? value : [value];
    return checkNameResolution(list.map((item, i) => {
      const path = `upstream[${i}]`;
      const t = this.table(item, path, "upstream");
      const address = this.string(t, "address", path);
      if (address === undefined) this.src.fail(path, `[[upstream]] #${i + 1} has no address`);
      const parsed = this.parsed(`${path}.address`, "address", () => parseUpstreamAddress(address, "udp"));
      const proxyName = this.string(t, "proxy", path);
      const proxy = proxyName === undefined ? undefined : proxies.get(proxyName);
      if (proxyName !== undefined && proxy === undefined) {
        this.src.fail(`${path}.proxy`, `no [[proxy]] is named "${proxyName}"`);
      }
      if (proxy && proxy !== "direct" && parsed.transport === "quic") {
        this.src.fail(
          `${path}.proxy`,
          "a quic:// server cannot go through a proxy (Deno's QUIC endpoint sends its own UDP packets); " +
            "use a tls:// or https:// server through it",
        );
      }
      const setMark = t["set-mark"] === undefined
        ? undefined
        : this.integer(t, "set-mark", path, 0, 0xffffffff, 0);
      const device = this.string(t, "interface", path);
      const tcpKeepalive = t["tcp-keepalive"] === undefined
        ? undefined
        : this.integer(t, "tcp-keepalive", path, 1, 65535, 0);
      if (tcpKeepalive !== undefined && parsed.transport !== "tcp" && parsed.transport !== "tls") {
        this.src.fail(`${path}.tcp-keepalive`, "tcp-keepalive is for tcp:// and tls:// servers (RFC 7828)");
      }
      for (const [key, given] of [["set-mark", setMark !== undefined], ["interface", device !== undefined]]) {
        if (given && (parsed.transport !== "udp" || (proxy && proxy !== "direct"))) {
          this.src.fail(
            `${path}.${key}`,
            `${key} is only honoured on plain udp:// servers without a proxy (Deno's TCP sockets take ` +
              "no SO_MARK or SO_BINDTODEVICE)",
          );
        }
      }
      const hostIp = this.string(t, "host-ip", path);
      if (hostIp !== undefined && !isIPv4(hostIp) && !isIPv6(hostIp)) {
        this.src.fail(`${path}.host-ip`, `host-ip "${hostIp}" is not an IP address`);
      }
      if (hostIp !== undefined && !parsed.name) {
        this.src.fail(`${path}.host-ip`, "host-ip is only for a server whose address is a host name");
      }
      return {
        ...parsed,
        ...(hostIp !== undefined ? { hostIp } : {}),
        ...(this.boolean(t, "bootstrap", path, false) ? { bootstrap: true } : {}),
        groups: this.strings(t, "groups", path),
        excludeDefault: this.boolean(t, "exclude-default-group", path, false),
        ...(this.boolean(t, "blacklist-ip", path, false) ? { blacklistIp: true } : {}),
        ...(this.boolean(t, "whitelist-ip", path, false) ? { whitelistIp: true } : {}),
        ...(this.boolean(t, "fallback", path, false) ? { fallback: true } : {}),
        ...(proxy && proxy !== "direct" ? { proxy } : {}),
        ...(setMark !== undefined ? { setMark } : {}),
        ...(device !== undefined ? { interface: device } : {}),
        ...(tcpKeepalive !== undefined ? { tcpKeepalive } : {}),
        ...this.clientSubnet(t, "subnet", path),
        ...(this.boolean(t, "subnet-all-query-types", path, false) ? { subnetAllQueryTypes: true } : {}),
        ...(this.boolean(t, "check-edns", path, false) ? { checkEdns: true } : {}),
        ...(parsed.transport === "tls" || parsed.transport === "https" || parsed.transport === "quic"
          ? { tls: this.tlsOptions(t, path) }
          : {}),
        source: this.src.position(`${path}.address`),
      };
    }));
  }

  /**
   * `{ clientSubnet }` from a Client Subnet key (`"IP/len"` or a list of them, at most one per
   * family; `/0` is a real zero-length prefix here), or nothing when unset.
   */
  clientSubnet(t: Table, key: string, path: string): { clientSubnet?: string[] } {
    const texts = this.strings(t, key, path);
    if (texts.length === 0) return {};
    const subnets = texts.map((text) =>
      this.parsed(`${path}.${key}`, key, () => formatClientSubnet(parseClientSubnet(text)))
    );
    for (const family of [false, true]) {
      if (subnets.filter((s) => s.includes(":") === family).length > 1) {
        this.src.fail(`${path}.${key}`, `${key}: at most one ${family ? "IPv6" : "IPv4"} subnet`);
      }
    }
    return { clientSubnet: subnets };
  }

  /** The certificate checks of a tls://, https:// or quic:// upstream. */
  private tlsOptions(t: Table, path: string): TlsOptions {
    const hostName = this.string(t, "host-name", path);
    const verifyName = this.string(t, "tls-host-verify", path);
    const httpHost = this.string(t, "http-host", path);
    const alpn = this.strings(t, "alpn", path);
    return {
      ...(hostName !== undefined ? { hostName } : {}),
      ...(verifyName !== undefined ? { verifyName } : {}),
      verifyCertificate: this.boolean(t, "verify-certificate", path, true),
      spkiPins: this.strings(t, "spki-pins", path),
      ...(httpHost !== undefined ? { httpHost } : {}),
      ...(alpn.length > 0 ? { alpn } : {}),
    };
  }

  /** A list of tables (`[[rule]]`), or none. */
  private list(value: unknown, path: string): unknown[] {
    if (value === undefined) return [];
    if (!Array.isArray(value)) this.src.fail(path, `${path} must be a list of tables ([[${path}]])`);
    return value;
  }

  /** `[[ip-rule]]` (cidrs, blacklist, whitelist, bogus-nxdomain, ignore, alias) and `[[ip-set]]`. */
  ipRules(root: Table): Pick<RulesConfig, "ipRules" | "ipSets"> {
    const dir = this.src.file.includes("/") ? this.src.file.slice(0, this.src.file.lastIndexOf("/") + 1) : "";
    const ipSets = this.list(root["ip-set"], "ip-set").map((item, i) => {
      const path = `ip-set[${i}]`;
      const set = this.table(item, path, "ip-set");
      const name = this.string(set, "name", path);
      const file = this.string(set, "file", path);
      if (!name || !file) this.src.fail(path, `[[ip-set]] #${i + 1} needs a name and a file`);
      return {
        name,
        file: file.startsWith("/") ? file : dir + file,
        source: this.src.position(`${path}.name`),
      };
    });
    const ipRules = this.list(root["ip-rule"], "ip-rule").map((item, i) => {
      const path = `ip-rule[${i}]`;
      const r = this.table(item, path, "ip-rule");
      const cidrs = this.strings(r, "cidrs", path);
      if (cidrs.length === 0) this.src.fail(path, `[[ip-rule]] #${i + 1} has no cidrs`);
      for (const c of cidrs) {
        if (!c.startsWith("ip-set:")) {
          this.parsed(`${path}.cidrs`, "cidrs", () => parseCidr(c));
        }
      }
      const alias = this.strings(r, "alias", path);
      return {
        cidrs,
        blacklist: this.boolean(r, "blacklist", path, false),
        whitelist: this.boolean(r, "whitelist", path, false),
        bogusNxdomain: this.boolean(r, "bogus-nxdomain", path, false),
        ignore: this.boolean(r, "ignore", path, false),
        ...(alias.length > 0 ? { alias } : {}),
        source: this.src.position(`${path}.cidrs`),
      };
    });
    checkIpSetReferences(ipRules, ipSets);
    return { ipRules, ipSets };
  }

  /** `nftset = "#4:inet#t#s,#6:inet#t#s6"` or `nftset = { v4 = "inet#t#s", v6 = "-" }`. */
  nftset(value: unknown, path: string): AddressSetRule {
    if (typeof value === "string") return this.parsed(path, "nftset", () => parseNftsetSpec(value));
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      this.src.fail(path, `nftset must be a string ("#4:inet#t#s,#6:inet#t#s6") or a table { v4, v6 }`);
    }
    const out: { v4?: NftSetTarget | "-"; v6?: NftSetTarget | "-" } = {};
    for (const [key, text] of Object.entries(value)) {
      if (key !== "v4" && key !== "v6") {
        this.src.fail(
          `${path}.${key}`,
          `unknown key "${key}" in nftset (v4, v6)${didYouMean(key, ["v4", "v6"])}`,
        );
      }
      if (typeof text !== "string") {
        this.src.fail(`${path}.${key}`, `${key} must be "family#table#set" or "-"`);
      }
      out[key] = text === "-"
        ? "-"
        : this.parsed(`${path}.${key}`, key, () => parseNftTarget(text, key === "v6"));
    }
    return out;
  }

  /** `[rules]`, `[[domain-set]]` and `[[rule]]`. */
  rules(root: Table, upstreams: readonly UpstreamConfig[]): RulesConfig {
    const t = this.table(root.rules, "rules", "rules");
    const dir = this.src.file.includes("/") ? this.src.file.slice(0, this.src.file.lastIndexOf("/") + 1) : "";
    const relative = (f: string) => f.startsWith("/") ? f : dir + f;
    const domainSets: DomainSetConfig[] = this.list(root["domain-set"], "domain-set").map((item, i) => {
      const path = `domain-set[${i}]`;
      const set = this.table(item, path, "domain-set");
      const name = this.string(set, "name", path);
      const file = this.string(set, "file", path);
      if (!name || !file) this.src.fail(path, `[[domain-set]] #${i + 1} needs a name and a file`);
      return { name, file: relative(file), source: this.src.position(`${path}.name`) };
    });
    const domainRules = this.ruleList(root.rule, "rule");
    return this.rulesSettings(t, root, upstreams, domainRules, domainSets, relative);
  }

  /** A list of `[[rule]]` tables at `at` (`rule`, or `group[i].rule`). */
  ruleList(value: unknown, at: string): DomainRule[] {
    return this.list(value, at).map((item, i) => {
      const path = `${at}[${i}]`;
      const r = this.table(item, path, "rule");
      const domains = this.strings(r, "domains", path).map((d) =>
        this.parsed(`${path}.domains`, "domains", () => asciiDomain(d))
      );
      if (domains.length === 0) this.src.fail(path, `[[rule]] #${i + 1} has no domains ("" is every name)`);
      const rule: { -readonly [K in keyof DomainRule]: DomainRule[K] } = {
        domains,
        source: this.src.position(`${path}.domains`),
        text: `[[${at.replace(/\[\d+\]/g, "")}]] #${i + 1}`,
      };
      if (r.address !== undefined) {
        const text = Array.isArray(r.address)
          ? this.strings(r, "address", path).join(",")
          : this.string(r, "address", path)!;
        rule.address = this.parsed(`${path}.address`, "address", () => parseAddressAction(text));
      }
      rule.nameserver = this.string(r, "nameserver", path);
      const cname = this.string(r, "cname", path);
      if (cname !== undefined) {
        rule.cname = this.parsed(`${path}.cname`, "cname", () => parseTargetName(cname));
      }
      const srv = this.strings(r, "srv", path);
      if (srv.length > 0) {
        rule.srv = srv.map((x) => this.parsed(`${path}.srv`, "srv", () => parseSrvRecord(x)));
      }
      const https = this.string(r, "https", path);
      if (https !== undefined) {
        rule.https = this.parsed(`${path}.https`, "https", () => parseHttpsRecord(https));
      }
      const txt = this.strings(r, "txt", path);
      if (txt.length > 0) rule.txt = txt;
      if (r.nftset !== undefined) rule.nftset = this.nftset(r.nftset, `${path}.nftset`);
      const modes = this.string(r, "speed-check-mode", path);
      if (modes !== undefined) {
        rule.speedCheck = this.parsed(
          `${path}.speed-check-mode`,
          "speed-check-mode",
          () => parseSpeedCheckModes(modes),
        );
      }
      const mode = this.string(r, "response-mode", path);
      if (mode !== undefined) {
        rule.responseMode = this.parsed(
          `${path}.response-mode`,
          "response-mode",
          () => parseResponseMode(mode),
        );
      }
      if (r["dualstack-ip-selection"] !== undefined) {
        rule.dualstack = this.boolean(r, "dualstack-ip-selection", path, false);
      }
      if (this.boolean(r, "no-serve-expired", path, false)) rule.noServeExpired = true;
      return rule;
    });
  }

  /** A `[[group]]`'s speed check settings, each the default policy's unless set. */
  private speedSettings(
    g: Table,
    path: string,
    rules: RulesConfig,
  ): Pick<RulesConfig, "speedCheck" | "responseMode" | "dualstack"> {
    const modes = this.string(g, "speed-check-mode", path);
    return {
      speedCheck: modes === undefined
        ? rules.speedCheck
        : this.parsed(`${path}.speed-check-mode`, "speed-check-mode", () => parseSpeedCheckModes(modes)),
      responseMode: this.choice(g, "response-mode", path, RESPONSE_MODES, rules.responseMode),
      dualstack: {
        enabled: this.boolean(g, "dualstack-ip-selection", path, rules.dualstack.enabled),
        thresholdMs: this.integer(
          g,
          "dualstack-ip-selection-threshold",
          path,
          0,
          1000,
          rules.dualstack.thresholdMs,
        ),
        allowForceAAAA: this.boolean(
          g,
          "dualstack-ip-allow-force-aaaa",
          path,
          rules.dualstack.allowForceAAAA,
        ),
      },
    };
  }

  /** The settings half of `[rules]`, around the already read rules and sets. */
  private rulesSettings(
    t: Table,
    root: Table,
    upstreams: readonly UpstreamConfig[],
    domainRules: DomainRule[],
    domainSets: DomainSetConfig[],
    relative: (f: string) => string,
  ): RulesConfig {
    checkRuleReferences(domainRules, domainSets, upstreams);
    const qtypes = t["force-qtype-soa"];
    if (
      qtypes !== undefined && (!Array.isArray(qtypes) || qtypes.some((q) => !Number.isInteger(Number(q))))
    ) {
      this.src.fail("rules.force-qtype-soa", "force-qtype-soa must be an array of type numbers");
    }
    return {
      domainRules,
      domainSets,
      localTtl: this.integer(t, "local-ttl", "rules", 0, 2 ** 31 - 1, 0),
      forceAAAASOA: this.boolean(t, "force-aaaa-soa", "rules", false),
      forceQtypeSoa: ((qtypes as number[] | undefined) ?? []).map(Number).sort((a, b) => a - b),
      hostsFiles: this.strings(t, "hosts-files", "rules").map(relative),
      expandPtrFromAddress: this.boolean(t, "expand-ptr-from-address", "rules", false),
      leaseFiles: this.strings(t, "lease-files", "rules").map(relative),
      serverName: this.string(t, "server-name", "rules"),
      selfNames: this.string(t, "server-name", "rules") !== undefined,
      resolvHostname: this.boolean(t, "resolv-hostname", "rules", false),
      maxReplyIpNum: this.integer(t, "max-reply-ip-num", "rules", 0, 65535, 0),
      speedCheck: t["speed-check-mode"] === undefined ? [] : this.parsed(
        "rules.speed-check-mode",
        "speed-check-mode",
        () => parseSpeedCheckModes(this.string(t, "speed-check-mode", "rules")!),
      ),
      responseMode: this.choice(t, "response-mode", "rules", RESPONSE_MODES, "first-ping"),
      blockingAnswerVote: this.boolean(t, "blocking-answer-vote", "rules", false),
      dualstack: {
        enabled: this.boolean(t, "dualstack-ip-selection", "rules", false),
        thresholdMs: this.integer(t, "dualstack-ip-selection-threshold", "rules", 0, 1000, 10),
        allowForceAAAA: this.boolean(t, "dualstack-ip-allow-force-aaaa", "rules", false),
      },
      dns64Prefix: t.dns64 === undefined
        ? undefined
        : this.parsed("rules.dns64", "dns64", () => parseDns64Prefix(this.string(t, "dns64", "rules")!)),
      nftsetTimeout: this.boolean(t, "nftset-timeout", "rules", false),
      nftsetDebug: this.boolean(t, "nftset-debug", "rules", false),
      ...this.ipRules(root),
    };
  }

  /**
   * `[[group]]`: name, clients, force-aaaa-soa, force-qtype-soa, edns-client-subnet (laid over
   * the one in [server]), and its `[[group.rule]]` tables.
   */
  groups(root: Table, rules: RulesConfig, upstreams: readonly UpstreamConfig[]): ClientGroupConfig[] {
    const names = new Set<string>();
    return this.list(root.group, "group").map((item, i) => {
      const path = `group[${i}]`;
      const g = this.table(item, path, "group");
      const name = this.string(g, "name", path);
      if (!name) this.src.fail(path, `[[group]] #${i + 1} needs a name`);
      if (names.has(name)) this.src.fail(`${path}.name`, `group "${name}" is defined twice`);
      names.add(name);
      const clients = this.strings(g, "clients", path);
      for (const c of clients) this.parsed(`${path}.clients`, "clients", () => parseCidr(c));
      const own = this.ruleList(g.rule, `${path}.rule`).map((r) => ({ ...r, group: name }));
      checkRuleReferences(own, rules.domainSets, upstreams);
      const qtypes = g["force-qtype-soa"];
      const subnet = this.clientSubnet(g, "edns-client-subnet", path).clientSubnet;
      const base = this.clientSubnet(
        this.table(root.server, "server", "server"),
        "edns-client-subnet",
        "server",
      );
      return {
        name,
        clients,
        source: this.src.position(`${path}.name`),
        ...(subnet ? { clientSubnet: overlaySubnets(base.clientSubnet, subnet) } : {}),
        rules: {
          ...rules,
          domainRules: [...rules.domainRules, ...own],
          forceAAAASOA: this.boolean(g, "force-aaaa-soa", path, rules.forceAAAASOA),
          forceQtypeSoa: Array.isArray(qtypes)
            ? qtypes.map(Number).sort((a, b) => a - b)
            : rules.forceQtypeSoa,
          ...this.speedSettings(g, path, rules),
        },
      };
    });
  }

  /** `[admin]`: the admin listener, on when the table is there. */
  admin(value: unknown): { admin?: AdminConfig } {
    if (value === undefined) return {};
    const t = this.table(value, "admin", "admin");
    const listenText = this.string(t, "listen", "admin");
    const listen = listenText === undefined
      ? { host: DEFAULT_ADMIN_HOST, port: DEFAULT_ADMIN_PORT, https: false }
      : this.parsed("admin.listen", "listen", () => parseAdminListen(listenText));
    const hash = this.string(t, "password-hash", "admin");
    if (hash !== undefined) {
      this.parsed("admin.password-hash", "password-hash", () => checkPasswordHash(hash));
    }
    const text = (key: string, field: string) => {
      const v = this.string(t, key, "admin");
      return v === undefined ? {} : { [field]: v };
    };
    return {
      admin: {
        ...listen,
        user: this.string(t, "user", "admin") ?? "admin",
        ...text("password-hash", "passwordHash"),
        ...text("metrics-token", "metricsToken"),
        sessionSeconds: this.integer(t, "session-expire", "admin", 60, 30 * 86400, DEFAULT_SESSION_SECONDS),
        queryLogAge: this.integer(t, "query-log-age", "admin", 0, 365 * 86400, 0),
        ...text("cert-file", "certFile"),
        ...text("key-file", "keyFile"),
        source: this.src.position("admin"),
      },
    };
  }

  read(): Config {
    const root = this.table(this.src.data, "", "");
    const server = this.table(root.server, "server", "server");
    const cache = this.table(root.cache, "cache", "cache");
    const log = this.table(root.log, "log", "log");
    const guardian = this.table(root.guardian, "guardian", "guardian");
    const u32 = 2 ** 31 - 1;
    const cacheSize = this.integer(cache, "size", "cache", -1, u32, DEFAULT_CACHE.size);
    const level = (this.string(log, "level", "log") ?? DEFAULT_LOG.level).toLowerCase();
    if (!LOG_LEVELS.includes(level as LogLevel)) {
      this.src.fail(
        "log.level",
        `"${level}" is not a log level (${LOG_LEVELS.join(", ")})${didYouMean(level, LOG_LEVELS)}`,
      );
    }
    const size = this.size(log, "size", "log", DEFAULT_LOG.size);
    const rrTtlMax = this.integer(cache, "rr-ttl-max", "cache", 0, u32, 0);
    let rrTtlMin = this.integer(cache, "rr-ttl-min", "cache", 0, u32, 0);
    if (rrTtlMax > 0 && rrTtlMin > rrTtlMax) rrTtlMin = rrTtlMax;
    const binds = this.binds(server);
    const udpTransport = this.udpTransport(server);
    const upstreams = this.upstreams(root.upstream, this.proxies(root.proxy));
    const rules = this.rules(root, upstreams);
    const serverGroups = new Set(upstreams.flatMap((u) => u.groups));
    binds.forEach((b, i) => {
      if (b.group !== undefined && !serverGroups.has(b.group)) {
        this.src.fail(
          `server.listen[${i}].group`,
          `no usable server is in group "${b.group}" (an [[upstream]] needs groups = ["${b.group}"])`,
        );
      }
    });
    return {
      path: this.src.file,
      format: "toml",
      server: {
        binds,
        udpTransport,
        tcpIdleTime: this.integer(server, "tcp-idle-time", "server", 0, 3600, DEFAULT_TCP_IDLE_TIME),
        maxTcpConnections: this.integer(
          server,
          "max-tcp-connections",
          "server",
          1,
          65535,
          DEFAULT_MAX_TCP_CONNECTIONS,
        ),
        upstreamTimeout: this.integer(
          server,
          "upstream-timeout",
          "server",
          100,
          60000,
          DEFAULT_UPSTREAM_TIMEOUT,
        ),
        clients: this.choice(server, "clients", "server", ["local", "acl", "any"] as const, "local"),
        allowedClients: this.strings(server, "allowed-clients", "server").map((c) =>
          this.parsed("server.allowed-clients", "allowed-clients", () => (parseCidr(c), c))
        ),
        rateLimit: this.integer(server, "rate-limit", "server", 0, 1_000_000, DEFAULT_RATE_LIMIT),
        rateBurst: this.integer(server, "rate-burst", "server", 0, 1_000_000, DEFAULT_RATE_BURST),
        ...(this.string(server, "ca-file", "server")
          ? { caFile: this.string(server, "ca-file", "server") }
          : {}),
        ...(this.string(server, "ca-path", "server")
          ? { caPath: this.string(server, "ca-path", "server") }
          : {}),
        ...(this.string(server, "cert-file", "server")
          ? { certFile: this.string(server, "cert-file", "server") }
          : {}),
        ...(this.string(server, "key-file", "server")
          ? { keyFile: this.string(server, "key-file", "server") }
          : {}),
        ...(this.string(server, "key-pass", "server")
          ? { keyPass: this.string(server, "key-pass", "server") }
          : {}),
        ...this.clientSubnet(server, "edns-client-subnet", "server"),
      },
      upstreams,
      cache: {
        size: cacheSize < 0 ? AUTO_CACHE_SIZE : cacheSize,
        rrTtl: this.integer(cache, "rr-ttl", "cache", 0, u32, 0),
        rrTtlMin,
        rrTtlMax,
        rrTtlReplyMax: this.integer(cache, "rr-ttl-reply-max", "cache", 0, u32, 0),
        memSize: this.size(cache, "mem-size", "cache", 0),
        serveExpired: this.boolean(cache, "serve-expired", "cache", DEFAULT_CACHE.serveExpired),
        serveExpiredTtl: this.integer(
          cache,
          "serve-expired-ttl",
          "cache",
          0,
          u32,
          DEFAULT_CACHE.serveExpiredTtl,
        ),
        serveExpiredReplyTtl: this.integer(
          cache,
          "serve-expired-reply-ttl",
          "cache",
          0,
          u32,
          DEFAULT_CACHE.serveExpiredReplyTtl,
        ),
        prefetch: this.boolean(cache, "prefetch", "cache", DEFAULT_CACHE.prefetch),
        serveExpiredPrefetchTime: this.integer(
          cache,
          "serve-expired-prefetch-time",
          "cache",
          0,
          u32,
          DEFAULT_CACHE.serveExpiredPrefetchTime,
        ),
        persist: this.boolean(cache, "persist", "cache", DEFAULT_CACHE.persist),
        file: this.string(cache, "file", "cache") ?? DEFAULT_CACHE.file,
        checkpointTime: this.integer(
          cache,
          "checkpoint-time",
          "cache",
          0,
          7 * 86400,
          DEFAULT_CACHE.checkpointTime,
        ),
        writeBudget: this.size(cache, "write-budget", "cache", DEFAULT_CACHE.writeBudget),
      },
      log: {
        level: level as LogLevel,
        file: this.string(log, "file", "log"),
        size,
        num: this.integer(log, "num", "log", 0, 1024, DEFAULT_LOG.num),
        console: this.boolean(log, "console", "log", DEFAULT_LOG.console),
        fileMode: this.mode(log, "file-mode", "log", DEFAULT_LOG.fileMode),
      },
      audit: this.audit(root),
      guardian: {
        watchdogTimeout: this.integer(
          guardian,
          "watchdog-timeout",
          "guardian",
          1,
          3600,
          DEFAULT_GUARDIAN.watchdogTimeout,
        ),
        startupTimeout: this.integer(
          guardian,
          "startup-timeout",
          "guardian",
          1,
          3600,
          DEFAULT_GUARDIAN.startupTimeout,
        ),
        maxMemory: this.size(guardian, "max-memory", "guardian", DEFAULT_GUARDIAN.maxMemory),
        crashFiles: this.integer(guardian, "crash-files", "guardian", 0, 1000, DEFAULT_GUARDIAN.crashFiles),
        optimizeFor: this.choice(
          guardian,
          "optimize-for",
          "guardian",
          ["speed", "memory"],
          DEFAULT_GUARDIAN.optimizeFor,
        ),
        ...this.userName(guardian),
      },
      ...(root.metrics === undefined ? {} : {
        metrics: {
          enable: this.boolean(this.table(root.metrics, "metrics", "metrics"), "enable", "metrics", true),
        },
      }),
      rules,
      groups: this.groups(root, rules, upstreams),
      ...this.admin(root.admin),
      unsupported: [],
      warnings: [],
    };
  }
}

/** Parses keeldns TOML text into the model; errors carry `file:line:col`. */
export function parseTomlConfig(text: string, file: string): Config {
  return new TomlConfigReader(TomlSource.parse(text, file)).read();
}
