import { assert, assertEquals, assertThrows } from "../tests/helpers/assert.ts";
import { hashBytes, HeavyHitters } from "./heavy_hitters.ts";

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
const sketch = (capacity: number) => new HeavyHitters(capacity, 64, text);

Deno.test("heavy hitters: exact while every key fits, largest first", () => {
  const h = sketch(8);
  for (const [key, n] of [["a", 5], ["b", 3], ["c", 9], ["d", 1]] as const) {
    for (let i = 0; i < n; i++) h.addText(key);
  }
  assertEquals(h.top(3), [
    { key: "c", count: 9, error: 0 },
    { key: "a", count: 5, error: 0 },
    { key: "b", count: 3, error: 0 },
  ]);
  assertEquals(h.total, 18);
  assertThrows(() => sketch(0));
});

Deno.test("heavy hitters: a bounded sketch keeps the frequent keys of a long tail, counts within their error", () => {
  // 20 hot keys (1000 hits each) among 50k keys seen once or twice, interleaved.
  const h = sketch(128);
  const truth = new Map<string, number>();
  let seed = 7;
  const random = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
  for (let i = 0; i < 50_000; i++) {
    const key = random() < 0.3 ? `hot${Math.floor(random() * 20)}` : `cold${Math.floor(random() * 40_000)}`;
    truth.set(key, (truth.get(key) ?? 0) + 1);
    h.addText(key);
  }
  assert(h.size <= 128);
  const top = h.top(20);
  assertEquals(top.map((e) => e.key).sort(), Array.from({ length: 20 }, (_, i) => `hot${i}`).sort());
  for (const e of top) {
    const real = truth.get(e.key)!;
    assert(e.count >= real && e.count - e.error <= real, `${e.key}: ${e.count}-${e.error} vs ${real}`);
  }
  // Space-Saving's bound: every overcount is at most total / capacity.
  for (const e of h.top(128)) assert(e.error <= h.total / 128, JSON.stringify(e));
});

Deno.test("heavy hitters: a successor merges a predecessor's state", () => {
  const old = sketch(4);
  for (let i = 0; i < 10; i++) old.addText("a");
  for (let i = 0; i < 4; i++) old.addText("b");
  const next = sketch(4);
  next.addText("b");
  next.addText("c");
  next.merge(JSON.parse(JSON.stringify(old.state())), old.total);
  assertEquals(next.top(3).map((e) => [e.key, e.count]), [["a", 10], ["b", 5], ["c", 1]]);
  assertEquals(next.total, 16);
});

Deno.test("heavy hitters: keys are bytes (cut at the longest kept), hashed apart", () => {
  const h = new HeavyHitters(4, 3, (b) => Array.from(b).join(","));
  h.add(Uint8Array.of(9, 1, 2, 3, 4, 9), 1, 4);
  h.add(Uint8Array.of(1, 2, 3, 5), 0, 4); // the same first 3 bytes: the same key
  h.add(Uint8Array.of(1, 2), 0, 2);
  assertEquals(h.top(5).map((e) => [e.key, e.count]), [["1,2,3", 2], ["1,2", 1]]);
  const seen = new Set<number>();
  for (let i = 0; i < 100_000; i++) {
    seen.add(hashBytes(new TextEncoder().encode(`name${i}.test`), 0, 10 + String(i).length));
  }
  assertEquals(seen.size, 100_000);
});
