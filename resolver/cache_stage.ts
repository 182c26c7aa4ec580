/**
 * Cache stage: answers from the {@link AnswerCache} when it can, and stores what the rest of the
 * chain answers. Owns SmartDNS's `cache-size`.
 *
 * @module
 */
import type { StoredAnswer } from "../dns/stored_answer.ts";
import type { Question } from "../dns/wire.ts";
import type { AnswerCache } from "./answer_cache.ts";
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
  resolve(q: Question, next: Next): MaybePromise<StoredAnswer> {
    const hit = this.cache.get(q, this.now());
    if (hit !== undefined) {
      this.counters.hits++;
      return hit;
    }
    this.counters.misses++;
    const answer = next(q);
    if (answer instanceof Promise) {
      return answer.then((a) => {
        this.cache.set(q, a);
        return a;
      });
    }
    this.cache.set(q, answer);
    return answer;
  }
}
