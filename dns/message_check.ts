/**
 * The strict check a DNS message must pass before keeldns lets it near a client: counts that match
 * the records present, names of at most 255 bytes whose compression pointers only point backwards
 * into earlier names, rdata lengths that hold the rdata they announce (names inside NS, CNAME, SOA,
 * MX, SRV … included), at most one OPT and only in the additional section with the root as owner,
 * and no bytes after the last record. Used on the miss path (every upstream answer, before it may
 * win a race or enter the cache), on entries read back from the cache file, and by the tests on
 * every answer keeldns sends. Bounded work for any input: each pointer goes strictly backwards.
 *
 * @module
 */
import { HEADER_LENGTH } from "./wire.ts";

const TYPE_OPT = 41;
/** Longest name on the wire (RFC 1035 §3.1). */
const MAX_NAME = 255;

/** Record types whose rdata is made of names and fixed fields, and how to walk it. */
const Rdata = {
  /** One name: NS, MD, MF, CNAME, MB, MG, MR, PTR, DNAME. */
  NAME: 0,
  /** Two names then 20 bytes: SOA. */
  SOA: 1,
  /** 2 bytes then a name: MX, AFSDB, RT, KX. */
  PREF_NAME: 2,
  /** 6 bytes then a name: SRV. */
  SRV: 3,
  /** Two names: MINFO, RP. */
  TWO_NAMES: 4,
  /** Exactly 4 bytes: A. */
  A: 5,
  /** Exactly 16 bytes: AAAA. */
  AAAA: 6,
} as const;
type Rdata = typeof Rdata[keyof typeof Rdata];

const RDATA_SHAPES = new Map<number, Rdata>([
  [1, Rdata.A],
  [2, Rdata.NAME],
  [3, Rdata.NAME],
  [4, Rdata.NAME],
  [5, Rdata.NAME],
  [6, Rdata.SOA],
  [7, Rdata.NAME],
  [8, Rdata.NAME],
  [9, Rdata.NAME],
  [12, Rdata.NAME],
  [14, Rdata.TWO_NAMES],
  [15, Rdata.PREF_NAME],
  [17, Rdata.TWO_NAMES],
  [18, Rdata.PREF_NAME],
  [21, Rdata.PREF_NAME],
  [28, Rdata.AAAA],
  [33, Rdata.SRV],
  [36, Rdata.PREF_NAME],
  [39, Rdata.NAME],
]);

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

/** Checks rdata of a known shape; returns an error string or null. */
function checkRdata(buf: Uint8Array, shape: Rdata, start: number, end: number): string | null {
  let pos = start;
  const name = () => {
    const after = checkName(buf, pos, end);
    if (typeof after === "string") return after;
    pos = after;
    return null;
  };
  const fixed = (n: number) => {
    if (pos + n > end) return "rdata shorter than its fields";
    pos += n;
    return null;
  };
  let problem: string | null;
  switch (shape) {
    case Rdata.A:
      return end - start === 4 ? null : "A record whose rdata is not 4 bytes";
    case Rdata.AAAA:
      return end - start === 16 ? null : "AAAA record whose rdata is not 16 bytes";
    case Rdata.NAME:
      problem = name();
      break;
    case Rdata.TWO_NAMES:
      problem = name() ?? name();
      break;
    case Rdata.SOA:
      problem = name() ?? name() ?? fixed(20);
      break;
    case Rdata.PREF_NAME:
      problem = fixed(2) ?? name();
      break;
    case Rdata.SRV:
      problem = fixed(6) ?? name();
      break;
  }
  if (problem) return `rdata: ${problem}`;
  return pos === end ? null : "rdata longer than its fields";
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
      } else {
        const shape = RDATA_SHAPES.get(type);
        const problem = shape === undefined ? null : checkRdata(buf, shape, rdata, end);
        if (problem) return `${where}: ${problem}`;
      }
      pos = end;
    }
  }
  return pos === length ? null : `${length - pos} bytes after the last record`;
}
