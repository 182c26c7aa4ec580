/**
 * The audit workload of `deno task bench` (`--only audit`): cached QPS of keeldns with the audit
 * file on (and with the in-memory query log of 10,000 entries as well) against both off, the same
 * names primed in each, then dnsperf in turns (order rotated every round); medians and the ratios
 * to off. The target is ≥ 0.9 with the audit file on. Also the child's RSS after the runs (the
 * query log full by then) and the audit file's bytes per line.
 *
 * @module
 */
import { startBenchKeeldns, writeBenchNames } from "./bench_keeldns.ts";
import { stopPeer } from "../tests/helpers/peers.ts";
import { dnsperf, type DnsperfResult } from "./dnsperf.ts";
import { median } from "./median.ts";
import { childrenOf } from "./process_cpu.ts";

/** What the workload is asked to do. */
export interface AuditBenchOptions {
  seconds: number;
  rounds: number;
  clients: number;
  names: number;
  /** The upstream's port (a dnsmasq answering *.bench.test). */
  upstream: number;
  work: string;
}

interface Running {
  label: string;
  port: number;
  process: Deno.ChildProcess;
  pidFile: string;
  auditFile?: string;
}

async function start(o: AuditBenchOptions, name: string, label: string, audit: string): Promise<Running> {
  // The statistics (on by default) off in all three: this measures the audit file alone.
  const k = await startBenchKeeldns({
    work: o.work,
    name,
    upstream: o.upstream,
    cacheSize: o.names * 2 + 10000,
    extra: `[metrics]\nenable = false\n${audit}`,
  });
  const auditFile = /file = "([^"]+)"/.exec(audit)?.[1];
  return { label, ...k, auditFile };
}

/** VmRSS (kB) of the guardian's children. */
async function childRss(r: Running): Promise<number> {
  const guardian = Number((await Deno.readTextFile(r.pidFile)).trim());
  let kb = 0;
  for (const pid of await childrenOf(guardian)) {
    const status = await Deno.readTextFile(`/proc/${pid}/status`).catch(() => "");
    kb += Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  }
  return kb;
}

/** Runs the workload; returns the report's markdown. */
export async function auditBench(o: AuditBenchOptions): Promise<string> {
  const file = `${o.work}/audit-names.txt`;
  await writeBenchNames(file, "au", o.names);
  const big = 'size = "64m"\nnum = 1\n';
  const servers = [
    await start(o, "audit-off", "audit off", ""),
    await start(
      o,
      "audit-on",
      "audit file on",
      `[audit]\nenable = true\nfile = "${o.work}/audit.log"\n${big}`,
    ),
    await start(
      o,
      "audit-log",
      "audit file + query log (10,000)",
      `[audit]\nenable = true\nfile = "${o.work}/audit-log.log"\n${big}query-log-size = 10000\n`,
    ),
  ];
  try {
    const report = `${o.work}/dnsperf-audit.out`;
    for (const s of servers) {
      await dnsperf({ port: s.port, file, seconds: 0, runs: 1, clients: o.clients, report });
    }
    const runs = servers.map((): DnsperfResult[] => []);
    for (let round = 0; round < o.rounds; round++) {
      for (let k = 0; k < servers.length; k++) {
        const i = (k + round) % servers.length;
        runs[i].push(
          await dnsperf({ port: servers[i].port, file, seconds: o.seconds, clients: o.clients, report }),
        );
      }
    }
    await new Promise((r) => setTimeout(r, 300)); // the last batch written
    const qps = runs.map((rs) => median(rs.map((r) => r.qps)));
    const lost = runs.map((rs) => rs.reduce((sum, r) => sum + r.lost, 0));
    const rss = await Promise.all(servers.map(childRss));
    const lineBytes = await Promise.all(servers.map(async (s) => {
      if (!s.auditFile) return "—";
      const text = await Deno.readTextFile(s.auditFile).catch(() => "");
      const lines = text.split("\n").length - 1;
      return lines > 0 ? `${(text.length / lines).toFixed(0)} (${lines} lines)` : "0";
    }));
    console.error(`  audit: ${servers.map((s, i) => `${s.label} ${qps[i].toFixed(0)} qps`).join(", ")}`);
    return [
      `**audit: cached QPS with the audit file (and the query log) on and off** (bench/audit.ts; ` +
      `${o.names} names primed, ${o.rounds} rounds × ${o.seconds} s in turns, medians; target ≥ 0.9 on/off)`,
      "",
      "| keeldns | QPS (median) | lost | ratio to off | child RSS after | audit bytes per line |",
      "|---|---:|---:|---:|---:|---:|",
      ...servers.map((s, i) =>
        `| ${s.label} | ${qps[i].toFixed(0)} | ${lost[i]} | ${(qps[i] / qps[0]).toFixed(3)} | ${
          (rss[i] / 1024).toFixed(1)
        } MB | ${lineBytes[i]} |`
      ),
    ].join("\n");
  } finally {
    for (const s of servers) await stopPeer(s.process);
  }
}
