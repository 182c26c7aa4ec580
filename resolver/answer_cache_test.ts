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
