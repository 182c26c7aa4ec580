/**
 * The metrics workload of `deno task bench` (`--only metrics`): cached QPS of keeldns with the
 * query statistics on (the default: every answer recorded, counted off the hot path, top lists
 * kept) and off (`[metrics] enable = false`), the same names primed in each, then dnsperf in turns
 * (order reversed every other round); medians, the on/off ratio of the medians and the median of
 * the rounds' own ratios (each round's two runs are next to each other in time, so a noisy stretch
 * of a shared machine hits both), and the child's CPU time per query (utime + stime over the
 * runs: the least noisy of the three). The target is ≥ 0.97. Also the time `keeldns metrics`
 * takes and the size of its text, after the runs.
 *
 * @module
 */
import { startBenchKeeldns, writeBenchNames } from "./bench_keeldns.ts";
import { runKeeldns } from "../tests/helpers/keeldns_process.ts";
import { stopPeer } from "../tests/helpers/peers.ts";
import { dnsperf, type DnsperfResult } from "./dnsperf.ts";
import { median } from "./median.ts";
import { childrenOf, cpuSeconds } from "./process_cpu.ts";

/** What the workload is asked to do. */
export interface MetricsBenchOptions {
  /** Seconds per run, and rounds. */
  seconds: number;
  rounds: number;
  clients: number;
  /** Names cached. */
  names: number;
  /** The upstream's port (a dnsmasq answering *.bench.test). */
  upstream: number;
  work: string;
}

interface Running {
  port: number;
  process: Deno.ChildProcess;
  pidFile: string;
}

function start(o: MetricsBenchOptions, name: string, enable: boolean): Promise<Running> {
  return startBenchKeeldns({
    work: o.work,
    name,
    upstream: o.upstream,
    cacheSize: o.names * 2 + 10000,
    extra: `[metrics]\nenable = ${enable}\n`,
  });
}

/** Runs the workload; returns the report's markdown. */
export async function metricsBench(o: MetricsBenchOptions): Promise<string> {
  const file = `${o.work}/metrics-names.txt`;
  await writeBenchNames(file, "mt", o.names);
  const servers = [
    { label: "metrics on", r: await start(o, "metrics-on", true) },
    { label: "metrics off", r: await start(o, "metrics-off", false) },
  ];
  try {
    const report = `${o.work}/dnsperf-metrics.out`;
    for (const s of servers) {
      await dnsperf({ port: s.r.port, file, seconds: 0, runs: 1, clients: o.clients, report });
    }
    const runs = servers.map((): DnsperfResult[] => []);
    const children = await Promise.all(servers.map((s) => childrenOf(s.r.process.pid)));
    const cpu = servers.map(() => 0);
    for (let round = 0; round < o.rounds; round++) {
      const order = round % 2 ? [1, 0] : [0, 1];
      for (const i of order) {
        const before = await cpuSeconds(children[i]);
        runs[i].push(
          await dnsperf({ port: servers[i].r.port, file, seconds: o.seconds, clients: o.clients, report }),
        );
        cpu[i] += await cpuSeconds(children[i]) - before;
      }
    }
    const qps = runs.map((rs) => median(rs.map((r) => r.qps)));
    const pairRatio = median(runs[0].map((r, k) => r.qps / runs[1][k].qps));
    const usPerQuery = runs.map((rs, i) => cpu[i] * 1e6 / rs.reduce((n, r) => n + r.completed, 0));
    const lost = runs.map((rs) => rs.reduce((sum, r) => sum + r.lost, 0));
    const started = performance.now();
    const text = await runKeeldns(["metrics", "-p", servers[0].r.pidFile]);
    const took = performance.now() - started;
    const counted = /keeldns_queries_total\{[^}]*reason="cache"[^}]*\} (\d+)/.exec(text.stdout)?.[1];
    const recordsLost = /^keeldns_query_records_lost_total (\d+)$/m.exec(text.stdout)?.[1];
    const answered = runs[0].reduce((n, r) => n + r.completed, 0);
    console.error(`  metrics: on ${qps[0].toFixed(0)} qps, off ${qps[1].toFixed(0)} qps`);
    return [
      `**metrics: cached QPS with the query statistics on and off** (bench/metrics.ts; ` +
      `${o.names} names primed, ${o.rounds} rounds × ${o.seconds} s in turns, medians)`,
      "",
      "| keeldns | QPS (median) | runs | lost | ratio to off | child CPU per query |",
      "|---|---:|---|---:|---:|---:|",
      ...servers.map((s, i) =>
        `| ${s.label} | ${qps[i].toFixed(0)} | ${runs[i].map((r) => r.qps.toFixed(0)).join(", ")} | ${
          lost[i]
        } | ${(qps[i] / qps[1]).toFixed(3)} | ${usPerQuery[i].toFixed(2)} µs |`
      ),
      "",
      `Median of the rounds' own on/off ratios: ${pairRatio.toFixed(3)}; CPU per query on/off: ${
        (usPerQuery[1] / usPerQuery[0]).toFixed(3)
      } (as a throughput ratio).`,
      "",
      `\`keeldns metrics\` afterwards: ${(text.stdout.length / 1024).toFixed(1)} KiB of text in ${
        took.toFixed(0)
      } ms (a new process from source, most of it start-up); cache hits counted: ${counted ?? "?"} ` +
      `(dnsperf had ${answered} answered in the measured runs, plus the priming pass), query records lost: ` +
      `${recordsLost ?? "?"}.`,
    ].join("\n");
  } finally {
    for (const s of servers) await stopPeer(s.r.process);
  }
}
