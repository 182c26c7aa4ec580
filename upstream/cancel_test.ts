import { assertEquals } from "../tests/helpers/assert.ts";
import { Cancel, CANCELLED } from "./cancel.ts";

Deno.test("Cancel: tells each listener once, with the reason; later cancels change nothing", () => {
  const c = new Cancel();
  const told: unknown[] = [];
  c.listen((r) => told.push(["fn", r]));
  c.listen({ onCancel: (r) => told.push(["obj", r]) });
  c.listen((r) => told.push(["third", r]));
  assertEquals([c.cancelled, c.reason], [false, undefined]);
  c.cancel("why");
  c.cancel("again");
  assertEquals([c.cancelled, c.reason], [true, "why"]);
  assertEquals(told, [["fn", "why"], ["obj", "why"], ["third", "why"]]);
});

Deno.test("Cancel: an unlistened listener is not told; none is told after the cancel", () => {
  const c = new Cancel();
  const told: string[] = [];
  const a = () => told.push("a");
  const b = () => told.push("b");
  const d = () => told.push("d");
  c.listen(a);
  c.listen(b);
  c.listen(d);
  c.unlisten(a);
  c.unlisten(d);
  c.cancel();
  assertEquals(c.reason, CANCELLED);
  c.listen(a);
  assertEquals(told, ["b"]);
});

Deno.test("Cancel: a listener that throws stops neither the others nor the canceller", async () => {
  const c = new Cancel();
  const told: string[] = [];
  let reported: unknown;
  const onError = (e: ErrorEvent) => {
    e.preventDefault();
    reported = e.error;
  };
  globalThis.addEventListener("error", onError);
  try {
    c.listen(() => {
      throw new Error("boom");
    });
    c.listen(() => told.push("second"));
    c.cancel();
    assertEquals(told, ["second"]);
    await new Promise((r) => setTimeout(r, 0));
    assertEquals((reported as Error).message, "boom");
  } finally {
    globalThis.removeEventListener("error", onError);
  }
});

Deno.test("Cancel.of follows an AbortSignal, with its reason", () => {
  const controller = new AbortController();
  const c = Cancel.of(controller.signal);
  assertEquals(c.cancelled, false);
  controller.abort("gone");
  assertEquals([c.cancelled, c.reason], [true, "gone"]);
  const aborted = AbortSignal.abort("before");
  assertEquals(Cancel.of(aborted).reason, "before");
});
