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

/** Flag bits as dns-packet numbers them. */
export const RECURSION_DESIRED = dnsPacket.RECURSION_DESIRED;
