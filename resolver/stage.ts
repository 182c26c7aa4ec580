/**
 * The resolver chain: each stage answers a question itself or hands it to the next. A stage may
 * answer synchronously (a cache hit), so the hot path needs no promise.
 *
 * @module
 */
import type { StoredAnswer } from "../dns/stored_answer.ts";
import type { Question } from "../dns/wire.ts";

/** An answer now, or later. */
export type MaybePromise<T> = T | Promise<T>;

/** Hands a question to the rest of the chain. */
export type Next = (q: Question) => MaybePromise<StoredAnswer>;

/** One step of resolution (cache, coalescing, upstream race …). */
export interface Stage {
  /** Answers `q`, or calls `next(q)` and may act on what comes back. */
  resolve(q: Question, next: Next): MaybePromise<StoredAnswer>;
}

/** The last step: always answers. */
export interface TerminalStage {
  /** Answers `q` (e.g. by asking upstream servers). */
  resolve(q: Question): MaybePromise<StoredAnswer>;
}

/** Composes stages, first to last, ending in `terminal`, into one function. */
export function chain(stages: readonly Stage[], terminal: TerminalStage): Next {
  let next: Next = (q) => terminal.resolve(q);
  for (let i = stages.length - 1; i >= 0; i--) {
    const stage = stages[i];
    const rest = next;
    next = (q) => stage.resolve(q, rest);
  }
  return next;
}
