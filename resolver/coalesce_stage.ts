/**
 * Coalescing stage: identical questions asked while one is already on its way upstream share that
 * one upstream query instead of sending their own.
 *
 * @module
 */
import type { StoredAnswer } from "../dns/stored_answer.ts";
import type { Question } from "../dns/wire.ts";
import type { MaybePromise, Next, Stage } from "./stage.ts";

/** Joins concurrent misses for the same key onto one pending answer. */
export class CoalesceStage implements Stage {
  private readonly pending = new Map<string, Promise<StoredAnswer>>();
  /** How many questions joined a query already in flight. */
  joined = 0;

  /** Returns the pending answer for `q`'s key, or starts one through `next`. */
  resolve(q: Question, next: Next): MaybePromise<StoredAnswer> {
    const inFlight = this.pending.get(q.key);
    if (inFlight) {
      this.joined++;
      return inFlight;
    }
    const answer = next(q);
    if (!(answer instanceof Promise)) return answer;
    const shared = answer.finally(() => this.pending.delete(q.key));
    this.pending.set(q.key, shared);
    return shared;
  }
}
