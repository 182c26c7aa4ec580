import { assertEquals } from "../tests/helpers/assert.ts";
import { buildQuery } from "../tests/helpers/dns_client.ts";
import { StoredAnswer } from "../dns/stored_answer.ts";
import { parseQuery, type Question } from "../dns/wire.ts";
import { AnswerCache } from "./answer_cache.ts";
import { flushCache, keyName, listCache, nameMatcher } from "./cache_listing.ts";

function answer(lifetime: number, storedAt = 0): StoredAnswer {
  return StoredAnswer.create(new Uint8Array(12), [], [], storedAt, lifetime);
}

function q(name: string, type = "A"): Question {
  return parseQuery(buildQuery(name, type, {}));
}

function filled(): AnswerCache {
  const cache = new AnswerCache(100);
  cache.set(q("Example.com"), answer(60));
  cache.set(q("example.com", "AAAA"), answer(60));
  cache.set(q("example.com"), answer(60), 2 << 1); // client group 2
  cache.set(q("www.example.com"), answer(30));
  cache.set(q("a.b.example.com"), answer(30));
  cache.set(q("notexample.com"), answer(60));
  cache.set(q("other.org"), answer(60));
  return cache;
}

Deno.test("keyName decodes the name of a cache key", () => {
  const cache = new AnswerCache(10);
  cache.set(q("WWW.Example.com"), answer(60));
  cache.set(q("."), answer(60));
  assertEquals([...cache.entries()].map(([key]) => keyName(key)), ["www.example.com", "."]);
});

Deno.test("nameMatcher: globs, exact names and suffixes", () => {
  const below = nameMatcher("*.Example.com.", "exact");
  assertEquals(["www.example.com", "a.b.example.com", "example.com", "xexample.com"].map(below), [
    true,
    true,
    false,
    false,
  ]);
  const exact = nameMatcher("example.com", "exact");
  assertEquals(["example.com", "www.example.com"].map(exact), [true, false]);
  const suffix = nameMatcher("example.com", "suffix");
  assertEquals(["example.com", "www.example.com", "notexample.com"].map(suffix), [true, true, false]);
  assertEquals(nameMatcher("w?w.*", "exact")("www.example.com"), true);
});

Deno.test("listCache lists matching entries with type, TTL left and client group, bounded", () => {
  const cache = filled();
  const all = listCache(cache, undefined, 10_000);
  assertEquals(all.entries.length, 7);
  assertEquals(all.more, 0);
  assertEquals(all.entries[0], { name: "example.com", type: "A", ttl: 50, group: 0, dnssecOk: false });
  assertEquals(all.entries[2].group, 2);
  assertEquals(all.entries[3], { name: "www.example.com", type: "A", ttl: 20, group: 0, dnssecOk: false });
  const suffix = listCache(cache, "example.com", 10_000);
  assertEquals(suffix.entries.map((e) => e.name), [
    "example.com",
    "example.com",
    "example.com",
    "www.example.com",
    "a.b.example.com",
  ]);
  const bounded = listCache(cache, "*.example.com", 10_000, 1);
  assertEquals([bounded.entries.map((e) => e.name), bounded.more], [["www.example.com"], 1]);
  assertEquals(listCache(cache, undefined, 40_000).entries[3].ttl, 0);
});

Deno.test("flushCache removes every type and variant of a name, the names below, or all", () => {
  const cache = filled();
  assertEquals(flushCache(cache, "example.com"), 3);
  assertEquals(cache.get(q("example.com"), 0), undefined);
  assertEquals(cache.get(q("www.example.com"), 0) !== undefined, true);
  assertEquals(flushCache(cache, "*.example.com"), 2);
  assertEquals(listCache(cache, undefined, 0).entries.map((e) => e.name), ["notexample.com", "other.org"]);
  assertEquals(flushCache(cache, "nothing.test"), 0);
  assertEquals(flushCache(cache, undefined), 2);
  assertEquals(cache.size, 0);
  cache.set(q("again.test"), answer(60));
  assertEquals(cache.get(q("again.test"), 0) !== undefined, true);
});
