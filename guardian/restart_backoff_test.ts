import { assert, assertEquals, assertLess } from "../tests/helpers/assert.ts";
import { HEALTHY_AFTER_MS, MAX_RESTART_DELAY_MS, RestartBackoff, restartDelay } from "./restart_backoff.ts";

Deno.test("restart delays: immediate, then 100 ms doubling up to the cap", () => {
  assertEquals([1, 2, 3, 4, 5, 6, 7, 8, 9].map(restartDelay), [
    0,
    100,
    200,
    400,
    800,
    1600,
    3200,
    5000,
    5000,
  ]);
  assertEquals(restartDelay(100), MAX_RESTART_DELAY_MS);
});

Deno.test("failures before serving add up; a child that served starts a new count", () => {
  const b = new RestartBackoff();
  assertEquals(b.failures, 0);
  b.failed(0);
  assertEquals([b.failures, b.delayMs], [1, 0]);
  b.failed(0);
  b.failed(HEALTHY_AFTER_MS - 1);
  assertEquals([b.failures, b.delayMs], [3, 200]);
  b.failed(HEALTHY_AFTER_MS);
  assertEquals([b.failures, b.delayMs], [1, 0], "served long enough: immediate again");
});

Deno.test("forgive makes the next start immediate; reset clears the count", () => {
  const b = new RestartBackoff();
  for (let i = 0; i < 5; i++) b.failed(0);
  b.forgive();
  assertEquals([b.failures, b.delayMs], [1, 0]);
  b.failed(0);
  b.reset();
  assertEquals(b.failures, 0);
});

Deno.test("wait says how long is left, and wake ends it early", async () => {
  const b = new RestartBackoff();
  assertEquals(b.remainingMs(), null);
  const started = performance.now();
  const waiting = b.wait(5000);
  const left = b.remainingMs();
  assert(left !== null && left > 4000 && left <= 5000, `remaining ${left}`);
  setTimeout(() => b.wake(), 20);
  await waiting;
  assertLess(performance.now() - started, 1000);
  assertEquals(b.remainingMs(), null);
  b.wake(); // nothing waiting: harmless
});
