/**
 * An answer kept as wire bytes: rendered for each client by patching ID, question case, RD bit and
 * the decremented TTLs, with an OPT record appended for EDNS0 clients. No decode, one allocation.
 *
 * @module
 */
import {
  HEADER_LENGTH,
  OPT_RECORD_LENGTH,
  type Question,
  Rcode,
  type ResponseLayout,
  writeEmptyAnswer,
  writeOpt,
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

/** Applies a {@link TtlPolicy} to one TTL. */
export function clampTtl(ttl: number, policy: TtlPolicy): number {
  if (policy.rrTtl > 0) return policy.rrTtl;
  let t = ttl;
  if (policy.rrTtlMax > 0 && t > policy.rrTtlMax) t = policy.rrTtlMax;
  if (policy.rrTtlMin > 0 && t < policy.rrTtlMin) t = policy.rrTtlMin;
  return t;
}

/** A response ready to be rendered for any client that asks the same question. */
export class StoredAnswer {
  /**
   * @param wire the response without its OPT record; question case is that of the first asker
   * @param ttlOffsets where each record's TTL field sits in `wire`
   * @param ttls the TTL to count down from at each offset
   * @param storedAt when the TTLs were read (ms since the epoch)
   * @param lifetime seconds this answer may be served from a cache (0 = do not cache)
   */
  constructor(
    readonly wire: Uint8Array,
    readonly ttlOffsets: Uint32Array,
    readonly ttls: Uint32Array,
    readonly storedAt: number,
    readonly lifetime: number,
  ) {}

  /** Response code of the stored answer. */
  get rcode(): number {
    return this.wire[3] & 0x0f;
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
    let wire = response;
    const offsets = new Uint32Array(layout.ttlOffsets);
    if (layout.opt) {
      const { start, end } = layout.opt;
      wire = new Uint8Array(response.length - (end - start));
      wire.set(response.subarray(0, start));
      wire.set(response.subarray(end), start);
      const arcount = ((wire[10] << 8) | wire[11]) - 1;
      wire[10] = arcount >> 8;
      wire[11] = arcount & 0xff;
      for (let i = 0; i < offsets.length; i++) if (offsets[i] > start) offsets[i] -= end - start;
    } else {
      wire = response.slice();
    }
    const ttls = new Uint32Array(layout.ttls.length);
    for (let i = 0; i < ttls.length; i++) {
      ttls[i] = clampTtl(layout.ttls[i], policy);
      writeU32(wire, offsets[i], ttls[i]);
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
    return new StoredAnswer(wire, offsets, ttls, now, lifetime);
  }

  /** The bytes {@link renderInto} writes for `q`, before any truncation. */
  renderedLength(q: Question): number {
    return this.wire.length + (q.edns ? OPT_RECORD_LENGTH : 0);
  }

  /**
   * Renders this answer for question `q` at time `now` into `out` at `offset`, and returns the
   * length written. If it would exceed `maxSize` (the client's UDP limit), writes an empty answer
   * with TC set instead, so the client retries over TCP. `out` must have room for
   * `min(renderedLength(q), questionEnd + 11)` bytes.
   */
  renderInto(q: Question, now: number, maxSize: number, out: Uint8Array, offset: number): number {
    const src = this.wire;
    const length = this.renderedLength(q);
    if (length > maxSize) return writeEmptyAnswer(q, this.rcode, true, out, offset);
    out.set(src, offset);
    out[offset] = q.wire[0];
    out[offset + 1] = q.wire[1];
    out[offset + 2] = (src[2] & 0xfe) | (q.wire[2] & 0x01);
    // Echo the client's spelling of the name (0x20 case randomisation) when the layout matches.
    if (q.questionEnd <= src.length && src[q.questionEnd - 4] === q.wire[q.questionEnd - 4]) {
      out.set(q.wire.subarray(HEADER_LENGTH, q.questionEnd), offset + HEADER_LENGTH);
    }
    const elapsed = Math.floor((now - this.storedAt) / 1000);
    const offsets = this.ttlOffsets;
    const ttls = this.ttls;
    for (let i = 0; i < offsets.length; i++) {
      const ttl = ttls[i] - elapsed;
      writeU32(out, offset + offsets[i], ttl > 0 ? ttl : 0);
    }
    if (q.edns) {
      writeOpt(out, offset + src.length, q.dnssecOk);
      const arcount = ((out[offset + 10] << 8) | out[offset + 11]) + 1;
      out[offset + 10] = arcount >> 8;
      out[offset + 11] = arcount & 0xff;
    }
    return length;
  }

  /** Renders this answer for `q` into a new array (see {@link renderInto}). */
  render(q: Question, now: number, maxSize: number): Uint8Array {
    const length = this.renderedLength(q);
    const out = new Uint8Array(length > maxSize ? q.questionEnd + OPT_RECORD_LENGTH : length);
    const written = this.renderInto(q, now, maxSize, out, 0);
    return written === out.length ? out : out.subarray(0, written);
  }

  /** Wraps a locally built answer (error or synthetic) that is never cached. */
  static local(wire: Uint8Array, now: number): StoredAnswer {
    return new StoredAnswer(wire, new Uint32Array(0), new Uint32Array(0), now, 0);
  }
}
