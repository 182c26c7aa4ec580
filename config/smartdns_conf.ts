/**
 * Front-end for SmartDNS's `smartdns.conf`: reads an existing file as-is into the model. Each
 * directive is handled by the table of its feature (config/smartdns/); the ones not honoured yet
 * are reported once each with their line, and refused where going on without them would send
 * queries elsewhere or leave something unfiltered. Unknown words are warnings with a "did you
 * mean", as SmartDNS carries on past them too.
 *
 * @module
 */
import { overlaySubnets } from "../dns/client_subnet.ts";
import {
  DEFAULT_AUDIT,
  DEFAULT_GUARDIAN,
  DEFAULT_MAX_TCP_CONNECTIONS,
  DEFAULT_RATE_BURST,
  DEFAULT_RATE_LIMIT,
  DEFAULT_UPSTREAM_TIMEOUT,
  DNS_PORT,
} from "./defaults.ts";
import { checkNameResolution, SYSTEM_RESOLV_CONF } from "./bootstrap_servers.ts";
import { ConfigError, readFailure } from "./errors.ts";
import { checkIpSetReferences, checkRuleReferences } from "./rule_references.ts";
import type { ClientGroupConfig, Config, RulesConfig, SourcePosition, UpstreamConfig } from "./schema.ts";
import { DIRECTIVES, NOT_YET, SMARTDNS_DIRECTIVES } from "./smartdns/directives.ts";
import { resolveProxies } from "./smartdns/proxies.ts";
import { RULES } from "./smartdns/rules.ts";
import { type DirectiveTable, Draft, type FileReader, type SpeedSettings } from "./smartdns/reader.ts";
import { SPEED } from "./smartdns/speed.ts";
import { parseHostPort } from "./values.ts";

export { SMARTDNS_DIRECTIVES };
export type { FileReader };

/** The handlers, and a reporting handler for every directive not honoured yet. */
const TABLE: DirectiveTable = {
  ...Object.fromEntries(
    Object.entries(NOT_YET).map(([name, notYet]) => [name, {
      toml: "(not yet)",
      status: "partly" as const,
      handle: (d: Draft, l: Parameters<DirectiveTable[string]["handle"]>[1]) =>
        notYet.critical
          ? d.notSupportedCritical(name, l, notYet.reason)
          : d.notSupported(name, l, 0, notYet.reason),
    }]),
  ),
  ...DIRECTIVES,
};
const KNOWN = new Set(SMARTDNS_DIRECTIVES);

/** Formats a position as `file:line:col`. */
function where(p: SourcePosition): string {
  return `${p.file}:${p.line}:${p.col}`;
}

/** The `nameserver` lines of a resolv.conf, as plain UDP servers. */
function nameservers(text: string): UpstreamConfig[] {
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
  return found;
}

/** SmartDNS's fallback when no `server` line exists: the nameservers of `resolv-file`. */
function upstreamsFromResolvFile(d: Draft, file: string): UpstreamConfig[] {
  let text: string;
  try {
    text = d.readFile(d.resolvFile);
  } catch (e) {
    throw new ConfigError(
      `no server lines, and resolv-file "${d.resolvFile}" cannot be read: ${readFailure(e)}`,
      { file, line: 0, col: 0 },
    );
  }
  const found = nameservers(text);
  if (found.length === 0) {
    throw new ConfigError(`no server lines, and no usable nameserver in "${d.resolvFile}"`, {
      file,
      line: 0,
      col: 0,
    });
  }
  return found;
}

/**
 * The upstreams: the server lines, or SmartDNS's resolv.conf fallback when there are none. Never
 * the fallback when server lines exist that keeldns cannot use yet, or a mistyped one: queries
 * would silently go to other servers than the file names.
 */
function upstreams(d: Draft, file: string): readonly UpstreamConfig[] {
  if (d.upstreams.length > 0) {
    return checkNameResolution(d.upstreams, {
      what: `nameserver in ${SYSTEM_RESOLV_CONF}`,
      servers: () => {
        try {
          return nameservers(d.readFile(SYSTEM_RESOLV_CONF));
        } catch {
          return [];
        }
      },
    });
  }
  if (d.unusableServers.length > 0) {
    throw new ConfigError(
      `every server line is of a kind keeldns cannot use yet (${d.unusableServers.map(where).join(", ")}); ` +
        `it will not fall back to resolv.conf, which would send queries elsewhere: add a plain server line`,
      d.unusableServers[0],
    );
  }
  const typo = d.warnings.find((w) => /unknown directive .*did you mean "server/.test(w.message));
  if (typo) {
    throw new ConfigError(
      `${typo.message}; with no server line keeldns would fall back to resolv.conf instead`,
      typo.source,
    );
  }
  return upstreamsFromResolvFile(d, file);
}

/** Refuses a file that uses directives without which queries would go elsewhere or pass unfiltered. */
function refuseCritical(d: Draft): void {
  if (d.critical.length === 0) return;
  const [first, ...rest] = d.critical;
  const others = rest.length === 0
    ? ""
    : ` (also: ${rest.slice(0, 5).map((c) => `${c.name} at ${where(c.source)}`).join(", ")}` +
      `${rest.length > 5 ? `, and ${rest.length - 5} more` : ""})`;
  throw new ConfigError(
    `${first.name} is not supported yet, and without it ${first.reason}; keeldns will not run this file ` +
      `as if the line were not there: remove it to go on without it${others}`,
    first.source,
  );
}

/** The model's speed fields from a policy's settings. */
function speedRules(s: SpeedSettings): Pick<RulesConfig, "speedCheck" | "responseMode" | "dualstack"> {
  return {
    speedCheck: s.speedCheck,
    responseMode: s.responseMode,
    dualstack: {
      enabled: s.dualstack,
      thresholdMs: s.dualstackThreshold,
      allowForceAAAA: s.dualstackAllowForceAAAA,
    },
  };
}

/** Directives that may be inside `group-begin` … `group-end`: the domain rules, forced answers, speed check. */
const GROUP_SCOPED = new Set([
  ...Object.keys(RULES),
  ...Object.keys(SPEED),
  ...Object.keys(NOT_YET),
  "client-rules",
  "edns-client-subnet",
  "group-end",
  "group-match",
]);

/**
 * The client groups: each the default policy with the group's own rules laid over it (its rules
 * after the default ones, so they win on the same domain) and its own forced answers. Checks
 * every `client-rules -group`, `bind -group` and group reference.
 */
function clientGroupsOf(
  d: Draft,
  rules: RulesConfig,
  servers: readonly UpstreamConfig[],
): ClientGroupConfig[] {
  for (const ref of d.clientRuleGroups) {
    if (!d.groups.get(ref.group)?.source) {
      throw new ConfigError(`client-rules: no group-begin ${ref.group} … group-end in the file`, ref.source);
    }
    d.groups.get(ref.group)!.clients.push(ref.cidr);
  }
  const serverGroups = new Set(servers.flatMap((u) => u.groups));
  for (const bind of d.binds) {
    if (bind.group !== undefined && !serverGroups.has(bind.group)) {
      throw new ConfigError(
        `bind -group: no usable server is in group "${bind.group}" (a server needs -group ${bind.group})`,
        bind.source ?? { file: "", line: 0, col: 0 },
      );
    }
  }
  const groups: ClientGroupConfig[] = [];
  for (const [name, g] of d.groups) {
    if (g.clients.length === 0) {
      d.warnings.push({
        message: `group ${name} has no clients (client-rules CIDR -group ${name}): it answers no one`,
        source: g.source ?? { file: "", line: 0, col: 0 },
      });
    }
    groups.push({
      name,
      clients: g.clients,
      source: g.source,
      ...(g.clientSubnet ? { clientSubnet: overlaySubnets(d.clientSubnet, g.clientSubnet) } : {}),
      rules: {
        ...rules,
        domainRules: [...rules.domainRules, ...d.domainRules.filter((r) => r.group === name)],
        forceAAAASOA: g.forceAAAASOA ?? rules.forceAAAASOA,
        forceQtypeSoa: g.forceQtypeSoa ? [...g.forceQtypeSoa].sort((a, b) => a - b) : rules.forceQtypeSoa,
        ...(g.speed ? speedRules(g.speed) : {}),
      },
    });
  }
  return groups;
}

/** Parses smartdns.conf text (and the files it includes) into the model. */
export function parseSmartdnsConf(
  text: string,
  file: string,
  readFile: FileReader = Deno.readTextFileSync,
): Config {
  const d = new Draft(TABLE, KNOWN, readFile, (name) => GROUP_SCOPED.has(name));
  d.read(text, file);
  if (d.group) {
    d.warn(
      { words: ["group-begin"], cols: [1], line: d.groups.get(d.group)?.source?.line ?? 0, file },
      0,
      `group ${d.group} has no group-end; it ends with the file`,
    );
    d.group = undefined;
  }
  resolveProxies(d);
  refuseCritical(d);
  const binds = d.binds.length > 0 ? d.binds : [{ transport: "udp" as const, host: "::", port: DNS_PORT }];
  const servers = upstreams(d, file);
  checkRuleReferences(d.domainRules, d.domainSets, servers);
  checkIpSetReferences(d.ipRules, d.ipSets);
  d.cache.persist = d.persistSet ?? d.cacheFileSet;
  if (d.cache.rrTtlMin > 0 && d.cache.rrTtlMax > 0 && d.cache.rrTtlMin > d.cache.rrTtlMax) {
    d.cache.rrTtlMin = d.cache.rrTtlMax; // SmartDNS: min above max becomes max
  }
  const rules: RulesConfig = {
    domainRules: d.domainRules.filter((r) => r.group === undefined),
    domainSets: d.domainSets,
    localTtl: d.localTtl,
    forceAAAASOA: d.forceAAAASOA,
    forceQtypeSoa: [...d.forceQtypeSoa].sort((a, b) => a - b),
    hostsFiles: d.hostsFiles,
    expandPtrFromAddress: d.expandPtrFromAddress,
    leaseFiles: d.leaseFiles,
    selfNames: true,
    serverName: d.serverName,
    resolvHostname: d.resolvHostname,
    maxReplyIpNum: d.maxReplyIpNum,
    ...speedRules(d.defaultSpeed),
    blockingAnswerVote: true,
    dns64Prefix: d.dns64Prefix,
    nftsetTimeout: d.nftsetTimeout,
    nftsetDebug: d.nftsetDebug,
    nftsetNoSpeed: d.nftsetNoSpeed,
    ipRules: d.ipRules,
    ipSets: d.ipSets,
  };
  return {
    path: file,
    format: "smartdns",
    groups: clientGroupsOf(d, rules, servers),
    server: {
      binds,
      udpTransport: "auto",
      tcpIdleTime: d.tcpIdleTime,
      maxTcpConnections: DEFAULT_MAX_TCP_CONNECTIONS,
      upstreamTimeout: DEFAULT_UPSTREAM_TIMEOUT,
      clients: d.aclEnable ? "acl" : "local",
      allowedClients: d.allowedClients,
      rateLimit: d.rateLimit ?? DEFAULT_RATE_LIMIT,
      rateBurst: DEFAULT_RATE_BURST,
      ...(d.caFile ? { caFile: d.caFile } : {}),
      ...(d.caPath ? { caPath: d.caPath } : {}),
      ...(d.clientSubnet.length > 0 ? { clientSubnet: d.clientSubnet } : {}),
      ...(d.certFile ? { certFile: d.certFile } : {}),
      ...(d.keyFile ? { keyFile: d.keyFile } : {}),
      ...(d.keyPass ? { keyPass: d.keyPass } : {}),
    },
    upstreams: servers,
    cache: d.cache,
    log: d.log,
    // Without any audit- line the audit is off, and keeldns's defaults say the same.
    audit: d.audit ?? DEFAULT_AUDIT,
    guardian: d.user === undefined ? DEFAULT_GUARDIAN : { ...DEFAULT_GUARDIAN, user: d.user },
    rules,
    unsupported: [...d.unsupported.values()],
    warnings: d.warnings,
  };
}
