/**
 * Writes docs/smartdns-compat.md from the directive tables, so the page cannot drift from what
 * keeldns does: every directive of SmartDNS's list with its status here and its keeldns.toml key,
 * and how the options of `server`, `bind` and `domain-rules` lines are treated. Run as a program
 * (`deno task compat`) it writes the file; a test fails when the file differs.
 *
 * @module
 */
import { ConfigError } from "../errors.ts";
import { parseSmartdnsConf } from "../smartdns_conf.ts";
import { FEATURE_TABLES, NOT_YET, SMARTDNS_DIRECTIVES } from "./directives.ts";
import * as listen from "./listen.ts";
import { RULE_CRITICAL, RULE_DEFERRED, RULE_FLAGS, RULE_OPTIONS_WITH_VALUE } from "./rules.ts";
import * as upstreams from "./upstreams.ts";
import { DASHBOARD } from "./dashboard.ts";

/** Where the page lives, from the repository root. */
export const COMPAT_DOC_PATH = "docs/smartdns-compat.md";

/** The page's file. */
export const COMPAT_DOC_URL: URL = new URL(`../../${COMPAT_DOC_PATH}`, import.meta.url);

/** Sections for directives no handler table takes yet, by the feature they belong to. */
const NOT_YET_SECTIONS: readonly [RegExp, string][] = [
  [/^bind-/, "listeners"],
  [/^(proxy-server|ca-file|ca-path|edns-client-subnet|mdns-lookup)$/, "upstreams"],
  [/^(cache-|data-dir$|prefetch-domain$|serve-expired|rr-ttl-)/, "cache"],
  [/^(log-|audit-)/, "logging"],
  [/^(acl-enable|group-|client-rules$|max-query-limit$)/, "clients"],
  [/^(user|debug-|no-pidfile|socket-buff-size|plugin)/, "general"],
];

const SECTION_TITLES: Record<string, string> = {
  listeners: "Listeners",
  upstreams: "Upstream servers",
  cache: "Cache and TTLs",
  rules: "Domain rules and local answers",
  "IP rules": "IP rules on answers",
  "speed check": "Speed check and response mode",
  nftset: "Firewall sets (nftset, ipset)",
  logging: "Logging and audit",
  clients: "Clients and groups",
  general: "General",
};

/** The section of a not-yet directive: by name, else rules and answers (most of them are). */
function notYetSection(name: string): string {
  return NOT_YET_SECTIONS.find(([re]) => re.test(name))?.[1] ?? "rules";
}

function cell(text: string): string {
  return text.replace(/\|/g, "\\|");
}

function code(names: Iterable<string>): string {
  const list = [...names];
  return list.length === 0 ? "none" : list.map((n) => `\`-${n}\``).join(", ");
}

/** What a `directive … -option` line does here, found by reading one (so it cannot drift). */
function optionEffect(line: string): "honoured" | "not yet" | "refused" | "ignored" {
  try {
    // A server in group "x" too, so that an option naming a group ("-group x") has one, and a
    // proxy named "x" for "-proxy x".
    const c = parseSmartdnsConf(
      `${line}\nserver 192.0.2.1\nserver 192.0.2.9 -group x\nproxy-server socks5://127.0.0.1 -name x\n`,
      "compat.conf",
      () => "",
    );
    if (c.unsupported.length > 0) return "not yet";
    if (c.warnings.length > 0) return "ignored";
    return "honoured";
  } catch (e) {
    if (e instanceof ConfigError && /is not supported yet/.test(e.reason)) return "refused";
    throw e;
  }
}

/** Option values that must be of a kind (any word does for the others). */
const SAMPLE_VALUES: Record<string, string> = {
  "host-ip": "192.0.2.3",
  "set-mark": "1",
  "tcp-keepalive": "1",
  subnet: "192.0.2.0/24",
};

/** Options grouped by what keeldns does with them. */
function byEffect(
  options: Iterable<string>,
  withValue: ReadonlySet<string>,
  line: (option: string) => string,
): Record<string, string[]> {
  const groups: Record<string, string[]> = { honoured: [], "not yet": [], refused: [], ignored: [] };
  for (const option of options) {
    const value = withValue.has(option) ? ` ${SAMPLE_VALUES[option] ?? "x"}` : "";
    groups[optionEffect(line(`-${option}${value}`))].push(option);
  }
  return groups;
}

function optionsSection(): string[] {
  const server = byEffect(
    [...upstreams.WITH_VALUE, ...upstreams.FLAGS],
    upstreams.WITH_VALUE,
    // -tcp-keepalive is for TCP and TLS servers (RFC 7828): asked of a TCP one.
    (o) => o.startsWith("-tcp-keepalive") ? `server tcp://192.0.2.2 ${o}` : `server 192.0.2.2 ${o}`,
  );
  const bind = byEffect(
    [...listen.WITH_VALUE, ...listen.FLAGS],
    listen.WITH_VALUE,
    (o) => `bind 127.0.0.1:53 ${o}`,
  );
  const all = [...RULE_OPTIONS_WITH_VALUE, ...RULE_FLAGS];
  const honoured = all.filter((o) => !RULE_DEFERRED.has(o) && !RULE_CRITICAL.has(o));
  return [
    "## Options of server, bind and domain-rules lines",
    "",
    "A line is read with the options keeldns honours. An option it does not honour yet is reported",
    "(`keeldns check`, and a comment in `keeldns convert`'s output) and the line works without it; an",
    "option without which queries would go elsewhere or pass unfiltered refuses the file with its",
    '`file:line:col`; an option SmartDNS does not know is a warning with a "did you mean", and is skipped.',
    "",
    "| line | honoured | not yet (reported, the line works without it) | refused (critical) | warned and ignored |",
    "|---|---|---|---|---|",
    `| \`server\`, \`server-tcp\` | ${code(server.honoured)} | ${code(server["not yet"])} | ${
      code(server.refused)
    } | ${code(server.ignored)} (only for encrypted servers) |`,
    `| \`bind\`, \`bind-tcp\` | address and port, ${code(bind.honoured)} | ${code(bind["not yet"])} | ${
      code(bind.refused)
    }, ` +
    "an `@device` suffix | — |",
    `| \`domain-rules\` | ${code(honoured)} | ${code(RULE_DEFERRED)} (kept with the rule for later) | ${
      code(RULE_CRITICAL.keys())
    } | — |`,
    "",
    "`server` addresses are `IP[:port]`, `host.name[:port]` or `udp://`, `tcp://`, `tls://`, `https://` or",
    "`quic://` URLs; `h3://` / `http3://` and `server-h3` / `server-http3` are reported as not built (Deno",
    "2.9.6 has no HTTP/3 client), and never replaced by `resolv-file`'s servers. A server given by host name",
    "is resolved (A and AAAA, IPv4 preferred) through the `-bootstrap-dns` servers, else the default group's",
    "servers given by IP address, else the nameservers of /etc/resolv.conf (as SmartDNS's getaddrinfo), and",
    "the file is refused when there is none of these. The address is kept for the answer's TTL (10 s to 1 h)",
    "and re-resolved after it, the last good one kept while that fails. The name is the TLS (or QUIC) SNI",
    "and certificate name unless `-host-name` says otherwise; `-host-ip` pins the address and nothing is",
    "resolved. Unlike SmartDNS, the bootstrap query does not pass through the rules (`address`,",
    "`nameserver`) or the cache. As in SmartDNS, a named server's `-proxy` (and a UDP server's `-set-mark`,",
    "`-interface`) apply to the connections to the address it resolved to; the bootstrap queries go as their",
    "servers are configured, through those servers' own `-proxy` if any, never the named server's.",
    "",
  ];
}

/** The status cell of a directive. */
function status(name: string): { status: string; toml: string; section: string } {
  for (const [section, table] of Object.entries(FEATURE_TABLES)) {
    const handler = Object.hasOwn(table, name) ? table[name] : undefined;
    if (!handler) continue;
    const text = handler.status === "partly" ? `partly: ${handler.note}` : "supported";
    return { status: text, toml: handler.toml, section };
  }
  const notYet = NOT_YET[name];
  return {
    status: notYet?.critical ? `refused: ${notYet.reason}` : `not yet: ${notYet?.reason ?? "not read"}`,
    toml: "—",
    section: notYetSection(name),
  };
}

/** The dashboard plugin's `smartdns-ui.*` lines (not in SmartDNS's table: the plugin reads them). */
function dashboardSection(): string[] {
  return [
    "## Dashboard plugin lines (`smartdns-ui.*`)",
    "",
    "`plugin smartdns_ui.so` and these lines turn on keeldns's built-in dashboard (`[admin]`).",
    "",
    "| line | status here | keeldns.toml |",
    "|---|---|---|",
    ...Object.entries(DASHBOARD).map(([name, h]) => {
      const text = h.status === "partly"
        ? `partly: ${h.note}`
        : h.note
        ? `supported: ${h.note}`
        : "supported";
      const toml = h.toml.startsWith("(") ? h.toml : `\`${h.toml}\``;
      return `| \`${name}\` | ${cell(text)} | ${cell(toml)} |`;
    }),
    "",
  ];
}

/** The page, as Markdown. */
export function compatMarkdown(): string {
  const rows = new Map<string, string[]>();
  const counts = { supported: 0, partly: 0, "not yet": 0, refused: 0 };
  for (const name of SMARTDNS_DIRECTIVES) {
    const s = status(name);
    counts[s.status.startsWith("partly") ? "partly" : s.status.replace(/:.*/, "") as keyof typeof counts]++;
    const toml = s.toml.startsWith("(") || s.toml === "—" ? s.toml : `\`${s.toml}\``;
    rows.set(s.section, [
      ...(rows.get(s.section) ?? []),
      `| \`${name}\` | ${cell(s.status)} | ${cell(toml)} |`,
    ]);
  }
  const sections = Object.keys(SECTION_TITLES).filter((s) => rows.has(s));
  return [
    "# SmartDNS compatibility",
    "",
    "<!-- Generated by `deno task compat` from config/smartdns/ (the directive tables): do not edit by hand. -->",
    "",
    "keeldns reads a `smartdns.conf` as it is. This page lists every directive of SmartDNS's own table",
    "(`_config_item[]` in `src/dns_conf/dns_conf.c` of the current SmartDNS source; Debian ships release",
    "40, whose directives are among these) with what keeldns does with it, and where it lives in",
    "keeldns.toml (`keeldns convert smartdns.conf` writes that file for you).",
    "",
    "- **supported**: read and honoured as SmartDNS does (differences are named in the README).",
    "- **partly**: read and honoured in the forms the note names; the rest is reported.",
    "- **not yet**: read and reported once with its line (`keeldns check` lists them); the service runs",
    "  without it, as the reason says.",
    "- **refused**: not built yet, and going on without it would send queries elsewhere or leave",
    "  something unfiltered, so a file that uses it is refused with the line; remove the line to run",
    "  without it.",
    '- A word that is no SmartDNS directive is a warning with a "did you mean" (SmartDNS carries on',
    "  past it too), except where it would silently change where queries go (a misspelt only `server`).",
    "",
    `Of ${SMARTDNS_DIRECTIVES.length} directives: ${counts.supported} supported, ${counts.partly} partly, ` +
    `${counts["not yet"]} not yet, ${counts.refused} refused.`,
    "",
    ...optionsSection(),
    ...sections.flatMap((s) => [
      `## ${SECTION_TITLES[s]}`,
      "",
      "| directive | status here | keeldns.toml |",
      "|---|---|---|",
      ...rows.get(s)!,
      "",
    ]),
    ...dashboardSection(),
  ].join("\n");
}

if (import.meta.main) {
  Deno.writeTextFileSync(COMPAT_DOC_URL, compatMarkdown());
  console.log(`wrote ${COMPAT_DOC_PATH}`);
}
