import { assert, assertEquals } from "../tests/helpers/assert.ts";
import { buildQuery } from "../tests/helpers/dns_client.ts";
import { messageProblem } from "../dns/message_check.ts";
import { encodePacket } from "../dns/packet.ts";
import { type Question, Rcode } from "../dns/wire.ts";
import { type Upstream, UpstreamError } from "../upstream/upstream.ts";
import { UpstreamRace } from "./upstream_race.ts";
import { BlockingAnswerVote } from "./blocking_answer_vote.ts";
import { answerAddresses } from "../dns/address_selection.ts";
import { HealthChecked } from "../upstream/health.ts";
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
    exchange(q, cancel) {
      calls.push(name);
      return new Promise((resolve, reject) => {
        const t = setTimeout(
          () =>
            outcome === "fail"
              ? reject(new UpstreamError(name, "down"))
              : resolve(reply(q, outcome, name === "slow" ? "192.0.2.9" : "192.0.2.1")),
          delay,
        );
        cancel.listen(() => {
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

/** `upstream` with a health state and a fallback flag, as {@link HealthChecked} exposes them. */
function marked(upstream: Upstream, marks: { down?: boolean; fallback?: boolean }): Upstream {
  return Object.assign(upstream, marks);
}

Deno.test("health: a down server is not asked while another is healthy", async () => {
  const calls: string[] = [];
  const race = new UpstreamRace(
    [marked(fakeUpstream("dead", 1, 0, calls), { down: true }), fakeUpstream("fast", 5, 0, calls)],
    policy,
    1000,
  );
  assertEquals((await race.resolve(question())).rcode, Rcode.NOERROR);
  assertEquals(calls, ["fast"]);
});

Deno.test("health: when every server is down, all are asked", async () => {
  const calls: string[] = [];
  const race = new UpstreamRace(
    [
      marked(fakeUpstream("a", 20, 0, calls), { down: true }),
      marked(fakeUpstream("b", 5, 0, calls), { down: true }),
    ],
    policy,
    1000,
  );
  assertEquals((await race.resolve(question())).rcode, Rcode.NOERROR);
  assertEquals(calls.sort(), ["a", "b"]);
});

Deno.test("fallback: asked only when no other server answered usably", async () => {
  const calls: string[] = [];
  const race = new UpstreamRace(
    [fakeUpstream("main", 10, 0, calls), marked(fakeUpstream("spare", 1, 0, calls), { fallback: true })],
    policy,
    1000,
  );
  assertEquals((await race.resolve(question())).rcode, Rcode.NOERROR);
  assertEquals(calls, ["main"], "the faster fallback is not asked while the main server answers");

  calls.length = 0;
  const failing = new UpstreamRace(
    [
      fakeUpstream("x", 1, "fail", calls),
      fakeUpstream("y", 2, Rcode.SERVFAIL, calls),
      marked(fakeUpstream("spare", 1, 0, calls), { fallback: true }),
    ],
    policy,
    1000,
  );
  const answer = await failing.resolve(question());
  assertEquals(answer.rcode, Rcode.NOERROR, "the fallback answers when the others fail");
  assertEquals(calls, ["x", "y", "spare"]);
  assertEquals(failing.counters.failures, 0);

  calls.length = 0;
  const negative = new UpstreamRace(
    [
      fakeUpstream("nx", 1, Rcode.NXDOMAIN, calls),
      marked(fakeUpstream("spare", 1, 0, calls), { fallback: true }),
    ],
    policy,
    1000,
  );
  assertEquals((await negative.resolve(question())).rcode, Rcode.NXDOMAIN, "NXDOMAIN is a usable answer");
  assertEquals(calls, ["nx"]);
});

Deno.test("fallback: a group of fallback servers only is raced as usual; a failing fallback gives SERVFAIL", async () => {
  const calls: string[] = [];
  const only = new UpstreamRace(
    [marked(fakeUpstream("spare", 1, 0, calls), { fallback: true })],
    policy,
    1000,
  );
  assertEquals((await only.resolve(question())).rcode, Rcode.NOERROR);
  const both = new UpstreamRace(
    [fakeUpstream("x", 1, "fail", calls), marked(fakeUpstream("s", 1, "fail", calls), { fallback: true })],
    policy,
    1000,
  );
  assertEquals((await both.resolve(question())).rcode, Rcode.SERVFAIL);
  assertEquals(both.counters.failures, 1);
});

Deno.test("health: losers are aborted as outrun, so HealthChecked does not count them", async () => {
  const slow = new HealthChecked(fakeUpstream("slow", 60, 0, []), { timeoutMs: 1000 });
  const race = new UpstreamRace([slow, fakeUpstream("fast", 1, 0, [])], policy, 1000);
  try {
    for (let i = 0; i < 3; i++) assertEquals((await race.resolve(question())).rcode, Rcode.NOERROR);
    await new Promise((r) => setTimeout(r, 100));
    assertEquals([slow.down, slow.report().failures, slow.report().answers], [false, 0, 3]);
  } finally {
    slow.close();
  }
});

Deno.test("health: a silent server is set aside even while another wins every race", async () => {
  const calls: string[] = [];
  const hole = new HealthChecked(fakeUpstream("hole", 60_000, 0, calls), { timeoutMs: 100 });
  const race = new UpstreamRace([hole, fakeUpstream("fast", 2, 0, calls)], policy, 100);
  try {
    for (let i = 0; i < 2; i++) {
      const started = performance.now();
      assertEquals((await race.resolve(question())).rcode, Rcode.NOERROR);
      assert(performance.now() - started < 50, "the answer does not wait for the silent server");
    }
    const deadline = Date.now() + 1000;
    while (!hole.down && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assertEquals(hole.down, true);
    calls.length = 0;
    await race.resolve(question());
    assertEquals(calls, ["fast"]);
  } finally {
    hole.close();
  }
});

Deno.test("health: a black-holed server goes down after two race timeouts and is then skipped", async () => {
  const calls: string[] = [];
  const hole = new HealthChecked(fakeUpstream("hole", 60_000, 0, calls), { timeoutMs: 50 });
  const race = new UpstreamRace([hole, fakeUpstream("nx", 1, Rcode.SERVFAIL, calls)], policy, 50);
  try {
    for (let i = 0; i < 2; i++) await race.resolve(question());
    assertEquals(hole.down, true);
    calls.length = 0;
    await race.resolve(question());
    assertEquals(calls, ["nx"]);
  } finally {
    hole.close();
  }
});

Deno.test("health: a late server does not hold an unusable answer, nor the fallback, but a lone one is awaited", async () => {
  const calls: string[] = [];
  /** A server whose adaptive timeout is 50 ms. */
  const quick = (u: Upstream) => Object.assign(u, { timeoutMs: 50 });
  const stuck = new UpstreamRace(
    [quick(fakeUpstream("hole", 60_000, 0, calls)), fakeUpstream("sf", 1, Rcode.SERVFAIL, calls)],
    policy,
    2000,
  );
  let started = performance.now();
  assertEquals((await stuck.resolve(question())).rcode, Rcode.SERVFAIL);
  assert(performance.now() - started < 500, "the SERVFAIL is passed on at the hole's adaptive timeout");

  const withSpare = new UpstreamRace(
    [
      quick(fakeUpstream("hole", 60_000, 0, calls)),
      marked(fakeUpstream("spare", 1, 0, calls), { fallback: true }),
    ],
    policy,
    2000,
  );
  started = performance.now();
  assertEquals((await withSpare.resolve(question())).rcode, Rcode.NOERROR);
  assert(performance.now() - started < 500, "the fallback is asked at the adaptive timeout");

  const lone = new UpstreamRace([quick(fakeUpstream("slow", 150, 0, calls))], policy, 2000);
  assertEquals((await lone.resolve(question())).rcode, Rcode.NOERROR, "a slow lone server is waited for");
});

Deno.test("fallback: a negative answer with a late server beside it is usable; the fallback is not asked", async () => {
  const calls: string[] = [];
  const race = new UpstreamRace(
    [
      Object.assign(fakeUpstream("hole", 60_000, 0, calls), { timeoutMs: 50 }),
      fakeUpstream("nx", 1, Rcode.NXDOMAIN, calls),
      marked(fakeUpstream("spare", 1, 0, calls), { fallback: true }),
    ],
    policy,
    2000,
  );
  assertEquals((await race.resolve(question())).rcode, Rcode.NXDOMAIN);
  assertEquals(calls.sort(), ["hole", "nx"]);
});

/** An upstream that answers `ips` (A records; none: NOERROR without records) after `delay` ms. */
function addressUpstream(name: string, delay: number, ips: string[]): Upstream {
  return {
    address: name,
    close() {},
    exchange(q, cancel) {
      return new Promise((resolve, reject) => {
        const t = setTimeout(() =>
          resolve(encodePacket({
            type: "response",
            id: 0,
            flags: 0x8180,
            questions: [{ name: q.name, type: "A", class: "IN" }],
            answers: ips.map((data) => ({ name: q.name, type: "A" as const, ttl: 60, data })),
          })), delay);
        cancel.listen(() => {
          clearTimeout(t);
          reject(new UpstreamError(name, "aborted"));
        });
      });
    },
  };
}

Deno.test("ad-block vote: an answer left weak is given when nothing better comes, and loses to an address", async () => {
  const voteOf = (servers: Upstream[]) =>
    new UpstreamRace(
      servers,
      policy,
      1000,
      undefined,
      0,
      undefined,
      new BlockingAnswerVote(() => servers.length),
    );
  const addresses = async (race: UpstreamRace) => answerAddresses((await race.resolve(question())).wire, 1);
  // A lone server's lone 127.0.0.1: SmartDNS answers it as it came.
  assertEquals(await addresses(voteOf([addressUpstream("lone", 1, ["127.0.0.1"])])), ["127.0.0.1"]);
  // One filtering server of two: the other server's address wins, even a little later.
  const split = [addressUpstream("filter", 1, ["0.0.0.0"]), addressUpstream("plain", 30, ["192.0.2.7"])];
  assertEquals(await addresses(voteOf(split)), ["192.0.2.7"]);
  // Preferred to a negative answer from the other server, whichever comes first.
  const empty = [addressUpstream("empty", 1, []), addressUpstream("filter", 20, ["0.0.0.0"])];
  assertEquals(await addresses(voteOf(empty)), ["0.0.0.0"]);
  const emptyLast = [addressUpstream("filter", 1, ["0.0.0.0"]), addressUpstream("empty", 20, [])];
  assertEquals(await addresses(voteOf(emptyLast)), ["0.0.0.0"]);
  // Both agree: more than half, the address stays.
  const both = [addressUpstream("a", 1, ["127.0.0.1"]), addressUpstream("b", 20, ["127.0.0.1"])];
  assertEquals(await addresses(voteOf(both)), ["127.0.0.1"]);
});
