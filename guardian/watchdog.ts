/**
 * The watchdog: judges a child by what it said and when. Two clocks, kept apart:
 *
 * - **Start-up deadline.** From its start a child has `startup-timeout` seconds to report ready.
 *   Loading the program, the configuration, the cache file and rule lists can take a slow board
 *   (or an emulator) far longer than a heartbeat interval, so until ready this deadline is what
 *   replaces a child; silence meanwhile is only reported (once), since it points at a start-up
 *   step that does not yield the event loop.
 * - **Heartbeat.** Once ready, a child silent for more than `watchdog-timeout` seconds is hung.
 *
 * It also says when a child over `max-memory` should be replaced (at most once a minute).
 *
 * @module
 */
import type { GuardianConfig } from "../config/schema.ts";

/** What the watchdog reads of a child. */
export interface WatchedChild {
  /** When it was started (ms since the epoch). */
  readonly startedAt: number;
  /** When it reported ready; 0 while it is starting. */
  readonly readyAt: number;
  /** When it last beat or reported progress; 0 if it has said nothing yet. */
  readonly lastHeard: number;
  /** The start-up stage it last reported, if any. */
  readonly stage?: string;
}

/** What to do about a child: replace it (`kill`), or only say that something is off (`warn`). */
export interface WatchdogVerdict {
  readonly action: "kill" | "warn";
  /** Reads after "child 1234 ", e.g. "hung: no heartbeat for 5250 ms". */
  readonly reason: string;
}

/** At most one restart for exceeding max-memory in this period. */
export const MEMORY_RESTART_INTERVAL_MS = 60_000;

/** The start-up stage a child reached, as words for a log line or a crash report. */
export function describeStage(child: WatchedChild): string {
  if (child.stage) return child.stage;
  return child.lastHeard ? "none reported" : "none reported (the program was still loading)";
}

/** Judges children against the start-up deadline, the heartbeat and the memory ceiling. */
export class Watchdog {
  private readonly condemned = new WeakSet<WatchedChild>();
  /** The `lastHeard` each child had when its silence was last reported. */
  private readonly warned = new WeakMap<WatchedChild, number>();
  private lastMemoryRestart = -Infinity;

  constructor(
    private readonly limits: Pick<GuardianConfig, "watchdogTimeout" | "startupTimeout" | "maxMemory">,
  ) {}

  /** Milliseconds a new child has to become ready. */
  get startupMs(): number {
    return this.limits.startupTimeout * 1000;
  }

  /** Milliseconds of silence after which a ready child counts as hung. */
  get heartbeatMs(): number {
    return this.limits.watchdogTimeout * 1000;
  }

  /**
   * Whether `child` must be replaced (a verdict of `kill`, given once per child), or its silence
   * reported (`warn`, once per silent spell), at time `now`; null when all is well.
   */
  check(child: WatchedChild, now: number): WatchdogVerdict | null {
    if (this.condemned.has(child)) return null;
    if (child.readyAt === 0) {
      if (now - child.startedAt > this.startupMs) {
        return this.condemn(
          child,
          `never became ready in ${this.limits.startupTimeout} s (last start-up stage: ${
            describeStage(child)
          })`,
        );
      }
      const silent = now - child.lastHeard;
      if (child.lastHeard > 0 && silent > this.heartbeatMs && this.warned.get(child) !== child.lastHeard) {
        this.warned.set(child, child.lastHeard);
        return {
          action: "warn",
          reason: `has not beaten for ${silent} ms while starting (stage: ${describeStage(child)}); ` +
            `a start-up step is not yielding the event loop. It has until the start-up deadline ` +
            `(${this.limits.startupTimeout} s) to be ready`,
        };
      }
      return null;
    }
    const silent = now - Math.max(child.lastHeard, child.readyAt);
    if (silent > this.heartbeatMs) return this.condemn(child, `hung: no heartbeat for ${silent} ms`);
    return null;
  }

  /** Whether max-memory is set at all. */
  get limitsMemory(): boolean {
    return this.limits.maxMemory > 0;
  }

  /**
   * The reason for a planned restart when a ready child's resident memory `rssBytes` is over
   * max-memory (at most once per {@link MEMORY_RESTART_INTERVAL_MS}); null otherwise.
   */
  checkMemory(rssBytes: number, now: number): string | null {
    const limit = this.limits.maxMemory;
    if (limit <= 0 || rssBytes <= limit || now - this.lastMemoryRestart <= MEMORY_RESTART_INTERVAL_MS) {
      return null;
    }
    this.lastMemoryRestart = now;
    const mb = (n: number) => (n / 1024 / 1024).toFixed(1);
    return `child RSS ${mb(rssBytes)} MB is over max-memory ${mb(limit)} MB`;
  }

  private condemn(child: WatchedChild, reason: string): WatchdogVerdict {
    this.condemned.add(child);
    return { action: "kill", reason };
  }
}
