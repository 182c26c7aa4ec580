/**
 * Deterministic damage to well-formed DNS messages, for the fuzz suites and the soak: bit flips,
 * length lies, pointer games (a pointer to itself, forwards, into the header, loops, chains that
 * make a name longer than 255 bytes), count lies, EDNS garbage (a second OPT, OPT in the answer
 * section, with an owner, with lying options, in the middle of the additional section), type
 * swaps, truncation and trailing bytes. The same kinds serve queries (client side) and answers
 * (upstream side). Messages are taken apart into records and put back together, so a mutation
 * changes only what it means to: dns-packet encodes without compression, so no pointer of the
 * original moves.
 *
 * @module
 */

/** A seeded pseudo-random generator (mulberry32): the same seed gives the same damage. */
export class Random {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** A float in [0, 1). */
  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** One element of `items`. */
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }

  /** `n` random bytes. */
  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.int(256);
    return out;
  }
}

/** A seed for one item of a run: mixes the run's seed with the item's index. */
export function itemSeed(seed: number, index: number, salt = 0): number {
  let h = (seed ^ Math.imul(index + 1, 0x9e3779b1) ^ Math.imul(salt + 1, 0x85ebca77)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x7feb352d) >>> 0;
  h = Math.imul(h ^ (h >>> 15), 0x846ca68b) >>> 0;
  return (h ^ (h >>> 16)) >>> 0;
}

/** One resource record, taken apart. */
interface Rec {
  section: 0 | 1 | 2;
  /** Owner name bytes (a 2-byte placeholder while a pointer is still to be patched in). */
  owner: Uint8Array;
  /** Type, class, TTL and RDLENGTH as on the wire (RDLENGTH may lie). */
  fixed: Uint8Array;
  rdata: Uint8Array;
}

/** A message taken apart: header, question bytes, records. */
interface Parts {
  header: Uint8Array;
  question: Uint8Array;
  records: Rec[];
}

/** Skips a name without following pointers; -1 if it runs past the end. */
function skip(buf: Uint8Array, pos: number): number {
  for (let guard = 0; guard < 128 && pos < buf.length; guard++) {
    const len = buf[pos];
    if (len === 0) return pos + 1;
    if ((len & 0xc0) === 0xc0) return pos + 2;
    pos += len + 1;
  }
  return -1;
}

/** Takes a well-formed message apart; null if it cannot (then only byte-level damage applies). */
function parse(wire: Uint8Array): Parts | null {
  if (wire.length < 12) return null;
  const qd = (wire[4] << 8) | wire[5];
  let pos = 12;
  for (let i = 0; i < qd; i++) {
    pos = skip(wire, pos);
    if (pos < 0 || pos + 4 > wire.length) return null;
    pos += 4;
  }
  const question = wire.slice(12, pos);
  const records: Rec[] = [];
  for (const section of [0, 1, 2] as const) {
    const count = (wire[6 + 2 * section] << 8) | wire[7 + 2 * section];
    for (let i = 0; i < count; i++) {
      const end = skip(wire, pos);
      if (end < 0 || end + 10 > wire.length) return null;
      const rdlen = (wire[end + 8] << 8) | wire[end + 9];
      if (end + 10 + rdlen > wire.length) return null;
      records.push({
        section,
        owner: wire.slice(pos, end),
        fixed: wire.slice(end, end + 10),
        rdata: wire.slice(end + 10, end + 10 + rdlen),
      });
      pos = end + 10 + rdlen;
    }
  }
  return { header: wire.slice(0, 12), question, records };
}

/** Puts a message together; counts follow the records unless `keepCounts`. Returns owner offsets. */
function assemble(p: Parts, keepCounts = false): { wire: Uint8Array; owners: number[] } {
  let length = 12 + p.question.length;
  for (const r of p.records) length += r.owner.length + 10 + r.rdata.length;
  const wire = new Uint8Array(length);
  wire.set(p.header);
  wire.set(p.question, 12);
  if (!keepCounts) {
    for (const section of [0, 1, 2]) {
      const n = p.records.filter((r) => r.section === section).length;
      wire[6 + 2 * section] = n >> 8;
      wire[7 + 2 * section] = n & 0xff;
    }
  }
  const owners: number[] = [];
  let pos = 12 + p.question.length;
  // Records are written section by section, in their order within each section.
  for (const section of [0, 1, 2]) {
    for (const r of p.records) {
      if (r.section !== section) continue;
      owners[p.records.indexOf(r)] = pos;
      wire.set(r.owner, pos);
      pos += r.owner.length;
      wire.set(r.fixed, pos);
      pos += 10;
      wire.set(r.rdata, pos);
      pos += r.rdata.length;
    }
  }
  return { wire, owners };
}

function pointer(target: number): Uint8Array {
  return new Uint8Array([0xc0 | ((target >> 8) & 0x3f), target & 0xff]);
}

function fixed(type: number, rdlength: number, ttl = 60): Uint8Array {
  return new Uint8Array([
    type >> 8,
    type & 0xff,
    0,
    1,
    ttl >>> 24,
    (ttl >>> 16) & 0xff,
    (ttl >>> 8) & 0xff,
    ttl & 0xff,
    rdlength >> 8,
    rdlength & 0xff,
  ]);
}

const ROOT = new Uint8Array([0]);
const OPT_FIXED = new Uint8Array([0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);

/** The question's name bytes (up to its type), for records that reuse it. */
function questionName(p: Parts): Uint8Array {
  const end = skip(p.question, 0);
  return end > 0 ? p.question.slice(0, end) : ROOT;
}

/** Sets RDLENGTH in a record's fixed part. */
function setRdlength(r: Rec, n: number): void {
  r.fixed[8] = (n >> 8) & 0xff;
  r.fixed[9] = n & 0xff;
}

/** The mutation kinds, by name. Each returns the damaged copy, or null when it does not apply. */
type Mutation = (wire: Uint8Array, rnd: Random) => Uint8Array | null;

/** Replaces record `i`'s owner with a pointer computed from its own offset. */
function withOwnerPointer(
  p: Parts,
  i: number,
  target: (self: number, owners: number[]) => number,
): Uint8Array {
  p.records[i].owner = new Uint8Array(2);
  const { wire, owners } = assemble(p);
  wire.set(pointer(target(owners[i], owners)), owners[i]);
  return wire;
}

export const MUTATIONS: Record<string, Mutation> = {
  /** 1–4 random bits flipped anywhere. */
  "bit-flip": (wire, rnd) => {
    const out = wire.slice();
    for (let n = 1 + rnd.int(4); n > 0; n--) out[rnd.int(out.length)] ^= 1 << rnd.int(8);
    return out;
  },
  /** One random byte after the header set to a random value. */
  "byte-set": (wire, rnd) => {
    if (wire.length <= 12) return null;
    const out = wire.slice();
    out[12 + rnd.int(out.length - 12)] = rnd.int(256);
    return out;
  },
  /** A record's RDLENGTH lies (a little more, a little less, or anything). */
  "rdlength-lie": (wire, rnd) => {
    const p = parse(wire);
    if (!p || p.records.length === 0) return null;
    const r = rnd.pick(p.records);
    const real = r.rdata.length;
    setRdlength(
      r,
      rnd.pick([real + 1, real - 1, real + 2 + rnd.int(40), Math.max(0, real - 2), rnd.int(65536)]),
    );
    return assemble(p).wire;
  },
  /** A record's rdata grows or shrinks with a matching RDLENGTH (A of 5 bytes, SOA too short …). */
  "rdata-resize": (wire, rnd) => {
    const p = parse(wire);
    if (!p || p.records.length === 0) return null;
    const r = rnd.pick(p.records);
    const delta = rnd.pick([-1, 1, -2, 2, -r.rdata.length, 3 + rnd.int(20)]);
    r.rdata = delta < 0
      ? r.rdata.slice(0, Math.max(0, r.rdata.length + delta))
      : new Uint8Array([...r.rdata, ...rnd.bytes(delta)]);
    setRdlength(r, r.rdata.length);
    return assemble(p).wire;
  },
  /** A label length byte in the question or an owner name set to a random value (reserved types too). */
  "label-lie": (wire, rnd) => {
    const p = parse(wire);
    if (!p) return null;
    const { wire: out, owners } = assemble(p, true);
    const at: number[] = [];
    const walk = (start: number) => {
      for (
        let pos = start;
        pos < out.length && out[pos] !== 0 && (out[pos] & 0xc0) === 0;
        pos += out[pos] + 1
      ) {
        at.push(pos);
      }
    };
    walk(12);
    for (const o of owners) if (o !== undefined) walk(o);
    if (at.length === 0) return null;
    out[rnd.pick(at)] = rnd.pick([0, 1, 63, 64, 0x80, 0xc0, rnd.int(256)]);
    return out;
  },
  /** A record's owner name is a compression pointer to itself. */
  "self-pointer": (wire, rnd) => {
    const p = parse(wire);
    if (!p || p.records.length === 0) return null;
    return withOwnerPointer(p, rnd.int(p.records.length), (self) => self);
  },
  /** A record's owner points forwards (to the next record, or past the end). */
  "forward-pointer": (wire, rnd) => {
    const p = parse(wire);
    if (!p || p.records.length === 0) return null;
    const i = rnd.int(p.records.length);
    return withOwnerPointer(p, i, (self, owners) => owners[i + 1] ?? self + 2 + rnd.int(100));
  },
  /** A record's owner points into the header. */
  "header-pointer": (wire, rnd) => {
    const p = parse(wire);
    if (!p || p.records.length === 0) return null;
    return withOwnerPointer(p, rnd.int(p.records.length), () => rnd.int(12));
  },
  /** Two owners point at each other (a loop: one of them necessarily points forwards). */
  "pointer-loop": (wire, rnd) => {
    const p = parse(wire);
    if (!p || p.records.length === 0) return null;
    if (p.records.length === 1) p.records.push({ ...p.records[0] });
    const a = rnd.int(p.records.length - 1);
    const b = a + 1;
    p.records[a].owner = new Uint8Array(2);
    p.records[b].owner = new Uint8Array(2);
    const { wire: out, owners } = assemble(p);
    out.set(pointer(owners[b]), owners[a]);
    out.set(pointer(owners[a]), owners[b]);
    return out;
  },
  /** Backward pointers only, but chained so that a name exceeds 255 bytes. */
  "long-name-chain": (wire, rnd) => {
    const p = parse(wire);
    if (!p || p.records.length === 0) return null;
    const label = (c: number) => [63, ...new Array(63).fill(c)];
    while (p.records.length < 5) p.records.push({ ...p.records[0] });
    p.records.sort((x, y) => x.section - y.section); // index order is now write order
    // Record 0: one label then the question name; each next owner: a label then a pointer back.
    p.records[0].owner = new Uint8Array([...label(0x61), ...questionName(p)]);
    for (let i = 1; i < 5; i++) p.records[i].owner = new Uint8Array([...label(0x61 + i), 0, 0]);
    const { wire: out, owners } = assemble(p);
    for (let i = 1; i < 5; i++) out.set(pointer(owners[i - 1]), owners[i] + 64);
    return rnd.int(4) === 0 ? out.slice(0, owners[4] + 66) : out; // sometimes cut right after the long name
  },
  /** A section count lies (one more or less, zero, or huge); the question count too. */
  "count-lie": (wire, rnd) => {
    const out = wire.slice();
    const field = 4 + 2 * rnd.int(4);
    const real = (out[field] << 8) | out[field + 1];
    const value = rnd.pick([real + 1, real - 1, 0, 2, 0xffff, real + 1 + rnd.int(20)]) & 0xffff;
    out[field] = value >> 8;
    out[field + 1] = value & 0xff;
    return out;
  },
  /** A second OPT record in the additional section. */
  "second-opt": (wire) => {
    const p = parse(wire);
    if (!p) return null;
    const opts = p.records.filter((r) => r.section === 2 && r.fixed[1] === 41).length;
    for (let n = opts; n < 2; n++) {
      p.records.push({ section: 2, owner: ROOT, fixed: OPT_FIXED.slice(), rdata: new Uint8Array() });
    }
    return assemble(p).wire;
  },
  /** An OPT record in the answer or authority section. */
  "opt-misplaced": (wire, rnd) => {
    const p = parse(wire);
    if (!p) return null;
    p.records.unshift({
      section: rnd.pick([0, 1] as const),
      owner: ROOT,
      fixed: OPT_FIXED.slice(),
      rdata: new Uint8Array(),
    });
    return assemble(p).wire;
  },
  /** The OPT record's owner is not the root. */
  "opt-owner": (wire) => {
    const p = parse(wire);
    if (!p) return null;
    const opt = p.records.find((r) => r.section === 2 && r.fixed[1] === 41);
    const owner = new Uint8Array([...questionName(p)]);
    if (opt) opt.owner = owner;
    else p.records.push({ section: 2, owner, fixed: OPT_FIXED.slice(), rdata: new Uint8Array() });
    return assemble(p).wire;
  },
  /** The OPT record carries options whose lengths lie, or random bytes. */
  "opt-garbage": (wire, rnd) => {
    const p = parse(wire);
    if (!p) return null;
    let opt = p.records.find((r) => r.section === 2 && r.fixed[1] === 41);
    if (!opt) {
      opt = { section: 2, owner: ROOT, fixed: OPT_FIXED.slice(), rdata: new Uint8Array() };
      p.records.push(opt);
    }
    opt.rdata = rnd.int(2)
      ? new Uint8Array([0, 10, 0, 200, ...rnd.bytes(rnd.int(8))]) // COOKIE promising 200 bytes
      : rnd.bytes(1 + rnd.int(30));
    setRdlength(opt, opt.rdata.length);
    opt.fixed[4] = rnd.int(256); // extended rcode
    opt.fixed[5] = rnd.int(3); // version
    return assemble(p).wire;
  },
  /**
   * The OPT record first in the additional section, followed by records whose names are compressed
   * against each other (so cutting the OPT out moves what their pointers point at). Well-formed.
   */
  "opt-in-middle": (wire) => {
    const p = parse(wire);
    if (!p) return null;
    p.records = p.records.filter((r) => !(r.section === 2 && r.fixed[1] === 41));
    const glue = new Uint8Array([4, 0x67, 0x6c, 0x75, 0x65, ...questionName(p)]);
    p.records.push(
      { section: 2, owner: ROOT, fixed: OPT_FIXED.slice(), rdata: new Uint8Array() },
      { section: 2, owner: glue, fixed: fixed(1, 4), rdata: new Uint8Array([192, 0, 2, 53]) },
      { section: 2, owner: new Uint8Array(2), fixed: fixed(28, 16), rdata: new Uint8Array(16) },
    );
    const { wire: out, owners } = assemble(p);
    const last = p.records.length - 1;
    out.set(pointer(owners[last - 1]), owners[last]);
    return out;
  },
  /** A record's type changed (an A read as NS, an MX as SOA …). */
  "type-swap": (wire, rnd) => {
    const p = parse(wire);
    if (!p || p.records.length === 0) return null;
    const r = rnd.pick(p.records);
    const type = rnd.pick([1, 2, 5, 6, 12, 15, 16, 28, 33, 41, 255, rnd.int(65536)]);
    r.fixed[0] = type >> 8;
    r.fixed[1] = type & 0xff;
    return assemble(p).wire;
  },
  /** Header flags and rcode randomised (QR/opcode/TC/rcode …). */
  "flags": (wire, rnd) => {
    const out = wire.slice();
    if (rnd.int(2)) out[2] = rnd.int(256);
    out[3] = rnd.int(256);
    return out;
  },
  /** Cut at a random length. */
  "truncate": (wire, rnd) => wire.slice(0, rnd.int(wire.length)),
  /** Random bytes after the last record. */
  "trailing": (wire, rnd) => new Uint8Array([...wire, ...rnd.bytes(1 + rnd.int(16))]),
};

/** The kinds, in a fixed order (so a seed means the same run everywhere). */
export const MUTATION_KINDS: readonly string[] = Object.keys(MUTATIONS);

/**
 * Damages `wire` with one kind drawn from `rnd` (or `kind`); returns the kind and the result. A
 * kind that does not apply falls back to a bit flip.
 */
export function mutate(wire: Uint8Array, rnd: Random, kind?: string): { kind: string; wire: Uint8Array } {
  const k = kind ?? rnd.pick(MUTATION_KINDS);
  const out = MUTATIONS[k](wire, rnd);
  if (out) return { kind: k, wire: out };
  return { kind: "bit-flip", wire: MUTATIONS["bit-flip"](wire, rnd)! };
}
