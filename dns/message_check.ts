/**
 * The strict check a DNS message must pass before keeldns lets it near a client: counts that match
 * the records present, names of at most 255 bytes whose compression pointers only point backwards
 * into earlier names, rdata lengths that hold the rdata they announce (names inside NS, CNAME, SOA,
 * MX, SRV … included), at most one OPT and only in the additional section with the root as owner,
 * the OPT last, and no bytes after the last record; character-strings, type bitmaps and OPT
 * options within their rdata. Used on the miss path (every upstream answer, before it may
 * win a race or enter the cache), on entries read back from the cache file, and by the tests on
 * every answer keeldns sends. Bounded work for any input: each pointer goes strictly backwards.
 *
 * @module
 */
import { HEADER_LENGTH } from "./wire.ts";

const TYPE_OPT = 41;
/** Longest name on the wire (RFC 1035 §3.1). */
const MAX_NAME = 255;

/**
 * How the rdata of a record type is laid out, as a list of fields read in order; the fields must
 * fill the rdata exactly. `name` is a (compressible) domain name, a number is that many fixed
 * bytes, `string` one character-string (a length byte and that many bytes), `strings` one or more
 * up to the end, `bitmaps` NSEC-style type bitmaps up to the end, `rest` any bytes.
 */
type Field = "name" | number | "string" | "strings" | "bitmaps" | "rest";

const LAYOUTS = new Map<number, readonly Field[]>([
  [1, [4]], // A
  [2, ["name"]], // NS
  [3, ["name"]], // MD
  [4, ["name"]], // MF
  [5, ["name"]], // CNAME
  [6, ["name", "name", 20]], // SOA
  [7, ["name"]], // MB
  [8, ["name"]], // MG
  [9, ["name"]], // MR
  [12, ["name"]], // PTR
  [13, ["string", "string"]], // HINFO
  [14, ["name", "name"]], // MINFO
  [15, [2, "name"]], // MX
  [16, ["strings"]], // TXT
  [17, ["name", "name"]], // RP
  [18, [2, "name"]], // AFSDB
  [21, [2, "name"]], // RT
  [28, [16]], // AAAA
  [33, [6, "name"]], // SRV
  [35, [4, "string", "string", "string", "name"]], // NAPTR
  [36, [2, "name"]], // KX
  [39, ["name"]], // DNAME
  [43, [4, "rest"]], // DS
  [44, [2, "rest"]], // SSHFP
  [46, [18, "name", "rest"]], // RRSIG
  [47, ["name", "bitmaps"]], // NSEC
  [48, [4, "rest"]], // DNSKEY (protocol byte checked apart)
  [50, [4, "string", "string", "bitmaps"]], // NSEC3
  [52, [3, "rest"]], // TLSA
  [59, [4, "rest"]], // CDS
  [60, [4, "rest"]], // CDNSKEY
  [99, ["strings"]], // SPF
  [257, [1, "string", "rest"]], // CAA
]);
const DNSKEY_TYPES = new Set([48, 60]);

/**
 * Checks the name at `offset` within the first `length` bytes and returns the offset after it,
 * or a string saying what is wrong. A pointer must point into an earlier part of the message past
 * the header, and before the place it is read from, so following pointers always ends.
 */
export function checkName(buf: Uint8Array, offset: number, length: number): number | string {
  let pos = offset;
  let end = -1; // where the name ends in the stream: after its first pointer, or its root label
  let nameLength = 1;
  for (;;) {
    if (pos >= length) return "name runs past the end";
    const len = buf[pos];
    if (len === 0) return end < 0 ? pos + 1 : end;
    const kind = len & 0xc0;
    if (kind === 0xc0) {
      if (pos + 2 > length) return "compression pointer runs past the end";
      const target = ((len & 0x3f) << 8) | buf[pos + 1];
      if (target < HEADER_LENGTH) return "compression pointer into the header";
      if (target >= pos) return "compression pointer that does not point backwards";
      if (end < 0) end = pos + 2;
      pos = target;
      continue;
    }
    if (kind !== 0) return "label with a reserved type";
    nameLength += len + 1;
    if (nameLength > MAX_NAME) return "name longer than 255 bytes";
    if (pos + 1 + len > length) return "label runs past the end";
    pos += len + 1;
  }
}

/** Checks NSEC-style type bitmaps in `buf[pos, end)`: windows in order, lengths 1..32. */
function bitmapsProblem(buf: Uint8Array, pos: number, end: number): string | null {
  let last = -1;
  while (pos < end) {
    if (pos + 2 > end) return "type bitmap window cut short";
    const window = buf[pos];
    const length = buf[pos + 1];
    if (window <= last) return "type bitmap windows out of order";
    if (length < 1 || length > 32) return "type bitmap of a bad length";
    if (pos + 2 + length > end) return "type bitmap runs past the rdata";
    last = window;
    pos += 2 + length;
  }
  return null;
}

/** Checks rdata laid out as `fields`; returns an error string or null. */
function checkRdata(
  buf: Uint8Array,
  type: number,
  fields: readonly Field[],
  start: number,
  end: number,
): string | null {
  if (type === 1 && end - start !== 4) return "A record whose rdata is not 4 bytes";
  if (type === 28 && end - start !== 16) return "AAAA record whose rdata is not 16 bytes";
  let pos = start;
  for (const field of fields) {
    if (typeof field === "number") {
      if (pos + field > end) return "rdata: shorter than its fields";
      pos += field;
    } else if (field === "name") {
      const after = checkName(buf, pos, end);
      if (typeof after === "string") return `rdata: ${after}`;
      pos = after;
    } else if (field === "string") {
      if (pos >= end || pos + 1 + buf[pos] > end) return "rdata: a character-string runs past the rdata";
      pos += 1 + buf[pos];
    } else if (field === "strings") {
      if (pos >= end) return "rdata: no character-string";
      while (pos < end) {
        if (pos + 1 + buf[pos] > end) return "rdata: a character-string runs past the rdata";
        pos += 1 + buf[pos];
      }
    } else if (field === "bitmaps") {
      const problem = bitmapsProblem(buf, pos, end);
      if (problem) return `rdata: ${problem}`;
      pos = end;
    } else {
      pos = end;
    }
  }
  if (DNSKEY_TYPES.has(type) && buf[start + 2] !== 3) return "rdata: DNSKEY protocol is not 3";
  return pos === end ? null : "rdata: longer than its fields";
}

/** Checks the options of an OPT record: each a code, a length and that many bytes. */
function optionsProblem(buf: Uint8Array, pos: number, end: number): string | null {
  while (pos < end) {
    if (pos + 4 > end) return "OPT option cut short";
    const length = (buf[pos + 2] << 8) | buf[pos + 3];
    if (pos + 4 + length > end) return "OPT option runs past the record";
    pos += 4 + length;
  }
  return null;
}

/**
 * Returns why the first `length` bytes of `buf` are not a well-formed DNS message, or `null` if
 * they are. See the module documentation for the rules.
 */
export function messageProblem(buf: Uint8Array, length = buf.length): string | null {
  if (length < HEADER_LENGTH) return "shorter than a DNS header";
  const qdcount = (buf[4] << 8) | buf[5];
  const counts = [(buf[6] << 8) | buf[7], (buf[8] << 8) | buf[9], (buf[10] << 8) | buf[11]];
  let pos = HEADER_LENGTH;
  for (let i = 0; i < qdcount; i++) {
    const after = checkName(buf, pos, length);
    if (typeof after === "string") return `question ${i + 1}: ${after}`;
    if (after + 4 > length) return `question ${i + 1}: runs past the end`;
    pos = after + 4;
  }
  let opts = 0;
  let optNotLast: string | undefined;
  for (let section = 0; section < 3; section++) {
    for (let i = 0; i < counts[section]; i++) {
      const where = `${["answer", "authority", "additional"][section]} record ${i + 1}`;
      const nameStart = pos;
      const after = checkName(buf, pos, length);
      if (typeof after === "string") return `${where}: ${after}`;
      if (after + 10 > length) return `${where}: runs past the end`;
      const type = (buf[after] << 8) | buf[after + 1];
      const rdlength = (buf[after + 8] << 8) | buf[after + 9];
      const rdata = after + 10;
      const end = rdata + rdlength;
      if (end > length) return `${where}: rdata runs past the end`;
      if (type === TYPE_OPT) {
        if (section !== 2) return `${where}: OPT outside the additional section`;
        if (++opts > 1) return "more than one OPT record";
        if (buf[nameStart] !== 0) return `${where}: OPT whose owner is not the root`;
        // Cutting an OPT out of the middle would break the compression pointers after it.
        if (i !== counts[2] - 1) optNotLast ??= `${where}: OPT that is not the last record`;
        const problem = optionsProblem(buf, rdata, end);
        if (problem) return `${where}: ${problem}`;
      } else {
        const fields = LAYOUTS.get(type);
        const problem = fields === undefined ? null : checkRdata(buf, type, fields, rdata, end);
        if (problem) return `${where}: ${problem}`;
      }
      pos = end;
    }
  }
  if (pos !== length) return `${length - pos} bytes after the last record`;
  return optNotLast ?? null;
}
