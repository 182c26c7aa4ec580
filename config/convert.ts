/**
 * `keeldns convert`: writes a {@link Config} as keeldns TOML that parses back into the same model.
 * Given the smartdns.conf text it came from (and the files it includes), the file's comments go
 * above what their lines became, and every line that became nothing — not supported yet, unknown,
 * or not needed in TOML — is kept as a comment, so nothing silently disappears. Pure: the caller
 * reads the files.
 *
 * @module
 */
import {
  DEFAULT_CACHE,
  DEFAULT_GUARDIAN,
  DEFAULT_LOG,
  DEFAULT_MAX_TCP_CONNECTIONS,
  DEFAULT_RATE_BURST,
  DEFAULT_RATE_LIMIT,
  DEFAULT_UPSTREAM_TIMEOUT,
} from "./defaults.ts";
import { SYSTEM_RESOLV_CONF } from "./bootstrap_servers.ts";
import { didYouMean } from "./errors.ts";
import { proxyUrl } from "./proxy_url.ts";
import type {
  AddressAction,
  BindConfig,
  Config,
  DomainRule,
  HttpsRecordConfig,
  SourcePosition,
  UpstreamConfig,
} from "./schema.ts";
import { formatSpeedCheckModes } from "./schema.ts";
import { DIRECTIVES as SMARTDNS_TABLE, NOT_YET, SMARTDNS_DIRECTIVES } from "./smartdns/directives.ts";
import { DASHBOARD } from "./smartdns/dashboard.ts";
import { hashAdminPassword } from "./admin.ts";
import { nftsetText } from "./smartdns/nftset.ts";
import { Draft, type Line, readLines, relativeTo } from "./smartdns/reader.ts";

/** The text of the configuration file, or every file read for it by path (includes too). */
export type ConvertSources = string | Readonly<Record<string, string>>;

const KNOWN = new Set(SMARTDNS_DIRECTIVES);
/** Every handler, the dashboard plugin's `smartdns-ui.*` lines included. */
const DIRECTIVES = { ...SMARTDNS_TABLE, ...DASHBOARD };

/** What one smartdns.conf directive line brings to the output. */
interface LineInfo {
  readonly file: string;
  readonly line: number;
  readonly name: string;
  /** The directive as written (continuation lines joined). */
  readonly text: string;
  /** The `#` lines directly above it. */
  readonly comments: string[];
  /** A `# …` comment at the end of the line. */
  readonly trailing?: string;
  /** What of the line is not honoured yet. */
  readonly unsupported: { name: string; reason?: string }[];
  /** What the line was read with a change. */
  readonly warnings: string[];
  /** What the line alone reads into (a fresh draft), for lines that add to a list. */
  readonly draft?: Draft;
  consumed: boolean;
}

/** TOML comments may hold no control characters but tab. */
function clean(text: string): string {
  // deno-lint-ignore no-control-regex
  return text.replace(/[\x00-\x08\x0a-\x1f\x7f]/g, "?");
}

/** Characters a TOML basic string must escape. */
// deno-lint-ignore no-control-regex
const TOML_ESCAPE = /[\\"\x00-\x1f\x7f]/g;

/** A TOML basic string (a lone surrogate, which TOML cannot hold, becomes U+FFFD). */
function str(text: string): string {
  const escaped = text.replace(TOML_ESCAPE, (c) => {
    if (c === "\\" || c === '"') return `\\${c}`;
    return `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`;
  });
  return `"${escaped.toWellFormed()}"`;
}

function hostPort(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

function sizeText(bytes: number): string {
  if (bytes > 0 && bytes % 1024 ** 3 === 0) return str(`${bytes / 1024 ** 3}g`);
  if (bytes > 0 && bytes % 1024 ** 2 === 0) return str(`${bytes / 1024 ** 2}m`);
  if (bytes > 0 && bytes % 1024 === 0) return str(`${bytes / 1024}k`);
  return String(bytes);
}

/** A permission mode as a TOML octal integer. */
function modeText(mode: number): string {
  return `0o${mode.toString(8)}`;
}

function addressText(a: AddressAction): string {
  const suffix = (f: string) => f === "v4" ? "4" : f === "v6" ? "6" : "";
  if (a.kind === "block") return `#${suffix(a.families)}`;
  if (a.kind === "exempt") return `-${suffix(a.families)}`;
  return [...a.v4, ...a.v6].join(",");
}

function httpsText(h: HttpsRecordConfig): string {
  const parts = [`priority=${h.priority}`, `target=${h.target === "" ? "." : h.target}`];
  for (const a of h.alpn) parts.push(`alpn=${a}`);
  if (h.port !== undefined) parts.push(`port=${h.port}`);
  if (h.ech) parts.push(`ech=${h.ech}`);
  for (const ip of h.ipv4hint) parts.push(`ipv4hint=${ip}`);
  for (const ip of h.ipv6hint) parts.push(`ipv6hint=${ip}`);
  return parts.join(",");
}

function where(p: { file: string; line: number }): string {
  return `${p.file}:${p.line}`;
}

/** Reads the smartdns.conf lines in the order the parser reads them, following `conf-file`. */
class SourceWalk {
  readonly infos: LineInfo[] = [];
  readonly byLine = new Map<string, LineInfo>();
  /** `#` blocks not directly above a directive: file, first line, lines. */
  readonly looseComments: { file: string; line: number; lines: string[] }[] = [];
  readonly walked = new Set<string>();
  private readonly stack: string[] = [];

  constructor(private readonly sources: Readonly<Record<string, string>>) {}

  /** The files a `conf-file` pattern names among the sources (the glob as reader.ts reads it). */
  private included(pattern: string): string[] {
    const slash = pattern.lastIndexOf("/");
    const dir = slash < 0 ? "" : pattern.slice(0, slash + 1);
    const base = pattern.slice(slash + 1);
    if (!/[*?]/.test(base)) return Object.hasOwn(this.sources, pattern) ? [pattern] : [];
    const re = new RegExp(
      "^" + base.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".") + "$",
    );
    return Object.keys(this.sources).filter((f) => {
      const s = f.lastIndexOf("/");
      return f.slice(0, s + 1) === dir && re.test(f.slice(s + 1)) && !f.slice(s + 1).includes("/");
    }).sort();
  }

  walk(file: string): void {
    if (this.stack.includes(file) || !Object.hasOwn(this.sources, file)) return;
    this.stack.push(file);
    this.walked.add(file);
    const raw = this.sources[file].split(/\r?\n/);
    const attached = new Set<number>();
    for (const l of readLines(this.sources[file], file)) {
      const info = this.info(l, raw, attached);
      this.infos.push(info);
      this.byLine.set(where(info), info);
      if (l.words[0] === "conf-file" && l.words[1] !== undefined) {
        for (const f of this.included(relativeTo(file, l.words[1]))) this.walk(f);
      }
    }
    let block: string[] = [];
    let first = 0;
    raw.forEach((text, i) => {
      const comment = text.trim().startsWith("#") && !attached.has(i);
      if (comment) {
        if (block.length === 0) first = i + 1;
        block.push(text.trim());
      }
      if ((!comment || i === raw.length - 1) && block.length > 0) {
        this.looseComments.push({ file, line: first, lines: block });
        block = [];
      }
    });
    this.stack.pop();
  }

  private info(l: Line, raw: string[], attached: Set<number>): LineInfo {
    let end = l.line - 1;
    while (raw[end].endsWith("\\") && end + 1 < raw.length) end++;
    const text = raw.slice(l.line - 1, end + 1).map((t) => {
      const s = t.trim();
      return s.endsWith("\\") ? s.slice(0, -1).trimEnd() : s;
    }).join(" ");
    for (let i = l.line; i <= end; i++) attached.add(i); // continuation lines are not loose comments
    const comments: string[] = [];
    for (let k = l.line - 2; k >= 0 && raw[k].trim().startsWith("#") && !attached.has(k); k--) {
      comments.unshift(raw[k].trim());
      attached.add(k);
    }
    const name = l.words[0];
    const at = l.words.findIndex((w, i) => i >= 2 && w.startsWith("#"));
    const trailing = at >= 0 ? l.words.slice(at).join(" ") : undefined;
    const unsupported: { name: string; reason?: string }[] = [];
    const warnings: string[] = [];
    let draft: Draft | undefined;
    const handler = Object.hasOwn(DIRECTIVES, name) ? DIRECTIVES[name] : undefined;
    if (handler && name !== "conf-file") {
      draft = new Draft(DIRECTIVES, KNOWN, () => "");
      try {
        handler.handle(draft, l);
      } catch {
        // The whole file parsed; a line that fails alone depends on others and has no notes.
      }
      unsupported.push(...draft.unsupported.values(), ...draft.critical);
      warnings.push(...draft.warnings.map((w) => w.message));
    }
    return {
      file: l.file,
      line: l.line,
      name,
      text,
      comments,
      trailing,
      unsupported,
      warnings,
      draft,
      consumed: false,
    };
  }
}

/** Builds the TOML text, item by item, with the comments of the lines each item came from. */
class TomlWriter {
  readonly out: string[] = [];
  private readonly byToml = new Map<string, LineInfo[]>();

  constructor(readonly config: Config, readonly walk?: SourceWalk) {
    for (const info of walk?.infos ?? []) {
      const toml = Object.hasOwn(DIRECTIVES, info.name) ? DIRECTIVES[info.name].toml : undefined;
      if (toml) this.byToml.set(toml, [...(this.byToml.get(toml) ?? []), info]);
    }
  }

  /** The comment lines that go above what `info` became; marks it as placed. */
  above(info: LineInfo | undefined): string[] {
    if (!info) return [];
    info.consumed = true;
    const from = info.file !== this.config.path ? [`# from ${where(info)}: ${info.text}`] : [];
    return [
      ...info.comments,
      ...from,
      ...(info.trailing ? [info.trailing] : []),
      ...info.unsupported.map((u) => `# not supported yet: ${u.name}${u.reason ? ` (${u.reason})` : ""}`),
      ...info.warnings.map((w) => `# warning: ${w}`),
    ].map(clean);
  }

  /** The line a model item with `source` came from. */
  at(source: SourcePosition | undefined): LineInfo | undefined {
    return source ? this.walk?.byLine.get(where(source)) : undefined;
  }

  /** `key = value`, with the comments of the directives that set it (the last one counts). */
  scalar(toml: string, key: string, value: string): void {
    const infos = this.byToml.get(toml) ?? [];
    infos.forEach((info, i) => {
      this.out.push(...this.above(info));
      if (i < infos.length - 1) this.out.push(clean(`# ${where(info)}: "${info.text}" is overridden below`));
    });
    this.out.push(`${key} = ${value}`);
  }

  /** `key = [...]`, one element a line when any has comments. */
  array(key: string, items: { value: string; above: string[] }[]): void {
    if (items.every((i) => i.above.length === 0)) {
      const inline = `${key} = [${items.map((i) => i.value).join(", ")}]`;
      if (inline.length <= 110) return void this.out.push(inline);
    }
    this.out.push(`${key} = [`);
    for (const item of items) this.out.push(...item.above.map((c) => `  ${c}`), `  ${item.value},`);
    this.out.push("]");
  }

  blank(): void {
    if (this.out.length > 0 && this.out[this.out.length - 1] !== "") this.out.push("");
  }

  header(): void {
    const c = this.config;
    this.out.push(
      clean(`# keeldns.toml converted by "keeldns convert" from ${c.path} (${c.format}).`),
    );
    if (this.walk) {
      this.out.push(
        "# Comments of the file stand above what their lines became; lines that became nothing here",
        "# (not supported yet, unknown, or not needed) are kept as comments at the end.",
      );
      const loose = this.walk.looseComments;
      for (const block of loose) {
        this.blank();
        if (block.file !== c.path) this.out.push(clean(`# from ${where(block)}:`));
        this.out.push(...block.lines.map(clean));
      }
    }
  }

  server(): void {
    const { server } = this.config;
    this.blank();
    this.out.push("[server]");
    const item = (b: BindConfig, scheme: boolean) => {
      const info = this.at(b.source);
      const above = this.above(info);
      return { value: str(`${scheme ? `${b.transport}://` : ""}${hostPort(b.host, b.port)}`), above };
    };
    // Listeners with bind options are [[server.listen]] tables; then every listener is one, in order.
    // (DoT, DoH and DoQ listeners only have that form: bind-udp/bind-tcp lists hold plain ones.)
    const options = server.binds.some((b) =>
      b.group !== undefined || (b.flags?.length ?? 0) > 0 || b.transport === "tls" ||
      b.transport === "https" ||
      b.transport === "quic"
    );
    const binds = options ? [] : server.binds;
    const withOptions = options ? server.binds : [];
    if (this.config.format === "smartdns" && !options && binds.every((b) => !b.source)) {
      this.out.push(
        "# SmartDNS's default: no bind line means UDP on [::]:53 (keeldns.toml's is UDP and TCP)",
      );
    }
    const firstTcp = binds.findIndex((b) => b.transport === "tcp");
    const ordered = firstTcp < 0 || binds.slice(firstTcp).every((b) => b.transport === "tcp");
    if (ordered) {
      const udp = binds.filter((b) => b.transport === "udp");
      const tcp = binds.filter((b) => b.transport === "tcp");
      if (udp.length > 0) this.array("bind-udp", udp.map((b) => item(b, false)));
      if (tcp.length > 0) this.array("bind-tcp", tcp.map((b) => item(b, false)));
    } else {
      // TCP listeners before UDP ones: one list with schemes keeps their order.
      this.out.push("# each listener with its transport, in the order of the file");
      this.array("bind", binds.map((b) => item(b, true)));
    }
    this.scalar("server.tcp-idle-time", "tcp-idle-time", String(server.tcpIdleTime));
    if (server.maxTcpConnections !== DEFAULT_MAX_TCP_CONNECTIONS) {
      this.out.push(`max-tcp-connections = ${server.maxTcpConnections}`);
    }
    if (server.upstreamTimeout !== DEFAULT_UPSTREAM_TIMEOUT) {
      this.out.push(`upstream-timeout = ${server.upstreamTimeout}`);
    }
    if (server.udpTransport !== "auto") this.out.push(`udp-transport = ${str(server.udpTransport)}`);
    if (server.clients !== "local") this.out.push(`clients = ${str(server.clients)}`);
    if (server.allowedClients.length > 0) {
      this.out.push(`allowed-clients = [${server.allowedClients.map(str).join(", ")}]`);
    }
    if (server.rateLimit !== DEFAULT_RATE_LIMIT) this.out.push(`rate-limit = ${server.rateLimit}`);
    if (server.rateBurst !== DEFAULT_RATE_BURST) this.out.push(`rate-burst = ${server.rateBurst}`);
    if (server.caFile) this.out.push(`ca-file = ${str(server.caFile)}`);
    if (server.caPath) this.out.push(`ca-path = ${str(server.caPath)}`);
    if (server.certFile) this.scalar("server.cert-file", "cert-file", str(server.certFile));
    if (server.keyFile) this.scalar("server.key-file", "key-file", str(server.keyFile));
    if (server.keyPass) this.scalar("server.key-pass", "key-pass", str(server.keyPass));
    if (server.clientSubnet) {
      // One line per family in smartdns.conf, one list here.
      for (const info of this.byToml.get("server.edns-client-subnet") ?? []) {
        this.out.push(...this.above(info));
      }
      this.out.push(`edns-client-subnet = ${subnetValue(server.clientSubnet)}`);
    }
    for (const b of withOptions) {
      this.blank();
      this.out.push(...this.above(this.at(b.source)));
      this.out.push("[[server.listen]]", `address = ${str(`${b.transport}://${hostPort(b.host, b.port)}`)}`);
      if (b.group !== undefined) this.out.push(`group = ${str(b.group)}`);
      if (b.flags?.length) this.out.push(`flags = [${b.flags.map(str).join(", ")}]`);
    }
  }

  /** `[[proxy]]` for each proxy the upstreams go through (by name, in the order first used). */
  proxies(): void {
    const seen = new Set<string>();
    for (const u of this.config.upstreams) {
      if (!u.proxy || seen.has(u.proxy.name)) continue;
      seen.add(u.proxy.name);
      this.blank();
      this.out.push(...this.above(this.at(u.proxy.source)));
      this.out.push("[[proxy]]", `name = ${str(u.proxy.name)}`, `url = ${str(proxyUrl(u.proxy))}`);
    }
  }

  upstreams(): void {
    const fromResolv = this.config.format === "smartdns" && this.config.upstreams.every((u) => !u.source);
    for (const u of this.config.upstreams) {
      this.blank();
      this.out.push(...this.above(this.at(u.source)));
      if (fromResolv) {
        const resolv = this.byToml.get(DIRECTIVES["resolv-file"].toml)?.at(-1);
        this.out.push(
          clean(`# no server line: SmartDNS asks the nameservers of ${resolv?.text ?? "resolv-file"}`),
        );
      } else if (this.config.format === "smartdns" && u.bootstrap && !u.source) {
        this.out.push(
          `# nothing else resolves the server names: SmartDNS asks the system resolver (${SYSTEM_RESOLV_CONF})`,
        );
      }
      this.upstream(u);
    }
  }

  private upstream(u: UpstreamConfig): void {
    this.out.push(
      "[[upstream]]",
      `address = ${str(`${u.transport}://${hostPort(u.host, u.port)}${u.path ?? ""}`)}`,
    );
    if (u.groups.length > 0) this.out.push(`groups = [${u.groups.map(str).join(", ")}]`);
    if (u.excludeDefault) this.out.push("exclude-default-group = true");
    if (u.bootstrap) this.out.push("bootstrap = true");
    if (u.hostIp !== undefined) this.out.push(`host-ip = ${str(u.hostIp)}`);
    if (u.tls) {
      if (u.tls.hostName !== undefined) this.out.push(`host-name = ${str(u.tls.hostName)}`);
      if (u.tls.verifyName !== undefined) this.out.push(`tls-host-verify = ${str(u.tls.verifyName)}`);
      if (!u.tls.verifyCertificate) this.out.push("verify-certificate = false");
      if (u.tls.spkiPins.length > 0) this.out.push(`spki-pins = [${u.tls.spkiPins.map(str).join(", ")}]`);
      if (u.tls.httpHost !== undefined) this.out.push(`http-host = ${str(u.tls.httpHost)}`);
      if (u.tls.alpn) this.out.push(`alpn = [${u.tls.alpn.map(str).join(", ")}]`);
    }
    if (u.blacklistIp) this.out.push("blacklist-ip = true");
    if (u.whitelistIp) this.out.push("whitelist-ip = true");
    if (u.fallback) this.out.push("fallback = true");
    if (u.proxy) this.out.push(`proxy = ${str(u.proxy.name)}`);
    if (u.setMark !== undefined) this.out.push(`set-mark = ${u.setMark}`);
    if (u.interface !== undefined) this.out.push(`interface = ${str(u.interface)}`);
    if (u.tcpKeepalive !== undefined) this.out.push(`tcp-keepalive = ${u.tcpKeepalive}`);
    if (u.clientSubnet) this.out.push(`subnet = ${subnetValue(u.clientSubnet)}`);
    if (u.subnetAllQueryTypes) this.out.push("subnet-all-query-types = true");
    if (u.checkEdns) this.out.push("check-edns = true");
  }

  cache(): void {
    const c = this.config.cache;
    this.blank();
    this.out.push("[cache]");
    this.scalar("cache.size", "size", String(c.size));
    this.scalar("cache.rr-ttl", "rr-ttl", String(c.rrTtl));
    this.scalar("cache.rr-ttl-min", "rr-ttl-min", String(c.rrTtlMin));
    this.scalar("cache.rr-ttl-max", "rr-ttl-max", String(c.rrTtlMax));
    if (c.rrTtlReplyMax > 0) {
      this.scalar("cache.rr-ttl-reply-max", "rr-ttl-reply-max", String(c.rrTtlReplyMax));
    }
    if (c.memSize > 0) this.scalar("cache.mem-size", "mem-size", sizeText(c.memSize));
    this.scalar("cache.serve-expired", "serve-expired", String(c.serveExpired));
    if (c.serveExpired) {
      this.scalar("cache.serve-expired-ttl", "serve-expired-ttl", String(c.serveExpiredTtl));
      this.scalar("cache.serve-expired-reply-ttl", "serve-expired-reply-ttl", String(c.serveExpiredReplyTtl));
    }
    if (c.prefetch) this.scalar("cache.prefetch", "prefetch", "true");
    if (c.serveExpiredPrefetchTime > 0) {
      this.scalar(
        "cache.serve-expired-prefetch-time",
        "serve-expired-prefetch-time",
        String(c.serveExpiredPrefetchTime),
      );
    }
    if (this.config.format === "smartdns" && !this.byToml.has("cache.persist") && c.persist) {
      this.out.push("# SmartDNS's cache-persist auto: on, as a cache-file is named");
    }
    this.scalar("cache.persist", "persist", String(c.persist));
    this.scalar("cache.file", "file", str(c.file));
    this.scalar("cache.checkpoint-time", "checkpoint-time", String(c.checkpointTime));
    if (c.writeBudget !== DEFAULT_CACHE.writeBudget) {
      this.scalar("cache.write-budget", "write-budget", sizeText(c.writeBudget));
    }
  }

  log(): void {
    const l = this.config.log;
    this.blank();
    this.out.push("[log]");
    this.scalar("log.level", "level", str(l.level));
    if (l.file !== undefined) this.scalar("log.file", "file", str(l.file));
    this.scalar("log.size", "size", sizeText(l.size));
    this.scalar("log.num", "num", String(l.num));
    if (l.console !== DEFAULT_LOG.console) this.scalar("log.console", "console", String(l.console));
    if (l.fileMode !== DEFAULT_LOG.fileMode) this.scalar("log.file-mode", "file-mode", modeText(l.fileMode));
  }

  /** `[audit]`: every key, when the audit file or the query log is on or any key was set. */
  audit(): void {
    const a = this.config.audit;
    const set = [...this.byToml.keys()].some((k) => k.startsWith("audit."));
    if (!a.enable && a.queryLogSize === 0 && !set) return;
    this.blank();
    this.out.push("[audit]");
    this.scalar("audit.enable", "enable", String(a.enable));
    this.scalar("audit.file", "file", str(a.file));
    this.scalar("audit.size", "size", sizeText(a.size));
    this.scalar("audit.num", "num", String(a.num));
    this.scalar("audit.file-mode", "file-mode", modeText(a.fileMode));
    this.scalar("audit.console", "console", String(a.console));
    this.scalar("audit.soa", "soa", String(a.soa));
    if (a.queryLogSize > 0) this.out.push(`query-log-size = ${a.queryLogSize}`);
  }

  guardian(): void {
    const g = this.config.guardian;
    const keys: [string, string][] = [];
    if (g.watchdogTimeout !== DEFAULT_GUARDIAN.watchdogTimeout) {
      keys.push(["watchdog-timeout", String(g.watchdogTimeout)]);
    }
    if (g.startupTimeout !== DEFAULT_GUARDIAN.startupTimeout) {
      keys.push(["startup-timeout", String(g.startupTimeout)]);
    }
    if (g.maxMemory !== DEFAULT_GUARDIAN.maxMemory) keys.push(["max-memory", sizeText(g.maxMemory)]);
    if (g.crashFiles !== DEFAULT_GUARDIAN.crashFiles) keys.push(["crash-files", String(g.crashFiles)]);
    if (g.optimizeFor !== DEFAULT_GUARDIAN.optimizeFor) keys.push(["optimize-for", str(g.optimizeFor)]);
    if (g.user !== undefined) keys.push(["user", str(g.user)]);
    if (keys.length === 0) return;
    this.blank();
    this.out.push("[guardian]", ...keys.map(([k, v]) => `${k} = ${v}`));
  }

  /** `[admin]`: the admin listener (a password in clear is written as its hash). */
  admin(): void {
    const a = this.config.admin;
    if (!a) return;
    this.blank();
    this.out.push("[admin]");
    const scheme = a.https ? "https://" : "";
    this.scalar("admin.listen", "listen", str(`${scheme}${hostPort(a.host, a.port)}`));
    if (a.user !== "admin") this.scalar("admin.user", "user", str(a.user));
    const hash = a.passwordHash ?? (a.password !== undefined ? hashAdminPassword(a.password) : undefined);
    if (hash !== undefined) this.scalar("admin.password-hash", "password-hash", str(hash));
    if (a.metricsToken !== undefined) {
      this.scalar("admin.metrics-token", "metrics-token", str(a.metricsToken));
    }
    this.scalar("admin.session-expire", "session-expire", String(a.sessionSeconds));
    if (a.queryLogAge) this.scalar("admin.query-log-age", "query-log-age", String(a.queryLogAge));
    if (a.certFile) this.scalar("admin.cert-file", "cert-file", str(a.certFile));
    if (a.keyFile) this.scalar("admin.key-file", "key-file", str(a.keyFile));
  }

  /** `[metrics]`, when the statistics are turned off (on is the default). */
  metrics(): void {
    if (this.config.metrics?.enable !== false) return;
    this.blank();
    this.out.push("[metrics]", "enable = false");
  }

  /** A list of files, each with the comments of the line that named it. */
  private files(
    key: string,
    toml: string,
    files: readonly string[],
    named: (d: Draft) => readonly string[],
  ): void {
    const lines = this.byToml.get(toml) ?? [];
    this.array(
      key,
      files.map((file) => {
        const info = lines.find((i) => !i.consumed && i.draft && named(i.draft)[0] === file);
        return { value: str(file), above: this.above(info) };
      }),
    );
  }

  rules(): void {
    const r = this.config.rules;
    const lines = (toml: string) => this.byToml.get(toml) ?? [];
    this.blank();
    this.out.push("[rules]");
    this.scalar("rules.local-ttl", "local-ttl", String(r.localTtl));
    this.scalar("rules.force-aaaa-soa", "force-aaaa-soa", String(r.forceAAAASOA));
    for (const info of lines("rules.force-qtype-soa")) this.out.push(...this.above(info));
    this.array("force-qtype-soa", r.forceQtypeSoa.map((t) => ({ value: String(t), above: [] })));
    this.files("hosts-files", "rules.hosts-files", r.hostsFiles, (d) => d.hostsFiles);
    this.files("lease-files", "rules.lease-files", r.leaseFiles, (d) => d.leaseFiles);
    this.scalar("rules.expand-ptr-from-address", "expand-ptr-from-address", String(r.expandPtrFromAddress));
    this.scalar("rules.max-reply-ip-num", "max-reply-ip-num", String(r.maxReplyIpNum));
    this.scalar("rules.speed-check-mode", "speed-check-mode", str(formatSpeedCheckModes(r.speedCheck)));
    this.scalar("rules.response-mode", "response-mode", str(r.responseMode));
    this.scalar("rules.blocking-answer-vote", "blocking-answer-vote", String(r.blockingAnswerVote));
    this.scalar("rules.dualstack-ip-selection", "dualstack-ip-selection", String(r.dualstack.enabled));
    this.scalar(
      "rules.dualstack-ip-selection-threshold",
      "dualstack-ip-selection-threshold",
      String(r.dualstack.thresholdMs),
    );
    this.scalar(
      "rules.dualstack-ip-allow-force-aaaa",
      "dualstack-ip-allow-force-aaaa",
      String(r.dualstack.allowForceAAAA),
    );
    if (r.nftsetTimeout) this.scalar("rules.nftset-timeout", "nftset-timeout", "true");
    if (r.nftsetDebug) this.scalar("rules.nftset-debug", "nftset-debug", "true");
    if (r.dns64Prefix !== undefined) this.scalar("rules.dns64", "dns64", str(`${r.dns64Prefix}/96`));
    else if (lines("rules.dns64").length > 0) {
      for (const info of lines("rules.dns64")) this.out.push(...this.above(info));
      this.out.push("# (dns64 is off: no key)");
    }
    if (r.serverName !== undefined) {
      this.scalar("rules.server-name", "server-name", str(r.serverName));
    } else if (r.selfNames) {
      // keeldns.toml turns the self names on only with a server-name; "smartdns" plus
      // resolv-hostname answers the same names: "smartdns" and the host name.
      this.out.push(
        '# SmartDNS answers "smartdns" and the host name with this machine\'s addresses; keeldns.toml',
        "# says so with a server-name, and resolv-hostname adds the host name:",
        'server-name = "smartdns"',
      );
    }
    this.scalar(
      "rules.resolv-hostname",
      "resolv-hostname",
      String(r.resolvHostname || (r.selfNames && r.serverName === undefined)),
    );
    for (const set of r.domainSets) {
      this.blank();
      this.out.push(...this.above(this.at(set.source)));
      this.out.push("[[domain-set]]", `name = ${str(set.name)}`, `file = ${str(set.file)}`);
    }
    for (const rule of r.domainRules) this.rule(rule);
    for (const set of r.ipSets) {
      this.blank();
      this.out.push(...this.above(this.at(set.source)));
      this.out.push("[[ip-set]]", `name = ${str(set.name)}`, `file = ${str(set.file)}`);
    }
    for (const ip of r.ipRules) {
      this.blank();
      this.out.push(...this.above(this.at(ip.source)));
      this.out.push("[[ip-rule]]", `cidrs = [${ip.cidrs.map(str).join(", ")}]`);
      if (ip.blacklist) this.out.push("blacklist = true");
      if (ip.whitelist) this.out.push("whitelist = true");
      if (ip.bogusNxdomain) this.out.push("bogus-nxdomain = true");
      if (ip.ignore) this.out.push("ignore = true");
      if (ip.alias) this.out.push(`alias = [${ip.alias.map(str).join(", ")}]`);
    }
    for (const g of this.config.groups) {
      this.blank();
      this.out.push(...this.above(this.at(g.source)));
      this.out.push("[[group]]", `name = ${str(g.name)}`, `clients = [${g.clients.map(str).join(", ")}]`);
      if (g.rules.forceAAAASOA !== r.forceAAAASOA) this.out.push(`force-aaaa-soa = ${g.rules.forceAAAASOA}`);
      if (g.rules.forceQtypeSoa.join() !== r.forceQtypeSoa.join()) {
        this.out.push(`force-qtype-soa = [${g.rules.forceQtypeSoa.join(", ")}]`);
      }
      if (g.clientSubnet) this.out.push(`edns-client-subnet = ${subnetValue(g.clientSubnet)}`);
      const modes = formatSpeedCheckModes(g.rules.speedCheck);
      if (modes !== formatSpeedCheckModes(r.speedCheck)) this.out.push(`speed-check-mode = ${str(modes)}`);
      if (g.rules.responseMode !== r.responseMode) {
        this.out.push(`response-mode = ${str(g.rules.responseMode)}`);
      }
      const ds = g.rules.dualstack;
      if (ds.enabled !== r.dualstack.enabled) this.out.push(`dualstack-ip-selection = ${ds.enabled}`);
      if (ds.thresholdMs !== r.dualstack.thresholdMs) {
        this.out.push(`dualstack-ip-selection-threshold = ${ds.thresholdMs}`);
      }
      if (ds.allowForceAAAA !== r.dualstack.allowForceAAAA) {
        this.out.push(`dualstack-ip-allow-force-aaaa = ${ds.allowForceAAAA}`);
      }
      for (const rule of g.rules.domainRules.filter((x) => x.group === g.name)) this.rule(rule, "group.rule");
    }
  }

  private rule(rule: DomainRule, table = "rule"): void {
    this.blank();
    this.out.push(...this.above(this.at(rule.source)));
    this.out.push(`[[${table}]]`, `domains = [${rule.domains.map(str).join(", ")}]`);
    if (rule.address) this.out.push(`address = ${str(addressText(rule.address))}`);
    if (rule.nameserver !== undefined) this.out.push(`nameserver = ${str(rule.nameserver)}`);
    if (rule.cname !== undefined) this.out.push(`cname = ${str(rule.cname)}`);
    if (rule.srv && rule.srv.length > 0) {
      const srv = rule.srv.map((s) => str(`${s.target},${s.port},${s.priority},${s.weight}`));
      this.out.push(`srv = [${srv.join(", ")}]`);
    }
    if (rule.txt && rule.txt.length > 0) this.out.push(`txt = [${rule.txt.map(str).join(", ")}]`);
    if (rule.https) this.out.push(`https = ${str(httpsText(rule.https))}`);
    if (rule.nftset) this.out.push(`nftset = ${str(nftsetText(rule.nftset))}`);
    if (rule.speedCheck) this.out.push(`speed-check-mode = ${str(formatSpeedCheckModes(rule.speedCheck))}`);
    if (rule.responseMode) this.out.push(`response-mode = ${str(rule.responseMode)}`);
    if (rule.dualstack !== undefined) this.out.push(`dualstack-ip-selection = ${rule.dualstack}`);
    if (rule.noServeExpired) this.out.push("no-serve-expired = true");
  }

  /** Every line that became nothing, and what the model noticed in files not given. */
  rest(): void {
    const left: string[] = [];
    for (const info of this.walk?.infos ?? []) {
      if (info.consumed) continue;
      left.push(...info.comments);
      const from = info.file !== this.config.path ? `${where(info)}: ` : "";
      const notYet = Object.hasOwn(NOT_YET, info.name) ? NOT_YET[info.name] : undefined;
      const handler = Object.hasOwn(DIRECTIVES, info.name) ? DIRECTIVES[info.name] : undefined;
      if (info.trailing) left.push(info.trailing);
      if (notYet) {
        left.push(`# not supported yet: ${from}${info.text} (${notYet.reason})`);
      } else if (handler && info.unsupported.length > 0) {
        const reasons = info.unsupported.map((u) => u.reason ?? u.name);
        left.push(`# not supported yet: ${from}${info.text} (${reasons.join("; ")})`);
      } else if (info.name === "conf-file") {
        left.push(`# no TOML needed: ${from}${info.text} (the lines it includes are converted above)`);
      } else if (handler) {
        left.push(`# no TOML needed: ${from}${info.text} (${handler.toml.replace(/^\((.*)\)$/, "$1")})`);
      } else if (KNOWN.has(info.name) || info.name.includes(".")) {
        left.push(`# not supported yet: ${from}${info.text} (read, not honoured)`);
      } else {
        const hint = didYouMean(info.name, KNOWN).replace(/^ \((.*)\)$/, "; $1");
        left.push(`# not supported: ${from}${info.text} (unknown directive, ignored${hint})`);
      }
      left.push(...info.warnings.map((w) => `# warning: ${w}`));
    }
    const walked = this.walk?.walked ?? new Set<string>();
    for (const u of this.config.unsupported) {
      if (!walked.has(u.source.file)) {
        left.push(`# not supported yet: ${u.name} at ${where(u.source)}${u.reason ? ` (${u.reason})` : ""}`);
      }
    }
    for (const w of this.config.warnings) {
      if (!walked.has(w.source.file)) left.push(`# warning at ${where(w.source)}: ${w.message}`);
    }
    if (left.length === 0) return;
    this.blank();
    this.out.push(
      "# ---- Lines with no TOML equivalent (kept so nothing disappears) ----",
      ...left.map((c) => clean(c.startsWith("#") ? c : `# ${c}`)),
    );
  }
}

/**
 * Writes `config` as keeldns TOML that {@link parseTomlConfig} reads back into the same model
 * (paths as the model holds them: relative ones were resolved against the including file). With
 * `sources` (the smartdns.conf text, or every file read by path), comments and the lines that
 * became nothing are kept as comments.
 *
 * @example
 * ```ts
 * const text = Deno.readTextFileSync("/etc/smartdns/smartdns.conf");
 * const toml = convertToToml(parseSmartdnsConf(text, "/etc/smartdns/smartdns.conf"), text);
 * ```
 */
export function convertToToml(config: Config, sources?: ConvertSources): string {
  let walk: SourceWalk | undefined;
  if (sources !== undefined && config.format === "smartdns") {
    walk = new SourceWalk(typeof sources === "string" ? { [config.path]: sources } : sources);
    walk.walk(config.path);
  }
  const w = new TomlWriter(config, walk);
  w.header();
  w.server();
  w.proxies();
  w.upstreams();
  w.cache();
  w.log();
  w.audit();
  w.guardian();
  w.admin();
  w.metrics();
  w.rules();
  w.rest();
  return w.out.join("\n") + "\n";
}

/** A Client Subnet key's value: one string, or a list of both families. */
function subnetValue(subnets: readonly string[]): string {
  return subnets.length === 1 ? str(subnets[0]) : `[${subnets.map(str).join(", ")}]`;
}
