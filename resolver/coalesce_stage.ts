/**
 * Coalescing stage: identical questions asked while one is already on its way upstream share that
 * one upstream query instead of sending their own. Questions for different upstream groups are
 * never joined.
 *
 * @module
 */
import type { Answer } from "../dns/answer.ts";
import { type QueryContext, Reason } from "./query_context.ts";
import type { MaybePromise, Next, Stage } from "./stage.ts";

/** Joins concurrent misses for the same key onto one pending answer. */
export class CoalesceStage implements Stage {
  private readonly pending = new Map<string, Promise<Answer>>();
  /** How many questions joined a query already in flight. */
  joined = 0;

  /** Returns the pending answer for `ctx`'s key, or starts one through `next`. */
  resolve(ctx: QueryContext, next: Next): MaybePromise<Answer> {
    const key = ctx.upstreamGroup === 0 && ctx.ruleGroup === 0
      ? ctx.key
      : `${ctx.key}|g${ctx.upstreamGroup}|c${ctx.ruleGroup}`;
    const inFlight = this.pending.get(key);
    if (inFlight) {
      this.joined++;
      ctx.reason = Reason.COALESCED;
      return inFlight;
    }
    const answer = next(ctx);
    if (!(answer instanceof Promise)) return answer;
    const shared = answer.finally(() => this.pending.delete(key));
    this.pending.set(key, shared);
    return shared;
  }
}
