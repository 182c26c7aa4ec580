import { assert, assertEquals } from "../tests/helpers/assert.ts";
import { Reason } from "../resolver/query_context.ts";
import { QueryRecords, RECORD_NAME_BYTES } from "../server/query_recorder.ts";
import { DURATION_BOUNDS, QueryStats, type QueryStatsState } from "./query_stats.ts";

const T0 = 1_800_000_000_000; // a 5-minute boundary

/** Writes slot `i` of `r` as the recorder would. */
function put(
  r: QueryRecords,
  i: number,
  q: {
    name: string;
    qtype?: number;
    rcode?: number;
    reason: number;
    us: number;
    upstream?: number;
    client?: string;
    time?: number;
  },
): void {
  r.time[i] = q.time ?? T0 + 1000;
  r.elapsedUs[i] = q.us;
  r.qtype[i] = q.qtype ?? 1;
  r.qclass[i] = 1;
  r.rcode[i] = q.rcode ?? 0;
  r.reason[i] = q.reason;
  r.upstream[i] = q.upstream ?? -1;
  let k = 0;
  for (const label of q.name.split(".")) {
    r.name[i * RECORD_NAME_BYTES + k++] = label.length;
    for (const c of label) r.name[i * RECORD_NAME_BYTES + k++] = c.charCodeAt(0);
  }
  r.nameLength[i] = k;
  if (q.client) {
    r.clientFamily[i] = 4;
    q.client.split(".").forEach((b, j) => r.client[i * 16 + j] = Number(b));
  } else r.clientFamily[i] = 0;
}

function feed(stats: QueryStats, queries: Parameters<typeof put>[2][]): void {
  const r = new QueryRecords(queries.length, false);
  queries.forEach((q, i) => {
    put(r, i, q);
    stats.consume(r, i);
  });
}

const UPSTREAM = "udp://127.0.0.1:53";

function someQueries(): Parameters<typeof put>[2][] {
  return [
    { name: "Www.Example.test", reason: Reason.UPSTREAM, us: 4000, upstream: 0, client: "10.0.0.1" },
    { name: "www.example.test", reason: Reason.CACHE, us: 30, client: "10.0.0.1" },
    { name: "www.example.test", reason: Reason.CACHE, us: 40, client: "10.0.0.2" },
    { name: "ads.test", reason: Reason.BLOCKED, rcode: 3, us: 60, client: "10.0.0.2" },
    { name: "old.test", reason: Reason.STALE, us: 45, client: "10.0.0.1", time: T0 + 12_000 },
    { name: "odd.test", qtype: 65280, reason: Reason.UPSTREAM, rcode: 2, us: 2_000_000, upstream: 0 },
  ];
}

Deno.test("query stats: counts per type, reason and rcode; durations; series; top lists", () => {
  const stats = new QueryStats({ upstreams: [UPSTREAM], now: T0 });
  feed(stats, someQueries());
  const s = stats.snapshot(T0 + 15_000, 5);
  assertEquals(s.queries, 6);
  assertEquals(s.byReason, { upstream: 2, cache: 2, blocked: 1, stale: 1 });
  assertEquals(s.byRcode, { NOERROR: 4, NXDOMAIN: 1, SERVFAIL: 1 });
  // A type without a mnemonic counts as OTHER (random types cannot grow the label set).
  assertEquals(s.byType, { A: 5, OTHER: 1 });
  assertEquals(s.hitRatio, 3 / 5);
  assertEquals(s.top.names[0], { key: "www.example.test", count: 3, error: 0 });
  assertEquals(s.top.blocked, [{ key: "ads.test", count: 1, error: 0 }]);
  assertEquals(s.top.clients.map((c) => [c.key, c.count]), [["10.0.0.1", 3], ["10.0.0.2", 2]]);
  // The 10-s series: five queries in the bucket at T0, one (stale) in the next.
  const fine = s.series.fine;
  assertEquals(fine.widthSeconds, 10);
  assertEquals(fine.values.queries.slice(-2), [5, 1]);
  assertEquals(fine.values.cache.slice(-2), [2, 0]);
  assertEquals(fine.values.stale.slice(-2), [0, 1]);
  assertEquals(fine.values.blocked.slice(-2), [1, 0]);
  assertEquals(fine.values.queries.length, 360);
  assertEquals(s.series.coarse.values.queries.at(-1), 6);
  // The upstream that answered: two answers, 4 ms and 2 s.
  assertEquals(s.upstreams.map((u) => [u.address, u.answersGiven, u.averageMs]), [[UPSTREAM, 2, 1002]]);
  const cache = stats.duration[Reason.CACHE];
  assertEquals(cache.count, 2);
  assertEquals(cache.counts[DURATION_BOUNDS.indexOf(0.00005)], 2);
  assertEquals(cache.sum, 0.00007);
});

Deno.test("query stats: upstream health counters add only what is new, and a reset counter starts again", () => {
  const stats = new QueryStats({ upstreams: [], now: T0 });
  const report = (answers: number, failures: number) => ({
    address: UPSTREAM,
    state: "up" as const,
    fallback: false,
    rttP50Ms: 1,
    rttP95Ms: 2,
    samples: 1,
    timeoutMs: 1000,
    answers,
    failures,
    consecutiveFailures: 0,
    probes: 0,
  });
  stats.sampleUpstreams([report(5, 1)]);
  stats.sampleUpstreams([report(8, 1)]);
  stats.sampleUpstreams([report(2, 3)]); // a new resolver (reload): its counters start from 0
  const [u] = stats.upstreams();
  assertEquals([u.exchangesAnswered, u.failures], [10, 4]);
});

Deno.test("query stats: a successor absorbs a predecessor's state (through JSON) and adds its own", () => {
  const old = new QueryStats({ upstreams: [UPSTREAM], now: T0 - 60_000 });
  feed(old, someQueries());
  const state: QueryStatsState = JSON.parse(JSON.stringify(old.state(T0 + 15_000, { received: 7 }, 2)));
  const next = new QueryStats({ upstreams: [UPSTREAM], now: T0 + 14_000 });
  feed(next, [{
    name: "www.example.test",
    reason: Reason.CACHE,
    us: 20,
    client: "10.0.0.3",
    time: T0 + 14_000,
  }]);
  next.absorb(state, T0 + 15_000);
  const s = next.snapshot(T0 + 15_000, 5);
  assertEquals(s.since, T0 - 60_000);
  assertEquals(s.queries, 7);
  assertEquals(s.byReason.cache, 3);
  assertEquals(s.series.fine.values.queries.slice(-2), [5, 2]);
  assertEquals(s.top.names[0].key, "www.example.test");
  assertEquals(s.top.names[0].count, 4);
  assertEquals(s.upstreams[0].answersGiven, 2);
  assertEquals(next.duration[Reason.CACHE].count, 3);
  assertEquals(next.carried.received, 7);
  assertEquals(s.lost, 2);
  // Counting goes on: its own state now holds both.
  const again = next.state(T0 + 15_000, { received: 1 });
  assertEquals(again.counters.received, 8);
  assert(again.queries.reduce((n, [, c]) => n + c, 0) === 7);
  // Something that is not a state changes nothing.
  next.absorb({ version: 2 } as unknown as QueryStatsState, T0);
  assertEquals(next.snapshot(T0 + 15_000).queries, 7);
});

Deno.test("query stats: above the sketch budget the top lists sample, counts and series stay exact", () => {
  const stats = new QueryStats({ upstreams: [], now: T0 });
  const batch = 20_000; // per 100 ms: 200k a second, 20 times the budget
  const r = new QueryRecords(batch, false);
  for (let i = 0; i < batch; i++) {
    // hot0..hot4 take half the queries, 5000 cold names the rest.
    put(r, i, {
      name: i % 2 ? `hot${i % 5}.test` : `cold${i % 5000}.test`,
      reason: Reason.CACHE,
      us: 20,
      client: `10.0.${i % 3}.1`,
    });
  }
  let now = T0;
  for (let round = 0; round < 5; round++) {
    for (let i = 0; i < batch; i++) stats.consume(r, i);
    stats.batchDone(now += 100);
  }
  assertEquals(stats.sampleEvery, 32); // 200k/s over 10k/s, the next power of two
  const s = stats.snapshot(T0 + 1000, 5);
  assertEquals(s.queries, 5 * batch);
  assertEquals(s.series.coarse.values.cache.at(-1), 5 * batch);
  assertEquals(s.top.names.map((e) => e.key).sort(), [
    "hot0.test",
    "hot1.test",
    "hot2.test",
    "hot3.test",
    "hot4.test",
  ]);
  // Each hot name had 10k queries; the sampled estimate is near it (the first batch was exact).
  for (const e of s.top.names) assert(Math.abs(e.count - 10_000) < 2_500, JSON.stringify(e));
  assertEquals(s.top.clients.length, 3);
  assert(Math.abs(stats.clients.total - 5 * batch) < 5 * batch * 0.05, String(stats.clients.total));
});

Deno.test("query stats: the sampling rate is measured over 100 ms, however often the recorder drains", () => {
  const stats = new QueryStats({ upstreams: [], now: T0 });
  const r = new QueryRecords(2000, false);
  for (let i = 0; i < 2000; i++) put(r, i, { name: `n${i}.test`, reason: Reason.CACHE, us: 0 });
  // 2000 records every 5 ms: 400k a second.
  let now = T0;
  for (let drain = 0; drain < 40; drain++) {
    for (let i = 0; i < 2000; i++) stats.consume(r, i);
    stats.batchDone(now += 5);
  }
  assertEquals(stats.sampleEvery, 64); // 400k/s over 10k/s
});
