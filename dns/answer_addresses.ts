/**
 * The addresses an answer gives, read from its wire bytes (possibly only the first part of them,
 * as the query recorder keeps): each A and AAAA record of the answer section, and whether the
 * message carries an SOA (a blocked name, NXDOMAIN, NODATA). For the audit file and the query log,
 * off the hot path.
 *
 * @module
 */
import { skipName } from "./wire.ts";

const TYPE_A = 1;
const TYPE_AAAA = 28;
const TYPE_SOA = 6;

/** The one result {@link scanAnswerAddresses} fills. */
const SCAN: AnswerScan = { addresses: 0, soa: false };

/** What {@link scanAnswerAddresses} found. */
export interface AnswerScan {
  /** A and AAAA records seen in the answer section. */
  addresses: number;
  /** An SOA record was seen (answer or authority section). */
  soa: boolean;
}

/**
 * Walks the A/AAAA records of the answer section of the message at `start` of `wire` (its first
 * `length` bytes), calling `visit(wire, offset, size)` with each address's bytes (size 4 or 16;
 * `offset` into `wire`). Stops quietly where the bytes end or stop making sense. The result is
 * one object reused by every call: read it before the next.
 */
export function scanAnswerAddresses(
  wire: Uint8Array,
  length: number,
  visit?: (wire: Uint8Array, offset: number, size: 4 | 16) => void,
  start = 0,
): AnswerScan {
  const result = SCAN;
  result.addresses = 0;
  result.soa = false;
  if (length < 12) return result;
  // Skipping a name never follows a compression pointer, so the message may sit anywhere in `wire`.
  const end = start + length;
  const questions = (wire[start + 4] << 8) | wire[start + 5];
  const answers = (wire[start + 6] << 8) | wire[start + 7];
  const authorities = (wire[start + 8] << 8) | wire[start + 9];
  let pos = start + 12;
  for (let q = 0; q < questions; q++) {
    pos = skipName(wire, pos, end);
    if (pos < 0 || pos + 4 > end) return result;
    pos += 4;
  }
  for (let r = 0; r < answers + authorities; r++) {
    pos = skipName(wire, pos, end);
    if (pos < 0 || pos + 10 > end) return result;
    const type = (wire[pos] << 8) | wire[pos + 1];
    const size = (wire[pos + 8] << 8) | wire[pos + 9];
    pos += 10;
    if (pos + size > end) {
      // The SOA's type is enough to know it is there, even when its data was cut off.
      if (type === TYPE_SOA) result.soa = true;
      return result;
    }
    if (type === TYPE_SOA) result.soa = true;
    else if (r < answers && ((type === TYPE_A && size === 4) || (type === TYPE_AAAA && size === 16))) {
      result.addresses++;
      visit?.(wire, pos, size);
    }
    pos += size;
  }
  return result;
}

/** An IPv4 (size 4) or IPv6 (size 16) address at `offset` of `bytes` as text (RFC 5952 form). */
export function addressText(bytes: Uint8Array, offset: number, size: 4 | 16): string {
  if (size === 4) {
    return `${bytes[offset]}.${bytes[offset + 1]}.${bytes[offset + 2]}.${bytes[offset + 3]}`;
  }
  const groups: number[] = [];
  for (let g = 0; g < 8; g++) groups.push((bytes[offset + g * 2] << 8) | bytes[offset + g * 2 + 1]);
  // An IPv4-mapped address reads as IPv4 (a dual-stack socket's view of an IPv4 client).
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    return addressText(bytes, offset + 12, 4);
  }
  // The longest run of two or more zero groups (the first of equal ones) becomes "::".
  let best = -1;
  let bestLength = 1;
  for (let g = 0; g < 8;) {
    if (groups[g] !== 0) {
      g++;
      continue;
    }
    let end = g;
    while (end < 8 && groups[end] === 0) end++;
    if (end - g > bestLength) {
      best = g;
      bestLength = end - g;
    }
    g = end;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best < 0) return hex.join(":");
  return `${hex.slice(0, best).join(":")}::${hex.slice(best + bestLength).join(":")}`;
}
