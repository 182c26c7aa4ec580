/**
 * Turns received bytes into the answer for one client, whatever the transport: parse the question
 * (never the whole message), resolve, render the stored answer with the client's ID and size limit.
 * Bad input is counted and dropped or answered FORMERR/NOTIMP; nothing thrown escapes.
 *
 * @module
 */
import type { Answer } from "../dns/answer.ts";
import {
  buildEmptyAnswer,
  buildHeaderOnlyAnswer,
  detachQuestion,
  MalformedQuery,
  Rcode,
} from "../dns/wire.ts";
import type { Logger } from "../ops/log.ts";
import {
  INTERNAL_LISTENER,
  type ListenerProfile,
  parseContext,
  type QueryContext,
} from "../resolver/query_context.ts";
import type { Next } from "../resolver/stage.ts";
import type { AccessControl, Refusal } from "./access_control.ts";
import type { QueryRecorder } from "./query_recorder.ts";
import type { ServerStats } from "./stats.ts";

/** An answer now (cache hit, error), later (miss), or none (dropped). Promises never reject. */
export type DispatchResult = Uint8Array | Promise<Uint8Array> | null;

/** Routes each received query through the resolver chain and renders its answer. */
export class QueryDispatcher {
  /** Answers being resolved right now (misses on their way upstream). */
  private inFlight = 0;
  private idleWaiters: (() => void)[] = [];

  constructor(
    private resolve: Next,
    readonly stats: ServerStats,
    private readonly log: Logger,
  ) {}

  /** Who may ask (none: everyone); set from the configuration, swapped on reload. */
  access?: AccessControl;
  /** Where every answer is recorded (the audit file, the query log, statistics), when any is on. */
  recorder?: QueryRecorder;
  private lastRefusalLog = -Infinity;

  /** Swaps in a new resolver chain (on reload); queries already under way finish on the old one. */
  useResolver(resolve: Next): void {
    this.resolve = resolve;
  }

  /**
   * Answers one message received on `listener`. `udp` applies the client's UDP size limit (else
   * 65535). The bytes of `wire` may be reused by the caller as soon as this returns: a deferred
   * answer keeps a copy.
   */
  answer(
    wire: Uint8Array,
    udp: boolean,
    listener: ListenerProfile = INTERNAL_LISTENER,
    peer?: Uint8Array,
    peerOffset = 0,
  ): DispatchResult {
    try {
      const q = this.parse(wire, wire.length, listener);
      if (q === null || q instanceof Uint8Array) return q;
      if (this.access && peer) {
        const refusal = this.access.check(peer, peerOffset);
        if (refusal) return this.refuse(q, refusal);
      }
      q.peer = peer;
      q.peerOffset = peerOffset;
      const answer = this.resolveOrFail(q);
      if (answer instanceof Promise) return this.later(q, answer, udp);
      return answer instanceof Uint8Array ? answer : this.render(q, answer, udp, -1);
    } catch (error) {
      return this.dropped(error);
    }
  }

  /**
   * {@link answer} for UDP without allocating on a cache hit: an answer ready now is rendered into
   * `out` at `offset` (which must have room for 1536 bytes) and its length returned. The query is
   * the first `length` bytes of `wire`, received on `listener`.
   */
  answerInto(
    wire: Uint8Array,
    out: Uint8Array,
    offset: number,
    length = wire.length,
    listener: ListenerProfile = INTERNAL_LISTENER,
    peer?: Uint8Array,
    peerOffset = 0,
  ): number | Promise<Uint8Array> | null {
    try {
      const q = this.parse(wire, length, listener);
      if (q === null) return null;
      if (q instanceof Uint8Array) return (out.set(q, offset), q.length);
      if (this.access && peer) {
        const refusal = this.access.check(peer, peerOffset);
        if (refusal) {
          const refused = this.refuse(q, refusal);
          return refused ? (out.set(refused, offset), refused.length) : null;
        }
      }
      q.peer = peer;
      q.peerOffset = peerOffset;
      const answer = this.resolveOrFail(q);
      if (answer instanceof Promise) return this.later(q, answer, true);
      if (answer instanceof Uint8Array) return (out.set(answer, offset), answer.length);
      const now = Date.now();
      const written = answer.renderInto(q, now, q.udpSize, out, offset);
      this.counted(out, offset);
      // Answered in the turn it arrived: its time is taken as 0, no clock read on a hit.
      const recorder = this.recorder;
      if (recorder) recorder.record(q, out, offset, written, 0, false, now);
      return written;
    } catch (error) {
      return this.dropped(error);
    }
  }

  /**
   * The answer to a client the access rules refuse: REFUSED (a rate-limited one gets nothing, so
   * a flood is not answered at all). Counted; logged at most once a minute.
   */
  private refuse(q: QueryContext, why: Refusal): Uint8Array | null {
    this.stats.refused++;
    const now = performance.now();
    if (now - this.lastRefusalLog > 60_000) {
      this.lastRefusalLog = now;
      this.log.warn("refusing clients ({why}); {refused} refused so far (logged once a minute)", {
        why: why === "not-local" ? "not on a local subnet: this is not an open resolver" : why,
        refused: this.stats.refused,
      });
    }
    if (why === "rate-limited" || !this.access?.mayAnswerRefusal()) return null;
    this.stats.answered++;
    return buildEmptyAnswer(q, Rcode.REFUSED);
  }

  /** A bug met while answering costs that one message (logged, counted), never the listener. */
  private dropped(error: unknown): null {
    this.stats.internalErrors++;
    this.log.error("a received message was dropped: {error}", { error });
    return null;
  }

  /** Parses the question; a malformed message yields its error answer, or null to drop it. */
  private parse(
    wire: Uint8Array,
    length: number,
    listener: ListenerProfile,
  ): QueryContext | Uint8Array | null {
    this.stats.received++;
    try {
      const ctx = parseContext(wire, length);
      ctx.listener = listener;
      return ctx;
    } catch (e) {
      this.stats.malformed++;
      if (e instanceof MalformedQuery && e.rcode !== null) {
        const answer = buildHeaderOnlyAnswer(wire.subarray(0, length), e.rcode);
        if (answer) this.stats.answered++;
        return answer;
      }
      return null;
    }
  }

  /** Runs the chain; a throw becomes a rendered SERVFAIL. */
  private resolveOrFail(q: QueryContext): Answer | Promise<Answer> | Uint8Array {
    try {
      return this.resolve(q);
    } catch (e) {
      return this.fail(q, e);
    }
  }

  /** Renders a deferred answer once it is there; the question gets its own copy of the query. */
  private later(q: QueryContext, answer: Promise<Answer>, udp: boolean): Promise<Uint8Array> {
    // The turn that sent it upstream took microseconds: its time counts from here.
    const started = this.recorder ? performance.now() : 0;
    detachQuestion(q);
    // A view into the listener's buffer: not valid once this returns (the recorder keeps a copy).
    if (this.recorder && q.peer) q.clientAddress = q.peer.slice(q.peerOffset, q.peerOffset + 28);
    q.peer = undefined;
    this.inFlight++;
    return answer.then((a) => this.render(q, a, udp, started), (e) => this.fail(q, e)).finally(() =>
      this.settled()
    );
  }

  private settled(): void {
    if (--this.inFlight > 0) return;
    for (const wake of this.idleWaiters.splice(0)) wake();
  }

  /** Resolves once no answer is being resolved, or after `timeoutMs`; true if idle. */
  whenIdle(timeoutMs: number): Promise<boolean> {
    if (this.inFlight === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      this.idleWaiters.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }

  /** Renders `answer`; `started` is when a deferred one was sent on (-1: answered at once). */
  private render(q: QueryContext, answer: Answer, udp: boolean, started: number): Uint8Array {
    const now = Date.now();
    const out = answer.render(q, now, udp ? q.udpSize : 65535);
    this.counted(out, 0);
    const recorder = this.recorder;
    if (recorder) {
      const elapsedUs = started < 0 ? 0 : (performance.now() - started) * 1000;
      recorder.record(q, out, 0, out.length, elapsedUs, !udp, now);
    }
    return out;
  }

  /** Counts a rendered answer (at `offset` in `out`), and whether it went out truncated. */
  private counted(out: Uint8Array, offset: number): void {
    if (out[offset + 2] & 0x02) this.stats.truncated++;
    this.stats.answered++;
  }

  private fail(q: QueryContext, error: unknown): Uint8Array {
    this.stats.internalErrors++;
    this.stats.answered++;
    this.log.error("resolving {name} type {type} failed: {error}", { name: q.name, type: q.qtype, error });
    return buildEmptyAnswer(q, Rcode.SERVFAIL);
  }
}
