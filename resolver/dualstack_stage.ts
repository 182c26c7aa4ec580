/**
 * Dual-stack selection (SmartDNS's `dualstack-ip-selection`, `-threshold`, and
 * `dualstack-ip-allow-force-AAAA`): when a name has addresses of both families and IPv4 answers
 * the speed check faster than IPv6 by more than the threshold, AAAA questions are answered empty
 * (with the local SOA) so clients connect over IPv4; an IPv6 address that answers no probe counts
 * as slower. The other way round (A answered empty when IPv6 is faster) only with
 * `allow-force-AAAA`. IPv6 is preferred within the threshold.
 *
 * On a miss for A or AAAA, the other family's question goes down the chain from the cache on
 * (so it is answered from the cache, or joins the client's own query for it, and is cached) and
 * the addresses of both are looked up in the {@link SpeedChecker}, whose results the speed stage
 * has just made. The empty answer is cached like an answer (for its SOA's 30 s), so cache hits
 * get the same choice without any lookup.
 *
 * @module
 */
import type { Answer } from "../dns/answer.ts";
import { answerAddresses } from "../dns/address_selection.ts";
import { LocalAnswer } from "../dns/local_answer.ts";
import { encodePacket } from "../dns/packet.ts";
import { StoredAnswer, type TtlPolicy } from "../dns/stored_answer.ts";
import { Rcode, scanResponse } from "../dns/wire.ts";
import { BindFlag, parseContext, type QueryContext } from "./query_context.ts";
import type { SpeedChecker } from "./speed_checker.ts";
import { SPEED_BUDGET_MS, type SpeedStage } from "./speed_stage.ts";
import type { MaybePromise, Next, Stage } from "./stage.ts";

const TYPE_A = 1;
const TYPE_AAAA = 28;

/** One client group's dual-stack settings. */
export interface DualstackOptions {
  readonly enabled: boolean;
  /** IPv4 must be faster than IPv6 by more than this many ms for AAAA to be answered empty. */
  readonly thresholdMs: number;
  /** Answer A empty when IPv6 is faster by the threshold (`dualstack-ip-allow-force-AAAA`). */
  readonly allowForceAAAA: boolean;
}

/** Counters the dual-stack stage keeps. */
export interface DualstackCounters {
  /** AAAA questions answered empty because IPv4 was faster. */
  preferredIpv4: number;
  /** A questions answered empty because IPv6 was faster. */
  preferredIpv6: number;
}

/** The fastest RTT of `ips` as soon as one answers, or undefined once all failed (or none given). */
function fastestOf(
  checker: SpeedChecker,
  ips: readonly string[],
  budgetMs: number,
): Promise<number | undefined> {
  if (ips.length === 0) return Promise.resolve(undefined);
  return new Promise((resolve) => {
    let open = ips.length;
    for (const ip of ips) {
      checker.check(ip, budgetMs).then((rtt) => {
        if (rtt !== undefined) resolve(rtt);
        else if (--open === 0) resolve(undefined);
      });
    }
  });
}

/** Answers the slower family of a dual-stack name empty. */
export class DualstackStage implements Stage {
  readonly counters: DualstackCounters = { preferredIpv4: 0, preferredIpv6: 0 };
  /** The chain from the cache on, for the other family's question (set once the chain is built). */
  fromCache?: Next;

  /**
   * @param options by client group (index 0: the default policy; a missing one follows it)
   * @param speed gives the speed checker that applies to a query (none: no selection)
   */
  constructor(
    private readonly options: readonly DualstackOptions[],
    private readonly speed: SpeedStage,
    private readonly ttlPolicy: TtlPolicy,
  ) {}

  /** Passes the query on; may replace an A or AAAA answer by an empty one. */
  resolve(ctx: QueryContext, next: Next): MaybePromise<Answer> {
    const type = ctx.qtype;
    if ((type !== TYPE_AAAA && type !== TYPE_A) || ctx.sibling) return next(ctx);
    if (ctx.listener.flags & (BindFlag.NO_DUALSTACK | BindFlag.NO_SPEED_CHECK)) return next(ctx);
    const options = this.options[ctx.ruleGroup] ?? this.options[0];
    if (!(ctx.speedRule?.dualstack ?? options.enabled)) return next(ctx);
    if (type === TYPE_A && !options.allowForceAAAA) return next(ctx);
    const checker = this.speed.choiceFor(ctx)?.checker;
    if (!checker) return next(ctx);
    const started = performance.now();
    const other = this.sibling(ctx, type === TYPE_A ? TYPE_AAAA : TYPE_A);
    const trace = ctx.trace; // explain only: the other question goes down the trace chain, traced
    if (trace) other.trace = trace.forSibling();
    const answer = next(ctx);
    const otherAnswer = (trace?.fromCache ?? this.fromCache ?? next)(other);
    const chosen = Promise.resolve(answer).then((a) =>
      this.choose(ctx, a, type, otherAnswer, started, checker, options.thresholdMs)
    );
    trace?.waitFor(chosen);
    return chosen;
  }

  /** `a`, or the empty answer when the other family is faster by the threshold. */
  private async choose(
    ctx: QueryContext,
    a: Answer,
    type: number,
    otherAnswer: MaybePromise<Answer>,
    started: number,
    checker: SpeedChecker,
    thresholdMs: number,
  ): Promise<Answer> {
    if (!(a instanceof StoredAnswer) || a.rcode !== Rcode.NOERROR) return a;
    const own = answerAddresses(a.wire, type);
    if (own.length === 0) return a;
    const budget = Math.max(200, SPEED_BUDGET_MS - (performance.now() - started));
    const otherReply = await otherAnswer;
    if (!(otherReply instanceof StoredAnswer) || otherReply.rcode !== Rcode.NOERROR) return a;
    const others = answerAddresses(otherReply.wire, type === TYPE_A ? TYPE_AAAA : TYPE_A);
    if (others.length === 0) return a;
    const minePending = fastestOf(checker, own, budget);
    const theirs = await fastestOf(checker, others, budget);
    if (theirs === undefined) return a;
    // Once the other family has answered, this one gets the threshold and as long again: a
    // probe still silent by then cannot be within the threshold of it.
    let timer: ReturnType<typeof setTimeout> | undefined;
    const mine = await Promise.race([
      minePending,
      new Promise<undefined>((r) => timer = setTimeout(() => r(undefined), theirs + thresholdMs + 1)),
    ]);
    clearTimeout(timer);
    // IPv6 is kept within the threshold: the other family must be faster by more than it.
    const keep = mine !== undefined && theirs + thresholdMs >= mine;
    if (ctx.trace) {
      ctx.trace.dualstack = { ownMs: mine ?? null, otherMs: theirs, thresholdMs, answeredEmpty: !keep };
    }
    if (keep) return a;
    if (type === TYPE_AAAA) this.counters.preferredIpv4++;
    else this.counters.preferredIpv6++;
    ctx.refined = undefined; // the sorted addresses are not what is cached now
    const wire = LocalAnswer.soa(Rcode.NOERROR).render(ctx, Date.now(), 65535);
    return StoredAnswer.fromResponse(wire, scanResponse(wire)!, this.ttlPolicy, Date.now());
  }

  /** A query for the same name and `type`, marked so it is not paired again. */
  private sibling(ctx: QueryContext, type: number): QueryContext {
    const query = encodePacket({
      type: "query",
      id: 0,
      flags: 0x0100,
      questions: [{ name: ctx.name, type: type === TYPE_A ? "A" : "AAAA", class: "IN" }],
      additionals: ctx.edns
        ? [{ type: "OPT", name: ".", udpPayloadSize: 1232, flags: ctx.dnssecOk ? 0x8000 : 0 } as never]
        : [],
    });
    const other = parseContext(query);
    other.listener = ctx.listener;
    other.upstreamGroup = ctx.upstreamGroup;
    other.ruleGroup = ctx.ruleGroup;
    other.sibling = true;
    return other;
  }
}
