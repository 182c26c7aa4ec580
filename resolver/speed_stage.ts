/**
 * Speed stage (SmartDNS's `response-mode` over its `speed-check-mode`): on a miss for A or AAAA
 * with more than one address, the addresses are probed by the {@link SpeedChecker} and the client
 * gets the fastest one:
 *
 * - `first-ping`: the answer goes out with the first address whose probe returns, alone;
 * - `fastest-ip`: it waits for every probe (within the budget), unless one came back under 10 ms
 *   or faster than the time already waited (SmartDNS's rule), then sends the fastest alone, or
 *   the fastest ones when all probes are in;
 * - `fastest-response`: the answer goes out as the upstream gave it.
 *
 * In every mode the answer cached afterwards ({@link QueryContext.refined}) holds the addresses
 * that answered a probe, fastest first, without those far slower than the fastest, at most
 * `max-reply-ip-num` of them, so cache hits get the sorted list without waiting for anything.
 * When no probe answers, the answer is sent and cached as the upstream gave it.
 *
 * @module
 */
import type { Answer } from "../dns/answer.ts";
import { answerAddresses, withAddresses } from "../dns/address_selection.ts";
import { limitAddresses } from "../dns/address_limit.ts";
import { StoredAnswer, type TtlPolicy } from "../dns/stored_answer.ts";
import { Rcode, scanResponse } from "../dns/wire.ts";
import type { ResponseMode } from "../config/schema.ts";
import type { QueryContext } from "./query_context.ts";
import type { SpeedChecker } from "./speed_checker.ts";
import type { MaybePromise, Next, Stage } from "./stage.ts";

/** SmartDNS's ping timeout: probes end this long after the query reached us (ms). */
export const SPEED_BUDGET_MS = 950;
/** Probes never get less than this, however long the upstream took (ms). */
const MIN_BUDGET_MS = 200;
/** A probe this fast ends the wait in `fastest-ip` (ms). */
const FAST_ENOUGH_MS = 10;

/** Counters the speed stage keeps. */
export interface SpeedCounters {
  /** Answers whose addresses were probed. */
  checked: number;
  /** Answers sent with a probed address first. */
  selected: number;
  /** Answers sent as they came because no probe answered. */
  unanswered: number;
}

/** Probes the addresses of upstream answers and answers with the fastest. */
export class SpeedStage implements Stage {
  readonly counters: SpeedCounters = { checked: 0, selected: 0, unanswered: 0 };

  constructor(
    readonly checker: SpeedChecker,
    private readonly mode: ResponseMode,
    private readonly ttlPolicy: TtlPolicy,
    /** max-reply-ip-num (0 = all). */
    private readonly maxAddresses: number,
  ) {}

  /** Passes the query on; selects among the addresses of what comes back. */
  resolve(ctx: QueryContext, next: Next): MaybePromise<Answer> {
    const type = ctx.qtype;
    if (type !== 1 && type !== 28) return next(ctx);
    const started = performance.now();
    const answer = next(ctx);
    if (!(answer instanceof Promise)) return answer;
    return answer.then((a) => this.select(ctx, a, type, started));
  }

  /** The answer to send for `a`; sets `ctx.refined` to the one to cache when probes settle. */
  private select(ctx: QueryContext, a: Answer, type: number, started: number): MaybePromise<Answer> {
    if (!(a instanceof StoredAnswer) || a.rcode !== Rcode.NOERROR) return a;
    const wire = a.wire;
    const ips = answerAddresses(wire, type);
    if (ips.length <= 1) return a;
    this.counters.checked++;
    const budget = Math.max(MIN_BUDGET_MS, SPEED_BUDGET_MS - (performance.now() - started));
    const rtts = new Array<number | undefined>(ips.length);
    const probes = ips.map((ip, i) => this.checker.check(ip, budget).then((rtt) => rtts[i] = rtt));
    const all = Promise.all(probes);
    const refined = all.then(() => this.rebuilt(a, type, this.ranked(ips, rtts)));
    ctx.refined = refined;
    if (this.mode === "fastest-response") return this.limited(a);
    return new Promise<Answer>((resolve) => {
      let sent = false;
      const send = (answer: Answer) => {
        if (!sent) sent = true, resolve(answer);
      };
      const fastest = () => {
        let best = -1;
        for (let i = 0; i < ips.length; i++) {
          if (rtts[i] !== undefined && (best < 0 || rtts[i]! < rtts[best]!)) best = i;
        }
        return best;
      };
      probes.forEach((p) =>
        p.then(() => {
          if (sent) return;
          const best = fastest();
          if (best < 0) return;
          const waited = performance.now() - started;
          const early = this.mode === "first-ping" || rtts[best]! < FAST_ENOUGH_MS || rtts[best]! < waited;
          if (early) {
            this.counters.selected++;
            send(this.rebuilt(a, type, [ips[best]]));
          }
        })
      );
      all.then(() => {
        if (sent) return;
        if (fastest() < 0) {
          this.counters.unanswered++;
          return send(this.limited(a));
        }
        this.counters.selected++;
        refined.then(send);
      });
    });
  }

  /**
   * The addresses to keep, fastest first: those a probe answered, without the ones over 5 ms
   * and 10 % behind the fastest (and over 10 ms themselves); all of them when none answered.
   */
  private ranked(ips: readonly string[], rtts: readonly (number | undefined)[]): string[] {
    const answered = ips.map((ip, i) => ({ ip, rtt: rtts[i] })).filter((x) => x.rtt !== undefined);
    if (answered.length === 0) return [...ips];
    answered.sort((x, y) => x.rtt! - y.rtt!);
    const best = answered[0].rtt!;
    return answered
      .filter((x) => !(x.rtt! - best >= 5 && x.rtt! > best * 1.1 + 0.5 && x.rtt! >= 10))
      .map((x) => x.ip);
  }

  /** `a` with only `ips`, in order (and at most max-reply-ip-num); `a` itself if it cannot be rebuilt. */
  private rebuilt(a: StoredAnswer, type: number, ips: readonly string[]): StoredAnswer {
    const keep = this.maxAddresses > 0 ? ips.slice(0, this.maxAddresses) : ips;
    try {
      const wire = withAddresses(a.wire, type, keep);
      const layout = scanResponse(wire);
      return layout ? StoredAnswer.fromResponse(wire, layout, this.ttlPolicy, a.storedAt) : a;
    } catch {
      return a; // records dns-packet cannot rebuild: sent as they came
    }
  }

  /** `a` with at most max-reply-ip-num addresses of each family. */
  private limited(a: StoredAnswer): StoredAnswer {
    if (this.maxAddresses <= 0) return a;
    try {
      const original = a.wire;
      const wire = limitAddresses(original, this.maxAddresses);
      if (wire === original) return a;
      const layout = scanResponse(wire);
      return layout ? StoredAnswer.fromResponse(wire, layout, this.ttlPolicy, a.storedAt) : a;
    } catch {
      return a;
    }
  }
}
