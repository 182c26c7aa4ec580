import { assert, assertEquals } from "../tests/helpers/assert.ts";
import { buildQuery } from "../tests/helpers/dns_client.ts";
import { parseSmartdnsConf } from "../config/smartdns_conf.ts";
import { DEFAULT_CACHE } from "../config/defaults.ts";
import { encodePacket } from "../dns/packet.ts";
import { StoredAnswer } from "../dns/stored_answer.ts";
import { Rcode, scanResponse } from "../dns/wire.ts";
import { AnswerCache } from "./answer_cache.ts";
import { CacheStage, expiredPrefetchTimeOf } from "./cache_stage.ts";
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

/** An upstream stand-in whose answers (TTL `ttl`, address 192.0.2.N for the Nth question) wait for `flush`. */
function heldUpstream(clock: () => number, ttl: number) {
  const asked: string[] = [];
  const pending: Array<() => void> = [];
  return {
    asked,
    async flush() {
      for (const wake of pending.splice(0)) wake();
      await new Promise((r) => setTimeout(r, 0));
    },
    resolve(ctx: QueryContext) {
      asked.push(ctx.name);
      const n = asked.length;
      const name = ctx.name;
      return new Promise<StoredAnswer>((resolve) =>
        pending.push(() => {
          const wire = encodePacket({
            type: "response",
            id: 0,
            flags: 0x8180,
            questions: [{ name, type: "A", class: "IN" }],
            answers: [{ name, type: "A", ttl, data: `192.0.2.${n}` }],
          });
          resolve(StoredAnswer.fromResponse(wire, scanResponse(wire)!, policy, clock()));
        })
      );
    },
  };
}

/** The address of an A answer. */
function addressOf(a: StoredAnswer, q: QueryContext, now: number): string {
  const wire = a.render(q, now, 512);
  return wire.subarray(wire.length - 4).join(".");
}

Deno.test("prefetch without serve-expired: a hot name is refreshed 3 s ahead and never misses; a cold one stops", async () => {
  let clock = 1_000_000;
  const up = heldUpstream(() => clock, 10);
  const stage = new CacheStage(new AnswerCache(100), () => clock);
  stage.configurePrefetch({ ...DEFAULT_CACHE, prefetch: true });
  stage.stopPrefetch(); // the test ticks by hand
  stage.refreshVia = (ctx) => up.resolve(ctx);
  const resolve = chain([stage], up);
  const q = (name: string) => parseContext(buildQuery(name, "A"));
  const first = [resolve(q("hot.example")), resolve(q("cold.example"))];
  await up.flush();
  await Promise.all(first);
  // The hot name is asked every second for 40 s, across four TTLs; every answer is a hit.
  for (let t = 0; t < 40; t++) {
    clock += 1000;
    stage.prefetchTick();
    await up.flush();
    const a = resolve(q("hot.example"));
    assert(a instanceof StoredAnswer, `a hit at ${t + 1} s`);
  }
  const hot = up.asked.filter((n) => n === "hot.example").length;
  const cold = up.asked.filter((n) => n === "cold.example").length;
  assert(hot >= 5 && hot <= 6, `the hot name refreshed once a TTL (${hot} questions)`);
  assertEquals(cold, 3, "the cold name: asked once, refreshed twice with its hit budget, then left");
  assertEquals(stage.counters.misses, 2);
  assert(!(resolve(q("cold.example")) instanceof StoredAnswer), "the cold name expired: a miss");
  await up.flush();
});

Deno.test("prefetch with serve-expired: an entry stale for serve-expired-prefetch-time is refreshed, its window kept", async () => {
  let clock = 1_000_000;
  const up = heldUpstream(() => clock, 1);
  const stage = new CacheStage(new AnswerCache(100), () => clock);
  const config = { ...DEFAULT_CACHE, prefetch: true, serveExpired: true, serveExpiredTtl: 10 };
  stage.configurePrefetch({ ...config, serveExpiredPrefetchTime: 2 });
  stage.stopPrefetch();
  stage.cache.staleWindow = 10;
  stage.refreshVia = (ctx) => up.resolve(ctx);
  const resolve = chain([stage], up);
  const q = () => parseContext(buildQuery("x.example", "A"));
  const first = resolve(q());
  await up.flush();
  await first;
  let refreshes = 0;
  for (let t = 1; t <= 12; t++) {
    clock += 1000;
    refreshes += stage.prefetchTick();
    await up.flush();
    if (t === 2) assertEquals(refreshes, 0, "stale 1 s: not yet");
    if (t === 3) assertEquals(refreshes, 1, "stale 2 s: refreshed with no client asking");
  }
  assertEquals(up.asked.length, 1 + refreshes);
  // Every 2 s after it is planned, which happens at the first tick after a store (so 2-3 s apart).
  assert(refreshes >= 3 && refreshes <= 5, `refreshed again while the window lasts (${refreshes})`);
  // Past the window (stored at 0 s, TTL 1, window 10 s: 11 s), refreshes did not extend it.
  const late = resolve(q());
  assert(!(late instanceof StoredAnswer), "the window is over: a miss");
  await up.flush();
  await late;
  assertEquals(expiredPrefetchTimeOf({ ...config, serveExpiredTtl: 86400 }), 8 * 3600);
  assertEquals(expiredPrefetchTimeOf({ ...config, serveExpiredTtl: 600 }), 300);
});

Deno.test("prefetch with serve-expired: the next client gets the refreshed data, stale, and one refresh", async () => {
  let clock = 1_000_000;
  const up = heldUpstream(() => clock, 1);
  const stage = new CacheStage(new AnswerCache(100), () => clock);
  stage.configurePrefetch({
    ...DEFAULT_CACHE,
    prefetch: true,
    serveExpired: true,
    serveExpiredPrefetchTime: 2,
  });
  stage.stopPrefetch();
  stage.cache.staleWindow = 60;
  stage.refreshVia = (ctx) => up.resolve(ctx);
  const resolve = chain([stage], up);
  const q = () => parseContext(buildQuery("x.example", "A"));
  const first = resolve(q());
  await up.flush();
  assertEquals(addressOf(await first as StoredAnswer, q(), clock), "192.0.2.1");
  let started = 0;
  for (let t = 0; t < 3; t++) {
    clock += 1000;
    started += stage.prefetchTick();
  }
  assertEquals(started, 1);
  await up.flush();
  const a = resolve(q());
  assert(a instanceof StoredAnswer, "served stale at once");
  assertEquals(addressOf(a, q(), clock), "192.0.2.2", "with what the background refresh brought");
  assertEquals(scanResponse(a.render(q(), clock, 512))!.ttls[0], 3, "at the reply TTL");
  for (let i = 0; i < 100; i++) resolve(q());
  assertEquals(up.asked.length, 3, "101 stale hits, one refresh");
  await up.flush();
});

Deno.test("domain-rules -no-serve-expired: that name waits for the upstream, others are served stale", async () => {
  let clock = 1_000_000;
  const up = heldUpstream(() => clock, 1);
  const stage = new CacheStage(new AnswerCache(100), () => clock);
  stage.cache.staleWindow = 60;
  const rules = rulesOf("domain-rules /fresh.example/ -no-serve-expired", { n: 0 });
  stage.rules = rules;
  const resolve = chain([stage, rules], up);
  const q = (name: string) => parseContext(buildQuery(name, "A"));
  const first = [resolve(q("fresh.example")), resolve(q("other.example"))];
  await up.flush();
  await Promise.all(first);
  clock += 2000;
  assert(resolve(q("other.example")) instanceof StoredAnswer, "other: stale at once");
  const fresh = resolve(q("fresh.example"));
  assert(fresh instanceof Promise, "-no-serve-expired: a miss");
  await up.flush();
  assertEquals(addressOf(await fresh as StoredAnswer, q("fresh.example"), clock), "192.0.2.4");
});

/** A stage standing for the speed stage: marks every question as one a speed check runs on. */
const speedChecked = {
  resolve(ctx: QueryContext, next: (ctx: QueryContext) => ReturnType<ReturnType<typeof chain>>) {
    ctx.speedCheckOn = true;
    return next(ctx);
  },
};

/** The TTLs of the records of `a` rendered for `q` at `now`. */
function ttlsOf(a: StoredAnswer, q: QueryContext, now: number): number[] {
  const rendered = a.render(q, now, 4096);
  return Array.from({ length: a.ttlCount }, (_, i) => {
    const p = a.ttlOffset(i);
    return ((rendered[p] << 24) | (rendered[p + 1] << 16) | (rendered[p + 2] << 8) | rendered[p + 3]) >>> 0;
  });
}

/** An upstream stand-in answering with `answers` (records of a `name` A question) and `rcode`. */
function answering(answers: (name: string) => unknown[], rcode = 0, authorities: unknown[] = []) {
  return {
    resolve(ctx: QueryContext) {
      const wire = encodePacket({
        type: "response",
        id: 0,
        flags: 0x8180 | rcode,
        questions: [{ name: ctx.name, type: "A", class: "IN" }],
        answers: answers(ctx.name) as never,
        authorities: authorities as never,
      });
      return Promise.resolve(StoredAnswer.fromResponse(wire, scanResponse(wire)!, policy, Date.now()));
    },
  };
}

Deno.test("speed check: the first reply carries serve-expired-reply-ttl, the cache the real TTLs", async () => {
  const q = (flags = 0) => {
    const ctx = parseContext(buildQuery("x.example", "A"));
    ctx.listener = { address: "test", flags };
    return ctx;
  };
  const records = (name: string) => [
    { name, type: "CNAME", ttl: 900, data: "y.example" },
    { name: "y.example", type: "A", ttl: 300, data: "192.0.2.1" },
  ];
  for (const [replyTtl, want] of [[3, 3], [0, 2], [1, 2], [60, 60], [500, 300]]) {
    const stage = new CacheStage(new AnswerCache(100));
    stage.staleReplyTtl = replyTtl;
    const resolve = chain([stage, speedChecked], answering(records));
    const first = await resolve(q()) as StoredAnswer;
    const now = Date.now();
    const shown = `serve-expired-reply-ttl ${replyTtl}`;
    if (want >= 300) assertEquals(ttlsOf(first, q(), now), [900, 300], `${shown}: the answer's own TTLs`);
    else assertEquals(ttlsOf(first, q(), now), [want, want], `${shown}: every record`);
    const cached = resolve(q());
    assert(cached instanceof StoredAnswer, "then a hit");
    assertEquals(ttlsOf(cached, q(), now), [900, 300], `${shown}: the cache keeps the real TTLs`);
  }
  // Without the speed check's mark, and on a -no-serve-expired listener: the real TTLs.
  for (
    const [stages, flags, why] of [[[], 0, "no speed check"], [
      [speedChecked],
      256,
      "-no-serve-expired",
    ]] as const
  ) {
    const stage = new CacheStage(new AnswerCache(100));
    const first = await chain([stage, ...stages], answering(records))(q(flags)) as StoredAnswer;
    assertEquals(ttlsOf(first, q(), Date.now()), [900, 300], why);
  }
  assertEquals(BindFlag.NO_SERVE_EXPIRED, 256);
});

Deno.test("speed check: no short first reply for a -no-serve-expired name, an empty answer or an error", async () => {
  const q = (name: string) => parseContext(buildQuery(name, "A"));
  const stage = new CacheStage(new AnswerCache(100));
  const rules = rulesOf("domain-rules /fresh.example/ -no-serve-expired", { n: 0 });
  stage.rules = rules;
  const address = (name: string) => [{ name, type: "A", ttl: 300, data: "192.0.2.1" }];
  const resolve = chain([stage, rules, speedChecked], answering(address));
  assertEquals(ttlsOf(await resolve(q("fresh.example")) as StoredAnswer, q("fresh.example"), Date.now()), [
    300,
  ]);
  assertEquals(ttlsOf(await resolve(q("other.example")) as StoredAnswer, q("other.example"), Date.now()), [
    3,
  ]);
  const soa = [{
    name: "example",
    type: "SOA",
    ttl: 300,
    data: {
      mname: "ns.example",
      rname: "h.example",
      serial: 1,
      refresh: 1,
      retry: 1,
      expire: 1,
      minimum: 300,
    },
  }];
  for (const [rcode, why] of [[0, "NODATA"], [3, "NXDOMAIN"]] as const) {
    const empty = chain(
      [new CacheStage(new AnswerCache(100)), speedChecked],
      answering(() => [], rcode, soa),
    );
    const a = await empty(q("none.example")) as StoredAnswer;
    assertEquals(ttlsOf(a, q("none.example"), Date.now()), [300], why);
  }
});

Deno.test("inspect: fresh, stale, expired and absent, without a hit counted, an LRU move or an entry dropped", async () => {
  const asked: string[] = [];
  let now = Date.now(); // the stand-in stores its answers as received at Date.now()
  const store = new AnswerCache(2);
  const cache = new CacheStage(store, () => now);
  store.staleWindow = 60;
  const resolve = chain([cache], upstream(asked));
  const q = (name: string) => parseContext(buildQuery(name, "A"));
  assertEquals(cache.inspect(q("a.example")), { state: "absent", wouldServe: false });
  await resolve(q("a.example"));
  await resolve(q("b.example"));
  const fresh = cache.inspect(q("a.example"));
  assertEquals([fresh.state, fresh.ttlLeft, fresh.wouldServe, fresh.group], ["fresh", 300, true, 0]);
  assert(fresh.answer && fresh.answer.length > 0);
  assertEquals(cache.counters.hits, 0, "no hit counted");
  // Had inspect moved a.example up the LRU list, c.example would now evict b.example.
  await resolve(q("c.example"));
  assertEquals(cache.inspect(q("a.example")).state, "absent", "a.example was still the oldest");
  now += 301_000;
  const stale = cache.inspect(q("b.example"));
  assertEquals([stale.state, stale.ttlLeft, stale.wouldServe], ["stale", -1, true]);
  now += 60_000;
  assertEquals(cache.inspect(q("b.example")).state, "expired");
  assertEquals(cache.inspect(q("b.example")).state, "expired", "inspect dropped nothing");
  assertEquals(store.size, 2);
  const bypass = q("b.example");
  bypass.listener = { address: "udp://x", flags: BindFlag.NO_CACHE };
  assertEquals(cache.inspect(bypass), { state: "bypassed", wouldServe: false });
  assertEquals([cache.counters.hits, asked.length], [0, 3]);
});
