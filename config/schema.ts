/**
 * The one typed configuration model. Both front-ends (`toml.ts`, `smartdns_conf.ts`) produce it;
 * everything else reads it. This module imports nothing of ours.
 *
 * @module
 */

/** Transport of a listener or an upstream. */
export type Transport = "udp" | "tcp";

/**
 * Transport of an upstream: plain UDP/TCP, DNS over TLS (RFC 7858), DNS over HTTPS (RFC 8484),
 * DNS over QUIC (RFC 9250).
 */
export type UpstreamTransport = Transport | "tls" | "https" | "quic";

/** How an encrypted upstream's certificate is checked (SmartDNS's server-tls/-https options). */
export interface TlsOptions {
  /** SNI name and the name the certificate must carry (`-host-name`; "-" sends no SNI). */
  readonly hostName?: string;
  /** The name the certificate must carry when it differs from the SNI (`-tls-host-verify`). */
  readonly verifyName?: string;
  /** Check the certificate (default); `-no-check-certificate` turns it off. */
  readonly verifyCertificate: boolean;
  /** Base64 SHA-256 pins of the certificate's public key (`-spki-pin`). */
  readonly spkiPins: readonly string[];
  /** The HTTP Host header for DoH (`-http-host`). */
  readonly httpHost?: string;
  /** The ALPN tokens offered to a DoQ server (`-alpn`, comma-separated); default "doq". */
  readonly alpn?: readonly string[];
}

/** Where a config value came from, for messages that point at the file. */
export interface SourcePosition {
  readonly file: string;
  readonly line: number;
  readonly col: number;
}

/**
 * Transport of a listener: plain UDP/TCP, DNS over TLS (RFC 7858), DNS over HTTPS (RFC 8484),
 * DNS over QUIC (RFC 9250; keeldns.toml only, SmartDNS has no such listener).
 */
export type ListenerTransport = Transport | "tls" | "https" | "quic";

/** One listening socket. */
export interface BindConfig {
  readonly transport: ListenerTransport;
  /** Literal IPv4 or IPv6 address ("::" and "0.0.0.0" for all). */
  readonly host: string;
  readonly port: number;
  /** The client group its queries belong to (`bind -group`). */
  readonly group?: string;
  /** SmartDNS bind options that are flags (`no-rule-addr`, `no-cache`, `force-aaaa-soa` …). */
  readonly flags?: readonly string[];
  readonly source?: SourcePosition;
}

/** A proxy the connections to an upstream go through (SmartDNS's `proxy-server`). */
export interface ProxyConfig {
  /** The name servers refer to it by (`-name`, `-proxy NAME`). */
  readonly name: string;
  /** SOCKS5 (RFC 1928; UDP servers through UDP ASSOCIATE) or an HTTP CONNECT proxy (TCP only). */
  readonly kind: "socks5" | "http";
  /** IP address or host name of the proxy. */
  readonly host: string;
  readonly port: number;
  /** User name and password (SOCKS5 RFC 1929, HTTP Basic), from the URL's user info. */
  readonly username?: string;
  readonly password?: string;
  readonly source?: SourcePosition;
}

/** One upstream DNS server. */
export interface UpstreamConfig {
  readonly transport: UpstreamTransport;
  /** The DoH path (`https://IP/dns-query`), for transport "https". */
  readonly path?: string;
  /** Certificate checks, for transports "tls", "https" and "quic". */
  readonly tls?: TlsOptions;
  /** Literal IPv4 or IPv6 address; for a server given by host name (`name`), that name. */
  readonly host: string;
  readonly port: number;
  /**
   * The host name the server is given by (`tls://dns.google`): resolved through the bootstrap
   * servers (see config/bootstrap_servers.ts) unless `hostIp` pins the address. SNI and the
   * certificate name default to it.
   */
  readonly name?: string;
  /** `-host-ip`: the address a server given by `name` is reached at, never resolved. */
  readonly hostIp?: string;
  /** `-bootstrap-dns`: this server resolves the names of the servers given by one. */
  readonly bootstrap?: boolean;
  /** Named server groups this server belongs to (besides "default", see `excludeDefault`). */
  readonly groups: readonly string[];
  /** Not used for queries that have no group rule. */
  readonly excludeDefault: boolean;
  /** `-blacklist-ip`: answers holding a blacklisted address are refused from this server. */
  readonly blacklistIp?: boolean;
  /** `-whitelist-ip`: only answers whose addresses are all whitelisted are taken from it. */
  readonly whitelistIp?: boolean;
  /** `-fallback`: raced only when no other server of the group answered usably. */
  readonly fallback?: boolean;
  /** `-proxy NAME`: every connection to the server goes through this proxy, never around it. */
  readonly proxy?: ProxyConfig;
  /** `-set-mark N`: SO_MARK on the server's sockets (UDP servers only; needs CAP_NET_ADMIN, or CAP_NET_RAW on Linux 5.17+). */
  readonly setMark?: number;
  /** `-interface IF`: SO_BINDTODEVICE on the server's sockets (UDP servers only; needs CAP_NET_RAW). */
  readonly interface?: string;
  /**
   * `-tcp-keepalive N`: the edns-tcp-keepalive option (RFC 7828, N in 100 ms units) in queries over
   * TCP and TLS, and how long the reused TLS connection is kept idle.
   */
  readonly tcpKeepalive?: number;
  /** `-subnet`: the Client Subnet its queries carry (`IP/len`, one per family), replacing the global one. */
  readonly clientSubnet?: readonly string[];
  /** `-subnet-all-query-types`: its own subnet goes with every query type, not only A and AAAA. */
  readonly subnetAllQueryTypes?: boolean;
  /** `-check-edns`: its answers without an OPT record are refused (forged answers lack one). */
  readonly checkEdns?: boolean;
  readonly source?: SourcePosition;
}

/** Log verbosity, SmartDNS's names. */
export type LogLevel = "off" | "fatal" | "error" | "warn" | "notice" | "info" | "debug";

/** All log levels, most severe first. */
export const LOG_LEVELS: readonly LogLevel[] = ["off", "fatal", "error", "warn", "notice", "info", "debug"];

/** Logging. */
export interface LogConfig {
  readonly level: LogLevel;
  /** Log file path; none logs to stderr only. */
  readonly file?: string;
  /** Rotate when the file reaches this many bytes. */
  readonly size: number;
  /** Rotated files kept (0 disables the file log). */
  readonly num: number;
  /** Whether log lines also go to stderr when a file is written (SmartDNS `log-console`). */
  readonly console: boolean;
  /** The log file's permission bits (SmartDNS `log-file-mode`, octal). */
  readonly fileMode: number;
}

/**
 * The audit file (one line per answered query, SmartDNS's `audit-*` directives) and the
 * in-memory query log the dashboard searches.
 */
export interface AuditConfig {
  /** Write the audit file (`audit-enable`). */
  readonly enable: boolean;
  /** Its path (`audit-file`). */
  readonly file: string;
  /** Rotate when the file would pass this many bytes (`audit-size`). */
  readonly size: number;
  /** Rotated files kept (`audit-num`; 0: no file, only the console when `console` is on). */
  readonly num: number;
  /** The file's permission bits (`audit-file-mode`, octal). */
  readonly fileMode: number;
  /** Also write each line to stderr (`audit-console`). */
  readonly console: boolean;
  /** Also audit answers with no address and an SOA: blocked, NXDOMAIN, NODATA (`audit-SOA`). */
  readonly soa: boolean;
  /** Entries the in-memory query log keeps (0: none). */
  readonly queryLogSize: number;
}

/** Answer cache and TTL rewriting. */
export interface CacheConfig {
  /** Maximum entries; 0 disables the cache. */
  readonly size: number;
  /** Force every TTL to this value (0 = off). */
  readonly rrTtl: number;
  /** Lower bound on TTLs (0 = off). */
  readonly rrTtlMin: number;
  /** Upper bound on TTLs (0 = off). */
  readonly rrTtlMax: number;
  /** Upper bound on the TTL sent to clients; the stored TTL is unchanged (0 = off). */
  readonly rrTtlReplyMax: number;
  /** Byte budget for stored answers, LRU-evicted beyond it; set, it replaces `size` (0 = off). */
  readonly memSize: number;
  /** Answer from an expired entry at once and refresh it behind (RFC 8767; SmartDNS `serve-expired`). */
  readonly serveExpired: boolean;
  /** Seconds after expiry an entry may still be served stale (0 = one year, as SmartDNS). */
  readonly serveExpiredTtl: number;
  /** The TTL every record of a stale answer carries. */
  readonly serveExpiredReplyTtl: number;
  /**
   * Refresh entries in the background (SmartDNS `prefetch-domain`): without serve-expired, a name
   * still asked for is asked again 3 s before it expires; with serve-expired, an entry stale for
   * {@link serveExpiredPrefetchTime} seconds is.
   */
  readonly prefetch: boolean;
  /** With prefetch and serve-expired: seconds stale before the refresh (0 = half serve-expired-ttl, at most 8 h). */
  readonly serveExpiredPrefetchTime: number;
  /** Keep the cache across restarts in `file`. */
  readonly persist: boolean;
  /** Where the cache is saved. */
  readonly file: string;
  /**
   * Longest seconds between compactions of the journal into the cache file while anything was
   * journaled (0: by size and at a graceful stop only). Answers are journaled as they are stored.
   */
  readonly checkpointTime: number;
  /** Most bytes the cache may write to its files per hour (0: no limit). keeldns only. */
  readonly writeBudget: number;
}

/**
 * How UDP is served: `batched` uses recvmmsg/sendmmsg through FFI (Linux x86_64/aarch64, needs
 * --allow-ffi), `portable` uses node:dgram, `auto` takes batched when it can and says which.
 */
export type UdpTransportChoice = "auto" | "batched" | "portable";

/** Listener behaviour. */
export interface ServerConfig {
  readonly binds: readonly BindConfig[];
  readonly udpTransport: UdpTransportChoice;
  /** Seconds an idle TCP client connection is kept. */
  readonly tcpIdleTime: number;
  /** Open TCP client connections accepted at once. */
  readonly maxTcpConnections: number;
  /** Milliseconds an upstream query may take before the server gives up on it. */
  readonly upstreamTimeout: number;
  /**
   * Who is answered: `local` (loopback and directly connected subnets: not an open resolver,
   * the default), `acl` (loopback and `allowedClients`), or `any`. Everyone else gets REFUSED.
   */
  readonly clients: "local" | "acl" | "any";
  /** The ACL's prefixes (SmartDNS `client-rules`). */
  readonly allowedClients: readonly string[];
  /** Queries per second one client may send on average (0: no limit; 127.0.0.1/::1 never are). */
  readonly rateLimit: number;
  /** Queries above the average one client may send at once. */
  readonly rateBurst: number;
  /** CA certificates encrypted upstreams are checked against (none: the system's). */
  readonly caFile?: string;
  readonly caPath?: string;
  /** The PEM certificate (chain) of the encrypted listeners (SmartDNS `bind-cert-file`). */
  readonly certFile?: string;
  /** Its PEM private key (SmartDNS `bind-cert-key-file`). */
  readonly keyFile?: string;
  /** The key's passphrase (`bind-cert-key-pass`): read, but an encrypted key is refused at start. */
  readonly keyPass?: string;
  /**
   * `edns-client-subnet`: the Client Subnet upstream queries carry (`IP/len`, one per family), for
   * servers without their own `-subnet`.
   */
  readonly clientSubnet?: readonly string[];
}

/** How the guardian watches the child. */
export interface GuardianConfig {
  /** Seconds without a heartbeat before a child that is serving counts as hung and is replaced. */
  readonly watchdogTimeout: number;
  /**
   * Seconds a new child may take to report ready (loading the program, the configuration, the
   * cache file, rule lists) before it counts as stuck and is replaced.
   */
  readonly startupTimeout: number;
  /** Child RSS in bytes above which it is replaced by a planned restart (0 = no limit). */
  readonly maxMemory: number;
  /** Crash reports kept next to the pid file. */
  readonly crashFiles: number;
  /**
   * What the child's JavaScript engine favours: `speed` (2 MB semi-spaces, old space capped at
   * 128 MB) or `memory` (`--optimize-for-size`, 1 MB semi-spaces, 64 MB old space).
   */
  readonly optimizeFor: "speed" | "memory";
  /**
   * The user to run as once the listeners are bound (SmartDNS `user`); none keeps the user that
   * started keeldns.
   */
  readonly user?: string;
}

/** The query statistics and metrics (`keeldns metrics`, the admin listener's `/metrics`). */
export interface MetricsConfig {
  /** Count every answered query off the hot path (on unless turned off). */
  readonly enable: boolean;
}

/** A directive that was read but is not implemented yet. */
export interface UnsupportedDirective {
  readonly name: string;
  readonly source: SourcePosition;
  /** What keeldns does instead, or which part is missing. */
  readonly reason?: string;
}

/** Something in the file that was read with a change (a value clamped, an option ignored). */
export interface ConfigWarning {
  readonly message: string;
  readonly source: SourcePosition;
}

/** Which address families a block or an exemption is for. */
export type Families = "both" | "v4" | "v6";

/** What an `address` rule does (SmartDNS `address /d/…`). */
export type AddressAction =
  /** Answer with these addresses (the other family gets an empty answer unless it has its own). */
  | { readonly kind: "ips"; readonly v4: readonly string[]; readonly v6: readonly string[] }
  /** `#` (NXDOMAIN for every type), `#4` / `#6` (an empty answer for that family). */
  | { readonly kind: "block"; readonly families: Families }
  /** `-`, `-4`, `-6`: no address rule for this domain (an exemption from an outer one). */
  | { readonly kind: "exempt"; readonly families: Families };

/** A local SRV record (`srv-record /d/target,port,priority,weight`). */
export interface SrvRecordConfig {
  readonly target: string;
  readonly port: number;
  readonly priority: number;
  readonly weight: number;
}

/** A local HTTPS record (`https-record /d/target=…,port=…,alpn=…,ipv4hint=…,ipv6hint=…`). */
export interface HttpsRecordConfig {
  readonly priority: number;
  /** The target name ("" is the owner itself, written "."). */
  readonly target: string;
  readonly alpn: readonly string[];
  readonly port?: number;
  readonly ech?: string;
  readonly ipv4hint: readonly string[];
  readonly ipv6hint: readonly string[];
}

/** An nftables set answer addresses are added to (`#4:inet#mytable#myset`). */
export interface NftSetTarget {
  /** nftables family: ip, ip6, inet, bridge, netdev. */
  readonly family: string;
  readonly table: string;
  readonly set: string;
}

/**
 * Where a rule's answer addresses go, per family (SmartDNS `nftset` and `ipset`); "-" exempts the
 * domain from an outer rule of the same kind.
 */
export interface AddressSetRule {
  readonly v4?: NftSetTarget | "-";
  readonly v6?: NftSetTarget | "-";
}

/**
 * One domain rule: what a line (`address`, `nameserver`, `cname`, `domain-rules` …) sets for its
 * domains. Options of the same kind on a more specific domain win; see resolver/rule_set.ts.
 */
export interface DomainRule {
  /**
   * The domains as written inside `/…/`, IDN names in punycode: `a.com` (and below), `*.a.com`
   * (below only), `-.a.com` (only), `*a.com` (suffix), "" (every name), `domain-set:NAME`.
   */
  readonly domains: readonly string[];
  readonly source: SourcePosition;
  /** The client group it belongs to (read between `group-begin` and `group-end`), or none. */
  readonly group?: string;
  /** The directive as written, for logs and `explain`. */
  readonly text: string;
  readonly address?: AddressAction;
  /** The upstream group that answers these domains; "-" sends them back to the default group. */
  readonly nameserver?: string;
  /** Answer with a CNAME to this name, resolved further; "-" is an exemption. */
  readonly cname?: string;
  readonly srv?: readonly SrvRecordConfig[];
  readonly txt?: readonly string[];
  readonly https?: HttpsRecordConfig;
  /** nftables sets the answer addresses are added to (`nftset`, `ipset` mapped onto nftables). */
  readonly nftset?: AddressSetRule;
  /** Options read and kept for features not built yet (https-record, rr-ttl …), by name. */
  readonly deferred?: readonly string[];
  /** `-speed-check-mode`: these names' own probe kinds (empty: no speed check). */
  readonly speedCheck?: readonly SpeedCheckMode[];
  /** `-response-mode`: when these names' answers go out. */
  readonly responseMode?: ResponseMode;
  /** `-dualstack-ip-selection yes|no`. */
  readonly dualstack?: boolean;
  /** `-no-serve-expired`: these names are never answered stale; an expired one waits for the upstream. */
  readonly noServeExpired?: boolean;
}

/**
 * One IP rule on upstream answers (`bogus-nxdomain`, `blacklist-ip`, `whitelist-ip`, `ignore-ip`,
 * `ip-alias`, `ip-rules`): what an answer holding one of `cidrs` gets.
 */
export interface IpRuleConfig {
  /** Prefixes or addresses, or `ip-set:NAME`. */
  readonly cidrs: readonly string[];
  /** Refused from servers marked `-blacklist-ip` (the race waits for the others). */
  readonly blacklist: boolean;
  /** Accepted from servers marked `-whitelist-ip` (anything else from them is refused). */
  readonly whitelist: boolean;
  /** The answer becomes NXDOMAIN. */
  readonly bogusNxdomain: boolean;
  /** The answer is refused from every server (the race waits for the others). */
  readonly ignore: boolean;
  /** These addresses replace the matching one. */
  readonly alias?: readonly string[];
  readonly source: SourcePosition;
}

/** A named list of prefixes (`ip-set -name N -type list -file F`). */
export interface IpSetConfig {
  readonly name: string;
  readonly file: string;
  readonly source: SourcePosition;
}

/** A named list of domains (`domain-set -name N -type list -file F`). */
export interface DomainSetConfig {
  readonly name: string;
  readonly file: string;
  readonly source: SourcePosition;
}

/** Domain rules, local records and forced answers. */
export interface RulesConfig {
  readonly domainRules: readonly DomainRule[];
  readonly domainSets: readonly DomainSetConfig[];
  /** TTL of local answers (0: SmartDNS's 60 s, then rr-ttl-min/max). */
  readonly localTtl: number;
  /** Answer every AAAA question with an empty answer (SOA). */
  readonly forceAAAASOA: boolean;
  /** Question types answered with an empty answer (SOA). */
  readonly forceQtypeSoa: readonly number[];
  /** hosts-format files whose names are answered locally. */
  readonly hostsFiles: readonly string[];
  /** Answer PTR questions for the addresses of `address` rules. */
  readonly expandPtrFromAddress: boolean;
  /** dnsmasq lease files whose host names are answered locally (and re-read when they change). */
  readonly leaseFiles: readonly string[];
  /**
   * Names answered with this machine's own addresses: `smartdns` and the server name (SmartDNS's
   * `server-name`, the host name when unset) when `selfNames` is on, and the host name when
   * `resolvHostname` is on.
   */
  readonly selfNames: boolean;
  readonly serverName?: string;
  readonly resolvHostname: boolean;
  /** At most this many addresses of each family in an answer (0 = no limit; SmartDNS: 8). */
  readonly maxReplyIpNum: number;
  /** The speed check's probe kinds, in order (`speed-check-mode`; empty: none). */
  readonly speedCheck: readonly SpeedCheckMode[];
  /** When an A/AAAA answer goes out (`response-mode`). */
  readonly responseMode: ResponseMode;
  /**
   * SmartDNS's ad-block vote: an upstream's 0.x/127.x (or ::/::1) address is dropped from its
   * answer unless more than half of the servers answered such addresses for the question; an
   * answer of such addresses only is kept as it came, given if no other server answers better.
   */
  readonly blockingAnswerVote: boolean;
  /** Dual-stack selection (`dualstack-ip-selection*`; needs the speed check). */
  readonly dualstack: DualstackConfig;
  /** DNS64: the /96 prefix AAAA answers are made under from A records (none: off). */
  readonly dns64Prefix?: string;
  /** Added set elements time out with the answer's TTL (`nftset-timeout`, `ipset-timeout`). */
  readonly nftsetTimeout: boolean;
  /** Log every batch of set elements (`nftset-debug`). */
  readonly nftsetDebug?: boolean;
  /**
   * Sets for addresses a speed check finds unreachable (`nftset-no-speed`, `ipset-no-speed`): read
   * and kept; there is no speed check yet.
   */
  readonly nftsetNoSpeed?: AddressSetRule;
  /** Rules on the addresses of upstream answers. */
  readonly ipRules: readonly IpRuleConfig[];
  readonly ipSets: readonly IpSetConfig[];
}

/** One probe kind of the speed check: ICMP echo, or a TCP handshake on a port. */
export type SpeedCheckMode = { readonly kind: "ping" } | { readonly kind: "tcp"; readonly port: number };

/** Dual-stack selection: answer the slower family empty (see resolver/dualstack_stage.ts). */
export interface DualstackConfig {
  readonly enabled: boolean;
  /** IPv4 must be faster by more than this (ms) for AAAA to be answered empty (SmartDNS: 10). */
  readonly thresholdMs: number;
  /** Also answer A empty when IPv6 is faster (`dualstack-ip-allow-force-AAAA`). */
  readonly allowForceAAAA: boolean;
}

/** SmartDNS's response modes (see resolver/speed_stage.ts). */
export type ResponseMode = "first-ping" | "fastest-ip" | "fastest-response";

/** The response modes by name. */
export const RESPONSE_MODES: readonly ResponseMode[] = ["first-ping", "fastest-ip", "fastest-response"];

/** Parses a `response-mode` value; throws with the reason. */
export function parseResponseMode(text: string): ResponseMode {
  const mode = text.toLowerCase() as ResponseMode;
  if (!RESPONSE_MODES.includes(mode)) {
    throw new Error(`unknown response mode "${text}" (${RESPONSE_MODES.join(", ")})`);
  }
  return mode;
}

/** SmartDNS's default speed check: `ping,tcp:80,tcp:443`. */
export const SMARTDNS_SPEED_CHECK: readonly SpeedCheckMode[] = [
  { kind: "ping" },
  { kind: "tcp", port: 80 },
  { kind: "tcp", port: 443 },
];

/**
 * Parses a `speed-check-mode` value (`ping,tcp:80,tcp-syn:443`, `none`); throws with the reason.
 * `tcp-syn` is probed as a full TCP handshake (no raw SYN sockets).
 */
export function parseSpeedCheckModes(text: string): SpeedCheckMode[] {
  const out: SpeedCheckMode[] = [];
  for (const raw of text.split(",").map((w) => w.trim()).filter((w) => w !== "")) {
    const word = raw.toLowerCase();
    if (word === "none") return out; // SmartDNS: none ends the list
    if (word === "ping") {
      out.push({ kind: "ping" });
      continue;
    }
    const m = /^tcp(?:-syn)?(?::(\d+))?$/.exec(word);
    if (!m) throw new Error(`unknown speed check "${raw}" (ping, tcp:PORT or none)`);
    const port = m[1] === undefined ? 80 : Number(m[1]);
    if (port < 1 || port > 65535) throw new Error(`speed check port ${m[1]} is out of range`);
    out.push({ kind: "tcp", port });
  }
  return out;
}

/**
 * Every policy of `config` (the default one, then each client group's), and every probe list the
 * speed check may use: each policy's, then each `domain-rules -speed-check-mode`'s.
 */
export function speedCheckLists(config: Config): {
  policies: RulesConfig[];
  modeLists: (readonly SpeedCheckMode[])[];
} {
  const policies = [config.rules, ...config.groups.map((g) => g.rules)];
  const modeLists = [
    ...policies.map((r) => r.speedCheck),
    ...policies.flatMap((r) => r.domainRules.flatMap((d) => d.speedCheck ? [d.speedCheck] : [])),
  ];
  return { policies, modeLists };
}

/** The text form of speed check kinds, as `speed-check-mode` takes it. */
export function formatSpeedCheckModes(modes: readonly SpeedCheckMode[]): string {
  return modes.length === 0
    ? "none"
    : modes.map((m) => m.kind === "ping" ? "ping" : `tcp:${m.port}`).join(",");
}

/** No rules at all. */
export const NO_RULES: RulesConfig = Object.freeze({
  domainRules: [],
  domainSets: [],
  localTtl: 0,
  forceAAAASOA: false,
  forceQtypeSoa: [],
  hostsFiles: [],
  expandPtrFromAddress: false,
  leaseFiles: [],
  selfNames: false,
  resolvHostname: false,
  maxReplyIpNum: 0,
  speedCheck: [],
  responseMode: "fastest-response",
  blockingAnswerVote: false,
  dualstack: { enabled: false, thresholdMs: 10, allowForceAAAA: false },
  nftsetTimeout: false,
  ipRules: [],
  ipSets: [],
});

/**
 * A client group (SmartDNS `group-begin NAME` … `group-end` and `client-rules CIDR -group NAME`):
 * a whole policy for the clients it lists — the default policy's rules and settings, with the
 * group's own laid over them.
 */
export interface ClientGroupConfig {
  readonly name: string;
  /** The clients (prefixes) it applies to. */
  readonly clients: readonly string[];
  readonly rules: RulesConfig;
  /**
   * The Client Subnet its queries carry to servers without their own `-subnet`, when the group
   * has its own `edns-client-subnet` (laid over the global one, family by family).
   */
  readonly clientSubnet?: readonly string[];
  readonly source?: SourcePosition;
}

/**
 * The admin HTTP listener: the dashboard, its API, `/metrics` and `/healthz` (TOML `[admin]`,
 * smartdns.conf `smartdns-ui.*`). Off unless configured.
 */
export interface AdminConfig {
  readonly host: string;
  readonly port: number;
  /** Serve HTTPS with the listener certificate options below (else the encrypted listeners'). */
  readonly https: boolean;
  /** The login name (SmartDNS `smartdns-ui.user`, default `admin`). */
  readonly user: string;
  /** The password's hash (`keeldns admin-password`); none: the data directory's `admin-password` file. */
  readonly passwordHash?: string;
  /** A password in clear (SmartDNS `smartdns-ui.password`); a hash is preferred. */
  readonly password?: string;
  /** The bearer token `/metrics` asks for (required when bound beyond loopback). */
  readonly metricsToken?: string;
  /** Seconds a login lasts (SmartDNS `smartdns-ui.token-expire`). */
  readonly sessionSeconds: number;
  /** Oldest query-log entry the dashboard shows, in seconds (`smartdns-ui.max-query-log-age`). */
  readonly queryLogAge: number;
  /** The HTTPS certificate and key (PEM); none: the encrypted listeners' (`cert-file`, `key-file`). */
  readonly certFile?: string;
  readonly keyFile?: string;
  readonly source?: SourcePosition;
}

/** The whole configuration. */
export interface Config {
  /** The file it was read from, or "<embedded default>". */
  readonly path: string;
  readonly format: "toml" | "smartdns";
  readonly server: ServerConfig;
  readonly upstreams: readonly UpstreamConfig[];
  readonly cache: CacheConfig;
  readonly log: LogConfig;
  readonly audit: AuditConfig;
  readonly guardian: GuardianConfig;
  /** Query statistics and metrics; absent: on (only keeldns TOML's `[metrics]` turns them off). */
  readonly metrics?: MetricsConfig;
  readonly rules: RulesConfig;
  /** Client groups, each a policy of its own (none: every client gets `rules`). */
  readonly groups: readonly ClientGroupConfig[];
  /** The admin HTTP listener, when on. */
  readonly admin?: AdminConfig;
  /** Directives seen but not supported yet, each reported once with its first position. */
  readonly unsupported: readonly UnsupportedDirective[];
  /** Lines read with a change (SmartDNS carries on where it can; so does keeldns, and says so). */
  readonly warnings: readonly ConfigWarning[];
}
