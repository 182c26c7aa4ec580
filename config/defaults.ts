/**
 * Default values of the model, and the configuration keeldns runs when given none.
 *
 * @module
 */
import type { AuditConfig, CacheConfig, GuardianConfig, LogConfig } from "./schema.ts";

/** Default listener settings (SmartDNS: tcp-idle-time 120). */
export const DEFAULT_TCP_IDLE_TIME = 120;
/** Open TCP client connections accepted at once. */
export const DEFAULT_MAX_TCP_CONNECTIONS = 512;
/** Milliseconds before an upstream query is given up. */
export const DEFAULT_UPSTREAM_TIMEOUT = 2000;
/** Port used when a bind or server gives none. */
export const DNS_PORT = 53;

/** Where the cache is saved when persistence is on and no file is named. */
export const DEFAULT_CACHE_FILE = "/var/cache/keeldns/keeldns.cache";

/** Seconds an expired entry may still be served (SmartDNS `serve-expired-ttl` without prefetch). */
export const DEFAULT_SERVE_EXPIRED_TTL = 86400;
/** The TTL of a stale answer (SmartDNS `serve-expired-reply-ttl`). */
export const DEFAULT_SERVE_EXPIRED_REPLY_TTL = 3;
/** SmartDNS's `rr-ttl-min` when a smartdns.conf sets none (keeldns.toml's is 0, RFC-strict). */
export const SMARTDNS_RR_TTL_MIN = 600;
/** What `serve-expired-ttl 0` stands for: one year, as in SmartDNS. */
export const SERVE_EXPIRED_TTL_UNLIMITED = 365 * 86400;

/**
 * Bytes the cache may write to its files per hour (journal and snapshots). About 120 bytes per
 * stored answer: 16 MiB is ~35 misses a second all hour, far above a home network's rate.
 */
export const DEFAULT_CACHE_WRITE_BUDGET = 16 << 20;

/** Cache defaults. TTL rewriting and persistence are off unless configured. */
export const DEFAULT_CACHE: CacheConfig = {
  size: 16384,
  rrTtl: 0,
  rrTtlMin: 0,
  rrTtlMax: 0,
  rrTtlReplyMax: 0,
  memSize: 0,
  // RFC-strict by default in TOML; a smartdns.conf turns it on, as SmartDNS does.
  serveExpired: false,
  serveExpiredTtl: DEFAULT_SERVE_EXPIRED_TTL,
  serveExpiredReplyTtl: DEFAULT_SERVE_EXPIRED_REPLY_TTL,
  prefetch: false,
  serveExpiredPrefetchTime: 0,
  persist: false,
  file: DEFAULT_CACHE_FILE,
  // SmartDNS's: with the journal saving as it goes, a daily compaction bounds the files, not loss.
  checkpointTime: 86400,
  writeBudget: DEFAULT_CACHE_WRITE_BUDGET,
};

/** Log defaults (SmartDNS: level error, 128k × 8 files, mode 640; keeldns also logs to stderr). */
export const DEFAULT_LOG: LogConfig = {
  level: "error",
  size: 128 * 1024,
  num: 8,
  console: true,
  fileMode: 0o640,
};

/**
 * Audit defaults (SmartDNS: off, 128k × 2 files, mode 640, not on the console). keeldns.toml
 * audits SOA answers (blocked names are what people look for); a smartdns.conf does not unless
 * `audit-SOA yes`, as SmartDNS. No query log unless asked for.
 */
export const DEFAULT_AUDIT: AuditConfig = {
  enable: false,
  file: "/var/log/keeldns/audit.log",
  size: 128 * 1024,
  num: 2,
  fileMode: 0o640,
  console: false,
  soa: true,
  queryLogSize: 0,
};

/** SmartDNS's audit file when `audit-file` is not given. */
export const SMARTDNS_AUDIT_FILE = "/var/log/smartdns/smartdns-audit.log";

/**
 * Guardian defaults: 5 s watchdog, 60 s to start (a slow board or emulator needs more than 5 s
 * just to load the program, and large rule lists take tens of seconds there; a wedged start is
 * still replaced within a minute), no memory ceiling, 5 crash reports kept, V8 tuned for speed.
 */
export const DEFAULT_GUARDIAN: GuardianConfig = {
  watchdogTimeout: 5,
  startupTimeout: 60,
  maxMemory: 0,
  crashFiles: 5,
  optimizeFor: "speed",
};

/** Name shown for the embedded configuration in messages. */
export const EMBEDDED_CONFIG_NAME = "<embedded default>";

/** The configuration `keeldns run` uses without `-c`: loopback port 5353, public resolvers. */
export const EMBEDDED_CONFIG_TOML = `# keeldns embedded default configuration
[server]
bind = ["127.0.0.1:5353"]

[[upstream]]
address = "udp://1.1.1.1"

[[upstream]]
address = "udp://9.9.9.9"

[[upstream]]
address = "udp://8.8.8.8"

[cache]
size = 4096

# SmartDNS's choices: the fastest address by ICMP, then TCP 80 and 443; IPv6 unless IPv4 is 10 ms faster.
[rules]
speed-check-mode = "ping,tcp:80,tcp:443"
response-mode = "first-ping"
dualstack-ip-selection = true
blocking-answer-vote = true

[log]
level = "info"
`;

/** Queries per second per client before the rate limit bites: far above a LAN client's, far below a flood. */
export const DEFAULT_RATE_LIMIT = 1000;
/** Queries above the average a client may send at once. */
export const DEFAULT_RATE_BURST = 2000;
