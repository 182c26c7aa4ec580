/**
 * The SmartDNS directive tables merged into one, with the not-yet list and SmartDNS's own list of
 * directives (current source, `_config_item[]` in src/dns_conf/dns_conf.c), so support can be read
 * from one place: `keeldns check`, `convert`, docs/smartdns-compat.md and the coverage test.
 *
 * @module
 */
import { CACHE } from "./cache.ts";
import { CLIENTS } from "./clients.ts";
import { GENERAL } from "./general.ts";
import { PLUGIN } from "./dashboard.ts";
import { IP_RULES } from "./ip_rules.ts";
import { LISTEN } from "./listen.ts";
import { LOGGING } from "./logging.ts";
import { NFTSET } from "./nftset.ts";
import { NOT_YET } from "./not_yet.ts";
import { PROXIES } from "./proxies.ts";
import type { DirectiveTable } from "./reader.ts";
import { RULES } from "./rules.ts";
import { SPEED } from "./speed.ts";
import { UPSTREAMS } from "./upstreams.ts";

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

/** The handler tables, one per feature, by the feature's name (the compat table's sections). */
export const FEATURE_TABLES: Readonly<Record<string, DirectiveTable>> = {
  listeners: LISTEN,
  upstreams: { ...UPSTREAMS, ...PROXIES },
  cache: CACHE,
  rules: RULES,
  "IP rules": IP_RULES,
  "speed check": SPEED,
  clients: CLIENTS,
  nftset: NFTSET,
  logging: LOGGING,
  general: { ...GENERAL, ...PLUGIN },
};

/** All handlers in one table. */
export const DIRECTIVES: DirectiveTable = Object.assign({}, ...Object.values(FEATURE_TABLES));

export { NOT_YET };
