/**
 * SVCB and HTTPS record data (RFC 9460): priority, target name, then the SvcParams in key order.
 * Used by `https-record` rules and by the DDR answer (RFC 9462), whose DoH endpoints also carry
 * `dohpath` (RFC 9461).
 *
 * @module
 */
import { ipBytes } from "../net/address.ts";
import { encodeName } from "./local_answer.ts";

/** SvcParamKeys written here. */
export const SvcParamKey = {
  ALPN: 1,
  PORT: 3,
  IPV4HINT: 4,
  ECH: 5,
  IPV6HINT: 6,
  DOHPATH: 7,
} as const;

/** What one SVCB/HTTPS record says. */
export interface SvcbParams {
  readonly priority: number;
  /** The target name ("" or "." is the owner itself). */
  readonly target: string;
  readonly alpn: readonly string[];
  readonly port?: number;
  /** ECHConfigList, base64. */
  readonly ech?: string;
  readonly ipv4hint: readonly string[];
  readonly ipv6hint: readonly string[];
  /** The DoH URI template's path, e.g. "/dns-query{?dns}". */
  readonly dohpath?: string;
}

/** The rdata of the SVCB/HTTPS record `p` describes. */
export function svcbRdata(p: SvcbParams): Uint8Array {
  const params: [number, Uint8Array][] = [];
  const encoder = new TextEncoder();
  if (p.alpn.length > 0) {
    const ids = p.alpn.map((a) => encoder.encode(a));
    const value = new Uint8Array(ids.reduce((sum, id) => sum + 1 + id.length, 0));
    let at = 0;
    for (const id of ids) value[at] = id.length, value.set(id, at + 1), at += 1 + id.length;
    params.push([SvcParamKey.ALPN, value]);
  }
  if (p.port !== undefined) params.push([SvcParamKey.PORT, new Uint8Array([p.port >> 8, p.port & 0xff])]);
  const hints = (ips: readonly string[]) => {
    const bytes = ips.map(ipBytes);
    const value = new Uint8Array(bytes.reduce((sum, b) => sum + b.length, 0));
    bytes.forEach((b, i) => value.set(b, i * b.length));
    return value;
  };
  if (p.ipv4hint.length > 0) params.push([SvcParamKey.IPV4HINT, hints(p.ipv4hint)]);
  if (p.ech) params.push([SvcParamKey.ECH, Uint8Array.from(atob(p.ech), (c) => c.charCodeAt(0))]);
  if (p.ipv6hint.length > 0) params.push([SvcParamKey.IPV6HINT, hints(p.ipv6hint)]);
  if (p.dohpath !== undefined) params.push([SvcParamKey.DOHPATH, encoder.encode(p.dohpath)]);
  const target = encodeName(p.target);
  const out = new Uint8Array(2 + target.length + params.reduce((sum, [, v]) => sum + 4 + v.length, 0));
  out[0] = p.priority >> 8;
  out[1] = p.priority & 0xff;
  out.set(target, 2);
  let at = 2 + target.length;
  for (const [key, value] of params) {
    out[at] = key >> 8;
    out[at + 1] = key & 0xff;
    out[at + 2] = value.length >> 8;
    out[at + 3] = value.length & 0xff;
    out.set(value, at + 4);
    at += 4 + value.length;
  }
  return out;
}
