/**
 * Upstream race: asks every server of the group at once; the first usable answer (NOERROR or
 * NXDOMAIN, and well-formed by {@link messageProblem}) wins and the others are cancelled. If none is usable, an upstream's
 * REFUSED or SERVFAIL is passed on, else SERVFAIL is made locally.
 *
 * Only healthy members are asked (those whose {@link HealthView.down} is not set), or all of them
 * when none is. Members marked {@link FallbackView.fallback} (`server … -fallback`) are raced only
 * when no other member answered usably. The losers are cancelled with {@link OUTRUN}, so their health
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

/** Reports an upstream that failed one exchange. */
export type UpstreamFailureListener = (upstream: Upstream, error: unknown) => void;

/** Resolves questions by racing the group's upstream servers. */
export class UpstreamRace implements TerminalStage {
  /** Asked first (the non-fallback members; all of them if every member is a fallback). */
  private readonly primary: readonly Upstream[];
  /** Asked when no primary member answered usably. */
  readonly fallbacks: readonly Upstream[];
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
    readonly ttlPolicy: TtlPolicy,
    readonly timeoutMs: number,
    readonly onFailure: UpstreamFailureListener = () => {},
    /** At most this many addresses of each family in an answer (max-reply-ip-num; 0 = all). */
    private readonly maxAddresses = 0,
    /** IP rules on the answers, if any. */
    readonly ipRules?: RaceFilter,
    /** SmartDNS's ad-block vote on 0.x/127.x/::/::1 addresses, when on. */
    readonly vote?: BlockingAnswerVote,
  ) {
    const isFallback = (u: Upstream) => (u as Partial<FallbackView>).fallback === true;
    const fallbacks = upstreams.filter(isFallback);
    const primary = upstreams.filter((u) => !isFallback(u));
    [this.primary, this.fallbacks] = primary.length > 0 ? [primary, fallbacks] : [fallbacks, []];
  }

  /** The response with at most `maxAddresses` addresses per family (itself when within it). */
  limited(response: Uint8Array, layout: ResponseLayout): [Uint8Array, ResponseLayout] {
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
    const run = new RaceRun(this, q);
    try {
      run.ask(this.primary);
    } catch (e) {
      return Promise.reject(e); // as a throw inside a Promise executor would
    }
    return run.promise;
  }

  /**
   * The answer with the addresses the ad-block vote drops taken out (as it came if it cannot be
   * rebuilt), and whether the vote left it weak (every address dropped: kept as it came).
   */
  voted(
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
  bogus(q: QueryContext): StoredAnswer {
    const wire = LocalAnswer.soa(Rcode.NXDOMAIN).render(q, Date.now(), 65535);
    return StoredAnswer.fromResponse(wire, scanResponse(wire)!, this.ttlPolicy, Date.now());
  }
}

/** The healthy ones of `members`, or all of them when none is. */
function healthy(members: readonly Upstream[]): readonly Upstream[] {
  const up = members.filter((u) => !(u as Partial<HealthView>).down);
  return up.length > 0 ? up : members;
}

/** One server's exchange in a race: its late timer and whether it went late. */
class RaceExchange {
  isLate = false;
  lateTimer: CoarseTimer | undefined = undefined;

  constructor(readonly run: RaceRun, readonly upstream: Upstream) {}

  /** Silent past its server's adaptive timeout. */
  timeUp(): void {
    this.isLate = true;
    this.run.late++;
    this.run.check();
  }
}

/**
 * One question's race: its state in one object (the {@link Cancel} every exchange of it gets),
 * instead of a closure per step. Fired with {@link OUTRUN} when the race is won while exchanges
 * are still under way, without a reason on the race's timeout.
 */
class RaceRun extends Cancel {
  readonly promise: Promise<StoredAnswer>;
  private resolveWith!: (answer: StoredAnswer) => void;
  /** Exchanges under way, and how many of them are past their server's adaptive timeout. */
  pending = 0;
  late = 0;
  private finished = false;
  private inFallback = false;
  private timedOut = false;
  /** An upstream's REFUSED or SERVFAIL, passed on if nothing better comes. */
  private passOn: StoredAnswer | undefined = undefined;
  /** A fast negative answer, held for {@link NEGATIVE_WAIT_MS} in case a positive one follows. */
  private negative: StoredAnswer | undefined = undefined;
  /** Whether {@link negative} is an answer the ad-block vote left weak rather than a negative one. */
  private negativeWeak = false;
  private negativeTimer: CoarseTimer | undefined = undefined;
  private lateTimers: CoarseTimer[] | undefined = undefined;
  private tally: VoteTally | undefined = undefined;
  /** After the first positive answer, the others' positive answers go to `later` for a while. */
  private readonly later: QueryContext["onLaterAnswer"];
  private collecting = false;
  private collectTimer: CoarseTimer | undefined = undefined;
  /** The race's own timeout. */
  private readonly timer: CoarseTimer;

  constructor(private readonly race: UpstreamRace, private readonly q: QueryContext) {
    super();
    this.later = q.onLaterAnswer;
    // Coarse timers: one real timer per few milliseconds for every race (a timer per miss costs).
    this.timer = coarseTimers.after(race.timeoutMs, this);
    this.promise = new Promise<StoredAnswer>((resolve) => {
      this.resolveWith = resolve;
    });
  }

  /** The race's timeout. */
  timeUp(): void {
    this.timedOut = true;
    this.cancel();
  }

  private stopCollecting(): void {
    this.collecting = false;
    this.collectTimer?.cancel();
    this.timer.cancel();
    if (this.pending > 0) this.cancel(OUTRUN);
    this.later?.(undefined);
  }

  /**
   * Ends the race with `answer`. `own` is 1 when the exchange that gave it is still counted in
   * `pending`: the others are cancelled only when one is still under way (a cancel costs).
   */
  private settle(answer: StoredAnswer, positive = false, own = 0): void {
    if (this.finished) return;
    this.finished = true;
    this.negativeTimer?.cancel();
    if (this.lateTimers !== undefined) { for (const t of this.lateTimers) t.cancel(); }
    if (this.later && positive && this.pending > 1) {
      // The speed check probes the addresses of every server's answer, as SmartDNS does.
      this.collecting = true;
      this.q.moreAnswersExpected = true;
      this.collectTimer = coarseTimers.after(COLLECT_MS, () => this.stopCollecting());
    } else {
      this.timer.cancel();
      if (this.pending > own) this.cancel(OUTRUN);
    }
    this.resolveWith(answer);
  }

  /**
   * Called whenever an exchange ends or goes late. Once every exchange under way has ended or is
   * late (silent past its server's adaptive timeout), the fallback servers are asked; then an
   * answer in hand (negative, or an upstream's error) is given without waiting for the late
   * ones. With nothing in hand the race waits on for them, up to the race's own timeout.
   */
  check(): void {
    if (this.finished || this.pending > this.late) return;
    const race = this.race;
    if (!this.inFallback && !this.timedOut && !this.negative && race.fallbacks.length > 0) {
      this.inFallback = true;
      return this.ask(race.fallbacks);
    }
    if (this.negative) return this.settle(this.negative);
    if (this.pending > 0 && !this.passOn) return;
    race.counters.failures++;
    this.q.reason = Reason.SERVFAIL;
    this.settle(this.passOn ?? StoredAnswer.empty(this.q, Rcode.SERVFAIL, Date.now()));
  }

  /** Asks the healthy ones of `members` (all of them when none is). */
  ask(members: readonly Upstream[]): void {
    this.pending++; // held while asking, so an empty group ends too
    for (const upstream of healthy(members)) this.exchange(upstream);
    this.pending--;
    this.check();
  }

  private exchange(upstream: Upstream): void {
    this.pending++;
    const x = new RaceExchange(this, upstream);
    const adaptive = (upstream as Partial<HealthView>).timeoutMs;
    if (adaptive !== undefined && adaptive < this.race.timeoutMs) {
      x.lateTimer = coarseTimers.after(adaptive, x);
      (this.lateTimers ??= []).push(x.lateTimer);
    }
    upstream.exchange(this.q, this).then(
      (response) => this.answered(x, response),
      (error) => this.failed(x, error),
    );
  }

  private oneDone(x: RaceExchange): void {
    x.lateTimer?.cancel();
    this.pending--;
    if (x.isLate) this.late--;
    if (this.collecting && this.pending === 0) this.stopCollecting();
    this.check();
  }

  private answered(x: RaceExchange, response: Uint8Array): void {
    if (this.finished && !this.collecting) return;
    const race = this.race;
    const q = this.q;
    const upstream = x.upstream;
    // Checked once here, before it may win or be cached: nothing malformed reaches a client.
    // Our queries are standard queries (opcode 0): an answer with another opcode is not theirs.
    const problem = (response[2] & 0x78) !== 0 ? "an answer with another opcode" : messageProblem(response);
    let layout = problem === null ? scanResponse(response) : null;
    let weak = false;
    if (layout !== null && race.vote) {
      [response, layout, weak] = race.voted(this.tally ??= { votes: 0 }, response, layout, q.qtype);
    }
    if (layout === null) {
      race.counters.invalidAnswers++;
      race.onFailure(upstream, new Error(`malformed answer refused: ${problem ?? "unreadable records"}`));
      return this.oneDone(x);
    }
    let wire = response;
    let wireLayout = layout;
    if (race.ipRules) {
      const verdict = race.ipRules.filter.judge(response, race.ipRules.flagsOf(upstream));
      if (verdict.kind === "refuse") {
        race.counters.filteredAnswers++;
        race.onFailure(upstream, new Error(`answer refused by an IP rule: ${verdict.why}`));
        return this.oneDone(x);
      }
      if (verdict.kind === "nxdomain") {
        if (this.finished) return this.oneDone(x);
        race.counters.bogusAnswers++;
        return this.settle(race.bogus(q), false, 1);
      }
      if (verdict.kind === "rewritten") {
        const rewritten = scanResponse(verdict.wire);
        if (rewritten) [wire, wireLayout] = [verdict.wire, rewritten];
      }
    }
    [wire, wireLayout] = race.limited(wire, wireLayout);
    const answer = StoredAnswer.fromResponse(wire, wireLayout, race.ttlPolicy, Date.now());
    if (layout.rcode === Rcode.NOERROR || layout.rcode === Rcode.NXDOMAIN) {
      // An answer the ad-block vote left weak is held like a negative one: given if nothing better comes.
      const positive = !weak && layout.rcode === Rcode.NOERROR && wireLayout.answerCount > 0;
      if (this.finished) {
        if (positive) this.later?.(answer);
        return this.oneDone(x);
      }
      if (positive) {
        if (this.negative) race.counters.negativeOvertaken++;
        return this.settle(answer, true, 1);
      }
      // A negative answer from the first server does not end the race at once: a positive
      // one from another server within the wait wins (SmartDNS prefers an answer with records).
      // A weak answer is preferred to a negative one: it has addresses.
      if (this.pending <= 1) {
        return this.settle(this.negative && this.negativeWeak && !weak ? this.negative : answer, false, 1);
      }
      if (!this.negative || (weak && !this.negativeWeak)) [this.negative, this.negativeWeak] = [answer, weak];
      this.negativeTimer ??= coarseTimers.after(NEGATIVE_WAIT_MS, () => this.settle(this.negative!));
      return this.oneDone(x);
    }
    if (!this.finished) this.passOn ??= answer;
    this.oneDone(x);
  }

  private failed(x: RaceExchange, error: unknown): void {
    if (!this.finished) {
      const race = this.race;
      race.onFailure(x.upstream, this.timedOut ? new Error(`no answer in ${race.timeoutMs} ms`) : error);
    }
    this.oneDone(x);
  }
}
