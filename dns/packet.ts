/**
 * The one door to `npm:dns-packet`: full encode/decode for the miss path, tools and tests. The hot
 * path uses `wire.ts` instead.
 *
 * @module
 */
// @ts-types="@types/dns-packet"
import dnsPacket from "dns-packet";
// @ts-types="@types/dns-packet"
import type { Answer, Packet, Question as PacketQuestion } from "dns-packet";

import { Buffer } from "node:buffer";

export type { Answer, Packet, PacketQuestion };

/** Encodes a message to wire bytes. */
export function encodePacket(packet: Packet): Uint8Array {
  return new Uint8Array(dnsPacket.encode(packet));
}

/** Decodes wire bytes into a message; throws on malformed input. */
export function decodePacket(wire: Uint8Array): Packet {
  // dns-packet wants a Node Buffer-like object with readUInt16BE & co.
  return dnsPacket.decode(Buffer.from(wire.buffer, wire.byteOffset, wire.byteLength));
}

/** The name dns-packet uses for a record type number (`A`, `MX`, `UNKNOWN_65` …). */
export function typeName(type: number): string {
  return TYPE_NAMES[type] ?? `UNKNOWN_${type}`;
}

/** The types dns-packet encodes by name (the others it takes as `UNKNOWN_n`). */
const TYPE_NAMES: Record<number, string> = {
  1: "A",
  2: "NS",
  5: "CNAME",
  6: "SOA",
  12: "PTR",
  13: "HINFO",
  15: "MX",
  16: "TXT",
  17: "RP",
  28: "AAAA",
  33: "SRV",
  35: "NAPTR",
  39: "DNAME",
  41: "OPT",
  43: "DS",
  44: "SSHFP",
  46: "RRSIG",
  47: "NSEC",
  48: "DNSKEY",
  50: "NSEC3",
  52: "TLSA",
  257: "CAA",
};

/** Flag bits as dns-packet numbers them. */
export const RECURSION_DESIRED = dnsPacket.RECURSION_DESIRED;
