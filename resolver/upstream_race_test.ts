import { assertEquals } from "../tests/helpers/assert.ts";
import { buildQuery } from "../tests/helpers/dns_client.ts";
import { messageProblem } from "../dns/message_check.ts";
import { encodePacket } from "../dns/packet.ts";
import { type Question, Rcode } from "../dns/wire.ts";
import { type Upstream, UpstreamError } from "../upstream/upstream.ts";
import { UpstreamRace } from "./upstream_race.ts";
import { parseContext } from "./query_context.ts";
import { CoalesceStage } from "./coalesce_stage.ts";
import { CacheStage } from "./cache_stage.ts";
import { AnswerCache } from "./answer_cache.ts";
import { chain } from "./stage.ts";

const policy = { rrTtl: 0, rrTtlMin: 0, rrTtlMax: 0 };

function reply(q: Question, rcode: number, ip = "192.0.2.1"): Uint8Array {
  return encodePacket({
    type: "response",
    id: 0,
    flags: 0x8180 | rcode,
    questions: [{ name: q.name, type: "A", class: "IN" }],
    answers: rcode === 0 ? [{ name: q.name, type: "A", ttl: 60, data: ip }] : [],
  });
}

/** An upstream that answers after `delay` ms with `rcode`, or fails. */
function fakeUpstream(name: string, delay: number, outcome: number | "fail", calls: string[]): Upstream {
  return {
    address: name,
    close() {},
    exchange(q, signal) {
      calls.push(name);
      return new Promise((resolve, reject) => {
        const t = setTimeout(
          () =>
            outcome === "fail"
              ? reject(new UpstreamError(name, "down"))
              : resolve(reply(q, outcome, name === "slow" ? "192.0.2.9" : "192.0.2.1")),
          delay,
        );
        signal.addEventListener("abort", () => {
          clearTimeout(t);
          reject(new UpstreamError(name, "aborted"));
        });
      });
    },
  };
}

const question = () => parseContext(buildQuery("a.test", "A"));

Deno.test("the first usable answer wins and the rest are cancelled", async () => {
  const calls: string[] = [];
  const race = new UpstreamRace(
    [fakeUpstream("slow", 200, 0, calls), fakeUpstream("fast", 5, 0, calls)],
    policy,
    1000,
  );
  const answer = await race.resolve(question());
  assertEquals(answer.rcode, Rcode.NOERROR);
  assertEquals(answer.wire.at(-1), 1, "192.0.2.1 from the fast server");
  assertEquals(calls.sort(), ["fast", "slow"]);
});

Deno.test("a SERVFAIL does not win over a slower good answer", async () => {
  const calls: string[] = [];
  const race = new UpstreamRace(
    [fakeUpstream("bad", 1, Rcode.SERVFAIL, calls), fakeUpstream("slow", 30, 0, calls)],
    policy,
    1000,
  );
  assertEquals((await race.resolve(question())).rcode, Rcode.NOERROR);
});

Deno.test("when every server fails, an upstream's REFUSED is passed on, else SERVFAIL", async () => {
  const calls: string[] = [];
  const refused = new UpstreamRace(
    [fakeUpstream("r", 1, Rcode.REFUSED, calls), fakeUpstream("x", 2, "fail", calls)],
    policy,
    1000,
  );
  assertEquals((await refused.resolve(question())).rcode, Rcode.REFUSED);
  const failures: string[] = [];
  const dead = new UpstreamRace(
    [fakeUpstream("x", 1, "fail", calls)],
    policy,
    1000,
    (u) => failures.push(u.address),
  );
  const answer = await dead.resolve(question());
  assertEquals(answer.rcode, Rcode.SERVFAIL);
  assertEquals(answer.lifetime, 0);
  assertEquals(failures, ["x"]);
  assertEquals(dead.counters.failures, 1);
});

Deno.test("a server slower than the timeout gives SERVFAIL at the timeout", async () => {
  const race = new UpstreamRace([fakeUpstream("slow", 5000, 0, [])], policy, 50);
  assertEquals((await race.resolve(question())).rcode, Rcode.SERVFAIL);
});

Deno.test("the chain answers hits synchronously and coalesces concurrent misses", async () => {
  const calls: string[] = [];
  const race = new UpstreamRace([fakeUpstream("one", 20, 0, calls)], policy, 1000);
  const cacheStage = new CacheStage(new AnswerCache(10));
  const resolve = chain([cacheStage, new CoalesceStage()], race);
  const pending = [resolve(question()), resolve(question()), resolve(question())];
  assertEquals(pending.every((p) => p instanceof Promise), true);
  await Promise.all(pending);
  assertEquals(calls, ["one"]);
  const hit = resolve(question());
  assertEquals(hit instanceof Promise, false, "a hit needs no promise");
  assertEquals(cacheStage.counters, { hits: 1, misses: 3 });
});

Deno.test("a malformed answer never wins: it counts as that server failing, and a valid one is awaited", async () => {
  const calls: string[] = [];
  const good = fakeUpstream("good", 30, 0, calls);
  /** Answers fast, with the answer's owner name a compression pointer to itself. */
  const selfPointer: Upstream = {
    address: "loop",
    close() {},
    exchange(q) {
      const wire = reply(q, 0);
      const at = q.questionEnd;
      wire[at] = 0xc0 | (at >> 8);
      wire[at + 1] = at & 0xff;
      return Promise.resolve(wire);
    },
  };
  const failures: string[] = [];
  const race = new UpstreamRace(
    [selfPointer, good],
    policy,
    1000,
    (u, e) => failures.push(`${u.address}: ${e}`),
  );
  const answer = await race.resolve(question());
  assertEquals(answer.rcode, Rcode.NOERROR);
  assertEquals(messageProblem(answer.wire), null);
  assertEquals(race.counters.invalidAnswers, 1);
  assertEquals(failures, [
    "loop: Error: malformed answer refused: answer record 1: compression pointer that does not point backwards",
  ]);
  // Alone, it ends in SERVFAIL, not in the broken bytes.
  const alone = new UpstreamRace([selfPointer], policy, 1000);
  assertEquals((await alone.resolve(question())).rcode, Rcode.SERVFAIL);
});
