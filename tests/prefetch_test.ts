/**
 * End to end: SmartDNS's `prefetch-domain` and `serve-expired-prefetch-time`, and `domain-rules
 * -no-serve-expired`. The fake upstream answers after 300 ms, so an answer that comes in well
 * under that came from the cache. A hot name is refreshed ahead of its expiry and never misses; a
 * name asked once is refreshed only while its hit budget lasts (twice, as in SmartDNS); with
 * serve-expired, a stale entry is refreshed in the background with no client asking; a
 * -no-serve-expired name waits for the upstream while others are served stale.
 */
import { assert, assertEquals } from "./helpers/assert.ts";
import { udpQuery } from "./helpers/dns_client.ts";
import { FakeUpstream } from "./helpers/fake_upstream.ts";
import { KeeldnsProcess, testConfig } from "./helpers/keeldns_process.ts";

/** The fake's delay: an answer faster than this came from the cache. */
const UPSTREAM_DELAY_MS = 300;
/** An answer this fast came from the cache (well under the upstream's delay). */
const FROM_CACHE_MS = 150;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A fake answering every A question after the delay with TTL `ttl` and 192.0.2.N for its Nth question of that name. */
async function slowUpstream(ttl: number): Promise<FakeUpstream> {
  const asked = new Map<string, number>();
  return await FakeUpstream.start((name, type) => {
    if (type !== "A") return { delayMs: UPSTREAM_DELAY_MS, answers: [] };
    const n = (asked.get(name) ?? 0) + 1;
    asked.set(name, n);
    return { delayMs: UPSTREAM_DELAY_MS, answers: [{ name, type: "A", ttl, data: `192.0.2.${n}` }] };
  });
}

/** One query's answer and how long it took. */
async function timed(port: number, name: string) {
  const started = performance.now();
  const r = await udpQuery(port, name, "A", { timeoutMs: 2000 });
  return { r, ms: performance.now() - started };
}

Deno.test({
  name: "prefetch-domain: a hot name never misses across its TTLs; a name asked once stops being refreshed",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const fake = await slowUpstream(5);
    const k = await KeeldnsProcess.start(
      `bind 127.0.0.1:{port}
server 127.0.0.1:${fake.port}
speed-check-mode none
serve-expired no
rr-ttl-min 0
prefetch-domain yes
log-level info
`,
      { name: "smartdns.conf" },
    );
    try {
      const cold = await timed(k.port, "cold.test");
      assert(cold.ms >= UPSTREAM_DELAY_MS - 20, "the first question is a miss");
      const first = await timed(k.port, "hot.test");
      assert(first.ms >= UPSTREAM_DELAY_MS - 20, "the first question is a miss");
      // 13 s: past two TTLs of 5 s. Every answer after the first comes from the cache.
      const slow: string[] = [];
      const until = performance.now() + 13_000;
      for (let i = 0; i < 100 && performance.now() < until; i++) {
        await sleep(200);
        const { r, ms } = await timed(k.port, "hot.test");
        assertEquals(r.rcode, "NOERROR");
        assert((r.answers[0].ttl ?? 0) > 0, "a fresh answer");
        if (ms >= FROM_CACHE_MS) slow.push(`${ms.toFixed(0)} ms`);
      }
      assertEquals(slow, [], "no hot answer waited for the upstream");
      const hot = fake.count("hot.test");
      assert(hot >= 4, `the upstream was asked ahead of each expiry (${hot} questions in 13 s)`);
      // The cold name: asked once, refreshed twice on its budget of 3, then left to expire.
      assertEquals(fake.count("cold.test"), 3, "refreshed only while its hit budget lasted");
      const again = await timed(k.port, "cold.test");
      assert(again.ms >= UPSTREAM_DELAY_MS - 20, "the cold name expired: a miss");
    } finally {
      await k.stop();
      await fake.close();
    }
  },
});

Deno.test({
  name:
    "serve-expired-prefetch-time: a stale entry is refreshed in the background; 100 stale hits, one refresh",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const fake = await slowUpstream(1);
    const k = await KeeldnsProcess.start(
      testConfig(
        fake.port,
        "[cache]\nrr-ttl-min = 0\nserve-expired = true\nserve-expired-ttl = 60\n" +
          "prefetch = true\nserve-expired-prefetch-time = 2\n",
      ),
    );
    try {
      const first = await timed(k.port, "bg.test");
      assertEquals(first.r.answers[0].data, "192.0.2.1");
      // Expired after 1 s, stale 2 s by 3 s: refreshed then, without anyone asking.
      await sleep(4500);
      assertEquals(fake.count("bg.test"), 2, "one background refresh of the stale entry");
      const before = fake.count("bg.test");
      const stale = await timed(k.port, "bg.test");
      assert(stale.ms < FROM_CACHE_MS, `served from the cache (${stale.ms.toFixed(0)} ms)`);
      assertEquals(
        [stale.r.answers[0].data, stale.r.answers[0].ttl],
        ["192.0.2.2", 3],
        "the background refresh's data, still stale (its window kept), at the reply TTL",
      );
      const replies = await Promise.all(Array.from({ length: 100 }, () => timed(k.port, "bg.test")));
      for (const { r } of replies) assertEquals(r.answers[0].data, "192.0.2.2");
      assertEquals(fake.count("bg.test") - before, 1, "101 stale hits: one refresh");
    } finally {
      await sleep(UPSTREAM_DELAY_MS + 100); // the fake answers the last refresh before it closes
      await k.stop();
      await fake.close();
    }
  },
});

Deno.test({
  name: "domain-rules -no-serve-expired: that name waits for the upstream, another is served stale",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const fake = await slowUpstream(1);
    const k = await KeeldnsProcess.start(
      `bind 127.0.0.1:{port}
server 127.0.0.1:${fake.port}
speed-check-mode none
rr-ttl-min 0
serve-expired yes
domain-rules /fresh.test/ -no-serve-expired
log-level info
`,
      { name: "smartdns.conf" },
    );
    try {
      await Promise.all([timed(k.port, "fresh.test"), timed(k.port, "other.test")]);
      await sleep(1500); // both expired
      const other = await timed(k.port, "other.test");
      assert(other.ms < FROM_CACHE_MS, `other.test: stale at once (${other.ms.toFixed(0)} ms)`);
      assertEquals([other.r.answers[0].data, other.r.answers[0].ttl], ["192.0.2.1", 3]);
      const fresh = await timed(k.port, "fresh.test");
      assert(
        fresh.ms >= UPSTREAM_DELAY_MS - 20,
        `fresh.test waited for the upstream (${fresh.ms.toFixed(0)} ms)`,
      );
      assertEquals(fresh.r.answers[0].data, "192.0.2.2", "the upstream's new answer");
      assertEquals(k.lines.filter((l) => l.includes("no-serve-expired")), [], "not reported as unsupported");
    } finally {
      await k.stop();
      await fake.close();
    }
  },
});
