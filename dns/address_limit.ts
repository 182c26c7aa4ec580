/**
 * SmartDNS's `max-reply-ip-num`: an answer gives at most N addresses of each family (SmartDNS's
 * default is 8). Counted on the wire in one pass; only an answer over the limit is decoded and
 * built again, on the miss path.
 *
 * @module
 */
import { decodePacket, encodePacket } from "./packet.ts";
import { HEADER_LENGTH, skipName } from "./wire.ts";

const TYPE_A = 1;
const TYPE_AAAA = 28;

/** The most A and the most AAAA records in the answer section of `wire` (a checked message). */
function addressCounts(wire: Uint8Array): { a: number; aaaa: number } {
  let pos = HEADER_LENGTH;
  const qd = (wire[4] << 8) | wire[5];
  for (let i = 0; i < qd; i++) pos = skipName(wire, pos) + 4;
  const an = (wire[6] << 8) | wire[7];
  let a = 0;
  let aaaa = 0;
  for (let i = 0; i < an && pos > 0; i++) {
    const end = skipName(wire, pos);
    if (end < 0 || end + 10 > wire.length) break;
    const type = (wire[end] << 8) | wire[end + 1];
    if (type === TYPE_A) a++;
    else if (type === TYPE_AAAA) aaaa++;
    pos = end + 10 + ((wire[end + 8] << 8) | wire[end + 9]);
  }
  return { a, aaaa };
}

/**
 * `wire` with at most `max` A and `max` AAAA records in its answer section (the first ones; other
 * records kept), or `wire` itself when it is within the limit or `max` is 0 (no limit).
 */
export function limitAddresses(wire: Uint8Array, max: number): Uint8Array {
  if (max <= 0) return wire;
  const { a, aaaa } = addressCounts(wire);
  if (a <= max && aaaa <= max) return wire;
  const packet = decodePacket(wire);
  let keptA = 0;
  let keptAaaa = 0;
  packet.answers = (packet.answers ?? []).filter((r) => {
    if (r.type === "A") return keptA++ < max;
    if (r.type === "AAAA") return keptAaaa++ < max;
    return true;
  });
  return encodePacket(packet);
}
