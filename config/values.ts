/**
 * Parsers for the values both config front-ends share: addresses, sizes, yes/no, integers.
 * Each throws a plain `Error` whose message is the reason; the front-end adds the position.
 *
 * @module
 */
import type {
  AddressAction,
  Families,
  HttpsRecordConfig,
  SrvRecordConfig,
  UpstreamTransport,
} from "./schema.ts";

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

/** Whether `text` is a literal IPv4 address. */
export function isIPv4(text: string): boolean {
  return IPV4.test(text);
}

/** Whether `text` is a literal IPv6 address (no brackets, no zone). */
export function isIPv6(text: string): boolean {
  if (!text.includes(":") || !/^[0-9a-fA-F:.]+$/.test(text)) return false;
  try {
    new URL(`http://[${text}]/`);
    return true;
  } catch {
    return false;
  }
}

/** A host and port read from `IP`, `IP:port`, `[IPv6]:port`, bare `IPv6` or `:port`. */
export interface HostPort {
  readonly host: string;
  readonly port: number;
}

/** Parses a port number 1..65535. */
export function parsePort(text: string): number {
  if (!/^\d{1,5}$/.test(text) || Number(text) < 1 || Number(text) > 65535) {
    throw new Error(`"${text}" is not a port number (1-65535)`);
  }
  return Number(text);
}

/**
 * Parses `IP[:port]`, `[IPv6][:port]`, bare IPv6, or `:port` (host `emptyHost`). Host names are
 * refused (listeners and resolv.conf need literal addresses).
 */
export function parseHostPort(text: string, defaultPort: number, emptyHost?: string): HostPort {
  const parsed = splitHostPort(text, defaultPort, emptyHost);
  if (!isIPv4(parsed.host) && !isIPv6(parsed.host)) throw new Error(`"${parsed.host}" is not an IP address`);
  return parsed;
}

/** A DNS host name: letters, digits, `-` and `_` in labels of 1–63, not all-numeric at the end. */
const HOST_NAME =
  /^(?=.{1,253}$)[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*$/i;

/** Whether `text` is a host name (not an IP address), such as `dns.google`. */
export function isHostName(text: string): boolean {
  const name = text.replace(/\.$/, "");
  return HOST_NAME.test(name) && !/^\d+$/.test(name.slice(name.lastIndexOf(".") + 1));
}

/** Splits host and port without checking what the host is. */
function splitHostPort(text: string, defaultPort: number, emptyHost?: string): HostPort {
  let host: string;
  let port = defaultPort;
  const bracket = /^\[([^\]]*)\](?::(.*))?$/.exec(text);
  if (bracket) {
    host = bracket[1];
    if (bracket[2] !== undefined) port = parsePort(bracket[2]);
  } else if (isIPv6(text)) {
    host = text;
  } else {
    const colon = text.lastIndexOf(":");
    host = colon < 0 ? text : text.slice(0, colon);
    if (colon >= 0) port = parsePort(text.slice(colon + 1));
  }
  if (host === "" && emptyHost !== undefined) host = emptyHost;
  if (host.includes("%")) throw new Error(`"${text}": scoped IPv6 addresses are not supported`);
  return { host, port };
}

/** An upstream address with the transport its URL scheme names. */
export interface UpstreamAddress extends HostPort {
  readonly transport: UpstreamTransport;
  /** The DoH path, for https. */
  readonly path?: string;
  /** The host name the server is given by (then `host` is that name too), lower-cased. */
  readonly name?: string;
}

/** Schemes a later version will support; named so the error can say "not supported yet". */
const FUTURE_SCHEMES = new Set(["h3", "http3"]);
/** Default ports by transport (DoQ: 853, RFC 9250 §4.1.1). */
const DEFAULT_PORTS: Record<UpstreamTransport, number> = {
  udp: 53,
  tcp: 53,
  tls: 853,
  https: 443,
  quic: 853,
};
const SCHEMES = "udp://, tcp://, tls://, https:// or quic://";

/**
 * Parses `[scheme://]host[:port][/path]` for an upstream, the host an IP address or a host name;
 * the scheme (udp, tcp, tls, https, quic) overrides `transport`. Throws for schemes keeldns does
 * not speak yet.
 */
export function parseUpstreamAddress(text: string, transport: UpstreamTransport): UpstreamAddress {
  const scheme = /^([a-z0-9]+):\/\/(.*)$/i.exec(text);
  let rest = text;
  if (scheme) {
    const name = scheme[1].toLowerCase();
    if (Object.hasOwn(DEFAULT_PORTS, name)) transport = name as UpstreamTransport;
    else if (FUTURE_SCHEMES.has(name)) throw new Error(`${name}:// upstreams are not supported yet`);
    else throw new Error(`unknown upstream scheme "${name}://" (use ${SCHEMES})`);
    rest = scheme[2];
  }
  let path: string | undefined;
  const slash = rest.indexOf("/", rest.startsWith("[") ? rest.indexOf("]") : 0);
  if (slash >= 0) {
    path = rest.slice(slash);
    rest = rest.slice(0, slash);
    if (path === "/") path = undefined;
  }
  if (transport === "https") path ??= "/dns-query";
  else if (path !== undefined) throw new Error(`"${text}": a path is only for https:// upstreams`);
  const { host, port } = splitHostPort(rest, DEFAULT_PORTS[transport]);
  let name: string | undefined;
  if (!isIPv4(host) && !isIPv6(host)) {
    if (!isHostName(host)) throw new Error(`"${host}" is not an IP address or a host name`);
    name = host.replace(/\.$/, "").toLowerCase();
  }
  return { transport, host: name ?? host, port, ...(path ? { path } : {}), ...(name ? { name } : {}) };
}

/** Parses a size such as `128k`, `1m`, `2g` or a plain byte count. */
export function parseSize(text: string): number {
  const m = /^(\d+)\s*([kmg]?)b?$/i.exec(text.trim());
  if (!m) throw new Error(`"${text}" is not a size (e.g. 512k, 1m)`);
  const unit = { "": 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[m[2].toLowerCase() as "" | "k" | "m" | "g"];
  return Number(m[1]) * unit;
}

/** Parses an integer within [min, max]. */
export function parseInteger(text: string, min: number, max: number): number {
  if (!/^-?\d+$/.test(text.trim())) throw new Error(`"${text}" is not an integer`);
  const n = Number(text);
  if (n < min || n > max) throw new Error(`${n} is out of range (${min}..${max})`);
  return n;
}

/** Parses SmartDNS's yes/no (also true/false, 1/0, on/off). */
export function parseYesNo(text: string): boolean {
  const t = text.toLowerCase();
  if (["yes", "true", "1", "on"].includes(t)) return true;
  if (["no", "false", "0", "off"].includes(t)) return false;
  throw new Error(`"${text}" is not yes or no`);
}

/** Default cache entries when the config says "auto" (SmartDNS's `cache-size -1`). */
export const AUTO_CACHE_SIZE = 16384;

/** Reads the value of `address /d/VALUE`: `#`, `#4`, `#6`, `-`, `-4`, `-6` or a comma list of IPs. */
export function parseAddressAction(text: string): AddressAction {
  const families = (suffix: string): Families => suffix === "4" ? "v4" : suffix === "6" ? "v6" : "both";
  const block = /^#([46]?)$/.exec(text);
  if (block) return { kind: "block", families: families(block[1]) };
  const exempt = /^-([46]?)$/.exec(text);
  if (exempt) return { kind: "exempt", families: families(exempt[1]) };
  const v4: string[] = [];
  const v6: string[] = [];
  for (const ip of text.split(",").map((t) => t.trim()).filter((t) => t !== "")) {
    if (isIPv4(ip)) v4.push(ip);
    else if (isIPv6(ip)) v6.push(ip);
    else throw new Error(`"${ip}" is not an IP address, "#", "#4", "#6", "-", "-4" or "-6"`);
  }
  if (v4.length + v6.length === 0) throw new Error(`"${text}" gives no address`);
  return { kind: "ips", v4, v6 };
}

/** Reads a CNAME/SRV target: a domain name, or "-" (an exemption). */
export function parseTargetName(text: string): string {
  const name = text.replace(/\.$/, "");
  if (name === "-") return name;
  if (!/^[a-z0-9_-]+(\.[a-z0-9_-]+)*$/i.test(name) || name.length > 253) {
    throw new Error(`"${text}" is not a domain name`);
  }
  return name.toLowerCase();
}

/** `srv-record /d/target[,port[,priority[,weight]]]`. */
export function parseSrvRecord(text: string): SrvRecordConfig {
  const [target, port = "0", priority = "0", weight = "0"] = text.split(",").map((t) => t.trim());
  const number = (t: string, what: string) => {
    if (!/^\d+$/.test(t) || Number(t) > 65535) throw new Error(`${what} "${t}" is not a number 0..65535`);
    return Number(t);
  };
  return {
    target: target === "" ? "" : parseTargetName(target),
    port: number(port, "port"),
    priority: number(priority, "priority"),
    weight: number(weight, "weight"),
  };
}

/** Reads a DNS64 prefix `PREFIX/96` (SmartDNS takes /96 only); returns the prefix address. */
export function parseDns64Prefix(text: string): string {
  const m = /^([0-9a-fA-F:]+)\/(\d+)$/.exec(text.trim());
  if (!m || !isIPv6(m[1])) throw new Error(`"${text}" is not an IPv6 prefix such as 64:ff9b::/96`);
  if (m[2] !== "96") throw new Error(`"${text}": only /96 prefixes are supported, as in SmartDNS`);
  return m[1].toLowerCase();
}

/**
 * Reads SmartDNS's `https-record` value: `target=NAME,port=N,priority=N,alpn=h2,alpn=h3,ech=B64,
 * ipv4hint=IP,ipv6hint=IP` (each key may repeat where it lists; the order does not matter).
 */
export function parseHttpsRecord(text: string): HttpsRecordConfig {
  const out = {
    priority: 1,
    target: "",
    alpn: [] as string[],
    port: undefined as number | undefined,
    ech: undefined as string | undefined,
    ipv4hint: [] as string[],
    ipv6hint: [] as string[],
  };
  for (const part of text.split(",").map((p) => p.trim()).filter((p) => p !== "")) {
    const [key, value = ""] = part.split("=", 2).map((x) => x.trim());
    const number = (what: string) => {
      if (!/^\d+$/.test(value) || Number(value) > 65535) {
        throw new Error(`${what} "${value}" is not a number 0..65535`);
      }
      return Number(value);
    };
    if (key === "target") out.target = value === "." ? "" : parseTargetName(value);
    else if (key === "port") out.port = number("port");
    else if (key === "priority") out.priority = number("priority");
    else if (key === "alpn") out.alpn.push(value);
    else if (key === "ech") out.ech = value;
    else if (key === "ipv4hint" && isIPv4(value)) out.ipv4hint.push(value);
    else if (key === "ipv6hint" && isIPv6(value)) out.ipv6hint.push(value);
    else {throw new Error(
        `"${part}" is not an https-record field (target, port, priority, alpn, ech, ipv4hint, ipv6hint)`,
      );}
  }
  return out;
}

/** Reads a permission mode as SmartDNS does: octal digits (`640`, `0644`), at most 777. */
export function parseFileMode(text: string): number {
  if (!/^0*[0-7]{1,3}$/.test(text)) throw new Error(`"${text}" is not an octal file mode such as 640`);
  return parseInt(text, 8);
}
