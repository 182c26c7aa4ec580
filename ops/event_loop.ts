/**
 * Sharing the event loop during long loads. The child's heartbeat is a timer: a loader that runs
 * for seconds without giving the event loop a turn (a cache file, a 1,000,000-domain rule list)
 * silences it, and the guardian cannot tell a slow start from a hung one. A loader calls
 * {@link Pacer.due} per item and awaits {@link Pacer.pause} when it says so; the loop then runs due
 * timers (the heartbeat) and goes on.
 *
 * ```ts
 * const pacer = new Pacer();
 * for (const line of lines) {
 *   addRule(line);
 *   if (pacer.due()) await pacer.pause();
 * }
 * ```
 *
 * @module
 */
import { setImmediate } from "node:timers";

/**
 * Resolves after the event loop has had a turn: timers that are due (the heartbeat) have run.
 * About 10 µs, where `setTimeout(0)` costs 2–4 ms once nested.
 */
export function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Milliseconds a loader may keep the event loop before it should yield. */
export const DEFAULT_SLICE_MS = 20;

/** Tells a long loop when its slice of the event loop is used up, and yields it. */
export class Pacer {
  private sliceEnd: number;

  /**
   * @param sliceMs how long the loop may run between yields
   * @param onPause called at each pause, before yielding (e.g. to report progress)
   */
  constructor(private readonly sliceMs = DEFAULT_SLICE_MS, private readonly onPause?: () => void) {
    this.sliceEnd = performance.now() + sliceMs;
  }

  /** True when the loop has had its slice and should `await pause()`; cheap enough to ask per item. */
  due(): boolean {
    return performance.now() >= this.sliceEnd;
  }

  /** Gives the event loop a turn, then starts a new slice. */
  async pause(): Promise<void> {
    this.onPause?.();
    await yieldToEventLoop();
    this.sliceEnd = performance.now() + this.sliceMs;
  }
}

/** Calls `fn` for every item, yielding the event loop every `sliceMs` or so. */
export async function forEachPaced<T>(
  items: Iterable<T>,
  fn: (item: T, index: number) => void,
  sliceMs = DEFAULT_SLICE_MS,
): Promise<void> {
  const pacer = new Pacer(sliceMs);
  let i = 0;
  for (const item of items) {
    fn(item, i++);
    if (pacer.due()) await pacer.pause();
  }
}
