/**
 * What every answer the resolver chain gives can do: render itself for the client that asked.
 * {@link StoredAnswer} (upstream answers, cached) and {@link LocalAnswer} (made from rules) both are
 * one.
 *
 * @module
 */
import type { Question } from "./wire.ts";

/** An answer, ready to be rendered for any client asking its question. */
export interface Answer {
  /** Response code. */
  readonly rcode: number;
  /** Seconds the answer may be served from a cache (0 = never cached). */
  readonly lifetime: number;
  /**
   * Renders the answer for `q` at time `now` into `out` at `offset` and returns the length; an
   * answer larger than `maxSize` becomes an empty one with TC set. `out` must have room for
   * `min(renderedLength(q), q.questionEnd + 11)` bytes.
   */
  renderInto(q: Question, now: number, maxSize: number, out: Uint8Array, offset: number): number;
  /** Renders into a new array (see {@link renderInto}). */
  render(q: Question, now: number, maxSize: number): Uint8Array;
  /** The bytes {@link renderInto} writes for `q`, before any truncation. */
  renderedLength(q: Question): number;
}
