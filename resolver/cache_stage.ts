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

/** Serves cache hits synchronously; on a miss, asks `next` and caches the answer. */
export class CacheStage implements Stage {
  readonly counters: CacheCounters = { hits: 0, misses: 0 };

  constructor(readonly cache: AnswerCache, private readonly now: () => number = Date.now) {}

  /** Answers from the cache, or from `next` (then stores the answer). */
  resolve(ctx: QueryContext, next: Next): MaybePromise<Answer> {
    if (ctx.listener.flags & BindFlag.NO_CACHE) return next(ctx);
    // Client groups are kept apart: the group is in the key's last byte, above the DO bit.
    const variant = (ctx.dnssecOk ? 1 : 0) | (ctx.ruleGroup << 1);
    const hit = this.cache.get(ctx, this.now(), variant);
    if (hit !== undefined) {
      this.counters.hits++;
      ctx.reason = Reason.CACHE;
      return hit;
    }
    this.counters.misses++;
    const answer = next(ctx);
    if (answer instanceof Promise) {
      return answer.then((a) => {
        if (a instanceof StoredAnswer) this.cache.set(ctx, a, variant);
        return a;
      });
    }
    if (answer instanceof StoredAnswer) this.cache.set(ctx, answer, variant);
    return answer;
  }
}
