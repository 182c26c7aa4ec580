/**
 * Upstream race: asks every server of the group at once; the first usable answer (NOERROR or
 * NXDOMAIN, well-formed) wins and the others are cancelled. If none is usable, an upstream's
 * REFUSED or SERVFAIL is passed on, else SERVFAIL is made locally.
 *
 * @module
 */
import { StoredAnswer, type TtlPolicy } from "../dns/stored_answer.ts";
import { buildEmptyAnswer, type Question, Rcode, scanResponse } from "../dns/wire.ts";
import type { Upstream } from "../upstream/upstream.ts";
import type { TerminalStage } from "./stage.ts";

/** Counters the race keeps. */
export interface RaceCounters {
  queries: number;
  failures: number;
}

/** Reports an upstream that failed one exchange. */
export type UpstreamFailureListener = (upstream: Upstream, error: unknown) => void;

/** Resolves questions by racing the group's upstream servers. */
export class UpstreamRace implements TerminalStage {
  readonly counters: RaceCounters = { queries: 0, failures: 0 };

  constructor(
    private readonly upstreams: readonly Upstream[],
    private readonly ttlPolicy: TtlPolicy,
    private readonly timeoutMs: number,
    private readonly onFailure: UpstreamFailureListener = () => {},
  ) {}

  /** Asks all upstreams in parallel and answers with the first usable response. */
  resolve(q: Question): Promise<StoredAnswer> {
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
        settle(fallback ?? StoredAnswer.local(buildEmptyAnswer(q, Rcode.SERVFAIL), Date.now()));
      };
      for (const upstream of this.upstreams) {
        upstream.exchange(q, controller.signal).then((response) => {
          if (finished) return;
          const layout = scanResponse(response);
          if (layout === null) {
            this.onFailure(upstream, new Error("malformed response"));
            return oneDone();
          }
          const answer = StoredAnswer.fromResponse(response, layout, this.ttlPolicy, Date.now());
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
