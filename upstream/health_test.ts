import { assert, assertEquals } from "../tests/helpers/assert.ts";
import { buildQuery } from "../tests/helpers/dns_client.ts";
import { parseQuery, type Question } from "../dns/wire.ts";
import { HealthChecked, OUTRUN } from "./health.ts";
import { type Upstream, UpstreamError } from "./upstream.ts";
import { Cancel } from "./cancel.ts";

const question = () => parseQuery(buildQuery("a.test", "A"));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A scriptable fake: `mode` decides each exchange (answer after `delayMs`, fail, or never answer). */
class Fake implements Upstream {
  readonly address = "udp://192.0.2.53:53";
  mode: "answer" | "fail" | "hang" = "answer";
  delayMs = 1;
  readonly asked: string[] = [];
  exchange(q: Question, cancel: Cancel): Promise<Uint8Array> {
    this.asked.push(q.name === "" ? ". NS" : q.name);
    const mode = this.mode;
    return new Promise((resolve, reject) => {
      if (mode === "fail") return reject(new UpstreamError(this.address, "refused"));
      const t = mode === "answer" ? setTimeout(() => resolve(new Uint8Array(12)), this.delayMs) : undefined;
      cancel.listen(() => {
        clearTimeout(t);
        reject(new UpstreamError(this.address, "aborted"));
      });
    });
  }
  close() {}
}

function wrap(fake: Fake, changes: string[] = []) {
  return new HealthChecked(fake, {
    timeoutMs: 1000,
    probeMinMs: 30,
    probeMaxMs: 120,
    onChange: (h) => changes.push(h.down ? "down" : "up"),
  });
}

Deno.test("two failures in a row set a server aside; one does not", async () => {
  const fake = new Fake();
  const changes: string[] = [];
  const h = wrap(fake, changes);
  try {
    fake.mode = "fail";
    await h.exchange(question(), new Cancel()).catch(() => {});
    assertEquals(h.down, false);
    fake.mode = "answer";
    await h.exchange(question(), new Cancel());
    fake.mode = "fail";
    await h.exchange(question(), new Cancel()).catch(() => {});
    assertEquals(h.down, false, "a success in between resets the count");
    await h.exchange(question(), new Cancel()).catch(() => {});
    assertEquals(h.down, true);
    assertEquals(changes, ["down"]);
    const r = h.report();
    assertEquals([r.state, r.failures, r.consecutiveFailures, r.answers], ["down", 3, 2, 1]);
  } finally {
    h.close();
  }
});

Deno.test("a down server is probed, with backoff, until it answers, then is up again", async () => {
  const fake = new Fake();
  const changes: string[] = [];
  const h = wrap(fake, changes);
  try {
    fake.mode = "fail";
    for (let i = 0; i < 2; i++) await h.exchange(question(), new Cancel()).catch(() => {});
    assert(h.down);
    fake.asked.length = 0;
    await sleep(30 + 60 + 50); // probes at ~30 ms and ~90 ms (doubled), the next one at ~210 ms
    const probes = fake.asked.length;
    assert(probes >= 1 && probes <= 3, `probes so far: ${probes}`);
    assert(fake.asked.every((a) => a === ". NS"), "probes ask . NS");
    fake.mode = "answer";
    const deadline = Date.now() + 2000;
    while (h.down && Date.now() < deadline) await sleep(10);
    assertEquals(h.down, false, "back up after answering a probe");
    assertEquals(changes, ["down", "up"]);
    const asked = fake.asked.length;
    await sleep(150);
    assertEquals(fake.asked.length, asked, "no more probes once up");
    assert(h.report().probes >= 2);
  } finally {
    h.close();
  }
});

Deno.test("an abort because another server won returns at once and is no failure; the exchange runs on", async () => {
  const fake = new Fake();
  const h = wrap(fake);
  try {
    fake.delayMs = 30;
    for (let i = 0; i < 3; i++) {
      const c = new Cancel();
      const started = performance.now();
      const p = h.exchange(question(), c).catch(() => "rejected");
      c.cancel(OUTRUN);
      assertEquals(await p, "rejected");
      assert(performance.now() - started < 25, "the race is not held");
    }
    await sleep(80);
    const r = h.report();
    assertEquals(
      [h.down, r.failures, r.answers, r.samples],
      [false, 0, 3, 3],
      "the late answers are measured",
    );
  } finally {
    h.close();
  }
});

Deno.test("a silent server outrun by others is still found out at its own timeout", async () => {
  const fake = new Fake();
  const h = new HealthChecked(fake, { timeoutMs: 100, probeMinMs: 10_000 });
  try {
    fake.mode = "hang";
    for (let i = 0; i < 2; i++) {
      const c = new Cancel();
      const p = h.exchange(question(), c).catch(() => "rejected");
      c.cancel(OUTRUN);
      assertEquals(await p, "rejected");
    }
    assertEquals(h.down, false, "not before the timeout");
    await sleep(150);
    assertEquals([h.down, h.report().failures], [true, 2]);
  } finally {
    h.close();
  }
});

Deno.test("any other abort (the race's own timeout) is a failure at once", async () => {
  const fake = new Fake();
  const h = wrap(fake);
  try {
    fake.mode = "hang";
    for (let i = 0; i < 2; i++) {
      const c = new Cancel();
      const p = h.exchange(question(), c).catch(() => "rejected");
      c.cancel();
      assertEquals(await p, "rejected");
    }
    assertEquals([h.down, h.report().failures], [true, 2]);
  } finally {
    h.close();
  }
});

Deno.test("RTT percentiles over the window, and the adaptive timeout", async () => {
  const fake = new Fake();
  const h = wrap(fake);
  try {
    assertEquals(h.timeoutMs, 1000, "the configured timeout until there are samples");
    for (let i = 0; i < 20; i++) {
      fake.delayMs = i < 19 ? 5 : 100;
      await h.exchange(question(), new Cancel());
    }
    const r = h.report();
    assertEquals(r.samples, 20);
    assert(r.rttP50Ms >= 4 && r.rttP50Ms < 40, `p50 ${r.rttP50Ms}`);
    // Timings from a shared machine: a 5 ms sample may take far longer, but the slow one stays the max.
    assert(
      r.rttP95Ms >= r.rttP50Ms && r.rttP95Ms < h.percentile(1),
      `p95 ${r.rttP95Ms} (the one slow sample is the max)`,
    );
    assertEquals(h.timeoutMs, Math.max(3 * h.percentile(0.95), 200), "max(3 × p95, 200 ms)");
    assert(h.percentile(1) >= 95, `max ${h.percentile(1)}`);
    // Silent past the adaptive timeout: counted as failed at once, yet a late answer is still taken.
    fake.delayMs = 400;
    const started = performance.now();
    const slow = h.exchange(question(), new Cancel());
    await sleep(300);
    assertEquals(h.report().consecutiveFailures, 1, "counted at 200 ms");
    await slow;
    assert(performance.now() - started >= 390, "the late answer was awaited");
    assertEquals([h.report().consecutiveFailures, h.report().failures, h.down], [0, 1, false]);
    // A hung one gives up at the configured timeout, counted once.
    fake.mode = "hang";
    const error = await h.exchange(question(), new Cancel()).catch((e) => e);
    assert(error instanceof UpstreamError && /no answer in 1000 ms/.test(error.message), String(error));
    assertEquals(h.report().failures, 2);
  } finally {
    h.close();
  }
});

Deno.test("the adaptive timeout is capped at the configured one and the ring keeps only the recent window", async () => {
  const fake = new Fake();
  const h = new HealthChecked(fake, { timeoutMs: 150 });
  try {
    fake.delayMs = 80;
    for (let i = 0; i < 5; i++) await h.exchange(question(), new Cancel());
    assertEquals(h.timeoutMs, 150, "3 × p95 > 150: capped");
    fake.delayMs = 0;
    for (let i = 0; i < 64; i++) await h.exchange(question(), new Cancel());
    assertEquals(h.report().samples, 64); // report() sorts afresh
    assert(h.percentile(1) < 50, `the slow samples left the window: max ${h.percentile(1)}`);
  } finally {
    h.close();
  }
});
