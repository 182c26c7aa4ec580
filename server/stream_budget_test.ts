import { assert, assertEquals } from "../tests/helpers/assert.ts";
import { StreamBudget, type StreamCloseReason, type StreamLimits } from "./stream_budget.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A sink that takes writes at once, stalls them, or fails them, as the test says. */
class FakeSink {
  /** Every write call, with the bytes offered. */
  readonly writes: Uint8Array[] = [];
  /** `take`: all bytes at once; `stall`: held until {@link release}; a number: that many per write. */
  mode: "take" | "stall" | "fail" | number = "take";
  /** Bytes taken by writes in the numeric mode. */
  taken = 0;
  private held: (() => void)[] = [];

  write(p: Uint8Array): Promise<number> {
    this.writes.push(p.slice());
    if (this.mode === "fail") return Promise.reject(new Error("reset"));
    if (this.mode === "take") return Promise.resolve(p.length);
    if (typeof this.mode === "number") {
      this.taken += Math.min(p.length, this.mode);
      return Promise.resolve(Math.min(p.length, this.mode));
    }
    return new Promise((resolve) => this.held.push(() => resolve(p.length)));
  }

  /** Lets every stalled write complete in full. */
  release(): void {
    for (const go of this.held.splice(0)) go();
  }
}

function budget(limits: Partial<StreamLimits>, sink = new FakeSink()) {
  const reasons: StreamCloseReason[] = [];
  const b = new StreamBudget(sink, (reason) => reasons.push(reason), {
    maxInFlight: 4,
    maxQueuedBytes: 100,
    overBudgetMs: 60,
    writeTimeoutMs: 200,
    ...limits,
  });
  return { b, sink, reasons };
}

/** Whether `p` has settled within a few event-loop turns, and with what. */
async function settledWith<T>(p: Promise<T>): Promise<{ value: T } | "pending"> {
  return await Promise.race([p.then((value) => ({ value })), sleep(5).then(() => "pending" as const)]);
}

Deno.test("StreamBudget: reading stops at maxInFlight and resumes when an answer is written", async () => {
  const { b, sink } = budget({});
  sink.mode = "stall";
  for (let i = 0; i < 4; i++) {
    assertEquals(await settledWith(b.ready()), { value: true });
    b.admit();
  }
  assert(b.overBudget);
  const ready = b.ready();
  assertEquals(await settledWith(ready), "pending", "over budget: the reader waits");
  b.send(new Uint8Array(10));
  assertEquals(await settledWith(ready), "pending", "queued is not written yet");
  sink.release();
  assertEquals(await settledWith(ready), { value: true });
  assertEquals(b.inFlight, 3);
  b.close();
});

Deno.test("StreamBudget: reading stops at maxQueuedBytes; partial writes count down", async () => {
  const { b, sink } = budget({ maxInFlight: 100 });
  sink.mode = 10; // a socket that takes 10 bytes per write
  b.admit();
  b.admit();
  b.send(new Uint8Array(60));
  b.send(new Uint8Array(60));
  assertEquals(b.queuedBytes, 120);
  assert(b.overBudget);
  const ready = b.ready();
  assertEquals(await settledWith(ready), { value: true }, "written down under the limit");
  await b.drained();
  assertEquals(b.queuedBytes, 0);
  assertEquals(b.inFlight, 0);
  assertEquals(sink.taken, 120);
  b.close();
});

Deno.test("StreamBudget: answers go out in the order they complete, small ones joined", async () => {
  const { b, sink } = budget({ maxInFlight: 10, maxQueuedBytes: 1000 });
  sink.mode = "stall";
  for (let i = 0; i < 3; i++) b.admit();
  b.send(Uint8Array.of(3));
  b.send(Uint8Array.of(1));
  b.send(Uint8Array.of(2));
  sink.release(); // the first write held [3]; the other two wait behind it
  await sleep(1);
  sink.release();
  await b.drained();
  assertEquals(sink.writes.map((w) => [...w]), [[3], [1, 2]]);
  b.close();
});

Deno.test("StreamBudget: over budget with a stalled socket is closed as over-budget", async () => {
  const { b, sink, reasons } = budget({});
  sink.mode = "stall";
  const started = performance.now();
  for (let i = 0; i < 4; i++) {
    b.admit();
    b.send(new Uint8Array(5));
  }
  const ready = await b.ready();
  const waited = performance.now() - started;
  assertEquals(ready, false, "the reader is told to stop");
  assertEquals(reasons, ["over-budget"]);
  assert(waited >= 55, `closed after ${waited.toFixed(0)} ms`);
  assert(b.closed);
  await b.drained(); // resolves at once once closed
  b.admit();
  b.send(new Uint8Array(5)); // an answer arriving after the close is dropped
  assertEquals(b.queuedBytes, 0);
});

Deno.test("StreamBudget: a stalled write under budget is closed at the write timeout", async () => {
  const { b, sink, reasons } = budget({ writeTimeoutMs: 300 });
  sink.mode = "stall";
  b.admit();
  b.send(new Uint8Array(5));
  const started = performance.now();
  const drained = b.drained();
  await sleep(120);
  assertEquals(reasons, [], "the over-budget time does not apply under budget");
  await drained;
  const waited = performance.now() - started;
  assertEquals(reasons, ["write-timeout"]);
  assert(waited >= 290, `closed after ${waited.toFixed(0)} ms`);
});

Deno.test("StreamBudget: over budget only while answers are resolved is not the client's fault", async () => {
  const { b, reasons } = budget({});
  for (let i = 0; i < 4; i++) b.admit();
  const ready = b.ready();
  await sleep(250); // longer than both clocks: nothing is waiting to be written
  assertEquals(reasons, []);
  assertEquals(await settledWith(ready), "pending");
  b.send(new Uint8Array(5));
  assertEquals(await settledWith(ready), { value: true });
  b.release();
  b.release();
  b.release();
  await b.drained();
  b.close();
});

Deno.test("StreamBudget: a slow socket that keeps taking bytes is never closed", async () => {
  const sink = new FakeSink();
  const { b, reasons } = budget({}, sink);
  // Each write takes 2 bytes after 25 ms: 40 bytes take 20 writes, ~500 ms, much longer than the
  // 60 ms over-budget time, and the first answer alone keeps it over budget for ~125 ms.
  sink.mode = "stall";
  const original = sink.write.bind(sink);
  sink.write = (p) => original(p).then(() => sleep(25)).then(() => Math.min(2, p.length));
  const pump = setInterval(() => sink.release(), 1);
  try {
    for (let i = 0; i < 4; i++) {
      b.admit();
      b.send(new Uint8Array(10));
    }
    assert(b.overBudget);
    assertEquals(await b.ready(), true);
    await b.drained();
    assertEquals(reasons, []);
    assert(!b.closed);
  } finally {
    clearInterval(pump);
    b.close();
  }
});

Deno.test("StreamBudget: a failed write closes quietly; waiters wake", async () => {
  const { b, sink, reasons } = budget({});
  for (let i = 0; i < 4; i++) b.admit();
  const ready = b.ready();
  const drained = b.drained();
  sink.mode = "fail";
  b.send(new Uint8Array(5));
  assertEquals(await ready, false);
  await drained;
  assert(b.closed);
  assertEquals(reasons, [], "a reset is not a budget rule");
});

Deno.test("StreamBudget: release() for a query without an answer frees its place", async () => {
  const { b } = budget({ maxInFlight: 1 });
  b.admit();
  const ready = b.ready();
  assertEquals(await settledWith(ready), "pending");
  b.release();
  assertEquals(await settledWith(ready), { value: true });
  assertEquals(b.inFlight, 0);
  await b.drained();
  b.close();
});
