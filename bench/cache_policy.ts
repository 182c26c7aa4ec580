/**
 * The cache-policy workloads of `deno task bench`:
 *
 * - **serve-expired** (`--only serve-expired`): cached QPS of keeldns with `serve-expired` on and
 *   off (and the journal on, as `persist = true` sets it), the same names primed in each, then
 *   dnsperf in turns (order reversed every other round); medians and the on/off ratio. The target
 *   is ≥ 0.97: a fresh hit must cost the same with the optimistic cache on.
 * - **cache-writes** (`--only cache-writes`): what the journal writes. keeldns with `persist = true`
 *   takes misses of new names at a fixed rate for a while; `keeldns cache stats` then gives the
 *   bytes the journal and its snapshots wrote, the records and the compactions; from those, bytes
 *   per stored answer and per hour at the measured rate and at 1 and 10 misses a second (a home
 *   network is nearer 1). Also how long one compaction's encoding of a 100k-entry cache takes
 *   (the event loop waits for it).
 *
 * @module
 */
import { startBenchKeeldns, writeBenchNames } from "./bench_keeldns.ts";
import { runKeeldns } from "../tests/helpers/keeldns_process.ts";
import { stopPeer } from "../tests/helpers/peers.ts";
import { dnsperf, type DnsperfResult } from "./dnsperf.ts";
import { median } from "./median.ts";

/** What the workloads are asked to do. */
export interface CachePolicyOptions {
  /** Seconds per hit run, and rounds. */
  seconds: number;
  rounds: number;
  clients: number;
  /** Names cached for the hit runs. */
  names: number;
  /** Misses per second, and seconds, of the write run. */
  missRate: number;
  missSeconds: number;
  /** The upstream's port (a dnsmasq answering *.bench.test). */
  upstream: number;
  /** Which parts run. */
  serveExpired: boolean;
  cacheWrites: boolean;
  work: string;
}

interface Running {
  port: number;
  process: Deno.ChildProcess;
  pidFile: string;
}

function start(o: CachePolicyOptions, name: string, cacheLines: string): Promise<Running> {
  return startBenchKeeldns({
    work: o.work,
    name,
    upstream: o.upstream,
    cacheSize: o.names * 2 + 10000,
    cacheLines: `persist = true\nfile = "${o.work}/${name}.cache"\n${cacheLines}`,
  });
}

/** `keeldns cache stats` of a running keeldns, as numbers. */
async function cacheStats(r: Running): Promise<Record<string, number>> {
  const out = await runKeeldns(["cache", "stats", "-p", r.pidFile]);
  return Object.fromEntries(
    out.stdout.trim().split("\n").map((l) => l.split(": ")).map(([k, v]) => [k, Number(v)]),
  );
}

/** Runs the workloads asked for; returns the report's markdown. */
export async function cachePolicyBench(o: CachePolicyOptions): Promise<string> {
  const parts: string[] = [];
  if (o.serveExpired) parts.push(await serveExpiredPart(o));
  if (o.cacheWrites) parts.push(await cacheWritesPart(o));
  return parts.join("\n\n");
}

async function serveExpiredPart(o: CachePolicyOptions): Promise<string> {
  const file = `${o.work}/serve-expired-names.txt`;
  await writeBenchNames(file, "se", o.names);
  const servers = [
    { label: "serve-expired on", r: await start(o, "se-on", "serve-expired = true\n") },
    { label: "serve-expired off", r: await start(o, "se-off", "serve-expired = false\n") },
  ];
  try {
    const report = `${o.work}/dnsperf-se.out`;
    for (const s of servers) {
      await dnsperf({ port: s.r.port, file, seconds: 0, runs: 1, clients: o.clients, report });
    }
    const runs = servers.map((): DnsperfResult[] => []);
    for (let round = 0; round < o.rounds; round++) {
      const order = round % 2 ? [1, 0] : [0, 1];
      for (const i of order) {
        runs[i].push(
          await dnsperf({ port: servers[i].r.port, file, seconds: o.seconds, clients: o.clients, report }),
        );
      }
    }
    const qps = runs.map((rs) => median(rs.map((r) => r.qps)));
    const lost = runs.map((rs) => rs.reduce((sum, r) => sum + r.lost, 0));
    console.error(`  serve-expired: on ${qps[0].toFixed(0)} qps, off ${qps[1].toFixed(0)} qps`);
    return [
      `**serve-expired: cached QPS with the optimistic cache on and off** (bench/cache_policy.ts; ` +
      `${o.names} names primed, ${o.rounds} rounds × ${o.seconds} s in turns, medians; journal on in both)`,
      "",
      "| keeldns | QPS (median) | lost | ratio to off |",
      "|---|---:|---:|---:|",
      ...servers.map((s, i) =>
        `| ${s.label} | ${qps[i].toFixed(0)} | ${lost[i]} | ${(qps[i] / qps[1]).toFixed(3)} |`
      ),
    ].join("\n");
  } finally {
    for (const s of servers) await stopPeer(s.r.process);
  }
}

async function cacheWritesPart(o: CachePolicyOptions): Promise<string> {
  const count = Math.ceil(o.missRate * o.missSeconds);
  const file = `${o.work}/miss-names.txt`;
  await Deno.writeTextFile(
    file,
    Array.from({ length: count }, (_, i) => `w${i}.example${i % 97}.bench.test A`).join("\n") + "\n",
  );
  const r = await start(o, "writes", "");
  let stats: Record<string, number>;
  let sizes: { snapshot: number; journal: number };
  let seconds: number;
  try {
    const started = performance.now();
    await dnsperf({
      port: r.port,
      file,
      seconds: o.missSeconds,
      runs: 1,
      rate: o.missRate,
      clients: 1,
      report: `${o.work}/dnsperf-writes.out`,
    });
    await new Promise((done) => setTimeout(done, 1200)); // the last tick
    seconds = (performance.now() - started) / 1000;
    stats = await cacheStats(r);
    const size = (p: string) => Deno.stat(p).then((s) => s.size, () => 0);
    sizes = {
      snapshot: await size(`${o.work}/writes.cache`),
      journal: await size(`${o.work}/writes.cache.journal`),
    };
  } finally {
    await stopPeer(r.process);
  }
  const bytes = stats["journal bytes written"];
  const records = stats["journal records"];
  const perRecord = bytes / Math.max(1, records);
  const perHour = (rate: number) => (perRecord * rate * 3600 / (1 << 20)).toFixed(1);
  const encodeMs = await encodeCost(100_000);
  console.error(`  cache-writes: ${bytes} bytes for ${records} records in ${seconds.toFixed(0)} s`);
  return [
    `**cache-writes: what the journal writes** (bench/cache_policy.ts; misses of new names at ` +
    `${o.missRate}/s for ${o.missSeconds} s, one A record each, speed check off; default budget 16 MiB/h)`,
    "",
    "| figure | value |",
    "|---|---:|",
    `| answers stored (journal records) | ${records} |`,
    `| bytes written (journal + snapshots) | ${bytes} |`,
    `| compactions | ${stats["journal compactions"]} |`,
    `| dropped (over budget or failed) | ${stats["journal dropped"]} |`,
    `| bytes per stored answer | ${perRecord.toFixed(0)} |`,
    `| MiB per hour at the measured rate (${(records / seconds).toFixed(1)}/s) | ${
      (bytes / seconds * 3600 / (1 << 20)).toFixed(1)
    } |`,
    `| MiB per hour at 1 miss/s (journal; compaction adds at most as much again) | ${perHour(1)} |`,
    `| MiB per hour at 10 misses/s | ${perHour(10)} |`,
    `| files at the end: snapshot / journal bytes | ${sizes.snapshot} / ${sizes.journal} |`,
    `| encoding a 100k-entry snapshot in one piece (ms) | ${encodeMs.whole.toFixed(0)} |`,
    `| longest event-loop stall while the journal encodes it in parts (ms) | ${encodeMs.stall.toFixed(1)} |`,
  ].join("\n");
}

/**
 * Milliseconds {@link encodeCache} takes in one piece for a cache of `entries` one-address answers,
 * and the longest the event loop waits while it is encoded in parts (medians of 5).
 */
async function encodeCost(entries: number): Promise<{ whole: number; stall: number }> {
  const { AnswerCache } = await import("../resolver/answer_cache.ts");
  const { encodeCache } = await import("../resolver/cache_file.ts");
  const { StoredAnswer } = await import("../dns/stored_answer.ts");
  const { encodePacket } = await import("../dns/packet.ts");
  const { parseQuery, scanResponse } = await import("../dns/wire.ts");
  const { buildQuery } = await import("../tests/helpers/dns_client.ts");
  const cache = new AnswerCache(entries);
  const now = Date.now();
  for (let i = 0; i < entries; i++) {
    const name = `n${i}.example.com`;
    const wire = encodePacket({
      type: "response",
      flags: 0x8180,
      questions: [{ name, type: "A", class: "IN" }],
      answers: [{ name, type: "A", ttl: 3600, data: "192.0.2.1" }],
    });
    const answer = StoredAnswer.fromResponse(wire, scanResponse(wire)!, {
      rrTtl: 0,
      rrTtlMin: 0,
      rrTtlMax: 0,
    }, now);
    cache.set(parseQuery(buildQuery(name, "A", { id: 1 })), answer);
  }
  const { encodeCacheInParts } = await import("../resolver/cache_file.ts");
  const times: number[] = [];
  const stalls: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t = performance.now();
    encodeCache(cache, now);
    times.push(performance.now() - t);
    // In parts, as the journal writes it: the longest the event loop waits between two turns.
    let last = performance.now();
    let longest = 0;
    const tick = setInterval(() => {
      const at = performance.now();
      longest = Math.max(longest, at - last);
      last = at;
    }, 0);
    await encodeCacheInParts(cache, now);
    clearInterval(tick);
    stalls.push(Math.max(longest, performance.now() - last));
  }
  return { whole: median(times), stall: median(stalls) };
}
