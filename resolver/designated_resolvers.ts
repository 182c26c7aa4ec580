/**
 * Discovery of Designated Resolvers (DDR, RFC 9462): the SVCB records `_dns.resolver.arpa`
 * (type 64) is answered with, one per encrypted listener marked `-ddr` (SmartDNS's bind option;
 * `flags = ["ddr"]` in keeldns.toml), so clients that asked over plain DNS can move to DoT, DoH or
 * DoQ. As SmartDNS: priority 1, 2 … in listener order, target "." (the resolver itself), `alpn`
 * "dot" for bind-tls and "h2", "http/1.1" for bind-https, the listener's `port`; a DoQ listener
 * (keeldns.toml only) gets `alpn` "doq" (RFC 9250 §4.1.1); an address hint when
 * the listener is bound to one address (SmartDNS takes the one the query came in on). DoH
 * endpoints also carry `dohpath` (RFC 9461), which SmartDNS leaves out and clients need. Built
 * once when the rules load (resolver/rule_set.ts): no listener marked, no record, and the question
 * goes on as any other.
 *
 * @module
 */
import type { BindConfig } from "../config/schema.ts";
import type { SvcbParams } from "../dns/svcb.ts";

/** The owner name DDR clients ask for (RFC 9462 §4). */
export const DDR_NAME = "_dns.resolver.arpa";
/** The bind flag that advertises a listener. */
export const DDR_FLAG = "ddr";
/** The DoH URI template's path: the path server/https.ts serves, with its GET variable. */
export const DOH_PATH_TEMPLATE = "/dns-query{?dns}";

/** The ALPN tokens advertised per encrypted listener transport; the others are not advertised. */
const ALPN: Partial<Record<BindConfig["transport"], readonly string[]>> = {
  tls: ["dot"],
  https: ["h2", "http/1.1"],
  quic: ["doq"],
};

/** The SVCB records of the encrypted listeners in `binds` marked `-ddr`, in their order. */
export function designatedResolvers(binds: readonly BindConfig[]): SvcbParams[] {
  const out: SvcbParams[] = [];
  for (const b of binds) {
    const alpn = ALPN[b.transport];
    if (!b.flags?.includes(DDR_FLAG) || !alpn) continue;
    const wildcard = b.host === "::" || b.host === "0.0.0.0";
    const v6 = b.host.includes(":");
    out.push({
      priority: out.length + 1,
      target: ".",
      alpn: [...alpn],
      port: b.port,
      ipv4hint: wildcard || v6 ? [] : [b.host],
      ipv6hint: wildcard || !v6 ? [] : [b.host],
      ...(b.transport === "https" ? { dohpath: DOH_PATH_TEMPLATE } : {}),
    });
  }
  return out;
}
