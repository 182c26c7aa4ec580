/**
 * The smartdns.conf lines every bench gives SmartDNS so that it does no more per query than
 * keeldns does: no speed checks, the first answer taken, nothing served expired or prefetched, no
 * dual-stack selection, no cache file, and its log at errors only.
 *
 * @module
 */

/** Those lines, with the log going to `logFile`. */
export function smartdnsLikeKeeldns(logFile: string): string[] {
  return [
    "speed-check-mode none",
    "response-mode fastest-response",
    "serve-expired no",
    "prefetch-domain no",
    "dualstack-ip-selection no",
    "cache-persist no",
    "log-level error",
    `log-file ${logFile}`,
  ];
}
