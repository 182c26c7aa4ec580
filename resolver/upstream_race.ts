/**
 * Upstream race: asks every server of the group at once; the first usable answer (NOERROR or
 * NXDOMAIN, and well-formed by {@link messageProblem}) wins and the others are cancelled. If none is usable, an upstream's
 * REFUSED or SERVFAIL is passed on, else SERVFAIL is made locally.
 *
 * @module
 */
import { StoredAnswer, type TtlPolicy } from "../dns/stored_answer.ts";
import { limitAddresses } from "../dns/address_limit.ts";
import { LocalAnswer } from "../dns/local_answer.ts";
import { messageProblem } from "../dns/message_check.ts";
import { Rcode, type ResponseLayout, scanResponse } from "../dns/wire.ts";
import type { Upstream } from "../upstream/upstream.ts";
import type { AnswerFilter, ServerFilterFlags } from "./answer_filter.ts";
import { type QueryContext, Reason } from "./query_context.ts";
import type { TerminalStage } from "./stage.ts";

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
  ) {}

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
    const controller = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, this.timeoutMs);
    return new Promise<StoredAnswer>((resolve) => {
      let remaining = this.upstreams.length;
      let finished = false;
      let fallback: StoredAnswer | undefined;
      /** A fast negative answer, held for {@link NEGATIVE_WAIT_MS} in case a positive one follows. */
      let negative: StoredAnswer | undefined;
      let negativeTimer: ReturnType<typeof setTimeout> | undefined;
      const settle = (answer: StoredAnswer) => {
        if (finished) return;
        finished = true;
        clearTimeout(timer);
        clearTimeout(negativeTimer);
        controller.abort();
        resolve(answer);
      };
      const oneDone = () => {
        if (--remaining > 0 || finished) return;
        if (negative) return settle(negative);
        this.counters.failures++;
        q.reason = Reason.SERVFAIL;
        settle(fallback ?? StoredAnswer.empty(q, Rcode.SERVFAIL, Date.now()));
      };
      for (const upstream of this.upstreams) {
        upstream.exchange(q, controller.signal).then((response) => {
          if (finished) return;
          // Checked once here, before it may win or be cached: nothing malformed reaches a client.
          // Our queries are standard queries (opcode 0): an answer with another opcode is not theirs.
          const problem = (response[2] & 0x78) !== 0
            ? "an answer with another opcode"
            : messageProblem(response);
          const layout = problem === null ? scanResponse(response) : null;
          if (layout === null) {
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
              this.counters.filteredAnswers++;
              this.onFailure(upstream, new Error(`answer refused by an IP rule: ${verdict.why}`));
              return oneDone();
            }
            if (verdict.kind === "nxdomain") {
              this.counters.bogusAnswers++;
              return settle(this.bogus(q));
            }
            if (verdict.kind === "rewritten") {
              const rewritten = scanResponse(verdict.wire);
              if (rewritten) [wire, wireLayout] = [verdict.wire, rewritten];
            }
          }
          [wire, wireLayout] = this.limited(wire, wireLayout);
          const answer = StoredAnswer.fromResponse(wire, wireLayout, this.ttlPolicy, Date.now());
          if (layout.rcode === Rcode.NOERROR || layout.rcode === Rcode.NXDOMAIN) {
            const positive = layout.rcode === Rcode.NOERROR && wireLayout.answerCount > 0;
            if (positive) {
              if (negative) this.counters.negativeOvertaken++;
              return settle(answer);
            }
            // A negative answer from the first server does not end the race at once: a positive
            // one from another server within the wait wins (SmartDNS prefers an answer with records).
            if (remaining <= 1) return settle(answer);
            if (!negative) {
              negative = answer;
              negativeTimer = setTimeout(() => settle(answer), NEGATIVE_WAIT_MS);
            }
            return oneDone();
          }
          fallback ??= answer;
          oneDone();
        }, (error) => {
          if (!finished) {
            this.onFailure(upstream, timedOut ? new Error(`no answer in ${this.timeoutMs} ms`) : error);
          }
          oneDone();
        });
      }
      if (remaining === 0) oneDone();
    });
  }

  /** The NXDOMAIN (with the local SOA) a bogus-nxdomain answer becomes; cached like one. */
  private bogus(q: QueryContext): StoredAnswer {
    const wire = LocalAnswer.soa(Rcode.NXDOMAIN).render(q, Date.now(), 65535);
    return StoredAnswer.fromResponse(wire, scanResponse(wire)!, this.ttlPolicy, Date.now());
  }
}
