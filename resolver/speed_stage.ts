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
 * When no probe answers, the answer goes out (and is cached, for at most 300 s) with one address,
 * the one SmartDNS takes for the most likely right: the one most servers gave, else the last
 * received. The other servers' answers that come while the probes run add their addresses (as
 * SmartDNS pools them).
 *
 * The stage marks each A/AAAA miss a speed check is configured for ({@link QueryContext.speedCheckOn}):
 * the cache stage sends that first reply with SmartDNS's short TTL and stores the real one.
 *
 * Which probes and mode apply: the client group's policy ({@link SpeedPolicy}), unless a
 * `domain-rules -speed-check-mode/-response-mode` line gives the name its own.
 *
 * @module
 */
import type { Answer } from "../dns/answer.ts";
import { answerAddresses, withAddresses } from "../dns/address_selection.ts";
import { limitAddresses } from "../dns/address_limit.ts";
import { StoredAnswer, type TtlPolicy } from "../dns/stored_answer.ts";
import { Rcode, scanResponse } from "../dns/wire.ts";
import { formatSpeedCheckModes, type ResponseMode, type SpeedCheckMode } from "../config/schema.ts";
import type { SpeedTrace } from "./query_trace.ts";
import { BindFlag, type QueryContext } from "./query_context.ts";
import type { SpeedChecker } from "./speed_checker.ts";
import type { MaybePromise, Next, Stage } from "./stage.ts";

/** SmartDNS's ping timeout: probes end this long after the query reached us (ms). */
export const SPEED_BUDGET_MS = 950;
/** Probes never get less than this, however long the upstream took (ms). */
const MIN_BUDGET_MS = 200;
/** A probe this fast ends the wait in `fastest-ip` (ms). */
const FAST_ENOUGH_MS = 10;
/** SmartDNS's TTL cap on an answer no probe confirmed (s). */
const UNPROBED_TTL_MAX = 300;

/** Counters the speed stage keeps. */
export interface SpeedCounters {
  /** Answers whose addresses were probed. */
  checked: number;
  /** Answers sent with a probed address first. */
  selected: number;
  /** Answers sent as they came because no probe answered. */
  unanswered: number;
}

/** One client group's speed check: its checker (none: off), response mode and address limit. */
export interface SpeedPolicy {
  readonly checker?: SpeedChecker;
  readonly mode: ResponseMode;
  /** max-reply-ip-num (0 = all). */
  readonly maxAddresses: number;
}

/** The checker for a list of probe kinds (undefined for none), shared by every user of the same kinds. */
export type CheckerFor = (modes: readonly SpeedCheckMode[]) => SpeedChecker | undefined;

/** What one query's selection works with. */
interface Choice {
  readonly checker: SpeedChecker;
  readonly mode: ResponseMode;
  readonly maxAddresses: number;
  readonly ttlPolicy: TtlPolicy;
  readonly counters: SpeedCounters;
}

/** Probes the addresses of upstream answers and answers with the fastest. */
export class SpeedStage implements Stage {
  readonly counters: SpeedCounters = { checked: 0, selected: 0, unanswered: 0 };

  /**
   * @param policies by client group (index 0: the default policy; a missing one follows it)
   * @param checkerFor gives the checker of a `domain-rules -speed-check-mode` list
   */
  constructor(
    private readonly policies: readonly SpeedPolicy[],
    private readonly checkerFor: CheckerFor,
    private readonly ttlPolicy: TtlPolicy,
  ) {}

  /** The checker and mode that apply to `ctx` (undefined: no speed check for it). */
  choiceFor(ctx: QueryContext): Choice | undefined {
    const policy = this.policies[ctx.ruleGroup] ?? this.policies[0];
    const rule = ctx.speedRule;
    const checker = rule?.speedCheck ? this.checkerFor(rule.speedCheck) : policy.checker;
    if (!checker) return undefined;
    return {
      checker,
      mode: rule?.responseMode ?? policy.mode,
      maxAddresses: policy.maxAddresses,
      ttlPolicy: this.ttlPolicy,
      counters: this.counters,
    };
  }

  /** Passes the query on; selects among the addresses of what comes back. */
  resolve(ctx: QueryContext, next: Next): MaybePromise<Answer> {
    const type = ctx.qtype;
    if (type !== 1 && type !== 28) return next(ctx);
    const unsorted = (ctx.listener.flags & BindFlag.NO_SPEED_CHECK) !== 0;
    const choice = this.choiceFor(ctx);
    // SmartDNS shortens the first reply's TTL whenever the name has a speed check, a -no-speed-check
    // listener's answers included, but not its DO queries, which it passes through as they came.
    if (choice && !(unsorted && ctx.dnssecOk)) ctx.speedCheckOn = true;
    if (!choice || unsorted) return this.limitedOnly(ctx, next);
    const started = performance.now();
    // The other servers' answers, arriving after the first: their addresses are candidates too.
    const later: (StoredAnswer | undefined)[] = [];
    let onLater: ((a: StoredAnswer | undefined) => void) | undefined;
    ctx.onLaterAnswer = (a) => onLater ? onLater(a) : later.push(a);
    const answer = next(ctx);
    if (!(answer instanceof Promise)) return answer;
    return answer.then((a) => {
      const selection = this.select(ctx, choice, a, type, started);
      if (!selection) return a;
      for (const more of later) selection.add(more);
      onLater = (more) => selection.add(more);
      return selection.first;
    });
  }

  /** Without a speed check: the answer with at most max-reply-ip-num addresses (the race left them all). */
  private limitedOnly(ctx: QueryContext, next: Next): MaybePromise<Answer> {
    const policy = this.policies[ctx.ruleGroup] ?? this.policies[0];
    const answer = next(ctx);
    if (policy.maxAddresses <= 0 || !(answer instanceof Promise)) return answer;
    const limits = { maxAddresses: policy.maxAddresses, ttlPolicy: this.ttlPolicy };
    return answer.then((a) => a instanceof StoredAnswer ? limited(limits, a) : a);
  }

  /** Starts probing the addresses of `a`, or gives undefined when there is nothing to choose. */
  private select(
    ctx: QueryContext,
    choice: Choice,
    a: Answer,
    type: number,
    started: number,
  ): Selection | undefined {
    if (!(a instanceof StoredAnswer) || a.rcode !== Rcode.NOERROR) return undefined;
    const ips = answerAddresses(a.wire, type);
    if (ips.length === 0 || (ips.length === 1 && !ctx.moreAnswersExpected)) return undefined;
    this.counters.checked++;
    const budget = Math.max(MIN_BUDGET_MS, SPEED_BUDGET_MS - (performance.now() - started));
    const selection = new Selection(choice, a, type, started, budget, ctx.moreAnswersExpected === true);
    for (const ip of ips) selection.probe(ip);
    ctx.refined = selection.refined;
    const trace = ctx.trace; // explain only
    if (trace) trace.waitFor(selection.refined.then(() => trace.speed = selection.traced()));
    return selection;
  }
}

/**
 * The addresses to keep, fastest first: those a probe answered, without the ones over 5 ms
 * and 10 % behind the fastest (and over 10 ms themselves); all of them when none answered.
 */
function ranked(ips: readonly string[], rtts: readonly (number | undefined)[]): string[] {
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
function rebuilt(choice: Choice, a: StoredAnswer, type: number, ips: readonly string[]): StoredAnswer {
  const keep = choice.maxAddresses > 0 ? ips.slice(0, choice.maxAddresses) : ips;
  try {
    const wire = withAddresses(a.wire, type, keep);
    const layout = scanResponse(wire);
    return layout ? StoredAnswer.fromResponse(wire, layout, choice.ttlPolicy, a.storedAt) : a;
  } catch {
    return a; // records dns-packet cannot rebuild: sent as they came
  }
}

/** The TTL ceiling of an answer no probe confirmed: 300 s, or the configured lower one. */
function unprobedTtlMax(policy: TtlPolicy): number {
  return policy.rrTtlMax > 0 ? Math.min(policy.rrTtlMax, UNPROBED_TTL_MAX) : UNPROBED_TTL_MAX;
}

/** `a` with at most max-reply-ip-num addresses of each family. */
function limited(choice: Pick<Choice, "maxAddresses" | "ttlPolicy">, a: StoredAnswer): StoredAnswer {
  if (choice.maxAddresses <= 0) return a;
  try {
    const original = a.wire;
    const wire = limitAddresses(original, choice.maxAddresses);
    if (wire === original) return a;
    const layout = scanResponse(wire);
    return layout ? StoredAnswer.fromResponse(wire, layout, choice.ttlPolicy, a.storedAt) : a;
  } catch {
    return a;
  }
}

/** One miss's probes: the addresses of the first answer and of those that came after it. */
class Selection {
  private readonly ips: string[] = [];
  private readonly rtts = new Map<string, number | undefined>();
  /** How many servers' answers gave each address. */
  private readonly hits = new Map<string, number>();
  private open = 0;
  private sent = false;
  private settledAll!: () => void;
  private sendFirst!: (answer: Answer) => void;
  /** What the client gets. */
  readonly first: Promise<Answer>;
  /** What the cache keeps once every probe is in. */
  readonly refined: Promise<Answer>;

  constructor(
    private readonly choice: Choice,
    private readonly answer: StoredAnswer,
    private readonly type: number,
    private readonly started: number,
    private readonly budget: number,
    /** Whether other servers' answers may still come (the race is collecting them). */
    private collecting: boolean,
  ) {
    const all = new Promise<void>((r) => this.settledAll = r);
    this.refined = all.then(() =>
      this.fastest() === undefined
        ? rebuilt(
          { ...choice, ttlPolicy: { ...choice.ttlPolicy, rrTtlMax: unprobedTtlMax(choice.ttlPolicy) } },
          answer,
          type,
          [this.mostLikely()],
        )
        : rebuilt(choice, answer, type, ranked(this.ips, this.ips.map((ip) => this.rtts.get(ip))))
    );
    const passThrough = choice.mode === "fastest-response";
    // Passed through whole, as SmartDNS does: max-reply-ip-num limits the answer made from the probes.
    this.first = passThrough ? Promise.resolve(answer) : new Promise<Answer>((r) => this.sendFirst = r);
    if (passThrough) return;
    all.then(() => {
      if (this.sent) return;
      this.sent = true;
      if (this.fastest() === undefined) choice.counters.unanswered++;
      else choice.counters.selected++;
      this.refined.then(this.sendFirst);
    });
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

  /**
   * With no probe answered, SmartDNS's likeliest address: the one most servers gave (when more
   * than one did), else the last one received.
   */
  private mostLikely(): string {
    let best = this.ips[this.ips.length - 1];
    let most = 1;
    for (const ip of this.ips) {
      const n = this.hits.get(ip) ?? 1;
      if (n > most) [best, most] = [ip, n];
    }
    return best;
  }

  /** Probes `ip` unless it is a candidate already (then counts one more server giving it). */
  probe(ip: string): void {
    this.hits.set(ip, (this.hits.get(ip) ?? 0) + 1);
    if (this.rtts.has(ip)) {
      // The last received goes last, for mostLikely().
      this.ips.splice(this.ips.indexOf(ip), 1);
      this.ips.push(ip);
      return;
    }
    this.ips.push(ip);
    this.rtts.set(ip, undefined);
    this.open++;
    const left = Math.max(MIN_BUDGET_MS, this.budget - (performance.now() - this.started));
    this.choice.checker.check(ip, left).then((rtt) => {
      this.rtts.set(ip, rtt);
      this.open--;
      if (rtt !== undefined && !this.sent && this.choice.mode !== "fastest-response") {
        const best = this.fastest()!;
        const waited = performance.now() - this.started;
        const early = this.choice.mode === "first-ping" || best.rtt < FAST_ENOUGH_MS || best.rtt < waited;
        if (early) {
          this.sent = true;
          this.choice.counters.selected++;
          this.sendFirst(rebuilt(this.choice, this.answer, this.type, [best.ip]));
        }
      }
      if (this.open === 0 && !this.collecting) this.settledAll();
    });
  }

  /** The probes' results, for `explain` (once every probe is in). */
  traced(): SpeedTrace {
    return {
      probes: formatSpeedCheckModes(this.choice.checker.modes),
      responseMode: this.choice.mode,
      results: this.ips.map((ip) => ({ ip, rttMs: this.rtts.get(ip) ?? null })),
    };
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
