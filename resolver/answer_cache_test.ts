import { assertEquals } from "../tests/helpers/assert.ts";
import { StoredAnswer } from "../dns/stored_answer.ts";
import { AnswerCache } from "./answer_cache.ts";

function answer(lifetime: number, storedAt = 0): StoredAnswer {
  return StoredAnswer.create(new Uint8Array(12), [], [], storedAt, lifetime);
}

Deno.test("AnswerCache evicts the least recently used entry beyond capacity", () => {
  const cache = new AnswerCache(2);
  cache.set("a", answer(60));
  cache.set("b", answer(60));
  cache.get("a", 0); // a is now the most recent
  cache.set("c", answer(60));
  assertEquals(cache.size, 2);
  assertEquals(cache.get("b", 0), undefined);
  assertEquals(cache.get("a", 0) !== undefined, true);
  assertEquals(cache.get("c", 0) !== undefined, true);
});

Deno.test("AnswerCache drops entries once their lifetime is over", () => {
  const cache = new AnswerCache(10);
  cache.set("a", answer(2, 1000));
  assertEquals(cache.get("a", 2999) !== undefined, true);
  assertEquals(cache.get("a", 3000), undefined);
  assertEquals(cache.size, 0);
});

Deno.test("AnswerCache keeps nothing with capacity 0 or lifetime 0", () => {
  const none = new AnswerCache(0);
  none.set("a", answer(60));
  assertEquals(none.size, 0);
  const cache = new AnswerCache(10);
  cache.set("a", answer(0));
  assertEquals(cache.size, 0);
});

/** An answer whose bytes say which `n` it is, `size` bytes long, with one TTL. */
function numbered(n: number, size: number, lifetime = 60): StoredAnswer {
  const wire = new Uint8Array(Math.max(size, 16));
  new DataView(wire.buffer).setUint32(12, n);
  wire[3] = n & 0x0f;
  return StoredAnswer.create(wire, [4], [lifetime], 0, lifetime);
}

Deno.test("AnswerCache keeps each answer's bytes and TTL table whole through churn (model check)", () => {
  // A plain Map with the same LRU rule is the model; sizes vary so records share and reuse chunks.
  const cache = new AnswerCache(300);
  const model = new Map<string, { n: number; size: number }>();
  let seed = 7;
  const random = (m: number) => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) % m;
  for (let step = 0; step < 20_000; step++) {
    const key = `name${random(600)}.example|${1 + random(3)}|1`;
    if (random(3) === 0) {
      const n = step;
      const size = 16 + random(700);
      cache.set(key, numbered(n, size));
      model.delete(key);
      model.set(key, { n, size });
      while (model.size > 300) model.delete(model.keys().next().value!);
    } else {
      const got = cache.get(key, 0);
      const want = model.get(key);
      assertEquals(got !== undefined, want !== undefined, `presence of ${key} at step ${step}`);
      if (got && want) {
        model.delete(key);
        model.set(key, want);
        assertEquals(got.wire.length, Math.max(want.size, 16));
        assertEquals(new DataView(got.wire.buffer, got.wire.byteOffset).getUint32(12), want.n);
        assertEquals([got.ttlCount, got.ttlOffset(0), got.ttl(0), got.rcode], [1, 4, 60, want.n & 0x0f]);
      }
    }
    assertEquals(cache.size, model.size);
  }
  assertEquals([...cache.entries()].map(([k]) => k), [...model.keys()]);
});

Deno.test("AnswerCache resize evicts the oldest; clear empties; keys beyond one byte a char are not kept", () => {
  const cache = new AnswerCache(5000);
  for (let i = 0; i < 5000; i++) cache.set(`k${i}`, numbered(i, 40));
  cache.resize(10);
  assertEquals(cache.size, 10);
  assertEquals([...cache.entries()].map(([k]) => k), Array.from({ length: 10 }, (_, i) => `k${4990 + i}`));
  cache.clear();
  assertEquals([cache.size, cache.get("k4999", 0)], [0, undefined]);
  cache.set("k1", numbered(1, 40));
  cache.set("\u0101", numbered(2, 40));
  assertEquals([cache.size, cache.get("k1", 0)?.wire.length], [1, 40]);
});
