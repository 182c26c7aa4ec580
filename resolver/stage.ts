/**
 * The resolver chain: each stage answers a query itself or hands it to the next. A stage may
 * answer synchronously (a cache hit, a local rule), so the hot path needs no promise. What flows
 * down is the {@link QueryContext}; what comes back is an {@link Answer}.
 *
 * @module
 */
import type { Answer } from "../dns/answer.ts";
import type { QueryContext } from "./query_context.ts";

/** An answer now, or later. */
export type MaybePromise<T> = T | Promise<T>;

/** Hands a query to the rest of the chain. */
export type Next = (ctx: QueryContext) => MaybePromise<Answer>;

/** One step of resolution (rules, cache, coalescing …). */
export interface Stage {
  /** Answers `ctx`, or calls `next(ctx)` and may act on what comes back. */
  resolve(ctx: QueryContext, next: Next): MaybePromise<Answer>;
}

/** The last step: always answers. */
export interface TerminalStage {
  /** Answers `ctx` (e.g. by asking upstream servers). */
  resolve(ctx: QueryContext): MaybePromise<Answer>;
}

/** Composes stages, first to last, ending in `terminal`, into one function. */
export function chain(stages: readonly Stage[], terminal: TerminalStage): Next {
  let next: Next = (ctx) => terminal.resolve(ctx);
  for (let i = stages.length - 1; i >= 0; i--) {
    const stage = stages[i];
    const rest = next;
    next = (ctx) => stage.resolve(ctx, rest);
  }
  return next;
}
