/**
 * SmartDNS directives keeldns reads but does not honour yet, each with what that means. A
 * `critical` one would change where queries go or what is filtered if keeldns went on without it,
 * so a file that uses it is refused (`check` and start-up name the line); the others are reported
 * and the service runs without them.
 *
 * @module
 */

/** What keeldns does about a directive it does not honour yet. */
export interface NotYet {
  /** What happens without it (or why it does not matter). */
  readonly reason: string;
  /** Starting is refused: going on would send queries elsewhere or leave something unfiltered. */
  readonly critical?: boolean;
}

const LATER = "not built yet; the service runs without it";

/** Every directive of SmartDNS's table that no handler table takes (yet). */
export const NOT_YET: Readonly<Record<string, NotYet>> = {
  "bind-http": { reason: "plain-HTTP DNS listeners are not built yet (bind-tls and bind-https are)" },
  "bind-cert-root-key-file": {
    reason:
      "the CA keeldns makes keeps its key in the data directory (tls/ca.key); another path is not taken yet",
  },
  "bind-cert-generate": {
    reason:
      "a certificate is made when neither bind-cert-file nor bind-cert-key-file is set (SmartDNS's auto); " +
      "yes and no are not taken yet",
  },
  "bind-cert-san": {
    reason:
      "the certificate keeldns makes names keeldns, localhost, the host name, server-name, loopback, the " +
      "listeners' and the private addresses; more names are not taken yet",
  },
  "bind-cert-validity-days": {
    reason:
      "the server certificate keeldns makes is valid 390 days (SmartDNS's default) and made anew at start " +
      "30 days before it ends",
  },
  "mdns-lookup": {
    reason: "local names are not looked up over mDNS yet (one-shot queries from an ephemeral port, " +
      "RFC 6762 5.1, need no root: a later step)",
  },
  "local-ptr-enable": { reason: "PTR questions for the machine's own addresses go upstream" },
  "data-dir": { reason: "the cache file path is taken from cache-file" },
  "log-color": { reason: LATER },
  "log-syslog": { reason: "the log goes to stderr and log-file" },
  "audit-syslog": { reason: "the audit lines go to the audit file (and stderr with audit-console)" },
  "force-no-CNAME": { reason: "CNAME records are kept in answers" },
  "ddns-domain": { reason: "the DDNS name is not answered locally" },
  "local-domain": { reason: "hosts names without a dot are not expanded with a local domain" },
  "odhcpd-lease-file": { reason: "DHCP lease names are not answered locally yet" },
  "debug-save-fail-packet": { reason: LATER },
  "debug-save-fail-packet-dir": { reason: LATER },
  "no-pidfile": { reason: "a pid file is written only when -p names one" },
  "socket-buff-size": { reason: "sockets keep the kernel's buffer sizes" },
  "plugin": { reason: "plugins are not loaded (the dashboard's smartdns-ui lines included)" },
};
