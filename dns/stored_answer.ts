/**
 * An answer kept as wire bytes: rendered for each client by patching ID, question case, RD bit and
 * the decremented TTLs, with an OPT record appended for EDNS0 clients. No decode, one allocation.
 *
 * @module
 */
import {
  appendAnswerOpt,
  buildBareAnswer,
  HEADER_LENGTH,
  OPT_RECORD_LENGTH,
  type Question,
  Rcode,
  readU32,
  type ResponseLayout,
  writeEmptyAnswer,
  writeU32,
} from "./wire.ts";

/** How record TTLs are rewritten before an answer is stored (SmartDNS `rr-ttl*`). */
export interface TtlPolicy {
  /** Force every TTL to this value (0 = off). */
  readonly rrTtl: number;
  /** Lower bound (0 = off). */
  readonly rrTtlMin: number;
  /** Upper bound (0 = off). */
  readonly rrTtlMax: number;
}

/** The most TTL an answer sent to a client carries (SmartDNS `rr-ttl-reply-max`; 0 = no cap). */
let replyTtlMax = 0;

/**
 * Sets the cap on TTLs every rendered answer carries (`rr-ttl-reply-max`; 0 turns it off). Stored
 * TTLs, and so how long an answer is cached, are unchanged.
 */
export function setReplyTtlMax(seconds: number): void {
  replyTtlMax = seconds > 0 ? seconds : 0;
}

/** Applies a {@link TtlPolicy} to one TTL. */
export function clampTtl(ttl: number, policy: TtlPolicy): number {
  if (policy.rrTtl > 0) return policy.rrTtl;
  let t = ttl;
  if (policy.rrTtlMax > 0 && t > policy.rrTtlMax) t = policy.rrTtlMax;
  if (policy.rrTtlMin > 0 && t < policy.rrTtlMin) t = policy.rrTtlMin;
  return t;
}

/** Bytes per TTL table entry: a u16 offset and a u32 TTL. */
const TTL_ENTRY = 6;

/**
 * A response ready to be rendered for any client that asks the same question. One array holds the
 * wire bytes followed by the TTL table (per record: u16 offset of its TTL field, u32 TTL), so a
 * cached answer costs one object and one buffer.
 */
export class StoredAnswer {
  /**
   * @param bytes holds, from `start` to `end`, the response without its OPT record, then the TTL table
   * @param start where the response starts in `bytes`
   * @param wireLength how many bytes from `start` are the response
   * @param end where the TTL table ends
   * @param storedAt when the TTLs were read (ms since the epoch)
   * @param lifetime seconds this answer may be served from a cache (0 = do not cache)
   */
  private constructor(
    private readonly bytes: Uint8Array,
    private readonly start: number,
    readonly wireLength: number,
    private readonly end: number,
    readonly storedAt: number,
    readonly lifetime: number,
  ) {}

  /**
   * A stored answer whose response and TTL table ({@link storedLength} bytes, as {@link copyTo}
   * wrote them) sit at `start` in `bytes`. The view shares `bytes`: it is valid while they are.
   */
  static view(
    bytes: Uint8Array,
    start: number,
    wireLength: number,
    storedLength: number,
    storedAt: number,
    lifetime: number,
  ): StoredAnswer {
    return new StoredAnswer(bytes, start, wireLength, start + storedLength, storedAt, lifetime);
  }

  /** Bytes of the response plus its TTL table, as {@link copyTo} writes them. */
  get storedLength(): number {
    return this.end - this.start;
  }

  /** Copies the response and its TTL table into `out` at `offset` (see {@link view}). */
  copyTo(out: Uint8Array, offset: number): void {
    const src = this.bytes;
    for (let i = this.start, o = offset; i < this.end; i++, o++) out[o] = src[i];
  }

  /** Builds a stored answer from a response and the TTL at each of `offsets`. */
  static create(
    wire: Uint8Array,
    offsets: ArrayLike<number>,
    ttls: ArrayLike<number>,
    storedAt: number,
    lifetime: number,
  ): StoredAnswer {
    const bytes = new Uint8Array(wire.length + offsets.length * TTL_ENTRY);
    bytes.set(wire);
    for (let i = 0; i < offsets.length; i++) {
      StoredAnswer.writeTtl(bytes, wire.length, i, offsets[i], ttls[i]);
    }
    return new StoredAnswer(bytes, 0, wire.length, bytes.length, storedAt, lifetime);
  }

  /** Writes entry `i` of the TTL table that starts at `table`, and the TTL itself into the response. */
  private static writeTtl(bytes: Uint8Array, table: number, i: number, offset: number, ttl: number): void {
    const p = table + i * TTL_ENTRY;
    bytes[p] = offset >> 8;
    bytes[p + 1] = offset & 0xff;
    writeU32(bytes, p + 2, ttl);
    writeU32(bytes, offset, ttl);
  }

  /** The response bytes (a view; for tools and tests, not the hot path). */
  get wire(): Uint8Array {
    return this.bytes.subarray(this.start, this.start + this.wireLength);
  }

  /** Number of records with a TTL. */
  get ttlCount(): number {
    return (this.end - this.start - this.wireLength) / TTL_ENTRY;
  }

  /** Where record `i`'s TTL field sits in the response. */
  ttlOffset(i: number): number {
    const p = this.start + this.wireLength + i * TTL_ENTRY;
    return (this.bytes[p] << 8) | this.bytes[p + 1];
  }

  /** The TTL record `i` counts down from. */
  ttl(i: number): number {
    return readU32(this.bytes, this.start + this.wireLength + i * TTL_ENTRY + 2);
  }

  /** Response code of the stored answer. */
  get rcode(): number {
    return this.bytes[this.start + 3] & 0x0f;
  }

  /** Number of records in the answer section. */
  get answerCount(): number {
    return (this.bytes[this.start + 6] << 8) | this.bytes[this.start + 7];
  }

  /** When this answer stops being fresh (ms since the epoch). */
  get expiresAt(): number {
    return this.storedAt + this.lifetime * 1000;
  }

  /**
   * Builds a stored answer from an upstream response and its {@link ResponseLayout}: cuts out the
   * OPT record, rewrites TTLs by `policy`, and works out how long it may be cached (RFC 2308 for
   * negative answers; not at all for SERVFAIL, REFUSED and friends).
   */
  static fromResponse(
    response: Uint8Array,
    layout: ResponseLayout,
    policy: TtlPolicy,
    now: number,
  ): StoredAnswer {
    // One buffer: the response without its OPT record, then the TTL table.
    const cut = layout.opt ? layout.opt.end - layout.opt.start : 0;
    const wireLength = response.length - cut;
    const count = layout.ttlOffsets.length;
    const bytes = new Uint8Array(wireLength + count * TTL_ENTRY);
    if (layout.opt) {
      bytes.set(response.subarray(0, layout.opt.start));
      bytes.set(response.subarray(layout.opt.end, response.length), layout.opt.start);
      const arcount = ((bytes[10] << 8) | bytes[11]) - 1;
      bytes[10] = arcount >> 8;
      bytes[11] = arcount & 0xff;
    } else {
      bytes.set(response);
    }
    const ttls = new Array<number>(count);
    for (let i = 0; i < count; i++) {
      const at = layout.ttlOffsets[i];
      ttls[i] = clampTtl(layout.ttls[i], policy);
      StoredAnswer.writeTtl(
        bytes,
        wireLength,
        i,
        layout.opt && at > layout.opt.start ? at - cut : at,
        ttls[i],
      );
    }
    let lifetime = 0;
    if (!layout.truncated && layout.rcode === Rcode.NOERROR && layout.answerCount > 0) {
      lifetime = Infinity;
      for (let i = 0; i < layout.authorityStart; i++) lifetime = Math.min(lifetime, ttls[i]);
      if (!Number.isFinite(lifetime)) lifetime = 0;
    } else if (
      !layout.truncated && (layout.rcode === Rcode.NXDOMAIN || layout.rcode === Rcode.NOERROR) &&
      layout.negativeTtl > 0
    ) {
      lifetime = policy.rrTtlMax > 0 ? Math.min(layout.negativeTtl, policy.rrTtlMax) : layout.negativeTtl;
    }
    return new StoredAnswer(bytes, 0, wireLength, bytes.length, now, lifetime);
  }

  /**
   * A copy of this answer whose every record carries `ttl` whenever it is rendered, never cached
   * (lifetime 0): a stale answer served with SmartDNS's `serve-expired-reply-ttl`. One allocation;
   * for the stale path, not the fresh one.
   */
  withFixedTtl(ttl: number, now: number): StoredAnswer {
    const length = this.end - this.start;
    const bytes = this.bytes.slice(this.start, this.end);
    for (let p = this.wireLength, i = 0; p < length; p += TTL_ENTRY, i++) {
      StoredAnswer.writeTtl(bytes, this.wireLength, i, (bytes[p] << 8) | bytes[p + 1], ttl);
    }
    return new StoredAnswer(bytes, 0, this.wireLength, length, now, 0);
  }

  /**
   * This answer as if stored at `storedAt` (same bytes, same lifetime): a background refresh of
   * an expired entry keeps the entry's age. No copy; for the refresh path, not the hot one.
   */
  withStoredAt(storedAt: number): StoredAnswer {
    return new StoredAnswer(this.bytes, this.start, this.wireLength, this.end, storedAt, this.lifetime);
  }

  /** The bytes {@link renderInto} writes for `q`, before any truncation. */
  renderedLength(q: Question): number {
    return this.wireLength + (q.edns ? OPT_RECORD_LENGTH : 0);
  }

  /**
   * Renders this answer for question `q` at time `now` into `out` at `offset`, and returns the
   * length written. If it would exceed `maxSize` (the client's UDP limit), writes an empty answer
   * with TC set instead, so the client retries over TCP. `out` must have room for
   * `min(renderedLength(q), questionEnd + 11)` bytes.
   */
  renderInto(q: Question, now: number, maxSize: number, out: Uint8Array, offset: number): number {
    const src = this.bytes;
    const start = this.start;
    const wireLength = this.wireLength;
    const length = this.renderedLength(q);
    if (length > maxSize) return writeEmptyAnswer(q, this.rcode, true, out, offset);
    for (let i = 0; i < wireLength; i++) out[offset + i] = src[start + i];
    out[offset] = q.wire[0];
    out[offset + 1] = q.wire[1];
    out[offset + 2] = (src[start + 2] & 0xfe) | (q.wire[2] & 0x01);
    // Echo the client's spelling of the name (0x20 case randomisation) when the layout matches.
    if (q.questionEnd <= wireLength && src[start + q.questionEnd - 4] === q.wire[q.questionEnd - 4]) {
      for (let i = HEADER_LENGTH; i < q.questionEnd; i++) out[offset + i] = q.wire[i];
    }
    const elapsed = Math.floor((now - this.storedAt) / 1000);
    const cap = replyTtlMax;
    for (let p = start + wireLength; p < this.end; p += TTL_ENTRY) {
      let ttl = readU32(src, p + 2) - elapsed;
      if (ttl < 0) ttl = 0;
      else if (cap > 0 && ttl > cap) ttl = cap;
      writeU32(out, offset + ((src[p] << 8) | src[p + 1]), ttl);
    }
    appendAnswerOpt(q, out, offset, offset + wireLength);
    return length;
  }

  /** Renders this answer for `q` into a new array (see {@link renderInto}). */
  render(q: Question, now: number, maxSize: number): Uint8Array {
    const length = this.renderedLength(q);
    const out = new Uint8Array(length > maxSize ? q.questionEnd + OPT_RECORD_LENGTH : length);
    const written = this.renderInto(q, now, maxSize, out, 0);
    return written === out.length ? out : out.subarray(0, written);
  }

  /**
   * Wraps a locally made answer that is never cached. `wire` is the stored form: without an OPT
   * record, which rendering adds for the client that asked.
   */
  static local(wire: Uint8Array, now: number): StoredAnswer {
    return new StoredAnswer(wire, 0, wire.length, wire.length, now, 0);
  }

  /** A locally made answer with no records and the given rcode (e.g. SERVFAIL), never cached. */
  static empty(q: Question, rcode: number, now: number): StoredAnswer {
    return StoredAnswer.local(buildBareAnswer(q, rcode), now);
  }
}
