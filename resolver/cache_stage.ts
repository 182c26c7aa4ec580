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
import { type QueryContext, Reason } from "./query_context.ts";
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
    const hit = this.cache.get(ctx, this.now());
    if (hit !== undefined) {
      this.counters.hits++;
      ctx.reason = Reason.CACHE;
      return hit;
    }
    this.counters.misses++;
    const answer = next(ctx);
    if (answer instanceof Promise) {
      return answer.then((a) => {
        if (a instanceof StoredAnswer) this.cache.set(ctx, a);
        return a;
      });
    }
    if (answer instanceof StoredAnswer) this.cache.set(ctx, answer);
    return answer;
  }
}
