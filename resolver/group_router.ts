/**
 * The chain's last stage: sends a query to the upstream race of its server group (SmartDNS's
 * `server -group NAME` and `nameserver /domain/NAME`). Group 0 is the default group: every server
 * without `-exclude-default-group`. Each server is one {@link Upstream}, shared by the races of
 * all its groups, so it keeps one socket pool whichever group asks.
 *
 * @module
 */
import type { StoredAnswer } from "../dns/stored_answer.ts";
import type { QueryContext } from "./query_context.ts";
import type { TerminalStage } from "./stage.ts";
import type { UpstreamRace } from "./upstream_race.ts";

/** Name of the group every server joins unless it says `-exclude-default-group`. */
export const DEFAULT_GROUP = "default";

/** Routes each query to `races[ctx.upstreamGroup]`. */
export class GroupRouter implements TerminalStage {
  /**
   * @param races one race per group, index 0 the default group
   * @param names the group names, in the same order
   */
  constructor(readonly races: readonly UpstreamRace[], readonly names: readonly string[]) {}

  /** The index of group `name`, or -1 if no server is in it. */
  indexOf(name: string): number {
    return this.names.indexOf(name);
  }

  /** Races the query's group (the default group if its index is out of range). */
  resolve(ctx: QueryContext): Promise<StoredAnswer> {
    return (this.races[ctx.upstreamGroup] ?? this.races[0]).resolve(ctx);
  }
}
