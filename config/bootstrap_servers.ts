/**
 * Which servers resolve the names of upstreams given by host name, picked as SmartDNS picks them:
 * the `-bootstrap-dns` servers when there are any, else the servers of the default group given by
 * IP address. With neither, smartdns.conf falls back to the system resolver's nameservers
 * (SmartDNS calls getaddrinfo), added to the model as bootstrap servers so `keeldns convert` shows
 * them; TOML has no such fallback (name the servers). A named server nothing can resolve, or a
 * bootstrap server that needs resolving itself, is an error at load.
 *
 * @module
 */
import { ConfigError } from "./errors.ts";
import type { SourcePosition, UpstreamConfig } from "./schema.ts";

/** The system resolver's file, which SmartDNS's getaddrinfo reads to resolve server names. */
export const SYSTEM_RESOLV_CONF = "/etc/resolv.conf";

/** Whether `u` is given by a host name that must be resolved before it can be asked. */
export function needsResolution(u: UpstreamConfig): boolean {
  return u.name !== undefined && u.hostIp === undefined;
}

/** Indexes into `upstreams` of the servers that resolve the names of the others. */
export function bootstrapServerIndexes(upstreams: readonly UpstreamConfig[]): number[] {
  const all = upstreams.map((_, i) => i);
  const flagged = all.filter((i) => upstreams[i].bootstrap);
  if (flagged.length > 0) return flagged;
  return all.filter((i) => !upstreams[i].excludeDefault && !needsResolution(upstreams[i]));
}

/** Where the fallback comes from, for the error message. */
export interface ResolverFallback {
  /** What it is, e.g. "nameserver in /etc/resolv.conf". */
  readonly what: string;
  /** The servers (read when needed); none when unreadable or empty. */
  readonly servers: () => UpstreamConfig[];
}

/**
 * Checks that every server given by host name can be resolved, and returns the upstreams, with
 * `fallback`'s servers added (as bootstrap servers outside the default group) when nothing else
 * could resolve the names. Throws a ConfigError at the offending server otherwise.
 */
export function checkNameResolution(
  upstreams: readonly UpstreamConfig[],
  fallback?: ResolverFallback,
): readonly UpstreamConfig[] {
  const at = (u: UpstreamConfig): SourcePosition => u.source ?? { file: "", line: 0, col: 0 };
  for (const u of upstreams) {
    if (u.bootstrap && needsResolution(u)) {
      throw new ConfigError(
        `${u.name}: a bootstrap server cannot itself be given by host name (nothing would resolve it); ` +
          "give its IP address, or pin one with -host-ip (TOML: host-ip)",
        at(u),
      );
    }
  }
  const named = upstreams.find(needsResolution);
  if (!named || bootstrapServerIndexes(upstreams).length > 0) return upstreams;
  const extra = fallback?.servers() ?? [];
  if (extra.length > 0) {
    return [...upstreams, ...extra.map((u) => ({ ...u, bootstrap: true, excludeDefault: true }))];
  }
  throw new ConfigError(
    `${named.name}: nothing can resolve this host name: no bootstrap server (-bootstrap-dns; TOML: ` +
      `bootstrap = true), no server of the default group given by IP address` +
      `${
        fallback ? `, and no ${fallback.what}` : ""
      }; add one, or pin the address with -host-ip (TOML: host-ip)`,
    at(named),
  );
}
