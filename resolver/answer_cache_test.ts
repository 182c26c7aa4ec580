import { assertEquals } from "../tests/helpers/assert.ts";
import { buildQuery } from "../tests/helpers/dns_client.ts";
import { StoredAnswer } from "../dns/stored_answer.ts";
import { parseQuery, type Question } from "../dns/wire.ts";
import { AnswerCache } from "./answer_cache.ts";

function answer(lifetime: number, storedAt = 0): StoredAnswer {
  return StoredAnswer.create(new Uint8Array(12), [], [], storedAt, lifetime);
}

/** The question a client sends for `name` and `type` (a name, or a number). */
function q(name: string, type: string | number = "A", dnssecOk = false): Question {
  const wire = buildQuery(name, typeof type === "number" ? "A" : type, dnssecOk ? { edns: 1232 } : {});
  const typeAt = 12 + name.length + 2;
  if (typeof type === "number") [wire[typeAt], wire[typeAt + 1]] = [type >> 8, type & 0xff];
  if (dnssecOk) wire[wire.length - 4] |= 0x80; // DO in the OPT record's TTL flags
  return parseQuery(wire);
}

Deno.test("AnswerCache evicts the least recently used entry beyond capacity", () => {
  const cache = new AnswerCache(2);
  cache.set(q("a"), answer(60));
  cache.set(q("b"), answer(60));
  cache.get(q("a"), 0); // a is now the most recent
  cache.set(q("c"), answer(60));
  assertEquals(cache.size, 2);
  assertEquals(cache.get(q("b"), 0), undefined);
  assertEquals(cache.get(q("a"), 0) !== undefined, true);
  assertEquals(cache.get(q("c"), 0) !== undefined, true);
});

Deno.test("AnswerCache keys on name (any case), type, class and the DO bit", () => {
  const cache = new AnswerCache(10);
  cache.set(q("Www.Example.COM"), answer(60));
  assertEquals(q("a", "A", true).dnssecOk, true);
  assertEquals(cache.get(q("www.example.com"), 0) !== undefined, true);
  assertEquals(cache.get(q("WWW.EXAMPLE.COM"), 0) !== undefined, true);
  assertEquals(cache.get(q("www.example.com", "AAAA"), 0), undefined);
  assertEquals(cache.get(q("www.example.com", "A", true), 0), undefined);
  assertEquals(cache.get(q("www.example.co"), 0), undefined);
  // Type 65 (HTTPS) is 0x0041, "A": type bytes are not lower-cased into type 97.
  cache.set(q("x.test", 65), answer(60));
  assertEquals([q("x.test", 65).qtype, q("x.test", 97).qtype], [65, 97]);
  assertEquals(cache.get(q("x.test", 97), 0), undefined);
  assertEquals(cache.get(q("x.test", 65), 0) !== undefined, true);
});

Deno.test("AnswerCache drops entries once their lifetime is over", () => {
  const cache = new AnswerCache(10);
  cache.set(q("a"), answer(2, 1000));
  assertEquals(cache.get(q("a"), 2999) !== undefined, true);
  assertEquals(cache.get(q("a"), 3000), undefined);
  assertEquals(cache.size, 0);
});

Deno.test("AnswerCache keeps an expired entry within the stale window for takeStale, then drops it", () => {
  const cache = new AnswerCache(10);
  cache.staleWindow = 5;
  cache.set(q("a"), answer(2, 1000), 0, 7);
  // Fresh: get finds it, takeStale has nothing.
  assertEquals(cache.get(q("a"), 2999) !== undefined, true);
  assertEquals(cache.takeStale(), undefined);
  // Expired, within the window: get says miss, takeStale gives it (and its tag), once.
  assertEquals(cache.get(q("a"), 3000), undefined);
  const stale = cache.takeStale();
  assertEquals(stale?.expiresAt, 3000);
  assertEquals(cache.lastTag, 7);
  assertEquals(cache.takeStale(), undefined);
  assertEquals(cache.size, 1);
  // A miss for another name forgets it: takeStale never gives a stale entry of another question.
  assertEquals(cache.get(q("a"), 7999), undefined);
  assertEquals(cache.get(q("b"), 7999), undefined);
  assertEquals(cache.takeStale(), undefined);
  // Past the window: removed, as without one.
  assertEquals(cache.get(q("a"), 8000), undefined);
  assertEquals(cache.takeStale(), undefined);
  assertEquals(cache.size, 0);
});

Deno.test("AnswerCache: a stale entry is replaced by a fresh set, and is forgotten by a set in between", () => {
  const cache = new AnswerCache(10);
  cache.staleWindow = 60;
  cache.set(q("a"), answer(1, 0));
  assertEquals(cache.get(q("a"), 1500), undefined);
  cache.set(q("b"), answer(60, 0)); // the cache changed: the stale view is not handed out
  assertEquals(cache.takeStale(), undefined);
  cache.set(q("a"), answer(60, 1500));
  assertEquals(cache.get(q("a"), 1600)?.expiresAt, 61500);
  assertEquals(cache.size, 2);
  // Without a window (the default), expired entries go at once.
  cache.staleWindow = 0;
  assertEquals(cache.get(q("a"), 61500), undefined);
  assertEquals(cache.takeStale(), undefined);
  assertEquals(cache.size, 1);
});

Deno.test("AnswerCache keeps nothing with capacity 0 or lifetime 0", () => {
  const none = new AnswerCache(0);
  none.set(q("a"), answer(60));
  assertEquals(none.size, 0);
  const cache = new AnswerCache(10);
  cache.set(q("a"), answer(0));
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
  const questions = Array.from(
    { length: 600 },
    (_, i) => q(`name${i >> 2}.example`, ["A", "AAAA", "MX", "TXT"][i & 3]),
  );
  let seed = 7;
  const random = (m: number) => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) % m;
  for (let step = 0; step < 20_000; step++) {
    const question = questions[random(questions.length)];
    const key = question.key;
    if (random(3) === 0) {
      const n = step;
      const size = 16 + random(700);
      cache.set(question, numbered(n, size));
      model.delete(key);
      model.set(key, { n, size });
      while (model.size > 300) model.delete(model.keys().next().value!);
    } else {
      const got = cache.get(question, 0);
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
  // entries() gives keys back in LRU order, and they round-trip through setWithKey.
  const copy = new AnswerCache(300);
  for (const [key, a] of cache.entries()) copy.setWithKey(key, a);
  const order = (c: AnswerCache) => [...c.entries()].map(([k]) => k.join(","));
  assertEquals(order(copy), order(cache));
  assertEquals(copy.get(questions[0], 0)?.wire.length, cache.get(questions[0], 0)?.wire.length);
});

Deno.test("AnswerCache resize evicts the oldest; clear empties", () => {
  const cache = new AnswerCache(5000);
  for (let i = 0; i < 5000; i++) cache.set(q(`k${i}`), numbered(i, 40));
  cache.resize(10);
  assertEquals(cache.size, 10);
  assertEquals(cache.get(q("k4989"), 0), undefined);
  assertEquals(cache.get(q("k4990"), 0)?.wire.length, 40);
  cache.clear();
  assertEquals([cache.size, cache.get(q("k4999"), 0)], [0, undefined]);
  cache.set(q("k1"), numbered(1, 40));
  assertEquals([cache.size, cache.get(q("k1"), 0)?.wire.length], [1, 40]);
});

Deno.test("AnswerCache compacts its chunks when answers of one size are replaced by another", () => {
  // 2,000 names cycle through 40 answer sizes: each size's freed records could only be reused by
  // that size, so without compaction the chunks would grow with every size seen.
  const cache = new AnswerCache(2000);
  const questions = Array.from({ length: 2000 }, (_, i) => q(`c${i}.test`));
  let peak = 0;
  for (let round = 0; round < 40; round++) {
    const size = 100 + round * 64;
    questions.forEach((question, i) => cache.set(question, numbered(i, size)));
    peak = Math.max(peak, cache.reservedBytes);
    const live = 2000 * (size + 20);
    assertEquals(cache.reservedBytes < 2 * live + (4 << 20) + (2 << 20), true, `round ${round}`);
  }
  for (const [i, question] of questions.entries()) {
    const got = cache.get(question, 0)!;
    assertEquals(new DataView(got.wire.buffer, got.wire.byteOffset).getUint32(12), i);
    assertEquals(got.wire.length, 100 + 39 * 64);
  }
  assertEquals(peak < 20 << 20, true, `peak ${peak} bytes`);
});

Deno.test("AnswerCache removeWhere drops the matching entries and keeps the LRU and hit path whole", () => {
  const cache = new AnswerCache(3);
  for (const name of ["a", "b", "c"]) cache.set(q(name), answer(60));
  cache.get(q("b"), 0);
  // The key of "b" is [1, 'b', 0, type, class, variant].
  assertEquals(cache.removeWhere((key) => key[1] === 0x62), 1);
  assertEquals(cache.size, 2);
  assertEquals(cache.lastTag, 0);
  assertEquals(cache.get(q("b"), 0), undefined);
  assertEquals([...cache.entries()].map(([key]) => String.fromCharCode(key[1])), ["a", "c"]);
  // Capacity and eviction still work on the freed slot: d fits, then e evicts a (the oldest).
  cache.set(q("d"), answer(60));
  cache.set(q("e"), answer(60));
  assertEquals(cache.get(q("a"), 0), undefined);
  for (const name of ["c", "d", "e"]) assertEquals(cache.get(q(name), 0) !== undefined, true);
  assertEquals(cache.removeWhere(() => true), 3);
  assertEquals(cache.size, 0);
  cache.set(q("f"), answer(60));
  assertEquals(cache.get(q("f"), 0) !== undefined, true);
});

Deno.test("AnswerCache with a byte budget evicts the least recently used beyond it", () => {
  const one = (() => {
    const probe = new AnswerCache(10);
    probe.set(q("k0.test"), numbered(0, 200));
    return probe.storedBytes;
  })();
  // Room for four records, whatever the entry capacity.
  const cache = new AnswerCache(1_000_000, 4 * one);
  for (let i = 0; i < 4; i++) cache.set(q(`k${i}.test`), numbered(i, 200));
  assertEquals([cache.size, cache.storedBytes], [4, 4 * one]);
  cache.get(q("k0.test"), 0); // k0 is now the most recent: k1 goes first
  cache.set(q("k4.test"), numbered(4, 200));
  assertEquals(cache.size, 4);
  assertEquals(cache.storedBytes <= cache.memoryBudget, true);
  assertEquals(cache.get(q("k1.test"), 0), undefined);
  for (const n of [0, 2, 3, 4]) assertEquals(cache.get(q(`k${n}.test`), 0)?.wire.length, 200, `k${n}`);
  // A bigger answer makes room for itself by evicting more than one.
  cache.set(q("big.test"), numbered(9, 500));
  assertEquals(cache.storedBytes <= cache.memoryBudget, true);
  assertEquals(cache.get(q("big.test"), 0)?.wire.length, 500);
  assertEquals(cache.size < 4, true);
  // An answer bigger than the whole budget is not stored, and evicts nothing.
  const before = cache.size;
  cache.set(q("huge.test"), numbered(10, 8 * one));
  assertEquals([cache.get(q("huge.test"), 0), cache.size], [undefined, before]);
  // Lowering the budget on reload evicts down to it; 0 removes the budget.
  cache.resize(1_000_000, 2 * one);
  assertEquals(cache.storedBytes <= 2 * one, true);
  assertEquals(cache.get(q("big.test"), 0), undefined, "big alone is over two records' budget");
  cache.resize(1_000_000, one);
  assertEquals([cache.size, cache.storedBytes], [0, 0]);
  cache.resize(1_000_000, 0);
  for (let i = 0; i < 20; i++) cache.set(q(`m${i}.test`), numbered(i, 200));
  assertEquals(cache.size, 20);
});

Deno.test("AnswerCache.takeDue: planned once stored, spends the hit budget; fresh hits add to it; a refresh keeps it", () => {
  const cache = new AnswerCache(10);
  const plan = (expiresAt: number) => expiresAt - 3000;
  cache.set(q("cold"), answer(10, 0));
  cache.set(q("hot"), answer(10, 0));
  for (let i = 0; i < 3; i++) cache.get(q("hot"), 1000); // 3 + 3 + 4 + 5 = 15 hits
  assertEquals(cache.takeDue(1000, plan, Infinity, true), [], "planned for 7 s, not due at 1 s");
  const names = (now: number) => cache.takeDue(now, plan, Infinity, true).map((e) => e.key.length);
  // "cold" (6-byte name) and "hot" (5-byte): keys are name + type + class + variant.
  assertEquals(names(7000), [11, 10], "both due at 7 s");
  assertEquals(names(7500), [], "not again until stored anew");
  // The refreshes store new answers: the budget is kept (cold: 3 → 2 → 1, then spent).
  cache.set(q("cold"), answer(10, 7000));
  cache.set(q("hot"), answer(10, 7000));
  assertEquals(names(14_000), [11, 10]);
  cache.set(q("cold"), answer(10, 14_000));
  cache.set(q("hot"), answer(10, 14_000));
  assertEquals(names(21_000), [10], "the cold name's budget is spent: not refreshed a third time");
});

Deno.test("AnswerCache.takeDue: retries after retryAfter, and leaves an entry out once its stale window ends", () => {
  const cache = new AnswerCache(10);
  cache.staleWindow = 10;
  cache.set(q("a"), answer(1, 0));
  const plan = (expiresAt: number, now: number) => Math.max(expiresAt, now) + 2000;
  assertEquals(cache.takeDue(500, plan, 2000, false).length, 0, "planned for 3 s");
  const [e] = cache.takeDue(3000, plan, 2000, false);
  assertEquals([e.storedAt, e.expiresAt, e.tag], [0, 1000, 0]);
  assertEquals(cache.takeDue(4000, plan, 2000, false).length, 0);
  assertEquals(cache.takeDue(5000, plan, 2000, false).length, 1, "retried 2 s later");
  assertEquals(cache.takeDue(10_500, plan, 2000, false).length, 0, "less than a second of the window left");
  assertEquals(cache.takeDue(20_000, plan, 2000, false).length, 0, "never again");
});
