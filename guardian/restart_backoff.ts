/**
 * How soon a child that died on its own is started again: at once after a first failure, then
 * with delays doubling from 100 ms up to {@link MAX_RESTART_DELAY_MS} while children keep dying
 * before they have served. A child that served for {@link HEALTHY_AFTER_MS} starts the count over.
 *
 * @module
 */

/** Restart delays: the first restart is immediate, then doubling from 100 ms up to this cap. */
export const MAX_RESTART_DELAY_MS = 5000;
/**
 * A child that served (was ready) this long before it died was not stuck in a start-up loop: its
 * restart is immediate again. Children dying before or right after ready back off.
 */
export const HEALTHY_AFTER_MS = 1000;

/** Delay before restart number `failures` (1 = the first failure in a row). */
export function restartDelay(failures: number): number {
  return failures <= 1 ? 0 : Math.min(100 * 2 ** (failures - 2), MAX_RESTART_DELAY_MS);
}

/** The count of failures in a row, and the wait before the next start. */
export class RestartBackoff {
  private count = 0;
  private startAt = 0;
  private wakeUp?: () => void;

  /** Failures in a row so far (0 after a planned restart). */
  get failures(): number {
    return this.count;
  }

  /** The delay before the next start, for the failures counted so far. */
  get delayMs(): number {
    return restartDelay(this.count);
  }

  /**
   * Counts a child that died on its own after serving `servedMs` (0 if it never became ready). One
   * that served {@link HEALTHY_AFTER_MS} or more counts as the first failure of a new run.
   */
  failed(servedMs: number): void {
    this.count = servedMs >= HEALTHY_AFTER_MS ? 1 : this.count + 1;
  }

  /** The failure had a cause that is now dealt with (e.g. a fallback configuration): the next start is immediate. */
  forgive(): void {
    this.count = 1;
  }

  /** A child took over on purpose and is ready: the count starts over. */
  reset(): void {
    this.count = 0;
  }

  /** Waits `ms` before the next start; {@link wake} ends the wait early. */
  async wait(ms: number): Promise<void> {
    this.startAt = Date.now() + ms;
    try {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, ms);
        this.wakeUp = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    } finally {
      this.wakeUp = undefined;
      this.startAt = 0;
    }
  }

  /** Ends a wait at once (the guardian is stopping). */
  wake(): void {
    this.wakeUp?.();
  }

  /** Milliseconds left before the waiting start, or null when nothing is waiting. */
  remainingMs(now = Date.now()): number | null {
    return this.startAt ? Math.max(0, this.startAt - now) : null;
  }
}
