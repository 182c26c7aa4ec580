import { assert, assertEquals } from "../tests/helpers/assert.ts";
import { buildQuery } from "../tests/helpers/dns_client.ts";
import { parseSmartdnsConf } from "../config/smartdns_conf.ts";
import { encodePacket } from "../dns/packet.ts";
import { StoredAnswer } from "../dns/stored_answer.ts";
import { Rcode, scanResponse } from "../dns/wire.ts";
import { AnswerCache } from "./answer_cache.ts";
import { CacheStage } from "./cache_stage.ts";
import { BindFlag, parseContext, type QueryContext } from "./query_context.ts";
import { RuleSet } from "./rule_set.ts";
import { RulesStage } from "./rules_stage.ts";
import { chain } from "./stage.ts";

const policy = { rrTtl: 0, rrTtlMin: 0, rrTtlMax: 0 };

/** An upstream stand-in answering every A question with 192.0.2.1, counting the questions. */
function upstream(asked: string[]) {
  return {
    resolve(ctx: QueryContext) {
      asked.push(ctx.name);
      const wire = encodePacket({
        type: "response",
        id: 0,
        flags: 0x8180,
        questions: [{ name: ctx.name, type: "A", class: "IN" }],
        answers: [{ name: ctx.name, type: "A", ttl: 300, data: "192.0.2.1" }],
      });
      return Promise.resolve(StoredAnswer.fromResponse(wire, scanResponse(wire)!, policy, Date.now()));
    },
  };
}

/** A rules stage from smartdns.conf rule lines, counting its lookups. */
function rulesOf(lines: string, lookups: { n: number }): RulesStage {
  const config = parseSmartdnsConf(`server 9.9.9.9\n${lines}`, "/etc/smartdns.conf");
  const set = new RuleSet(config.rules, { groupIndex: () => -1, ttl: config.cache, warn: () => {} });
  const judge = set.judge.bind(set);
  set.judge = (wire, qtype) => (lookups.n++, judge(wire, qtype));
  return new RulesStage([set], 60);
}

Deno.test("a cache hit needs no rule lookup; after the rules change, the first hit asks them again", async () => {
  const asked: string[] = [];
  const lookups = { n: 0 };
  const cache = new CacheStage(new AnswerCache(100));
  let rules = rulesOf("address /other.example/#", lookups);
  cache.rules = rules;
  let resolve = chain([cache, rules], upstream(asked));
  const q = () => parseContext(buildQuery("x.example", "A"));
  await resolve(q());
  assertEquals(lookups.n, 1, "the miss went through the rules");
  for (let i = 0; i < 5; i++) assert(!((resolve(q())) instanceof Promise), "hits are synchronous");
  assertEquals(lookups.n, 1, "hits did not look the rules up");
  // A reload now blocks the cached name: the cached answer must not be served.
  rules = rulesOf("address /x.example/#", lookups);
  cache.rules = rules;
  resolve = chain([cache, rules], upstream(asked));
  const blocked = await resolve(q());
  assertEquals(blocked.rcode, Rcode.NXDOMAIN);
  // Rules that still send it upstream: the entry is re-tagged once and served again without lookups.
  rules = rulesOf("address /y.example/#", lookups);
  cache.rules = rules;
  resolve = chain([cache, rules], upstream(asked));
  const before = lookups.n;
  const again = resolve(q());
  assert(!(again instanceof Promise), "still a hit");
  assertEquals(again.rcode, Rcode.NOERROR);
  resolve(q());
  assertEquals(lookups.n, before + 1, "asked once after the change, then not again");
  assertEquals(asked, ["x.example"], "the upstream was asked once");
});

Deno.test("serve-expired: a stale hit is answered at once with the reply TTL; one refresh however many ask", async () => {
  let clock = 1_000_000;
  let mode: "ok" | "servfail" = "ok";
  const pending: Array<() => void> = [];
  let asked = 0;
  const upstream = {
    resolve(ctx: QueryContext) {
      asked++;
      const name = ctx.name;
      // Answered when the test lets it: as the upstream is then (mode, clock).
      const answer = () => {
        const wire = encodePacket({
          type: "response",
          id: 0,
          flags: mode === "ok" ? 0x8180 : 0x8182,
          questions: [{ name, type: "A", class: "IN" }],
          answers: mode === "ok" ? [{ name, type: "A", ttl: 1, data: "192.0.2.1" }] : [],
        });
        return StoredAnswer.fromResponse(wire, scanResponse(wire)!, policy, clock);
      };
      return new Promise<StoredAnswer>((resolve) => pending.push(() => resolve(answer())));
    },
  };
  const flush = async () => {
    for (const wake of pending.splice(0)) wake();
    await new Promise((r) => setTimeout(r, 0));
  };
  const stage = new CacheStage(new AnswerCache(100), () => clock);
  stage.cache.staleWindow = 10;
  stage.staleReplyTtl = 3;
  const resolve = chain([stage], upstream);
  const q = () => parseContext(buildQuery("x.example", "A"));
  const first = resolve(q());
  await flush();
  assertEquals((await first).rcode, Rcode.NOERROR);
  assertEquals(asked, 1);
  clock += 1500; // expired, within the window
  mode = "servfail";
  for (let i = 0; i < 20; i++) {
    const a = resolve(q());
    assert(!(a instanceof Promise), "a stale hit is synchronous");
    assert(a instanceof StoredAnswer);
    assertEquals(scanResponse(a.render(q(), clock, 512))!.ttls[0], 3);
  }
  assertEquals(asked, 2, "twenty stale hits, one refresh");
  assertEquals(stage.counters.staleHits, 20);
  await flush(); // the refresh fails: the stale entry stays
  assert(!(resolve(q()) instanceof Promise), "still served stale after a failed refresh");
  assertEquals(asked, 3, "a new refresh once the failed one is over");
  mode = "ok";
  await flush(); // this one succeeds: the entry is fresh again
  const fresh = resolve(q());
  assert(fresh instanceof StoredAnswer);
  assertEquals(fresh.lifetime, 1, "the refreshed entry, not a stale copy");
  assertEquals(asked, 3);
  clock += 11_000; // past the window: a miss that waits for the upstream
  const miss = resolve(q());
  assert(miss instanceof Promise);
  await flush();
  await miss;
  assertEquals(asked, 4);
});

Deno.test("serve-expired off (no window) or a -no-serve-expired listener: an expired entry is a miss", async () => {
  let clock = 1_000_000;
  let asked = 0;
  const upstream = {
    resolve(ctx: QueryContext) {
      asked++;
      const wire = encodePacket({
        type: "response",
        id: 0,
        flags: 0x8180,
        questions: [{ name: ctx.name, type: "A", class: "IN" }],
        answers: [{ name: ctx.name, type: "A", ttl: 1, data: "192.0.2.1" }],
      });
      return Promise.resolve(StoredAnswer.fromResponse(wire, scanResponse(wire)!, policy, clock));
    },
  };
  const stage = new CacheStage(new AnswerCache(100), () => clock);
  const resolve = chain([stage], upstream);
  const q = (flags = 0) => {
    const ctx = parseContext(buildQuery("x.example", "A"));
    ctx.listener = { address: "udp://127.0.0.1:53", flags };
    return ctx;
  };
  await resolve(q());
  clock += 1500;
  assert(resolve(q()) instanceof Promise, "no window: a miss");
  await new Promise((r) => setTimeout(r, 0));
  stage.cache.staleWindow = 10;
  clock += 1500;
  assert(resolve(q(BindFlag.NO_SERVE_EXPIRED)) instanceof Promise, "-no-serve-expired: a miss");
  assertEquals(asked, 3);
});
