/**
 * Answers made by keeldns itself (address rules, blocks, forced SOA, local names): the records are
 * kept with the question's name as their owner (the compression pointer 0xC00C), so one
 * LocalAnswer renders for every name a rule covers, in the client's own spelling. Built once when
 * the rules load; rendering writes a header, the client's question, the records and the OPT that
 * {@link appendAnswerOpt} decides. Never cached.
 *
 * @module
 */
import type { Answer } from "./answer.ts";
import {
  appendAnswerOpt,
  HEADER_LENGTH,
  OPT_RECORD_LENGTH,
  type Question,
  writeEmptyAnswer,
  writeU32,
} from "./wire.ts";

const FLAG_QR = 0x80;
const FLAG_RD = 0x01;
const FLAG_RA = 0x80;

/** Record types local answers use. */
export const RecordType = {
  A: 1,
  NS: 2,
  CNAME: 5,
  SOA: 6,
  PTR: 12,
  MX: 15,
  TXT: 16,
  AAAA: 28,
  SRV: 33,
  SVCB: 64,
  HTTPS: 65,
} as const;

/** One record of a local answer; its owner is the question's name. */
export interface LocalRecord {
  readonly type: number;
  readonly ttl: number;
  readonly rdata: Uint8Array;
}

/** TTL of locally made SOA records (SmartDNS's DNS_SERVER_SOA_TTL). */
export const LOCAL_SOA_TTL = 30;

/** Encodes a dotted name as uncompressed wire labels ("" is the root). Throws on a bad name. */
export function encodeName(name: string): Uint8Array {
  const labels = name === "" || name === "." ? [] : name.replace(/\.$/, "").split(".");
  const bytes = labels.map((l) => new TextEncoder().encode(l));
  const out = new Uint8Array(bytes.reduce((sum, l) => sum + l.length + 1, 1));
  let p = 0;
  for (const label of bytes) {
    if (label.length === 0 || label.length > 63) throw new Error(`"${name}" is not a domain name`);
    out[p] = label.length;
    out.set(label, p + 1);
    p += label.length + 1;
  }
  if (out.length > 255) throw new Error(`"${name}" is longer than 255 bytes`);
  return out;
}

/**
 * The SOA record SmartDNS answers blocked names and forced-SOA types with:
 * `a.gtld-servers.net. nstld.verisign-grs.com. 1800 1800 900 604800 86400`, TTL 30.
 */
export function localSoa(ttl = LOCAL_SOA_TTL): LocalRecord {
  const mname = encodeName("a.gtld-servers.net");
  const rname = encodeName("nstld.verisign-grs.com");
  const rdata = new Uint8Array(mname.length + rname.length + 20);
  rdata.set(mname);
  rdata.set(rname, mname.length);
  [1800, 1800, 900, 604800, 86400].forEach((v, i) => writeU32(rdata, mname.length + rname.length + i * 4, v));
  return { type: RecordType.SOA, ttl, rdata };
}

/** An answer made locally: rcode, answer records and authority records, owners all the question. */
export class LocalAnswer implements Answer {
  readonly lifetime = 0;
  private readonly body: Uint8Array;

  /**
   * @param rcode the response code
   * @param answers records for the answer section
   * @param authority records for the authority section (an SOA for NODATA/NXDOMAIN)
   */
  constructor(
    readonly rcode: number,
    readonly answers: readonly LocalRecord[],
    readonly authority: readonly LocalRecord[] = [],
  ) {
    const records = [...answers, ...authority];
    this.body = new Uint8Array(records.reduce((sum, r) => sum + 12 + r.rdata.length, 0));
    let p = 0;
    for (const r of records) {
      const b = this.body;
      b[p] = 0xc0;
      b[p + 1] = HEADER_LENGTH;
      b[p + 2] = r.type >> 8;
      b[p + 3] = r.type & 0xff;
      b[p + 4] = 0;
      b[p + 5] = 1; // class IN
      writeU32(b, p + 6, r.ttl);
      b[p + 10] = r.rdata.length >> 8;
      b[p + 11] = r.rdata.length & 0xff;
      b.set(r.rdata, p + 12);
      p += 12 + r.rdata.length;
    }
  }

  /** An empty answer with `rcode` and an SOA in the authority section (blocks, forced SOA). */
  static soa(rcode: number, ttl = LOCAL_SOA_TTL): LocalAnswer {
    return new LocalAnswer(rcode, [], [localSoa(ttl)]);
  }

  /** The bytes {@link renderInto} writes for `q`, before any truncation. */
  renderedLength(q: Question): number {
    return q.questionEnd + this.body.length + (q.edns ? OPT_RECORD_LENGTH : 0);
  }

  /** Renders for `q` (its ID, RD bit, spelling of the name) into `out` at `offset`. */
  renderInto(q: Question, _now: number, maxSize: number, out: Uint8Array, offset: number): number {
    if (this.renderedLength(q) > maxSize) return writeEmptyAnswer(q, this.rcode, true, out, offset);
    const wire = q.wire;
    for (let i = 0; i < q.questionEnd; i++) out[offset + i] = wire[i];
    out[offset + 2] = FLAG_QR | (wire[2] & FLAG_RD);
    out[offset + 3] = FLAG_RA | (this.rcode & 0x0f);
    out[offset + 4] = 0;
    out[offset + 5] = 1;
    out[offset + 6] = this.answers.length >> 8;
    out[offset + 7] = this.answers.length & 0xff;
    out[offset + 8] = this.authority.length >> 8;
    out[offset + 9] = this.authority.length & 0xff;
    out[offset + 10] = 0;
    out[offset + 11] = 0;
    const bodyAt = offset + q.questionEnd;
    const body = this.body;
    for (let i = 0; i < body.length; i++) out[bodyAt + i] = body[i];
    const end = bodyAt + body.length;
    return end - offset + appendAnswerOpt(q, out, offset, end);
  }

  /** Renders into a new array (see {@link renderInto}). */
  render(q: Question, now: number, maxSize: number): Uint8Array {
    const length = this.renderedLength(q);
    const out = new Uint8Array(length > maxSize ? q.questionEnd + OPT_RECORD_LENGTH : length);
    const written = this.renderInto(q, now, maxSize, out, 0);
    return written === out.length ? out : out.subarray(0, written);
  }
}
