/**
 * Upstream race: asks every server of the group at once; the first usable answer (NOERROR or
 * NXDOMAIN, and well-formed by {@link messageProblem}) wins and the others are cancelled. If none is usable, an upstream's
 * REFUSED or SERVFAIL is passed on, else SERVFAIL is made locally.
 *
 * Only healthy members are asked (those whose {@link HealthView.down} is not set), or all of them
 * when none is. Members marked {@link FallbackView.fallback} (`server … -fallback`) are raced only
 * when no other member answered usably. The losers are aborted with {@link OUTRUN}, so their health
 * is not charged for it.
 *
 * @module
 */
import { StoredAnswer, type TtlPolicy } from "../dns/stored_answer.ts";
import { limitAddresses } from "../dns/address_limit.ts";
import { LocalAnswer } from "../dns/local_answer.ts";
import { messageProblem } from "../dns/message_check.ts";
import { Rcode, type ResponseLayout, scanResponse } from "../dns/wire.ts";
import type { Upstream } from "../upstream/upstream.ts";
import { type FallbackView, type HealthView, OUTRUN } from "../upstream/health.ts";
import type { AnswerFilter, ServerFilterFlags } from "./answer_filter.ts";
import type { BlockingAnswerVote, VoteTally } from "./blocking_answer_vote.ts";
import { type QueryContext, Reason } from "./query_context.ts";
import type { TerminalStage } from "./stage.ts";
import { type CoarseTimer, coarseTimers } from "../upstream/coarse_timers.ts";
import { Cancel } from "../upstream/cancel.ts";
import { answerAddresses } from "../dns/address_selection.ts";
import type { QueryTrace, UpstreamAttempt } from "./query_trace.ts";

/** Counters the race keeps. */
export interface RaceCounters {
  /** Questions raced. */
  queries: number;
  /** Questions no upstream answered usably (answered SERVFAIL or an upstream's error). */
  failures: number;
  /** Upstream answers refused as malformed (each one counts as that upstream failing). */
  invalidAnswers: number;
  /** Upstream answers refused by an IP rule (ignore-ip, blacklist-ip, whitelist-ip). */
  filteredAnswers: number;
  /** Upstream answers turned into NXDOMAIN by bogus-nxdomain. */
  bogusAnswers: number;
  /** Negative answers that lost to a positive one arriving within the wait. */
  negativeOvertaken: number;
}

/**
 * How long, after the first positive answer, the other servers' answers are still taken for the
 * speed check (when it asked for them, {@link QueryContext.onLaterAnswer}); SmartDNS's probe budget.
 */
export const COLLECT_MS = 950;

/** How long a fast negative answer (NXDOMAIN, or no records) waits for a positive one from the others. */
export const NEGATIVE_WAIT_MS = 150;

/** The IP rules and each server's filter flags, for the race to apply. */
export interface RaceFilter {
  readonly filter: AnswerFilter;
  readonly flagsOf: (upstream: Upstream) => ServerFilterFlags;
}

/** Rcode names by value, for the trace. */
const RCODE_NAMES: readonly string[] = ["NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED"];

/** Reports an upstream that failed one exchange. */
export type UpstreamFailureListener = (upstream: Upstream, error: unknown) => void;

/** Resolves questions by racing the group's upstream servers. */
export class UpstreamRace implements TerminalStage {
  /** Asked first (the non-fallback members; all of them if every member is a fallback). */
  private readonly primary: readonly Upstream[];
  /** Asked when no primary member answered usably. */
  private readonly fallbacks: readonly Upstream[];
  readonly counters: RaceCounters = {
    queries: 0,
    failures: 0,
    invalidAnswers: 0,
    filteredAnswers: 0,
    bogusAnswers: 0,
    negativeOvertaken: 0,
  };

  constructor(
    private readonly upstreams: readonly Upstream[],
    private readonly ttlPolicy: TtlPolicy,
    private readonly timeoutMs: number,
    private readonly onFailure: UpstreamFailureListener = () => {},
    /** At most this many addresses of each family in an answer (max-reply-ip-num; 0 = all). */
    private readonly maxAddresses = 0,
    /** IP rules on the answers, if any. */
    private readonly ipRules?: RaceFilter,
    /** SmartDNS's ad-block vote on 0.x/127.x/::/::1 addresses, when on. */
    private readonly vote?: BlockingAnswerVote,
  ) {
    const isFallback = (u: Upstream) => (u as Partial<FallbackView>).fallback === true;
    const fallbacks = upstreams.filter(isFallback);
    const primary = upstreams.filter((u) => !isFallback(u));
    [this.primary, this.fallbacks] = primary.length > 0 ? [primary, fallbacks] : [fallbacks, []];
  }

  /** The healthy ones of `members`, or all of them when none is. */
  private static healthy(members: readonly Upstream[]): readonly Upstream[] {
    const up = members.filter((u) => !(u as Partial<HealthView>).down);
    return up.length > 0 ? up : members;
  }

  /** The response with at most `maxAddresses` addresses per family (itself when within it). */
  private limited(response: Uint8Array, layout: ResponseLayout): [Uint8Array, ResponseLayout] {
    if (this.maxAddresses <= 0) return [response, layout];
    try {
      const wire = limitAddresses(response, this.maxAddresses);
      const rescanned = wire === response ? layout : scanResponse(wire);
      return rescanned ? [wire, rescanned] : [response, layout];
    } catch {
      return [response, layout]; // records dns-packet cannot rebuild: sent as they came
    }
  }

  /** Asks all upstreams in parallel and answers with the first usable response. */
  resolve(q: QueryContext): Promise<StoredAnswer> {
    this.counters.queries++;
    const cancel = new Cancel();
    // Set by `explain` only: then each exchange's outcome is recorded (see traced()).
    const trace = q.trace;
    let timedOut = false;
    // Coarse timers: one real timer per few milliseconds for every race (a timer per miss costs).
    const timer = coarseTimers.after(this.timeoutMs, () => {
      timedOut = true;
      cancel.cancel();
    });
    return new Promise<StoredAnswer>((resolve) => {
      /** Exchanges under way, and how many of them are past their server's adaptive timeout. */
      let pending = 0;
      let late = 0;
      let finished = false;
      let inFallback = false;
      /** An upstream's REFUSED or SERVFAIL, passed on if nothing better comes. */
      let passOn: StoredAnswer | undefined;
      /** A fast negative answer, held for {@link NEGATIVE_WAIT_MS} in case a positive one follows. */
      let negative: StoredAnswer | undefined;
      /** Whether {@link negative} is an answer the ad-block vote left weak rather than a negative one. */
      let negativeWeak = false;
      /** The servers that gave {@link negative} and {@link passOn}. */
      let negativeFrom = "";
      let passOnFrom = "";
      let negativeTimer: CoarseTimer | undefined;
      const lateTimers: CoarseTimer[] = [];
      const tally: VoteTally = { votes: 0 };
      /** After the first positive answer, the others' positive answers go to `later` for a while. */
      const later = q.onLaterAnswer;
      let collecting = false;
      let collectTimer: CoarseTimer | undefined;
      const stopCollecting = () => {
        collecting = false;
        collectTimer?.cancel();
        timer.cancel();
        if (pending > 0) cancel.cancel(OUTRUN);
        later?.(undefined);
      };
      /**
       * Ends the race with `answer`. `own` is 1 when the exchange that gave it is still counted in
       * `pending`: the others are aborted only when one is still under way (an abort costs).
       */
      const settle = (answer: StoredAnswer, positive = false, own = 0) => {
        if (finished) return;
        finished = true;
        negativeTimer?.cancel();
        for (const t of lateTimers) t.cancel();
        if (later && positive && pending > 1) {
          // The speed check probes the addresses of every server's answer, as SmartDNS does.
          collecting = true;
          q.moreAnswersExpected = true;
          collectTimer = coarseTimers.after(COLLECT_MS, stopCollecting);
        } else {
          timer.cancel();
          if (pending > own) cancel.cancel(OUTRUN);
        }
        resolve(answer);
      };
      /**
       * Called whenever an exchange ends or goes late. Once every exchange under way has ended or is
       * late (silent past its server's adaptive timeout), the fallback servers are asked; then an
       * answer in hand (negative, or an upstream's error) is given without waiting for the late
       * ones. With nothing in hand the race waits on for them, up to the race's own timeout.
       */
      const check = () => {
        if (finished || pending > late) return;
        if (!inFallback && !timedOut && !negative && this.fallbacks.length > 0) {
          inFallback = true;
          return ask(this.fallbacks);
        }
        if (negative) return (q.answeredBy = negativeFrom, settle(negative));
        if (pending > 0 && !passOn) return;
        this.counters.failures++;
        q.reason = Reason.SERVFAIL;
        if (passOn) q.answeredBy = passOnFrom;
        settle(passOn ?? StoredAnswer.empty(q, Rcode.SERVFAIL, Date.now()));
      };
      const ask = (members: readonly Upstream[]) => {
        pending++; // held while asking, so an empty group ends too
        for (const upstream of UpstreamRace.healthy(members)) exchange(upstream);
        pending--;
        check();
      };
      const exchange = (upstream: Upstream) => {
        pending++;
        let isLate = false;
        const adaptive = (upstream as Partial<HealthView>).timeoutMs;
        const lateTimer = adaptive !== undefined && adaptive < this.timeoutMs
          ? coarseTimers.after(adaptive, () => {
            isLate = true;
            late++;
            check();
          })
          : undefined;
        if (lateTimer !== undefined) lateTimers.push(lateTimer);
        const oneDone = () => {
          lateTimer?.cancel();
          pending--;
          if (isLate) late--;
          if (collecting && pending === 0) stopCollecting();
          check();
        };
        const note = trace ? this.traced(trace, q, upstream) : undefined;
        upstream.exchange(q, cancel).then((response) => {
          if (finished && !collecting) return note?.("outrun", response);
          // Checked once here, before it may win or be cached: nothing malformed reaches a client.
          // Our queries are standard queries (opcode 0): an answer with another opcode is not theirs.
          const problem = (response[2] & 0x78) !== 0
            ? "an answer with another opcode"
            : messageProblem(response);
          let layout = problem === null ? scanResponse(response) : null;
          let weak = false;
          if (layout !== null && this.vote) {
            [response, layout, weak] = this.voted(tally, response, layout, q.qtype);
          }
          if (layout === null) {
            note?.("malformed", undefined, problem ?? "unreadable records");
            this.counters.invalidAnswers++;
            this.onFailure(
              upstream,
              new Error(`malformed answer refused: ${problem ?? "unreadable records"}`),
            );
            return oneDone();
          }
          let wire = response;
          let wireLayout = layout;
          if (this.ipRules) {
            const verdict = this.ipRules.filter.judge(response, this.ipRules.flagsOf(upstream));
            if (verdict.kind === "refuse") {
              note?.("filtered", response, verdict.why, this.ipRules.filter.rulesMatching(response));
              this.counters.filteredAnswers++;
              this.onFailure(upstream, new Error(`answer refused by an IP rule: ${verdict.why}`));
              return oneDone();
            }
            if (verdict.kind === "nxdomain") {
              note?.("bogus-nxdomain", response, undefined, this.ipRules.filter.rulesMatching(response));
              if (finished) return oneDone();
              this.counters.bogusAnswers++;
              return settle(this.bogus(q), false, 1);
            }
            if (verdict.kind === "rewritten") {
              const rewritten = scanResponse(verdict.wire);
              if (rewritten) [wire, wireLayout] = [verdict.wire, rewritten];
            }
          }
          [wire, wireLayout] = this.limited(wire, wireLayout);
          const answer = StoredAnswer.fromResponse(wire, wireLayout, this.ttlPolicy, Date.now());
          if (layout.rcode === Rcode.NOERROR || layout.rcode === Rcode.NXDOMAIN) {
            // An answer the ad-block vote left weak is held like a negative one: given if nothing better comes.
            const positive = !weak && layout.rcode === Rcode.NOERROR && wireLayout.answerCount > 0;
            if (finished) {
              note?.(positive ? "later" : "outrun", wire);
              if (positive) later?.(answer);
              return oneDone();
            }
            note?.(positive ? "accepted" : "negative", wire);
            if (positive) {
              if (negative) this.counters.negativeOvertaken++;
              q.answeredBy = upstream.address;
              return settle(answer, true, 1);
            }
            // A negative answer from the first server does not end the race at once: a positive
            // one from another server within the wait wins (SmartDNS prefers an answer with records).
            // A weak answer is preferred to a negative one: it has addresses.
            if (pending <= 1) {
              const held = negative !== undefined && negativeWeak && !weak;
              q.answeredBy = held ? negativeFrom : upstream.address;
              return settle(held ? negative! : answer, false, 1);
            }
            if (!negative || (weak && !negativeWeak)) {
              [negative, negativeWeak, negativeFrom] = [answer, weak, upstream.address];
            }
            negativeTimer ??= coarseTimers.after(NEGATIVE_WAIT_MS, () => {
              if (!finished) q.answeredBy = negativeFrom;
              settle(negative!);
            });
            return oneDone();
          }
          note?.("error-rcode", wire);
          if (!finished && !passOn) [passOn, passOnFrom] = [answer, upstream.address];
          oneDone();
        }, (error) => {
          note?.(
            cancel.reason === OUTRUN ? "outrun" : timedOut ? "timeout" : "failed",
            undefined,
            String((error as Error)?.message ?? error),
          );
          if (!finished) {
            this.onFailure(upstream, timedOut ? new Error(`no answer in ${this.timeoutMs} ms`) : error);
          }
          oneDone();
        });
      };
      ask(this.primary);
    });
  }

  /**
   * Records the outcome of one exchange with `upstream` in `trace` (explain only): the verdict,
   * with the answer's rcode and addresses when there is one.
   */
  private traced(
    trace: QueryTrace,
    q: QueryContext,
    upstream: Upstream,
  ): (
    verdict: UpstreamAttempt["verdict"],
    response?: Uint8Array,
    detail?: string,
    ipRules?: UpstreamAttempt["ipRules"],
  ) => void {
    const end = trace.exchangeStarted(upstream.address);
    return (verdict, response, detail, ipRules) => {
      const rcode = response ? RCODE_NAMES[response[3] & 0x0f] ?? String(response[3] & 0x0f) : undefined;
      let addresses: string[] | undefined;
      try {
        addresses = response && (q.qtype === 1 || q.qtype === 28)
          ? answerAddresses(response, q.qtype)
          : undefined;
      } catch {
        addresses = undefined;
      }
      end({
        verdict,
        ...(rcode !== undefined ? { rcode } : {}),
        ...(addresses ? { addresses } : {}),
        ...(detail !== undefined ? { detail } : {}),
        ...(ipRules && ipRules.length > 0 ? { ipRules } : {}),
      });
    };
  }

  /**
   * The answer with the addresses the ad-block vote drops taken out (as it came if it cannot be
   * rebuilt), and whether the vote left it weak (every address dropped: kept as it came).
   */
  private voted(
    tally: VoteTally,
    response: Uint8Array,
    layout: ResponseLayout,
    type: number,
  ): [Uint8Array, ResponseLayout, boolean] {
    try {
      const { wire, weak } = this.vote!.apply(tally, response, type);
      const rescanned = wire === response ? layout : scanResponse(wire);
      return rescanned ? [wire, rescanned, weak] : [response, layout, false];
    } catch {
      return [response, layout, false];
    }
  }

  /** The NXDOMAIN (with the local SOA) a bogus-nxdomain answer becomes; cached like one. */
  private bogus(q: QueryContext): StoredAnswer {
    const wire = LocalAnswer.soa(Rcode.NXDOMAIN).render(q, Date.now(), 65535);
    return StoredAnswer.fromResponse(wire, scanResponse(wire)!, this.ttlPolicy, Date.now());
  }
}
