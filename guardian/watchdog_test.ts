import { assert, assertEquals, assertMatch } from "../tests/helpers/assert.ts";
import { describeStage, MEMORY_RESTART_INTERVAL_MS, Watchdog, type WatchedChild } from "./watchdog.ts";

const limits = { watchdogTimeout: 2, startupTimeout: 30, maxMemory: 0 };
const T0 = 1_000_000;

/** A child as the watchdog sees it, started at T0. */
function child(fields: Partial<WatchedChild> = {}): WatchedChild {
  return { startedAt: T0, readyAt: 0, lastHeard: 0, ...fields };
}

Deno.test("a starting child that has said nothing is left alone until the start-up deadline", () => {
  const w = new Watchdog(limits);
  const c = child();
  assertEquals(w.check(c, T0 + 10_000), null, "far past watchdog-timeout, still loading the program");
  assertEquals(w.check(c, T0 + 30_000), null);
  const verdict = w.check(c, T0 + 30_001);
  assertEquals(verdict?.action, "kill");
  assertEquals(
    verdict?.reason,
    "never became ready in 30 s (last start-up stage: none reported (the program was still loading))",
  );
  assertEquals(w.check(c, T0 + 40_000), null, "a condemned child is judged once");
});

Deno.test("a child that never becomes ready is killed at the deadline, naming its last stage", () => {
  const w = new Watchdog(limits);
  const c = child({ lastHeard: T0 + 29_900, stage: "loading the cache file" });
  assertEquals(w.check(c, T0 + 29_999), null);
  const verdict = w.check(c, T0 + 31_000);
  assertEquals(verdict, {
    action: "kill",
    reason: "never became ready in 30 s (last start-up stage: loading the cache file)",
  });
});

Deno.test("silence while starting is reported once per silent spell, never a kill before the deadline", () => {
  const w = new Watchdog(limits);
  const c = { startedAt: T0, readyAt: 0, lastHeard: T0 + 1000, stage: "reading rules" };
  assertEquals(w.check(c, T0 + 2500), null, "within watchdog-timeout");
  const warning = w.check(c, T0 + 4000);
  assertEquals(warning?.action, "warn");
  assertMatch(warning!.reason, /^has not beaten for 3000 ms while starting \(stage: reading rules\)/);
  assertEquals(w.check(c, T0 + 9000), null, "said once");
  c.lastHeard = T0 + 9000;
  assertEquals(w.check(c, T0 + 10_000), null, "it spoke again");
  assertEquals(w.check(c, T0 + 12_000)?.action, "warn", "a new silent spell is said again");
});

Deno.test("a ready child is hung after watchdog-timeout without a heartbeat", () => {
  const w = new Watchdog(limits);
  const c = { startedAt: T0, readyAt: T0 + 500, lastHeard: T0 + 500 };
  assertEquals(w.check(c, T0 + 2500), null);
  c.lastHeard = T0 + 60_000;
  assertEquals(w.check(c, T0 + 61_000), null, "the start-up deadline no longer applies");
  assertEquals(w.check(c, T0 + 62_100), { action: "kill", reason: "hung: no heartbeat for 2100 ms" });
});

Deno.test("a child is measured from ready, not from a beat it sent while starting", () => {
  const w = new Watchdog(limits);
  const c = child({ lastHeard: T0 + 100, readyAt: T0 + 20_000 });
  assertEquals(w.check(c, T0 + 21_000), null);
});

Deno.test("describeStage says what a starting child last reported", () => {
  assertEquals(describeStage(child({ stage: "binding listeners", lastHeard: 1 })), "binding listeners");
  assertEquals(describeStage(child({ lastHeard: 1 })), "none reported");
  assertMatch(describeStage(child()), /still loading/);
});

Deno.test("max-memory: a restart when over the limit, at most once a minute; none without a limit", () => {
  const off = new Watchdog(limits);
  assert(!off.limitsMemory);
  assertEquals(off.checkMemory(10e9, T0), null);
  const w = new Watchdog({ ...limits, maxMemory: 100 * 1024 * 1024 });
  assert(w.limitsMemory);
  assertEquals(w.checkMemory(99 * 1024 * 1024, T0), null);
  assertEquals(w.checkMemory(150 * 1024 * 1024, T0), "child RSS 150.0 MB is over max-memory 100.0 MB");
  assertEquals(w.checkMemory(150 * 1024 * 1024, T0 + MEMORY_RESTART_INTERVAL_MS), null, "not again so soon");
  assert(w.checkMemory(150 * 1024 * 1024, T0 + MEMORY_RESTART_INTERVAL_MS + 1) !== null);
});
