import { assert, assertEquals } from "../tests/helpers/assert.ts";
import { CoarseTimers, GRANULARITY_MS } from "./coarse_timers.ts";

Deno.test("coarse timers: a callback runs once, never early, and callbacks due together share a bucket", async () => {
  const timers = new CoarseTimers();
  const started = performance.now();
  const ran: number[] = [];
  const all = Array.from({ length: 50 }, (_, i) => timers.after(30, () => ran.push(i)));
  assertEquals(all.length, 50);
  await new Promise((r) => setTimeout(r, 30 + GRANULARITY_MS + 40));
  assertEquals(ran, Array.from({ length: 50 }, (_, i) => i));
  assert(performance.now() - started >= 30);
});

Deno.test("coarse timers: a cancelled callback never runs, and no real timer is left behind", async () => {
  // The test sanitizer fails this test if a real timer outlives it.
  const timers = new CoarseTimers();
  let ran = 0;
  const a = timers.after(20, () => ran++);
  const b = timers.after(20, () => ran++);
  const c = timers.after(500, () => ran++);
  a.cancel();
  a.cancel();
  await new Promise((r) => setTimeout(r, 20 + GRANULARITY_MS + 30));
  assertEquals(ran, 1);
  b.cancel(); // after it ran: nothing
  c.cancel();
  assertEquals(ran, 1);
});

Deno.test("coarse timers: a callback that throws does not stop the others in its bucket", async () => {
  const timers = new CoarseTimers();
  let ran = 0;
  const errors: unknown[] = [];
  const onError = (e: ErrorEvent) => {
    e.preventDefault();
    errors.push(e.error);
  };
  globalThis.addEventListener("error", onError);
  try {
    timers.after(5, () => {
      throw new Error("boom");
    });
    timers.after(5, () => ran++);
    await new Promise((r) => setTimeout(r, 5 + GRANULARITY_MS + 30));
    assertEquals(ran, 1);
    assertEquals(errors.length, 1);
  } finally {
    globalThis.removeEventListener("error", onError);
  }
});

Deno.test("coarse timers: long delays asked over a few milliseconds share one real timer", async () => {
  const timers = new CoarseTimers();
  const all = [];
  for (let i = 0; i < 10; i++) {
    all.push(timers.after(3000, () => {}));
    await new Promise((r) => setTimeout(r, 1));
  }
  // 10+ ms apart in all, in 64 ms buckets: at most two
  assert(timers.realTimers <= 2, `${timers.realTimers} real timers`);
  for (const t of all) t.cancel();
  assertEquals(timers.realTimers, 0);
});

Deno.test("coarse timers: cancelled ones anywhere in a bucket are skipped, also by a callback of that bucket", async () => {
  const timers = new CoarseTimers();
  const ran: number[] = [];
  const all: { cancel(): void }[] = [];
  for (let i = 0; i < 6; i++) {
    all.push(
      timers.after(10, i === 0 ? () => (ran.push(0), all[5].cancel()) : { timeUp: () => ran.push(i) }),
    );
  }
  all[1].cancel(); // the second
  all[3].cancel(); // one in the middle
  await new Promise((r) => setTimeout(r, 10 + GRANULARITY_MS + 30));
  assertEquals(ran, [0, 2, 4]);
  assertEquals(timers.realTimers, 0);
});
