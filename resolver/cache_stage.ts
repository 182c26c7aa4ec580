/**
 * Cache stage: answers from the {@link AnswerCache} when it can, and stores what the rest of the
 * chain answers (upstream answers only: local answers are made again for free). Owns SmartDNS's
 * `cache-size`.
 *
 * @module
 */
import type { Answer } from "../dns/answer.ts";
import { StoredAnswer } from "../dns/stored_answer.ts";
import type { AnswerCache } from "./answer_cache.ts";
import { BindFlag, type QueryContext, Reason } from "./query_context.ts";
import type { MaybePromise, Next, Stage } from "./stage.ts";

/** Counters the cache stage keeps. */
export interface CacheCounters {
  hits: number;
  misses: number;
}

/**
 * What the cache stage asks of the domain rules, which come after it: a cached answer is one the
 * rules sent upstream, so a hit needs no rule lookup while the rules are the ones it was stored
 * under (`generation`); after the rules changed (a reload, a list file updated), the first hit of
 * each entry asks again.
 */
export interface RulesAfterCache {
  /** Changes whenever the rules do. */
  readonly generation: number;
  /** The upstream group the rules send `ctx` to, or -1 when they would answer it themselves. */
  upstreamGroupOf(ctx: QueryContext): number;
}

/** A cache entry's tag: the rules generation it was stored under, and the upstream group. */
function tagOf(generation: number, group: number): number {
  return ((generation & 0xffffff) << 8 | (group & 0xff)) >>> 0;
}

/** Serves cache hits synchronously; on a miss, asks `next` and caches the answer. */
export class CacheStage implements Stage {
  readonly counters: CacheCounters = { hits: 0, misses: 0 };
  /** The domain rules after this stage, if any (set when the chain is built). */
  rules?: RulesAfterCache;

  constructor(readonly cache: AnswerCache, private readonly now: () => number = Date.now) {}

  /** Answers from the cache, or from `next` (then stores the answer). */
  resolve(ctx: QueryContext, next: Next): MaybePromise<Answer> {
    if (ctx.listener.flags & BindFlag.NO_CACHE) return next(ctx);
    // Client groups are kept apart: the group is in the key's last byte, above the DO bit.
    const variant = (ctx.dnssecOk ? 1 : 0) | (ctx.ruleGroup << 1);
    const hit = this.cache.get(ctx, this.now(), variant);
    const rules = this.rules;
    if (hit !== undefined && (!rules || this.stillUpstream(rules, ctx))) {
      this.counters.hits++;
      ctx.reason = Reason.CACHE;
      return hit;
    }
    this.counters.misses++;
    const answer = next(ctx);
    if (answer instanceof Promise) {
      return answer.then((a) => {
        if (a instanceof StoredAnswer) this.cache.set(ctx, a, variant, this.tagNow(ctx));
        return a;
      });
    }
    if (answer instanceof StoredAnswer) this.cache.set(ctx, answer, variant, this.tagNow(ctx));
    return answer;
  }

  /** The tag of an answer stored now (ctx.upstreamGroup is the group that answered). */
  private tagNow(ctx: QueryContext): number {
    return this.rules ? tagOf(this.rules.generation, ctx.upstreamGroup) : 0;
  }

  /**
   * Whether the entry just found may be served: stored under the current rules, or the rules still
   * send its question to the same upstream group (then it is re-tagged, so this is asked once).
   */
  private stillUpstream(rules: RulesAfterCache, ctx: QueryContext): boolean {
    const tag = this.cache.lastTag;
    if (tag >>> 8 === (rules.generation & 0xffffff)) return true;
    const group = rules.upstreamGroupOf(ctx);
    if (group < 0 || group !== (tag & 0xff)) return false;
    this.cache.retagLast(tagOf(rules.generation, group));
    return true;
  }
}
