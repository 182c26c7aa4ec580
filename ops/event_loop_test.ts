import { assert, assertEquals } from "../tests/helpers/assert.ts";
import { forEachPaced, Pacer, yieldToEventLoop } from "./event_loop.ts";

/** Busy for `ms` milliseconds, as a synchronous parse is. */
function busy(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) { /* working */ }
}

Deno.test("yieldToEventLoop lets a due timer run", async () => {
  let fired = false;
  const timer = setTimeout(() => fired = true, 0);
  busy(5);
  await yieldToEventLoop();
  clearTimeout(timer);
  assert(fired, "the timer ran during the yield");
});

Deno.test("a paced busy loop keeps an interval (the heartbeat) firing", async () => {
  let beats = 0;
  const heartbeat = setInterval(() => beats++, 50);
  let pauses = 0;
  const pacer = new Pacer(10, () => pauses++);
  const end = performance.now() + 600;
  try {
    while (performance.now() < end) {
      busy(1);
      if (pacer.due()) await pacer.pause();
    }
  } finally {
    clearInterval(heartbeat);
  }
  assert(beats >= 6, `beats kept coming (${beats} in 600 ms at one per 50 ms)`);
  assert(pauses >= 30, `the loop yielded about every 10 ms (${pauses} pauses)`);
});

Deno.test("Pacer.due is false within the slice and true after it", async () => {
  const pacer = new Pacer(30);
  assertEquals(pacer.due(), false);
  busy(35);
  assertEquals(pacer.due(), true);
  await pacer.pause();
  assertEquals(pacer.due(), false, "a new slice starts after the pause");
});

Deno.test("forEachPaced visits every item in order and lets timers run", async () => {
  let ticks = 0;
  const timer = setInterval(() => ticks++, 20);
  const seen: number[] = [];
  try {
    await forEachPaced(Array.from({ length: 200 }, (_, i) => i), (item, index) => {
      assertEquals(item, index);
      seen.push(item);
      busy(1);
    }, 5);
  } finally {
    clearInterval(timer);
  }
  assertEquals(seen.length, 200);
  assert(ticks >= 4, `the timer ran during the loop (${ticks} ticks)`);
});
