/**
 * The query statistics across child restarts: each child reports everything it counted (with what
 * was handed to it) every few seconds and once more as it stops; when a child exits, the guardian
 * keeps its last report and hands it to the serving child, which adds it to its own. A planned
 * restart loses nothing; a crash loses what came after the child's last report (one report
 * interval at most). A hand-over the child did not confirm is kept for the next one, unless the
 * child's last report says it took it in already.
 *
 * @module
 */
import type { CarriedStats } from "../ops/child_messages.ts";
import type { QueryStatsState } from "../ops/query_stats.ts";

/** A child as the carry sees it. */
export interface CarryTarget {
  /** Its last reported statistics. */
  readonly queryStats?: CarriedStats;
  /** Sends it predecessors' statistics: the request's id, and whether it confirmed them. */
  sendCarry(states: readonly QueryStatsState[]): { id: number; confirmed: Promise<boolean> };
}

/** The statistics of children gone, waiting for a successor to take them. */
export class StatsCarry {
  private pending: QueryStatsState[] = [];

  /** States waiting to be handed over. */
  get waiting(): number {
    return this.pending.length;
  }

  /** A child exited: what it reported last waits for its successor. */
  exited(last: CarriedStats | undefined): void {
    if (last) this.pending.push(last);
  }

  /**
   * Hands what waits to `child`; what it did not take in waits for the next. Resolves false when
   * something is left waiting.
   */
  async handTo(child: CarryTarget): Promise<boolean> {
    if (this.pending.length === 0) return true;
    const states = this.pending;
    this.pending = [];
    const { id, confirmed } = child.sendCarry(states);
    if (await confirmed) return true;
    if (child.queryStats?.absorbed.includes(id)) return true; // it reported them, then died
    this.pending.unshift(...states);
    return false;
  }
}
