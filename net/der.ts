/**
 * A small DER (ASN.1 Distinguished Encoding Rules, X.690) writer: each function returns the
 * complete TLV bytes of one value, so a structure is written inside out with {@link sequence}.
 * Enough for X.509 certificates (net/x509_writer.ts); there is no reader.
 *
 * @module
 */

/** The tag bytes used here. */
export const Tag = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  OID: 0x06,
  UTF8_STRING: 0x0c,
  PRINTABLE_STRING: 0x13,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  SEQUENCE: 0x30,
  SET: 0x31,
} as const;

/** Concatenates byte arrays. */
export function concat(parts: readonly Uint8Array[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(parts.reduce((sum, p) => sum + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** One value: `tag`, its DER length, then `content`. */
export function tlv(tag: number, content: Uint8Array): Uint8Array<ArrayBuffer> {
  const n = content.length;
  let head: number[];
  if (n < 0x80) head = [tag, n];
  else {
    const bytes: number[] = [];
    for (let rest = n; rest > 0; rest = Math.floor(rest / 256)) bytes.unshift(rest & 0xff);
    head = [tag, 0x80 | bytes.length, ...bytes];
  }
  return concat([new Uint8Array(head), content]);
}

/** A SEQUENCE of already-encoded values. */
export function sequence(...items: Uint8Array[]): Uint8Array<ArrayBuffer> {
  return tlv(Tag.SEQUENCE, concat(items));
}

/** A SET OF already-encoded values (DER sorts them by their encodings). */
export function set(...items: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const sorted = [...items].sort((a, b) => {
    for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return a[i] - b[i];
    return a.length - b.length;
  });
  return tlv(Tag.SET, concat(sorted));
}

/** A context-specific tag `[n]`: constructed (EXPLICIT, wrapping a value) or primitive (IMPLICIT). */
export function tagged(n: number, content: Uint8Array, constructed: boolean): Uint8Array<ArrayBuffer> {
  if (n > 30) throw new RangeError(`context tag [${n}] is out of range`);
  return tlv(0x80 | (constructed ? 0x20 : 0) | n, content);
}

/** An unsigned big-endian number as an INTEGER (leading zeros dropped, a 0x00 added when needed). */
export function unsignedInteger(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  let start = 0;
  while (start < bytes.length - 1 && bytes[start] === 0) start++;
  const body = bytes.subarray(start);
  const content = body.length === 0
    ? new Uint8Array([0])
    : body[0] & 0x80
    ? concat([new Uint8Array([0]), body])
    : body;
  return tlv(Tag.INTEGER, content);
}

/** A small non-negative INTEGER. */
export function smallInteger(n: number): Uint8Array<ArrayBuffer> {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new RangeError(`${n} is not a small integer`);
  const bytes: number[] = [];
  for (let rest = n; rest > 0; rest = Math.floor(rest / 256)) bytes.unshift(rest & 0xff);
  return unsignedInteger(new Uint8Array(bytes));
}

/** A BOOLEAN. */
export function boolean(value: boolean): Uint8Array<ArrayBuffer> {
  return tlv(Tag.BOOLEAN, new Uint8Array([value ? 0xff : 0x00]));
}

/** An OBJECT IDENTIFIER from its dotted form ("1.2.840.10045.2.1"). */
export function oid(dotted: string): Uint8Array<ArrayBuffer> {
  const arcs = dotted.split(".").map(Number);
  if (arcs.length < 2 || arcs.some((a) => !Number.isSafeInteger(a) || a < 0) || arcs[0] > 2) {
    throw new RangeError(`"${dotted}" is not an object identifier`);
  }
  const out: number[] = [];
  const [first, second, ...rest] = arcs;
  for (const arc of [first * 40 + second, ...rest]) {
    const groups: number[] = [arc & 0x7f];
    for (let v = Math.floor(arc / 128); v > 0; v = Math.floor(v / 128)) groups.unshift(0x80 | (v & 0x7f));
    out.push(...groups);
  }
  return tlv(Tag.OID, new Uint8Array(out));
}

/** A BIT STRING of whole bytes (no unused bits). */
export function bitString(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  return tlv(Tag.BIT_STRING, concat([new Uint8Array([0]), bytes]));
}

/**
 * A named-bit BIT STRING (X.509 keyUsage): bit 0 is the most significant bit of the first byte;
 * trailing zero bits are dropped as DER requires.
 */
export function namedBits(bits: readonly number[]): Uint8Array<ArrayBuffer> {
  if (bits.length === 0) return tlv(Tag.BIT_STRING, new Uint8Array([0]));
  const highest = Math.max(...bits);
  const bytes = new Uint8Array(Math.floor(highest / 8) + 1);
  for (const b of bits) bytes[b >> 3] |= 0x80 >> (b & 7);
  const unused = 7 - (highest & 7);
  return tlv(Tag.BIT_STRING, concat([new Uint8Array([unused]), bytes]));
}

/** An OCTET STRING. */
export function octetString(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  return tlv(Tag.OCTET_STRING, bytes);
}

/** A UTF8String. */
export function utf8String(text: string): Uint8Array<ArrayBuffer> {
  return tlv(Tag.UTF8_STRING, new TextEncoder().encode(text));
}

/**
 * A certificate time (RFC 5280 §4.1.2.5): UTCTime `YYMMDDHHMMSSZ` for 1950–2049, GeneralizedTime
 * `YYYYMMDDHHMMSSZ` otherwise; whole seconds.
 */
export function time(date: Date): Uint8Array<ArrayBuffer> {
  const year = date.getUTCFullYear();
  const two = (n: number) => String(n).padStart(2, "0");
  const rest = two(date.getUTCMonth() + 1) + two(date.getUTCDate()) + two(date.getUTCHours()) +
    two(date.getUTCMinutes()) + two(date.getUTCSeconds()) + "Z";
  const utc = year >= 1950 && year < 2050;
  const text = (utc ? two(year % 100) : String(year).padStart(4, "0")) + rest;
  return tlv(utc ? Tag.UTC_TIME : Tag.GENERALIZED_TIME, new TextEncoder().encode(text));
}
