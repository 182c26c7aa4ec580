/**
 * Upstream race: asks every server of the group at once; the first usable answer (NOERROR or
 * NXDOMAIN, and well-formed by {@link messageProblem}) wins and the others are cancelled. If none is usable, an upstream's
 * REFUSED or SERVFAIL is passed on, else SERVFAIL is made locally.
 *
 * @module
 */
import { StoredAnswer, type TtlPolicy } from "../dns/stored_answer.ts";
import { limitAddresses } from "../dns/address_limit.ts";
import { messageProblem } from "../dns/message_check.ts";
import { Rcode, type ResponseLayout, scanResponse } from "../dns/wire.ts";
import type { Upstream } from "../upstream/upstream.ts";
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
}

/** Reports an upstream that failed one exchange. */
export type UpstreamFailureListener = (upstream: Upstream, error: unknown) => void;

/** Resolves questions by racing the group's upstream servers. */
export class UpstreamRace implements TerminalStage {
  readonly counters: RaceCounters = { queries: 0, failures: 0, invalidAnswers: 0 };

  constructor(
    private readonly upstreams: readonly Upstream[],
    private readonly ttlPolicy: TtlPolicy,
    private readonly timeoutMs: number,
    private readonly onFailure: UpstreamFailureListener = () => {},
    /** At most this many addresses of each family in an answer (max-reply-ip-num; 0 = all). */
    private readonly maxAddresses = 0,
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
      const settle = (answer: StoredAnswer) => {
        if (finished) return;
        finished = true;
        clearTimeout(timer);
        controller.abort();
        resolve(answer);
      };
      const oneDone = () => {
        if (--remaining > 0 || finished) return;
        this.counters.failures++;
        q.reason = Reason.SERVFAIL;
        settle(fallback ?? StoredAnswer.empty(q, Rcode.SERVFAIL, Date.now()));
      };
      for (const upstream of this.upstreams) {
        upstream.exchange(q, controller.signal).then((response) => {
          if (finished) return;
          // Checked once here, before it may win or be cached: nothing malformed reaches a client.
          const problem = messageProblem(response);
          const layout = problem === null ? scanResponse(response) : null;
          if (layout === null) {
            this.counters.invalidAnswers++;
            this.onFailure(
              upstream,
              new Error(`malformed answer refused: ${problem ?? "unreadable records"}`),
            );
            return oneDone();
          }
          const [wire, wireLayout] = this.limited(response, layout);
          const answer = StoredAnswer.fromResponse(wire, wireLayout, this.ttlPolicy, Date.now());
          if (layout.rcode === Rcode.NOERROR || layout.rcode === Rcode.NXDOMAIN) return settle(answer);
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
}
