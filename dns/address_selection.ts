/**
 * The addresses of an answer, read in place, and the answer rebuilt with a chosen subset of them
 * in a chosen order (the speed check's fastest IP first, or alone). Other records (CNAME chains,
 * records of the other family) are kept where they are.
 *
 * @module
 */
import { decodePacket, encodePacket } from "./packet.ts";
import { HEADER_LENGTH, skipName } from "./wire.ts";

const TYPE_A = 1;
const TYPE_AAAA = 28;

/** The text form of 4 or 16 address bytes at `at` (IPv6 compressed as URL parsing gives it). */
function addressText(wire: Uint8Array, at: number, length: number): string {
  if (length === 4) return `${wire[at]}.${wire[at + 1]}.${wire[at + 2]}.${wire[at + 3]}`;
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((wire[at + i] << 8) | wire[at + i + 1]).toString(16));
  return new URL(`http://[${groups.join(":")}]/`).hostname.slice(1, -1);
}

/** The distinct addresses of records of `type` (1 = A, 28 = AAAA) in the answer section, in order. */
export function answerAddresses(wire: Uint8Array, type: number): string[] {
  const out: string[] = [];
  let pos = HEADER_LENGTH;
  const qd = (wire[4] << 8) | wire[5];
  for (let i = 0; i < qd && pos > 0; i++) pos = skipName(wire, pos) + 4;
  const an = (wire[6] << 8) | wire[7];
  const length = type === TYPE_A ? 4 : type === TYPE_AAAA ? 16 : -1;
  for (let i = 0; i < an && pos > 0; i++) {
    const end = skipName(wire, pos);
    if (end < 0 || end + 10 > wire.length) break;
    const rtype = (wire[end] << 8) | wire[end + 1];
    const rdlength = (wire[end + 8] << 8) | wire[end + 9];
    if (rtype === type && rdlength === length && end + 10 + rdlength <= wire.length) {
      const ip = addressText(wire, end + 10, length);
      if (!out.includes(ip)) out.push(ip);
    }
    pos = end + 10 + rdlength;
  }
  return out;
}

/**
 * `wire` with its A or AAAA records (by `type`) reduced to `ips`, in that order; an address `wire`
 * has no record for gets one made like its first (owner name, TTL: another server's answer for
 * the same name). Other records unchanged. Throws when dns-packet cannot rebuild the message.
 */
export function withAddresses(wire: Uint8Array, type: number, ips: readonly string[]): Uint8Array {
  const packet = decodePacket(wire);
  const name = type === TYPE_A ? "A" : "AAAA";
  const answers = packet.answers ?? [];
  const of = answers.filter((r) => r.type === name);
  const first = answers.findIndex((r) => r.type === name);
  const chosen = [];
  for (const ip of ips) {
    const record = of.find((r) => sameAddress(String((r as { data?: unknown }).data), ip));
    if (record) chosen.push(record);
    else if (of.length > 0) chosen.push({ ...of[0], data: ip } as typeof of[0]);
  }
  const rest = answers.filter((r) => r.type !== name);
  // The chosen records go where the first address record was (after the CNAME chain).
  const at = first < 0 ? rest.length : answers.slice(0, first).filter((r) => r.type !== name).length;
  packet.answers = [...rest.slice(0, at), ...chosen, ...rest.slice(at)];
  return encodePacket(packet);
}

/** Whether two address texts name the same address (IPv6 spellings differ). */
function sameAddress(a: string, b: string): boolean {
  if (a === b) return true;
  if (!a.includes(":") || !b.includes(":")) return false;
  const canon = (ip: string) => new URL(`http://[${ip}]/`).hostname;
  return canon(a) === canon(b);
}
