/**
 * What happened to each answered query, for the audit file, the query log, the statistics and the
 * metrics: one fixed-size record per answer, written on the hot path into preallocated typed
 * arrays (a cache hit stays allocation-free), and read in batches off it by consumers a timer
 * drains them to. When the consumers fall a whole ring behind, the oldest records are lost and
 * counted, never the answers.
 *
 * @module
 */
import { nameText } from "../dns/name_text.ts";
import { addressText } from "../dns/answer_addresses.ts";
import type { ListenerProfile, QueryContext } from "../resolver/query_context.ts";
import { AF_INET, AF_INET6 } from "../net/linux_socket.ts";

/** Bytes kept of a question's name (its wire form: labels with their lengths). */
export const RECORD_NAME_BYTES = 256;
/** Bytes kept of each answer as it was sent (header included), when answers are kept. */
export const RECORD_ANSWER_BYTES = 256;
/** How often the consumers are given what was recorded (ms). */
export const DRAIN_INTERVAL_MS = 100;

/** The bits of {@link QueryRecords.flags}. */
export const RecordFlag = {
  /** Asked over a stream transport (TCP, DoT, DoH, DoQ). */
  STREAM: 1,
  /** The DO bit was set. */
  DNSSEC_OK: 2,
  /** Sent truncated (TC). */
  TRUNCATED: 4,
  /** The answer's first bytes were kept ({@link QueryRecords.answer}). */
  ANSWER_KEPT: 8,
} as const;

/** The ring of records; slot `i` of every array is one answer. Read them in a consumer's call only. */
export class QueryRecords {
  /** Slots (a power of two). */
  readonly capacity: number;
  /** When it was answered (ms since the epoch). */
  readonly time: Float64Array;
  /**
   * How many answers the record stands for: 1, or a sampling recorder's one-in-N for an answer
   * given at once (the others of the N are counted through {@link QueryRecordConsumer.skipped}).
   */
  readonly weight: Uint16Array;
  /** Microseconds from its receipt to its answer. */
  readonly elapsedUs: Uint32Array;
  readonly qtype: Uint16Array;
  readonly qclass: Uint16Array;
  /** The answer's rcode (its header's low 4 bits). */
  readonly rcode: Uint8Array;
  /** Its {@link Reason} code. */
  readonly reason: Uint8Array;
  /** {@link RecordFlag} bits. */
  readonly flags: Uint8Array;
  /** The rule that decided it (an index into the rule set's rules), or -1. */
  readonly rule: Int32Array;
  /** The upstream that answered, an index into {@link QueryRecorder.upstreams}, or -1. */
  readonly upstream: Int16Array;
  /** The listener it came in on, an index into {@link QueryRecorder.listeners}. */
  readonly listener: Uint16Array;
  /** The client group whose rules applied. */
  readonly ruleGroup: Uint8Array;
  /** The upstream server group that answered, or would have (0: the default group). */
  readonly upstreamGroup: Uint8Array;
  /** The client's address family: 4, 6, or 0 when unknown; its address at `i * 16` of {@link client}. */
  readonly clientFamily: Uint8Array;
  readonly client: Uint8Array;
  /** The question's name in wire form at `i * RECORD_NAME_BYTES` of {@link name}, as the client spelled it. */
  readonly nameLength: Uint16Array;
  readonly name: Uint8Array;
  /** The answer's first bytes at `i * RECORD_ANSWER_BYTES` of {@link answer} (when kept), and its full length. */
  readonly answerLength: Uint16Array;
  readonly answer: Uint8Array;

  constructor(capacity: number, keepAnswers: boolean) {
    let slots = 1;
    while (slots < capacity) slots *= 2;
    this.capacity = slots;
    this.time = new Float64Array(slots);
    this.weight = new Uint16Array(slots);
    this.elapsedUs = new Uint32Array(slots);
    this.qtype = new Uint16Array(slots);
    this.qclass = new Uint16Array(slots);
    this.rcode = new Uint8Array(slots);
    this.reason = new Uint8Array(slots);
    this.flags = new Uint8Array(slots);
    this.rule = new Int32Array(slots);
    this.upstream = new Int16Array(slots);
    this.listener = new Uint16Array(slots);
    this.ruleGroup = new Uint8Array(slots);
    this.upstreamGroup = new Uint8Array(slots);
    this.clientFamily = new Uint8Array(slots);
    this.client = new Uint8Array(slots * 16);
    this.nameLength = new Uint16Array(slots);
    this.name = new Uint8Array(slots * RECORD_NAME_BYTES);
    this.answerLength = new Uint16Array(slots);
    this.answer = new Uint8Array(keepAnswers ? slots * RECORD_ANSWER_BYTES : 0);
  }

  /** Bytes the ring holds. */
  get bytes(): number {
    return this.capacity *
        (8 + 2 + 4 + 2 + 2 + 1 + 1 + 1 + 4 + 2 + 2 + 1 + 1 + 1 + 16 + 2 + RECORD_NAME_BYTES + 2) +
      this.answer.length;
  }

  /** The question's name of slot `i` as text (lower case kept as asked; "." for the root). */
  nameText(i: number): string {
    const start = i * RECORD_NAME_BYTES;
    return nameText(this.name, start, start + this.nameLength[i]);
  }

  /** The client address of slot `i` as text, or "" when unknown. */
  clientText(i: number): string {
    const family = this.clientFamily[i];
    return family === 4 || family === 6 ? addressText(this.client, i * 16, family === 4 ? 4 : 16) : "";
  }

  /** The kept bytes of slot `i`'s answer (a view; empty when not kept). */
  answerBytes(i: number): Uint8Array {
    if (!(this.flags[i] & RecordFlag.ANSWER_KEPT)) return this.answer.subarray(0, 0);
    const at = i * RECORD_ANSWER_BYTES;
    return this.answer.subarray(at, at + Math.min(this.answerLength[i], RECORD_ANSWER_BYTES));
  }
}

/** Reads records in batches (the audit file, the query log, the statistics). */
export interface QueryRecordConsumer {
  /** Takes slot `i` of `records`; valid during the call only. */
  consume(records: QueryRecords, i: number): void;
  /**
   * Takes `n` answers of `qtype`, `reason` and `rcode` answered in the turn they arrived (time 0)
   * around `now` that a sampling recorder counted without a record (see {@link QueryRecorder.sampling}).
   */
  skipped?(qtype: number, reason: number, rcode: number, n: number, now: number): void;
  /** Called after each batch (one write per batch, for a file). */
  batchDone?(): void;
}

/**
 * Records a second a sampling recorder writes in full; above it, answers given in the turn they
 * arrived (cache hits, local answers) are recorded one in {@link QueryRecorder.sampleEvery} and
 * the others only counted. Answers that went upstream are always recorded.
 */
export const FULL_RECORDS_PER_SECOND = 10_000;

/**
 * Writes a record per answered query and hands them to its consumers every
 * {@link DRAIN_INTERVAL_MS}, and at the end of the turn that fills a quarter of the ring.
 */
export class QueryRecorder {
  readonly records: QueryRecords;
  /** Records written, and read by the consumers, since the start. */
  written = 0;
  private read = 0;
  /** Records overwritten before the consumers read them. */
  lost = 0;
  /**
   * Whether answers given at once may be sampled under load (the statistics and the query log
   * need no more; the audit file needs every line, so it turns this off).
   */
  sampling = false;
  /** One in this many answers given at once is recorded (a power of two; 1: every one). */
  sampleEvery = 1;
  private sampleMask = 0;
  private sampleCounter = 0;
  /** What the skipped answers were: per type seen, a row of 256 counts (`reason * 16 + rcode`). */
  private readonly skipRowOf = new Uint16Array(65536);
  private readonly skipTypes: number[] = [];
  private skipCounts = new Float64Array(16 * 256);
  private skippedAny = false;
  private rateSince = Date.now();
  private rateRecords = 0;
  /** The upstream addresses and listener addresses the records' indexes name. */
  readonly upstreams: string[] = [];
  readonly listeners: string[] = [];
  private readonly upstreamIndex = new Map<string, number>();
  private readonly listenerIndex = new Map<string, number>();
  private readonly consumers: QueryRecordConsumer[] = [];
  /** The listener of the last record and its index (most records come from one listener in a row). */
  private lastListener?: ListenerProfile;
  private lastListenerIndex = 0;
  private timer?: ReturnType<typeof setInterval>;
  /** A drain due before the timer's (the ring is a quarter full). */
  private soon?: ReturnType<typeof setTimeout>;
  private readonly drainNow = () => {
    this.soon = undefined;
    this.drain();
  };

  /**
   * @param capacity records held between two drains (rounded up to a power of two)
   * @param keepAnswers whether each answer's first bytes are kept (the audit file and the query
   *   log show its addresses; the statistics need none)
   */
  constructor(capacity: number, readonly keepAnswers: boolean) {
    this.records = new QueryRecords(capacity, keepAnswers);
  }

  /** Adds a consumer, and starts the drain timer with the first. */
  addConsumer(consumer: QueryRecordConsumer): void {
    this.consumers.push(consumer);
    if (this.timer === undefined) {
      const timer = setInterval(() => this.drain(), DRAIN_INTERVAL_MS);
      Deno.unrefTimer(timer);
      this.timer = timer;
    }
  }

  /** The index of a listener address, added once. */
  listenerOf(address: string): number {
    let i = this.listenerIndex.get(address);
    if (i === undefined) this.listenerIndex.set(address, i = this.listeners.push(address) - 1);
    return i;
  }

  /**
   * Records the answer to `ctx` rendered at `offset` of `out` (`length` bytes) at `now` (ms since
   * the epoch), `elapsedUs` after it was received (0: in the turn it arrived), over a `stream`
   * transport or not. The client is `ctx.peer`, or the copy a miss kept. Allocation-free (the
   * first sight of a listener or upstream address interns it).
   */
  record(
    ctx: QueryContext,
    out: Uint8Array,
    offset: number,
    length: number,
    elapsedUs: number,
    stream: boolean,
    now: number,
  ): void {
    // Small, so that it is inlined where it is called: a skipped answer costs a table add.
    if (elapsedUs === 0 && this.sampleMask !== 0 && (++this.sampleCounter & this.sampleMask) !== 0) {
      const row = this.skipRowOf[ctx.qtype];
      if (row === 0) return this.skipFirst(ctx, out[offset + 3] & 0x0f);
      this.skipCounts[(row - 1) * 256 + ((ctx.reason & 15) << 4) + (out[offset + 3] & 0x0f)]++;
      this.skippedAny = true;
      return;
    }
    this.recordFull(ctx, out, offset, length, elapsedUs, stream, now);
  }

  /**
   * Counts a skipped answer of a type not skipped before. Apart from {@link record} on purpose:
   * with the row made inline there (`|| this.skipRow(…)`), cached QPS with statistics on fell from
   * 0.997x to 0.966x off in back-to-back runs.
   */
  private skipFirst(ctx: QueryContext, rcode: number): void {
    const row = this.skipRow(ctx.qtype);
    this.skipCounts[(row - 1) * 256 + ((ctx.reason & 15) << 4) + rcode]++;
    this.skippedAny = true;
  }

  /** {@link record}'s slot write. */
  private recordFull(
    ctx: QueryContext,
    out: Uint8Array,
    offset: number,
    length: number,
    elapsedUs: number,
    stream: boolean,
    now: number,
  ): void {
    const r = this.records;
    const i = this.written & (r.capacity - 1);
    this.written++;
    const behind = this.written - this.read;
    if (behind > r.capacity) {
      this.read++;
      this.lost++;
    } else if (behind === r.capacity >> 2 && this.soon === undefined && this.timer !== undefined) {
      // A quarter full before the timer: drain as soon as this turn ends (a busy server), so
      // records are lost only if a turn takes three quarters of a ring. Once per quarter ring.
      this.soon = setTimeout(this.drainNow, 0);
    }
    r.time[i] = now;
    r.weight[i] = elapsedUs === 0 ? this.sampleEvery : 1;
    r.elapsedUs[i] = elapsedUs > 0xffffffff ? 0xffffffff : elapsedUs;
    r.qtype[i] = ctx.qtype;
    r.qclass[i] = ctx.qclass;
    r.rcode[i] = out[offset + 3] & 0x0f;
    r.reason[i] = ctx.reason;
    r.rule[i] = ctx.rule;
    r.ruleGroup[i] = ctx.ruleGroup;
    r.upstreamGroup[i] = ctx.upstreamGroup;
    const listener = ctx.listener;
    if (listener !== this.lastListener) {
      this.lastListener = listener;
      this.lastListenerIndex = this.listenerOf(listener.address);
    }
    r.listener[i] = this.lastListenerIndex;
    const by = ctx.answeredBy;
    if (by === undefined) r.upstream[i] = -1;
    else {
      let u = this.upstreamIndex.get(by);
      if (u === undefined) this.upstreamIndex.set(by, u = this.upstreams.push(by) - 1);
      r.upstream[i] = u;
    }
    let flags = (stream ? RecordFlag.STREAM : 0) | (ctx.dnssecOk ? RecordFlag.DNSSEC_OK : 0) |
      (out[offset + 2] & 0x02 ? RecordFlag.TRUNCATED : 0);
    // The client: the sockaddr the listener gave, or the copy a miss kept.
    const peer = ctx.peer ?? ctx.clientAddress;
    const at = ctx.peer ? ctx.peerOffset : 0;
    const c = i * 16;
    if (peer && peer.length >= at + 8) {
      const family = peer[at] | (peer[at + 1] << 8);
      if (family === AF_INET) {
        r.clientFamily[i] = 4;
        for (let j = 0; j < 4; j++) r.client[c + j] = peer[at + 4 + j];
      } else if (family === AF_INET6 && peer.length >= at + 24) {
        r.clientFamily[i] = 6;
        for (let j = 0; j < 16; j++) r.client[c + j] = peer[at + 8 + j];
      } else r.clientFamily[i] = 0;
    } else r.clientFamily[i] = 0;
    // The name: the question's bytes up to its type and class.
    const wire = ctx.wire;
    const nameEnd = ctx.questionEnd - 4;
    const n = i * RECORD_NAME_BYTES;
    let k = 0;
    for (let p = 12; p < nameEnd && k < RECORD_NAME_BYTES; p++, k++) r.name[n + k] = wire[p];
    r.nameLength[i] = k;
    r.answerLength[i] = length;
    if (this.keepAnswers) {
      const a = i * RECORD_ANSWER_BYTES;
      const kept = length < RECORD_ANSWER_BYTES ? length : RECORD_ANSWER_BYTES;
      for (let j = 0; j < kept; j++) r.answer[a + j] = out[offset + j];
      flags |= RecordFlag.ANSWER_KEPT;
    }
    r.flags[i] = flags;
  }

  /** A row of {@link skipCounts} for a type first skipped (growing the table when full). */
  private skipRow(qtype: number): number {
    const row = this.skipTypes.push(qtype);
    if (row * 256 > this.skipCounts.length) {
      const grown = new Float64Array(this.skipCounts.length * 2);
      grown.set(this.skipCounts);
      this.skipCounts = grown;
    }
    this.skipRowOf[qtype] = row;
    return row;
  }

  /**
   * Hands every record not yet read to each consumer, oldest first, then what was counted
   * without a record; sets the sampling for what comes next. Returns how many records.
   */
  drain(): number {
    const r = this.records;
    const from = this.read;
    const to = this.written;
    for (let s = from; s < to; s++) {
      const i = s & (r.capacity - 1);
      for (const c of this.consumers) c.consume(r, i);
    }
    this.read = to;
    const now = Date.now();
    let skipped = 0;
    if (this.skippedAny) {
      this.skippedAny = false;
      const counts = this.skipCounts;
      this.skipTypes.forEach((qtype, row) => {
        for (let k = 0; k < 256; k++) {
          const n = counts[row * 256 + k];
          if (n === 0) continue;
          counts[row * 256 + k] = 0;
          skipped += n;
          for (const c of this.consumers) c.skipped?.(qtype, k >> 4, k & 15, n, now);
        }
      });
    }
    this.adjustSampling(to - from + skipped, now);
    if (to > from || skipped > 0) { for (const c of this.consumers) c.batchDone?.(); }
    return to - from;
  }

  /** Sets {@link sampleEvery} from the rate answers came in at over the last 100 ms or more. */
  private adjustSampling(answers: number, now: number): void {
    this.rateRecords += answers;
    if (now - this.rateSince < 100) return;
    const rate = this.rateRecords / ((now - this.rateSince) / 1000);
    this.rateRecords = 0;
    this.rateSince = now;
    let every = 1;
    if (this.sampling) { while (every < 1024 && rate / every > FULL_RECORDS_PER_SECOND) every *= 2; }
    this.sampleEvery = every;
    this.sampleMask = every - 1;
  }

  /** Drains what is left and stops the timer. */
  close(): void {
    clearInterval(this.timer);
    clearTimeout(this.soon);
    this.timer = this.soon = undefined;
    this.drain();
  }
}
