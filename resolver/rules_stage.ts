/**
 * The rules stage, right after the cache (a cache hit is an answer these rules sent upstream, so
 * it needs no rule lookup; local answers are made again for free and never enter the cache): answers what a domain rule answers (addresses, blocks, forced SOA, local
 * SRV/TXT/PTR, hosts names), routes the rest to its rule's upstream group, and resolves a
 * `cname` rule's target through the rest of the chain. Owns SmartDNS's `address`, `nameserver`,
 * `cname`, `srv-record`, `txt-record`, `domain-rules`, `domain-set`, `hosts-file`,
 * `force-AAAA-SOA`, `force-qtype-SOA`, `local-ttl` and `expand-ptr-from-address`.
 *
 * @module
 */
import type { Answer } from "../dns/answer.ts";
import { decodePacket, encodePacket, type Packet, typeName } from "../dns/packet.ts";
import { StoredAnswer } from "../dns/stored_answer.ts";
import { Rcode, scanResponse } from "../dns/wire.ts";
import { BindFlag, parseContext, type QueryContext, Reason } from "./query_context.ts";
import type { RuleSet } from "./rule_set.ts";
import type { MaybePromise, Next, Stage } from "./stage.ts";

/** Rules stages built so far in this process (each one's generation). */
let generations = 0;

/** CNAME rules followed for one question at most (a rule loop ends in SERVFAIL). */
const MAX_CNAME_DEPTH = 8;

/** Counters the rules stage keeps. */
export interface RuleCounters {
  /** Questions answered by a rule (addresses, local records, forced SOA). */
  local: number;
  /** Questions blocked (`#`, a block list). */
  blocked: number;
  /** Questions sent to a named upstream group. */
  routed: number;
}

/** Whether a listener's flags turn off the rule that made a local answer (bind -no-rule-…). */
function skippedByListener(reason: number, flags: number): boolean {
  if (reason === Reason.BLOCKED || reason === Reason.SOA) return (flags & BindFlag.NO_RULE_SOA) !== 0;
  return (flags & BindFlag.NO_RULE_ADDR) !== 0;
}

/** Answers by the domain rules, or passes the question on with its upstream group set. */
export class RulesStage implements Stage {
  readonly counters: RuleCounters = { local: 0, blocked: 0, routed: 0 };

  /** @param sets the rule set of each client group, index 0 the default policy */
  constructor(readonly sets: readonly RuleSet[], private readonly ttlOfCname: number) {}

  /** The default policy's rules. */
  get rules(): RuleSet {
    return this.sets[0];
  }

  /** Changes whenever a rules stage is built: cache entries stored under older rules are checked again. */
  readonly generation = ++generations;

  /** The upstream group the rules send `ctx` to, or -1 when they answer it themselves (for the cache). */
  upstreamGroupOf(ctx: QueryContext): number {
    const flags = ctx.listener.flags;
    if (flags & BindFlag.NO_RULES) return ctx.upstreamGroup;
    const verdict = (this.sets[ctx.ruleGroup] ?? this.sets[0]).judge(ctx.wire, ctx.qtype);
    if ((verdict.answer && !skippedByListener(verdict.reason, flags)) || verdict.cname !== undefined) {
      return -1;
    }
    return verdict.group >= 0 && !(flags & BindFlag.NO_RULE_NAMESERVER) ? verdict.group : ctx.upstreamGroup;
  }

  /** Whether an expired entry may answer `ctx`: not for a `domain-rules -no-serve-expired` name (for the cache). */
  servesStale(ctx: QueryContext): boolean {
    if (ctx.listener.flags & BindFlag.NO_RULES) return true;
    return !(this.sets[ctx.ruleGroup] ?? this.sets[0]).judge(ctx.wire, ctx.qtype).noServeExpired;
  }

  /** Applies the rules to `ctx`. */
  resolve(ctx: QueryContext, next: Next): MaybePromise<Answer> {
    return this.apply(ctx, next, 0);
  }

  private apply(ctx: QueryContext, next: Next, depth: number): MaybePromise<Answer> {
    const flags = ctx.listener.flags;
    if (flags & BindFlag.NO_RULES) return next(ctx);
    const verdict = (this.sets[ctx.ruleGroup] ?? this.sets[0]).judge(ctx.wire, ctx.qtype);
    ctx.rule = verdict.rule;
    if (verdict.speed) ctx.speedRule = verdict.speed;
    if (verdict.answer && !skippedByListener(verdict.reason, flags)) {
      ctx.reason = verdict.reason;
      if (verdict.reason === Reason.BLOCKED) this.counters.blocked++;
      else this.counters.local++;
      return verdict.answer;
    }
    if (verdict.group >= 0 && !(ctx.listener.flags & (BindFlag.NO_RULE_NAMESERVER | BindFlag.NO_RULES))) {
      ctx.upstreamGroup = verdict.group;
      if (verdict.group !== 0) this.counters.routed++;
    }
    if (verdict.cname !== undefined) return this.viaCname(ctx, verdict.cname, next, depth);
    return next(ctx);
  }

  /**
   * `cname /name/target`: resolves `target` (its own rules apply) and answers `name` with the
   * CNAME record followed by the target's answer, as SmartDNS does.
   */
  private async viaCname(ctx: QueryContext, target: string, next: Next, depth: number): Promise<Answer> {
    ctx.reason = Reason.RULE;
    if (depth >= MAX_CNAME_DEPTH) return StoredAnswer.empty(ctx, Rcode.SERVFAIL, Date.now());
    const query = encodePacket({
      type: "query",
      id: 0,
      flags: 0x0100,
      questions: [{ name: target, type: typeName(ctx.qtype) as "A", class: "IN" }],
      additionals: ctx.edns
        ? [{ type: "OPT", name: ".", udpPayloadSize: 1232, flags: ctx.dnssecOk ? 0x8000 : 0 } as never]
        : [],
    });
    const inner = parseContext(query);
    inner.listener = ctx.listener;
    inner.ruleGroup = ctx.ruleGroup;
    inner.upstreamGroup = ctx.upstreamGroup;
    const answer = await this.apply(inner, next, depth + 1);
    const reply = decodePacket(answer.render(inner, Date.now(), 65535)) as Packet & { rcode?: string };
    const cname = { name: ctx.name, type: "CNAME" as const, ttl: this.ttlOfCname, data: target };
    const wire = encodePacket({
      type: "response",
      id: ctx.id,
      flags: 0x8180 | (answer.rcode & 0x0f),
      questions: [{ name: ctx.name, type: typeName(ctx.qtype) as "A", class: "IN" }],
      answers: [cname, ...(reply.answers ?? [])],
      authorities: reply.authorities ?? [],
    });
    const layout = scanResponse(wire);
    if (!layout) return StoredAnswer.empty(ctx, Rcode.SERVFAIL, Date.now());
    return StoredAnswer.fromResponse(wire, layout, { rrTtl: 0, rrTtlMin: 0, rrTtlMax: 0 }, Date.now());
  }
}
