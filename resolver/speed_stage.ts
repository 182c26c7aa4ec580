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
import { BindFlag, type QueryContext } from "./query_context.ts";
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
    if ((type !== 1 && type !== 28) || (ctx.listener.flags & BindFlag.NO_SPEED_CHECK)) return next(ctx);
    const started = performance.now();
    // The other servers' answers, arriving after the first: their addresses are candidates too.
    const later: (StoredAnswer | undefined)[] = [];
    let onLater: ((a: StoredAnswer | undefined) => void) | undefined;
    ctx.onLaterAnswer = (a) => onLater ? onLater(a) : later.push(a);
    const answer = next(ctx);
    if (!(answer instanceof Promise)) return answer;
    return answer.then((a) => {
      const selection = this.select(ctx, a, type, started);
      if (!selection) return a;
      for (const more of later) selection.add(more);
      onLater = (more) => selection.add(more);
      return selection.first;
    });
  }

  /** Starts probing the addresses of `a`, or gives undefined when there is nothing to choose. */
  private select(ctx: QueryContext, a: Answer, type: number, started: number): Selection | undefined {
    if (!(a instanceof StoredAnswer) || a.rcode !== Rcode.NOERROR) return undefined;
    const ips = answerAddresses(a.wire, type);
    if (ips.length === 0 || (ips.length === 1 && !ctx.moreAnswersExpected)) return undefined;
    this.counters.checked++;
    const budget = Math.max(MIN_BUDGET_MS, SPEED_BUDGET_MS - (performance.now() - started));
    const selection = new Selection(this, a, type, started, budget, ctx.moreAnswersExpected);
    for (const ip of ips) selection.probe(ip);
    ctx.refined = selection.refined;
    return selection;
  }

  /** Whether the answer may go out with `rtt` as the fastest so far (the response mode's rule). */
  early(rtt: number, waitedMs: number): boolean {
    return this.mode === "first-ping" || rtt < FAST_ENOUGH_MS || rtt < waitedMs;
  }

  /** Whether the first answer goes out as it came (`fastest-response`). */
  get passesThrough(): boolean {
    return this.mode === "fastest-response";
  }

  /**
   * The addresses to keep, fastest first: those a probe answered, without the ones over 5 ms
   * and 10 % behind the fastest (and over 10 ms themselves); all of them when none answered.
   */
  ranked(ips: readonly string[], rtts: readonly (number | undefined)[]): string[] {
    const answered = ips.map((ip, i) => ({ ip, rtt: rtts[i] })).filter((x) => x.rtt !== undefined);
    if (answered.length === 0) return [...ips];
    answered.sort((x, y) => x.rtt! - y.rtt!);
    const best = answered[0].rtt!;
    return answered
      .filter((x) => !(x.rtt! - best >= 5 && x.rtt! > best * 1.1 + 0.5 && x.rtt! >= 10))
      .map((x) => x.ip);
  }

  /**
   * `a` with only `ips`, in order (and at most max-reply-ip-num), records for addresses `a` lacks
   * made like its own; `a` itself if it cannot be rebuilt.
   */
  rebuilt(a: StoredAnswer, type: number, ips: readonly string[]): StoredAnswer {
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
  limited(a: StoredAnswer): StoredAnswer {
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

/** One miss's probes: the addresses of the first answer and of those that came after it. */
class Selection {
  private readonly ips: string[] = [];
  private readonly rtts = new Map<string, number | undefined>();
  private open = 0;
  private sent = false;
  private settledAll!: () => void;
  private sendFirst!: (answer: Answer) => void;
  /** What the client gets. */
  readonly first: Promise<Answer>;
  /** What the cache keeps once every probe is in. */
  readonly refined: Promise<Answer>;

  constructor(
    private readonly stage: SpeedStage,
    private readonly answer: StoredAnswer,
    private readonly type: number,
    private readonly started: number,
    private readonly budget: number,
    /** Whether other servers' answers may still come (the race is collecting them). */
    private collecting: boolean,
  ) {
    const all = new Promise<void>((r) => this.settledAll = r);
    this.refined = all.then(() =>
      stage.rebuilt(answer, type, stage.ranked(this.ips, this.ips.map((ip) => this.rtts.get(ip))))
    );
    this.first = stage.passesThrough
      ? Promise.resolve(stage.limited(answer))
      : new Promise<Answer>((r) => this.sendFirst = r);
    if (!stage.passesThrough) {
      all.then(() => {
        if (this.sent) return;
        this.sent = true;
        if (this.fastest() === undefined) {
          stage.counters.unanswered++;
          this.sendFirst(stage.limited(answer));
        } else {
          stage.counters.selected++;
          this.refined.then(this.sendFirst);
        }
      });
    }
  }

  /** Adds the addresses of a later server's answer; `undefined`: no more will come. */
  add(more: StoredAnswer | undefined): void {
    if (!this.collecting) return;
    if (more === undefined) {
      this.collecting = false;
      if (this.open === 0) this.settledAll();
      return;
    }
    if (more.rcode !== Rcode.NOERROR) return;
    for (const ip of answerAddresses(more.wire, this.type)) this.probe(ip);
  }

  /** Probes `ip` unless it is a candidate already. */
  probe(ip: string): void {
    if (this.rtts.has(ip)) return;
    this.ips.push(ip);
    this.rtts.set(ip, undefined);
    this.open++;
    const left = Math.max(MIN_BUDGET_MS, this.budget - (performance.now() - this.started));
    this.stage.checker.check(ip, left).then((rtt) => {
      this.rtts.set(ip, rtt);
      this.open--;
      if (rtt !== undefined && !this.sent && !this.stage.passesThrough) {
        const best = this.fastest()!;
        if (this.stage.early(best.rtt, performance.now() - this.started)) {
          this.sent = true;
          this.stage.counters.selected++;
          this.sendFirst(this.stage.rebuilt(this.answer, this.type, [best.ip]));
        }
      }
      if (this.open === 0 && !this.collecting) this.settledAll();
    });
  }

  /** The fastest address so far, if any answered. */
  private fastest(): { ip: string; rtt: number } | undefined {
    let best: { ip: string; rtt: number } | undefined;
    for (const ip of this.ips) {
      const rtt = this.rtts.get(ip);
      if (rtt !== undefined && (!best || rtt < best.rtt)) best = { ip, rtt };
    }
    return best;
  }
}
