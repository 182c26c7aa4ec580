/**
 * Low-level DNS wire helpers for the hot path: read the header and question of a query without a
 * full decode, and walk a response once to find what a cache needs (TTL offsets, OPT record, SOA
 * minimum). Nothing here follows compression pointers, so no input can make it loop.
 *
 * @module
 */

/** DNS header length in bytes. */
export const HEADER_LENGTH = 12;
/** Largest UDP answer sent to a client that did not announce EDNS0 (RFC 1035). */
export const CLASSIC_UDP_SIZE = 512;
/** The EDNS0 UDP payload size keeldns announces and honours at most (DNS flag day 2020). */
export const EDNS_UDP_SIZE = 1232;

/** Response codes keeldns produces or inspects. */
export const Rcode = {
  NOERROR: 0,
  FORMERR: 1,
  SERVFAIL: 2,
  NXDOMAIN: 3,
  NOTIMP: 4,
  REFUSED: 5,
} as const;

const TYPE_SOA = 6;
const TYPE_OPT = 41;
const FLAG_QR = 0x80; // in byte 2
const FLAG_TC = 0x02; // in byte 2
const FLAG_RD = 0x01; // in byte 2
const FLAG_RA = 0x80; // in byte 3
const OPT_DO = 0x80; // high byte of the OPT TTL's flags half

/** Why a query could not be parsed; `rcode` is what to answer, or `null` to drop silently. */
export class MalformedQuery extends Error {
  constructor(message: string, readonly rcode: number | null) {
    super(message);
    this.name = "MalformedQuery";
  }
}

/** The parts of a client query the resolver needs, read without decoding the whole message. */
export interface Question {
  /**
   * The query as received; `wire.subarray(12, questionEnd)` is the question section. It may view
   * a transport's reusable buffer until {@link detachQuestion} gives it its own copy.
   */
  wire: Uint8Array;
  /** Transaction ID. */
  readonly id: number;
  /** Query name, lower-cased, dotted, without the trailing dot ("" for the root). */
  readonly name: string;
  /** Query type (1 = A, 28 = AAAA …). */
  readonly qtype: number;
  /** Query class (1 = IN). */
  readonly qclass: number;
  /** Offset just after the question section. */
  readonly questionEnd: number;
  /** Whether the client sent an OPT record (EDNS0). */
  readonly edns: boolean;
  /** Whether the client asked for DNSSEC records (DO bit). */
  readonly dnssecOk: boolean;
  /** The largest UDP answer the client accepts. */
  readonly udpSize: number;
  /** Whether recursion was desired (RD bit). */
  readonly recursionDesired: boolean;
  /** Key for in-flight lookups and logs: name, type, class and DO bit. */
  readonly key: string;
  /**
   * An encoded EDNS option (Client Subnet) the upstream query carries, or none. Client queries
   * never have one: it is set only on the per-server view an upstream is handed (see
   * upstream/query_options.ts), so the path without it reads one absent property.
   */
  readonly upstreamOption?: Uint8Array;
}

/**
 * Checks the name at `offset` without following pointers (queries carry none in their question)
 * and returns the offset after it. Builds nothing: the hot path never needs the name as a string.
 */
function scanQuestionName(buf: Uint8Array, offset: number, length: number): number {
  let pos = offset;
  for (;;) {
    if (pos >= length) throw new MalformedQuery("question name runs past the end", Rcode.FORMERR);
    const len = buf[pos];
    if (len === 0) return pos + 1;
    if (len & 0xc0) throw new MalformedQuery("compressed or extended label in question", Rcode.FORMERR);
    if (pos + len + 2 - offset > 255) {
      throw new MalformedQuery("question name longer than 255 bytes", Rcode.FORMERR);
    }
    if (pos + 1 + len > length) throw new MalformedQuery("label runs past the end", Rcode.FORMERR);
    pos += len + 1;
  }
}

/**
 * The lower-cased dotted form of the (uncompressed, already checked) name at `offset`; dots,
 * backslashes and unprintable bytes inside labels are written as `\DDD`.
 */
function dottedName(buf: Uint8Array, offset: number): string {
  let name = "";
  for (let pos = offset; buf[pos] !== 0; pos += buf[pos] + 1) {
    if (name.length > 0) name += ".";
    for (let i = pos + 1; i <= pos + buf[pos]; i++) {
      let c = buf[i];
      if (c >= 0x41 && c <= 0x5a) c |= 0x20;
      name += c === 0x2e || c === 0x5c || c < 0x21 || c > 0x7e
        ? "\\" + c.toString(10).padStart(3, "0")
        : String.fromCharCode(c);
    }
  }
  return name;
}

/**
 * A parsed query; `name` and `key` are only built when something asks for them. Layers above may
 * extend it with per-query state (the resolver's query context), so one object per query carries
 * both: see {@link parseQuery}'s `kind`.
 */
export class ParsedQuestion implements Question {
  private dotted?: string;
  private keyText?: string;

  constructor(
    public wire: Uint8Array,
    readonly id: number,
    readonly qtype: number,
    readonly qclass: number,
    readonly questionEnd: number,
    readonly edns: boolean,
    readonly dnssecOk: boolean,
    readonly udpSize: number,
    readonly recursionDesired: boolean,
  ) {}

  /** The query name, lower-cased and dotted (built on first use). */
  get name(): string {
    return this.dotted ??= dottedName(this.wire, HEADER_LENGTH);
  }

  /** Name, type, class and DO bit as one string (built on first use). */
  get key(): string {
    return this.keyText ??= `${this.name}|${this.qtype}|${this.qclass}${this.dnssecOk ? "|do" : ""}`;
  }
}

/** The class {@link parseQuery} makes: {@link ParsedQuestion} or a subclass with the same constructor. */
export type QuestionKind<T extends ParsedQuestion> = new (
  wire: Uint8Array,
  id: number,
  qtype: number,
  qclass: number,
  questionEnd: number,
  edns: boolean,
  dnssecOk: boolean,
  udpSize: number,
  recursionDesired: boolean,
) => T;

/**
 * Skips the (possibly compressed) name at `offset`; returns the offset after it or -1 if it is
 * malformed. A pointer ends the name, so this never loops.
 */
export function skipName(buf: Uint8Array, offset: number, length = buf.length): number {
  let pos = offset;
  for (let labels = 0; labels < 128; labels++) {
    if (pos >= length) return -1;
    const len = buf[pos];
    if (len === 0) return pos + 1;
    if ((len & 0xc0) === 0xc0) return pos + 2 <= length ? pos + 2 : -1;
    if (len & 0xc0) return -1;
    pos += len + 1;
  }
  return -1;
}

/**
 * Parses the header and question of a client query, the first `length` bytes of `wire`. Throws
 * {@link MalformedQuery} with the rcode to answer (or `null` when the message must be dropped: too
 * short to answer, or a response).
 */
export function parseQuery<T extends ParsedQuestion = ParsedQuestion>(
  wire: Uint8Array,
  length = wire.length,
  kind: QuestionKind<T> = ParsedQuestion as QuestionKind<T>,
): T {
  if (length < HEADER_LENGTH) throw new MalformedQuery("shorter than a DNS header", null);
  if (wire[2] & FLAG_QR) throw new MalformedQuery("a response, not a query", null);
  const opcode = (wire[2] >> 3) & 0x0f;
  if (opcode !== 0) throw new MalformedQuery(`opcode ${opcode} not implemented`, Rcode.NOTIMP);
  const qdcount = (wire[4] << 8) | wire[5];
  if (qdcount !== 1) throw new MalformedQuery(`${qdcount} questions`, Rcode.FORMERR);
  const end = scanQuestionName(wire, HEADER_LENGTH, length);
  if (end + 4 > length) throw new MalformedQuery("question truncated", Rcode.FORMERR);
  const qtype = (wire[end] << 8) | wire[end + 1];
  const qclass = (wire[end + 2] << 8) | wire[end + 3];
  const questionEnd = end + 4;

  let edns = false;
  let dnssecOk = false;
  let udpSize = CLASSIC_UDP_SIZE;
  const ancount = (wire[6] << 8) | wire[7];
  const nscount = (wire[8] << 8) | wire[9];
  const arcount = (wire[10] << 8) | wire[11];
  if (arcount > 0 && ancount === 0 && nscount === 0) {
    let pos = questionEnd;
    for (let i = 0; i < arcount; i++) {
      const nameEnd = skipName(wire, pos, length);
      if (nameEnd < 0 || nameEnd + 10 > length) {
        throw new MalformedQuery("additional record malformed", Rcode.FORMERR);
      }
      const type = (wire[nameEnd] << 8) | wire[nameEnd + 1];
      const rdlen = (wire[nameEnd + 8] << 8) | wire[nameEnd + 9];
      if (nameEnd + 10 + rdlen > length) {
        throw new MalformedQuery("additional record runs past the end", Rcode.FORMERR);
      }
      if (type === TYPE_OPT) {
        if (edns) throw new MalformedQuery("more than one OPT record", Rcode.FORMERR);
        edns = true;
        const size = (wire[nameEnd + 2] << 8) | wire[nameEnd + 3];
        udpSize = Math.min(Math.max(size, CLASSIC_UDP_SIZE), EDNS_UDP_SIZE);
        dnssecOk = (wire[nameEnd + 6] & OPT_DO) !== 0;
      }
      pos = nameEnd + 10 + rdlen;
    }
  }
  return new kind(
    wire,
    (wire[0] << 8) | wire[1],
    qtype,
    qclass,
    questionEnd,
    edns,
    dnssecOk,
    udpSize,
    (wire[2] & FLAG_RD) !== 0,
  );
}

/** Gives `q` its own copy of the query bytes, for a question answered after its buffer is reused. */
export function detachQuestion(q: Question): void {
  q.wire = q.wire.slice(0, q.questionEnd);
}

/** What one pass over a response tells a cache. */
export interface ResponseLayout {
  /** Response code (low 4 bits; extended rcodes are not combined). */
  readonly rcode: number;
  /** Whether the TC bit is set. */
  readonly truncated: boolean;
  /** Number of answer records. */
  readonly answerCount: number;
  /** Offsets of the 4-byte TTL field of every record except OPT. */
  readonly ttlOffsets: number[];
  /** The TTL read at each offset, in the same order. */
  readonly ttls: number[];
  /** Byte range of the OPT record, if any, so it can be cut out. */
  readonly opt: { start: number; end: number } | null;
  /** RFC 2308 negative TTL: min(SOA TTL, SOA MINIMUM) of the first authority SOA, else -1. */
  readonly negativeTtl: number;
  /** Index into `ttls` of the first authority record; answer TTLs are `ttls.slice(0, this)`. */
  readonly authorityStart: number;
}

/** Walks every record of a response once; returns `null` if the message is malformed. */
export function scanResponse(buf: Uint8Array): ResponseLayout | null {
  if (buf.length < HEADER_LENGTH) return null;
  const qdcount = (buf[4] << 8) | buf[5];
  const counts = [(buf[6] << 8) | buf[7], (buf[8] << 8) | buf[9], (buf[10] << 8) | buf[11]];
  let pos = HEADER_LENGTH;
  for (let i = 0; i < qdcount; i++) {
    pos = skipName(buf, pos);
    if (pos < 0 || pos + 4 > buf.length) return null;
    pos += 4;
  }
  const ttlOffsets: number[] = [];
  const ttls: number[] = [];
  let opt: { start: number; end: number } | null = null;
  let negativeTtl = -1;
  let authorityStart = 0;
  for (let section = 0; section < 3; section++) {
    if (section === 1) authorityStart = ttls.length;
    for (let i = 0; i < counts[section]; i++) {
      const start = pos;
      const nameEnd = skipName(buf, pos);
      if (nameEnd < 0 || nameEnd + 10 > buf.length) return null;
      const type = (buf[nameEnd] << 8) | buf[nameEnd + 1];
      const rdlen = (buf[nameEnd + 8] << 8) | buf[nameEnd + 9];
      const rdata = nameEnd + 10;
      const end = rdata + rdlen;
      if (end > buf.length) return null;
      if (type === TYPE_OPT && section === 2) {
        if (opt) return null;
        opt = { start, end };
      } else {
        const ttl = readU32(buf, nameEnd + 4);
        ttlOffsets.push(nameEnd + 4);
        ttls.push(ttl);
        if (type === TYPE_SOA && section === 1 && negativeTtl < 0) {
          const mname = skipName(buf, rdata);
          const rname = mname < 0 ? -1 : skipName(buf, mname);
          if (rname < 0 || rname + 20 > end) return null;
          negativeTtl = Math.min(ttl, readU32(buf, rname + 16));
        }
      }
      pos = end;
    }
  }
  return {
    rcode: buf[3] & 0x0f,
    truncated: (buf[2] & FLAG_TC) !== 0,
    answerCount: counts[0],
    ttlOffsets,
    ttls,
    opt,
    negativeTtl,
    authorityStart,
  };
}

/** Reads a big-endian unsigned 32-bit integer. */
export function readU32(buf: Uint8Array, offset: number): number {
  return ((buf[offset] << 24) | (buf[offset + 1] << 16) | (buf[offset + 2] << 8) | buf[offset + 3]) >>> 0;
}

/** Writes a big-endian unsigned 32-bit integer. */
export function writeU32(buf: Uint8Array, offset: number, value: number): void {
  buf[offset] = value >>> 24;
  buf[offset + 1] = (value >>> 16) & 0xff;
  buf[offset + 2] = (value >>> 8) & 0xff;
  buf[offset + 3] = value & 0xff;
}

/** Compares the question sections of two messages, ignoring ASCII case. */
export function sameQuestion(a: Uint8Array, aEnd: number, b: Uint8Array): boolean {
  if (b.length < aEnd || ((a[4] << 8) | a[5]) !== ((b[4] << 8) | b[5])) return false;
  for (let i = HEADER_LENGTH; i < aEnd; i++) {
    let x = a[i];
    let y = b[i];
    if (x >= 0x41 && x <= 0x5a) x |= 0x20;
    if (y >= 0x41 && y <= 0x5a) y |= 0x20;
    if (x !== y) return false;
  }
  return true;
}

/** Reads the 16-bit transaction ID of a message. */
export function readId(buf: Uint8Array): number {
  return (buf[0] << 8) | buf[1];
}

/** Writes the 16-bit transaction ID of a message. */
export function writeId(buf: Uint8Array, id: number): void {
  buf[0] = id >> 8;
  buf[1] = id & 0xff;
}

/** Bytes of the OPT record keeldns appends to answers for EDNS0 clients. */
export const OPT_RECORD_LENGTH = 11;

/** Writes a minimal OPT record (root owner, our UDP size, no options) at `offset`. */
function writeOpt(buf: Uint8Array, offset: number, dnssecOk: boolean): void {
  buf[offset] = 0;
  buf[offset + 1] = 0;
  buf[offset + 2] = TYPE_OPT;
  buf[offset + 3] = EDNS_UDP_SIZE >> 8;
  buf[offset + 4] = EDNS_UDP_SIZE & 0xff;
  buf[offset + 5] = 0; // extended rcode
  buf[offset + 6] = 0; // version
  buf[offset + 7] = dnssecOk ? OPT_DO : 0;
  buf[offset + 8] = 0;
  buf[offset + 9] = 0; // rdlength
  buf[offset + 10] = 0;
}

/**
 * The one place that decides the OPT record of an answer keeldns sends, whatever made the answer
 * (upstream, cache, local rule, error): an EDNS0 client gets exactly one, ours, with its DO bit; a
 * client without EDNS0 gets none. Answers are always kept without an OPT record (the stored form),
 * and this appends it at `at` to the message that starts at `messageStart` in `out`, counting it in
 * ARCOUNT. Returns the bytes written (0 or {@link OPT_RECORD_LENGTH}).
 */
export function appendAnswerOpt(q: Question, out: Uint8Array, messageStart: number, at: number): number {
  if (!q.edns) return 0;
  writeOpt(out, at, q.dnssecOk);
  const arcount = ((out[messageStart + 10] << 8) | out[messageStart + 11]) + 1;
  out[messageStart + 10] = arcount >> 8;
  out[messageStart + 11] = arcount & 0xff;
  return OPT_RECORD_LENGTH;
}

/**
 * Builds an upstream query for `q`: a fresh ID, RD set, the client's question, and an OPT record
 * that announces our UDP size, carries the client's DO bit and `q.upstreamOption` if any. Nothing
 * else of the client's OPT record goes upstream (its own Client Subnet neither: see
 * upstream/query_options.ts).
 */
export function buildUpstreamQuery(q: Question, id: number): Uint8Array {
  const option = q.upstreamOption;
  if (option !== undefined) return withOption(q, id, option);
  const out = new Uint8Array(q.questionEnd + OPT_RECORD_LENGTH);
  out.set(q.wire.subarray(0, q.questionEnd));
  writeId(out, id);
  out[2] = FLAG_RD;
  out[3] = 0;
  out[6] =
    out[7] =
    out[8] =
    out[9] =
    out[10] =
    out[11] =
      0;
  writeOpt(out, q.questionEnd, q.dnssecOk);
  out[11] = 1;
  return out;
}

/** {@link buildUpstreamQuery} with `option` (code, length and data) in the OPT record's data. */
function withOption(q: Question, id: number, option: Uint8Array): Uint8Array {
  const out = new Uint8Array(q.questionEnd + OPT_RECORD_LENGTH + option.length);
  out.set(q.wire.subarray(0, q.questionEnd));
  writeId(out, id);
  out[2] = FLAG_RD;
  out[3] = 0;
  out.fill(0, 6, 12); // QDCOUNT (bytes 4, 5) stays 1
  writeOpt(out, q.questionEnd, q.dnssecOk);
  out[q.questionEnd + 9] = option.length >> 8;
  out[q.questionEnd + 10] = option.length & 0xff;
  out.set(option, q.questionEnd + OPT_RECORD_LENGTH);
  out[11] = 1;
  return out;
}

/**
 * Writes the stored form of an answer with no records at `out[offset]`: the header and question
 * only, no OPT record. Returns its length (`q.questionEnd`).
 */
function writeBareAnswer(
  q: Question,
  rcode: number,
  truncated: boolean,
  out: Uint8Array,
  offset: number,
): number {
  out.set(q.wire.subarray(0, q.questionEnd), offset);
  out[offset + 2] = FLAG_QR | (q.recursionDesired ? FLAG_RD : 0) | (truncated ? FLAG_TC : 0);
  out[offset + 3] = FLAG_RA | (rcode & 0x0f);
  out[offset + 6] =
    out[offset + 7] =
    out[offset + 8] =
    out[offset + 9] =
    out[offset + 10] =
    out[offset + 11] =
      0;
  return q.questionEnd;
}

/**
 * Writes an answer with no records at `out[offset]`, ready to send: the question, the given rcode,
 * and the OPT record {@link appendAnswerOpt} decides. Returns its length (at most questionEnd + 11).
 */
export function writeEmptyAnswer(
  q: Question,
  rcode: number,
  truncated: boolean,
  out: Uint8Array,
  offset: number,
): number {
  const length = writeBareAnswer(q, rcode, truncated, out, offset);
  return length + appendAnswerOpt(q, out, offset, offset + length);
}

/**
 * Builds an answer with no records, ready to send (see {@link writeEmptyAnswer}). Used for errors
 * (SERVFAIL, REFUSED …) answered outside the resolver chain.
 */
export function buildEmptyAnswer(q: Question, rcode: number, truncated = false): Uint8Array {
  const out = new Uint8Array(q.questionEnd + (q.edns ? OPT_RECORD_LENGTH : 0));
  writeEmptyAnswer(q, rcode, truncated, out, 0);
  return out;
}

/**
 * Builds the stored form (no OPT record) of an answer with no records, for answers made inside the
 * resolver chain and rendered like any other.
 */
export function buildBareAnswer(q: Question, rcode: number): Uint8Array {
  const out = new Uint8Array(q.questionEnd);
  writeBareAnswer(q, rcode, false, out, 0);
  return out;
}

/**
 * Builds an error answer for a query whose question could not be parsed: the header only, with
 * the client's ID and opcode, and the given rcode. Returns `null` if the message is too short.
 */
export function buildHeaderOnlyAnswer(wire: Uint8Array, rcode: number): Uint8Array | null {
  if (wire.length < HEADER_LENGTH) return null;
  const out = new Uint8Array(HEADER_LENGTH);
  out[0] = wire[0];
  out[1] = wire[1];
  out[2] = FLAG_QR | (wire[2] & 0x79); // keep opcode and RD
  out[3] = FLAG_RA | (rcode & 0x0f);
  return out;
}
