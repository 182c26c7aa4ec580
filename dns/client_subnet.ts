/**
 * EDNS Client Subnet (RFC 7871): the option keeldns adds to the queries it sends upstream when
 * `edns-client-subnet` (global) or `server … -subnet` (one server) is configured, made once at
 * start-up so a query only copies its bytes in; a reader of the option in a message, for tests
 * and logs; and {@link hasOptRecord}, whether an answer has an OPT record at all (`-check-edns`).
 *
 * Which option a question carries follows SmartDNS: an A question takes the IPv4 subnet (else the
 * IPv6 one), an AAAA question the IPv6 subnet (else the IPv4 one). Other types take one too from
 * the global setting (IPv4 first), but from a server's own `-subnet` only with
 * `-subnet-all-query-types` (IPv6 first). A server's own `-subnet` replaces the global setting for
 * that server entirely, even for the types it then sends none with.
 *
 * @module
 */
import { parseCidr } from "../net/cidr_set.ts";
import { skipName } from "./wire.ts";

/** The EDNS option code of Client Subnet. */
export const CLIENT_SUBNET_OPTION = 8;

const TYPE_A = 1;
const TYPE_AAAA = 28;
const TYPE_OPT = 41;

/** One subnet as configured: address family, source prefix length and the address truncated to it. */
export interface ClientSubnet {
  /** 1 = IPv4, 2 = IPv6 (the RFC 7871 FAMILY field, from the IANA address family numbers). */
  readonly family: 1 | 2;
  /** Source prefix length, 0..32 or 0..128. */
  readonly prefix: number;
  /** The address with every bit past `prefix` cleared (4 or 16 bytes). */
  readonly address: Uint8Array;
}

/**
 * Parses `IP/len` (or a bare IP, meaning the whole address) to a {@link ClientSubnet}, the host bits
 * cleared. Throws with a reason on anything else.
 */
export function parseClientSubnet(text: string): ClientSubnet {
  const { bytes, bits } = parseCidr(text);
  const address = new Uint8Array(bytes.length);
  for (let i = 0; i < bytes.length; i++) {
    const keep = Math.min(8, Math.max(0, bits - i * 8));
    address[i] = bytes[i] & (0xff << (8 - keep));
  }
  return { family: bytes.length === 4 ? 1 : 2, prefix: bits, address };
}

/** The subnet as text, `192.0.2.0/24` or `2001:db8::/56` (IPv6 compressed, lower-case). */
export function formatClientSubnet(subnet: ClientSubnet): string {
  const a = subnet.address;
  if (subnet.family === 1) return `${a.join(".")}/${subnet.prefix}`;
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((a[i] << 8) | a[i + 1]).toString(16));
  const ip = new URL(`http://[${groups.join(":")}]/`).hostname.slice(1, -1);
  return `${ip}/${subnet.prefix}`;
}

/**
 * The subnets `own` lays over `base`, family by family (`IP/len` texts): a client group's
 * `edns-client-subnet` replaces the default's subnet of the same family and keeps the other.
 */
export function overlaySubnets(base: readonly string[] | undefined, own: readonly string[]): string[] {
  const family = (text: string) => text.includes(":");
  return [...(base ?? []).filter((b) => !own.some((o) => family(o) === family(b))), ...own];
}

/**
 * Encodes the whole option (code, length, then FAMILY, SOURCE PREFIX-LENGTH, SCOPE PREFIX-LENGTH 0
 * and the ceil(prefix / 8) address bytes), ready to be copied into an OPT record's data.
 */
export function encodeClientSubnetOption(subnet: ClientSubnet): Uint8Array {
  const addressBytes = (subnet.prefix + 7) >> 3;
  const out = new Uint8Array(8 + addressBytes);
  out[1] = CLIENT_SUBNET_OPTION;
  out[3] = 4 + addressBytes;
  out[5] = subnet.family;
  out[6] = subnet.prefix;
  out[7] = 0;
  out.set(subnet.address.subarray(0, addressBytes), 8);
  return out;
}

/**
 * The encoded option each query type carries to one server (see the module doc for the rule), or
 * none; built once from the configured subnets.
 */
export class ClientSubnetChoice {
  private constructor(
    private readonly a: Uint8Array | undefined,
    private readonly aaaa: Uint8Array | undefined,
    private readonly other: Uint8Array | undefined,
  ) {}

  /**
   * The choice for one server: its own `-subnet` values when it has any (other types only with
   * `allQueryTypes`), else the global `edns-client-subnet` values, else `undefined` (no option).
   */
  static of(
    own: readonly string[] | undefined,
    allQueryTypes: boolean,
    global: readonly string[] | undefined,
  ): ClientSubnetChoice | undefined {
    const fromOwn = own !== undefined && own.length > 0;
    const texts = fromOwn ? own : global;
    if (texts === undefined || texts.length === 0) return undefined;
    let v4: Uint8Array | undefined;
    let v6: Uint8Array | undefined;
    for (const text of texts) {
      const subnet = parseClientSubnet(text);
      if (subnet.family === 1) v4 = encodeClientSubnetOption(subnet);
      else v6 = encodeClientSubnetOption(subnet);
    }
    const other = fromOwn ? (allQueryTypes ? v6 ?? v4 : undefined) : v4 ?? v6;
    return new ClientSubnetChoice(v4 ?? v6, v6 ?? v4, other);
  }

  /** The encoded option a question of type `qtype` carries, or `undefined`. */
  forType(qtype: number): Uint8Array | undefined {
    return qtype === TYPE_A ? this.a : qtype === TYPE_AAAA ? this.aaaa : this.other;
  }
}

/** What {@link readClientSubnet} finds: the option's fields, the address as text. */
export interface ClientSubnetSeen {
  readonly family: number;
  readonly prefix: number;
  readonly scope: number;
  /** The address bytes sent (ceil(prefix / 8) of them), as text: `1.2.3` or `20 01 0d b8`. */
  readonly address: string;
  /** The address padded to its full length, as `IP/prefix`. */
  readonly subnet: string;
}

/**
 * Reads the Client Subnet option of the OPT record of `wire` (a query or a response), or returns
 * `null` when there is none or the message cannot be walked. Follows no compression pointer.
 */
export function readClientSubnet(wire: Uint8Array): ClientSubnetSeen | null {
  const opt = findOptData(wire);
  if (opt === null) return null;
  for (let pos = opt.start; pos + 4 <= opt.end;) {
    const code = (wire[pos] << 8) | wire[pos + 1];
    const length = (wire[pos + 2] << 8) | wire[pos + 3];
    const data = pos + 4;
    if (data + length > opt.end) return null;
    if (code === CLIENT_SUBNET_OPTION && length >= 4) {
      const family = (wire[data] << 8) | wire[data + 1];
      const prefix = wire[data + 2];
      const bytes = wire.subarray(data + 4, data + length);
      const full = new Uint8Array(family === 2 ? 16 : 4);
      full.set(bytes.subarray(0, full.length));
      return {
        family,
        prefix,
        scope: wire[data + 3],
        address: family === 2
          ? [...bytes].map((b) => b.toString(16).padStart(2, "0")).join(" ")
          : bytes.join("."),
        subnet: formatClientSubnet({ family: family === 2 ? 2 : 1, prefix, address: full }),
      };
    }
    pos = data + length;
  }
  return null;
}

/** The byte range of the OPT record's data in `wire`, or `null` (none, or unreadable). */
function findOptData(wire: Uint8Array): { start: number; end: number } | null {
  const at = optRecordAt(wire);
  if (at < 0) return null;
  const rdlen = (wire[at + 8] << 8) | wire[at + 9];
  return { start: at + 10, end: at + 10 + rdlen };
}

/** Whether `wire` (a whole response) carries an OPT record; walks it once and allocates nothing. */
export function hasOptRecord(wire: Uint8Array): boolean {
  return optRecordAt(wire) >= 0;
}

/**
 * The offset of the type field of the OPT record in the additional section (just after its owner
 * name), or -1 when there is none or the message cannot be walked.
 */
function optRecordAt(wire: Uint8Array): number {
  if (wire.length < 12) return -1;
  const qdcount = (wire[4] << 8) | wire[5];
  const before = ((wire[6] << 8) | wire[7]) + ((wire[8] << 8) | wire[9]);
  const arcount = (wire[10] << 8) | wire[11];
  let pos = 12;
  for (let i = 0; i < qdcount; i++) {
    pos = skipName(wire, pos);
    if (pos < 0 || pos + 4 > wire.length) return -1;
    pos += 4;
  }
  for (let i = 0; i < before + arcount; i++) {
    const nameEnd = skipName(wire, pos);
    if (nameEnd < 0 || nameEnd + 10 > wire.length) return -1;
    const end = nameEnd + 10 + ((wire[nameEnd + 8] << 8) | wire[nameEnd + 9]);
    if (end > wire.length) return -1;
    if (i >= before && ((wire[nameEnd] << 8) | wire[nameEnd + 1]) === TYPE_OPT) return nameEnd;
    pos = end;
  }
  return -1;
}
