import { assertEquals } from "../tests/helpers/assert.ts";
import type { CarriedStats } from "../ops/child_messages.ts";
import type { QueryStatsState } from "../ops/query_stats.ts";
import { type CarryTarget, StatsCarry } from "./stats_carry.ts";

/** A state standing for `n` queries (only the count matters here). */
const state = (n: number, absorbed: number[] = []) =>
  ({ version: 1, queries: [[256, n]], absorbed }) as unknown as CarriedStats;

/** A child that confirms (or not) what it is sent, remembering it. */
class Child implements CarryTarget {
  queryStats?: CarriedStats;
  readonly got: QueryStatsState[][] = [];
  private id = 0;
  constructor(private readonly confirms: boolean) {}
  sendCarry(states: readonly QueryStatsState[]) {
    this.got.push([...states]);
    return { id: ++this.id, confirmed: Promise.resolve(this.confirms) };
  }
}

Deno.test("stats carry: what a child reported last goes to the next one, once", async () => {
  const carry = new StatsCarry();
  carry.exited(undefined); // never reported (died before ready): nothing waits
  assertEquals(carry.waiting, 0);
  carry.exited(state(5));
  const next = new Child(true);
  assertEquals(await carry.handTo(next), true);
  assertEquals(next.got, [[state(5)]]);
  assertEquals(await carry.handTo(new Child(true)), true);
  assertEquals(carry.waiting, 0);
});

Deno.test("stats carry: a hand-over not confirmed waits for the next child, unless the child reported it", async () => {
  const carry = new StatsCarry();
  carry.exited(state(5));
  const dying = new Child(false);
  assertEquals(await carry.handTo(dying), false);
  assertEquals(carry.waiting, 1);
  // The dying child's last report: nothing of the carry in it; both wait now, once each.
  carry.exited(dying.queryStats = state(2));
  const next = new Child(true);
  await carry.handTo(next);
  assertEquals(next.got, [[state(5), state(2)]]);
  // A child that took the carry in and reported it, then died before it could confirm.
  carry.exited(state(9));
  const reported = new Child(false);
  reported.queryStats = state(1, [1]);
  assertEquals(await carry.handTo(reported), true);
  assertEquals(carry.waiting, 0);
});
