/**
 * `deno task bench`: dnsperf against keeldns, SmartDNS and dnsmasq in one run — same query file, same
 * local upstream (a dnsmasq answering *.bench.test) — plus a trivial Deno UDP responder as the
 * runtime's ceilings (node:dgram and batched FFI echo responders). Workloads: (1) cache hits,
 * (2) forwarding with every cache off, (3) latency percentiles at a fixed 20k QPS of cached names
 * (servers taking turns, the batched echo as the runtime floor),
 * (4) memory with 100k names cached, (5) rules: 100k and 1M-name block lists loaded (bench/rules.ts:
 * load time, memory added, match rate, QPS), (6) encrypted: forwarding over DoT and DoH to a local
 * unbound, and memory per open DoT connection, (7) miss-latency: p50/p99 a miss adds over the upstream
 * (both bench/encrypted.ts), (8) speed-check: `speed-check-mode tcp:PORT` with `response-mode
 * first-ping` on and off — cache hits, and misses with every name new (QPS, CPU per miss, probes per
 * second), keeldns and SmartDNS in a network namespace (bench/speed_check.ts), (9) serve-expired:
 * cached QPS with the optimistic cache on vs off, (10) cache-writes: bytes the cache journal writes
 * per stored answer and per hour (both bench/cache_policy.ts), (11) audit (`--only audit`, not in the
 * default list): cached QPS with the audit file on vs off (bench/audit.ts), (12) metrics (`--only
 * metrics`, not in the default list either): cached QPS with the query statistics on vs off
 * (bench/metrics.ts). Prints QPS, ratios to SmartDNS and dnsmasq, lost
 * queries, latency and RSS; `--record` appends the tables to docs/benchmarks.md.
 *
 * Options: --seconds N (per measurement, default 10), --names N (default 5000), --clients N (4),
 * --memory-names N (default 100000, 0 skips), --only LIST (comma-separated workloads among hits,
 * forwarding, latency, memory, rules, encrypted, miss-latency, connection-memory (the memory part of
 * encrypted alone), kill-loss (kill -9 of the serving process under load, bench/kill_loss.ts; not in
 * the default set); default all), --kill-rounds N, --kill-seconds N and --kill-rate N (kill-loss:
 * default 10 kills, 6 s of dnsperf each, 20000 QPS), --rules-seconds N and
 * --rules-rounds N (rules QPS turns, default 3 s × 5), --rules-sizes LIST (default 100000,1000000),
 * --encrypted-seconds N and --encrypted-rounds N (turns of the encrypted and miss-latency runs,
 * default 4 s × 3), --connections N (DoT upstreams for the memory figure, default 16), --miss-rate N
 * (QPS of the miss-latency runs, default 5000), --speed-seconds N and --speed-rounds N (the
 * speed-check miss runs, default 4 s × 3), --speed-hit-seconds N and --speed-hit-rounds N (its hit
 * runs, default 3 s × 10; the serve-expired runs too), --speed-rate N (its fixed-rate miss runs,
 * default 1000), --write-rate N and --write-seconds N (the cache-writes misses, default 50/s × 30 s),
 * --record. `--only dashboard` (bench/dashboard.ts, not in the default set: it needs chromium) takes
 * the speed-hit seconds and rounds.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { freePort, keeldnsCommand, programPath, REPO_ROOT } from "../tests/helpers/keeldns_process.ts";
import { dnsmasqArgs, startDnsmasq, stopPeer, waitForAnswer } from "../tests/helpers/peers.ts";
import { rulesBench } from "./rules.ts";
import { encryptedBench } from "./encrypted.ts";
import { speedCheckBench } from "./speed_check.ts";
import { cachePolicyBench } from "./cache_policy.ts";
import { auditBench } from "./audit.ts";
import { metricsBench } from "./metrics.ts";
import { killLossBench } from "./kill_loss.ts";
import { dashboardBench } from "./dashboard.ts";
import { dnsperf, type DnsperfResult as Result } from "./dnsperf.ts";
import { childrenOf } from "./process_cpu.ts";
import { smartdnsLikeKeeldns } from "./smartdns_conf.ts";

const { values: opts } = parseArgs({
  args: Deno.args,
  options: {
    seconds: { type: "string", default: "10" },
    names: { type: "string", default: "5000" },
    clients: { type: "string", default: "4" },
    "memory-names": { type: "string", default: "100000" },
    only: {
      type: "string",
      default:
        "hits,forwarding,latency,memory,rules,encrypted,miss-latency,speed-check,serve-expired,cache-writes",
    },
    "rules-seconds": { type: "string", default: "3" },
    "rules-rounds": { type: "string", default: "5" },
    "rules-sizes": { type: "string", default: "100000,1000000" },
    "encrypted-seconds": { type: "string", default: "4" },
    "encrypted-rounds": { type: "string", default: "3" },
    connections: { type: "string", default: "16" },
    "miss-rate": { type: "string", default: "5000" },
    "speed-seconds": { type: "string", default: "4" },
    "speed-rounds": { type: "string", default: "3" },
    "speed-hit-seconds": { type: "string", default: "3" },
    "speed-hit-rounds": { type: "string", default: "10" },
    "speed-rate": { type: "string", default: "1000" },
    "write-rate": { type: "string", default: "50" },
    "write-seconds": { type: "string", default: "30" },
    "kill-rounds": { type: "string", default: "10" },
    "kill-seconds": { type: "string", default: "6" },
    "kill-rate": { type: "string", default: "20000" },
    record: { type: "boolean", default: false },
  },
});
const SECONDS = Number(opts.seconds);
const NAMES = Number(opts.names);
const CLIENTS = Number(opts.clients);
const MEMORY_NAMES = Number(opts["memory-names"]);
const ONLY = new Set(opts.only.split(",").map((w) => w.trim()));
for (const w of ONLY) {
  const known = [
    "hits",
    "forwarding",
    "latency",
    "memory",
    "rules",
    "encrypted",
    "connection-memory",
    "miss-latency",
    "speed-check",
    "serve-expired",
    "cache-writes",
    "audit",
    "metrics",
    "kill-loss",
    "dashboard",
  ];
  if (!known.includes(w)) {
    throw new Error(`--only: unknown workload ${w}`);
  }
}

const work = await Deno.makeTempDir({ prefix: "keeldns-bench-" });

/** A server under test. */
interface Server {
  name: string;
  port: number;
  process: Deno.ChildProcess;
  /** Pids whose RSS is reported (e.g. guardian and child). */
  pids: () => Promise<Record<string, number>>;
}

function spawn(command: string, args: string[]): Deno.ChildProcess {
  return new Deno.Command(command, { args, stdin: "null", stdout: "null", stderr: "null" }).spawn();
}

/** Resolves once `port` answers a bench name. */
function waitForDns(port: number): Promise<void> {
  return waitForAnswer(port, "ready.bench.test", "192.0.2.");
}

/** Reads VmRSS and VmHWM (kB) of a pid. */
async function memory(pid: number): Promise<{ rss: number; hwm: number }> {
  try {
    const status = await Deno.readTextFile(`/proc/${pid}/status`);
    const kb = (key: string) => Number(new RegExp(`${key}:\\s+(\\d+)`).exec(status)?.[1] ?? NaN);
    return { rss: kb("VmRSS"), hwm: kb("VmHWM") };
  } catch {
    return { rss: NaN, hwm: NaN };
  }
}

/** Runs dnsperf for `seconds` (or `runs` passes over the file); `rate` fixes the QPS and records latencies. */
function runDnsperf(
  port: number,
  file: string,
  seconds: number,
  runs?: number,
  rate?: number,
): Promise<Result> {
  return dnsperf({ port, file, seconds, runs, rate, clients: CLIENTS, report: `${work}/dnsperf.out` });
}

async function startUpstream(): Promise<{ port: number; process: Deno.ChildProcess }> {
  const port = await freePort();
  const records = ["--cache-size=0", "--local-ttl=3600", "--address=/bench.test/192.0.2.1"];
  const process = await startDnsmasq(port, records, { name: "ready.bench.test", expect: "192.0.2." });
  return { port, process };
}

async function startKeeldns(
  upstream: number,
  cache: boolean,
  transport = "batched",
  size = NAMES * 2,
  optimizeFor = "speed",
): Promise<Server> {
  const port = await freePort();
  const config = `${work}/keeldns-${cache}-${transport}-${optimizeFor}.toml`;
  await Deno.writeTextFile(
    config,
    `[server]\nbind = ["127.0.0.1:${port}"]\nudp-transport = "${transport}"\n` +
      `[[upstream]]\naddress = "udp://127.0.0.1:${upstream}"\n` +
      `[cache]\nsize = ${
        cache ? size : 0
      }\n[log]\nlevel = "error"\n[guardian]\noptimize-for = "${optimizeFor}"\n`,
  );
  const { command, args } = keeldnsCommand(["run", "-c", config]);
  const process = spawn(command, args);
  await waitForDns(port);
  return {
    name: (transport === "batched" ? "keeldns" : `keeldns (${transport} UDP)`) +
      (optimizeFor === "memory" ? " (optimize-for memory)" : ""),
    port,
    process,
    pids: async () => {
      const child = (await childrenOf(process.pid))[0];
      return { guardian: process.pid, ...(child ? { child } : {}) };
    },
  };
}

async function startSmartdns(upstream: number, cache: boolean, size = NAMES * 2): Promise<Server> {
  const port = await freePort();
  const config = `${work}/smartdns-${cache}.conf`;
  await Deno.writeTextFile(
    config,
    [
      `bind 127.0.0.1:${port}`,
      `server 127.0.0.1:${upstream}`,
      `cache-size ${cache ? size : 0}`,
      ...smartdnsLikeKeeldns(`${work}/smartdns.log`),
      "",
    ].join("\n"),
  );
  const process = spawn(programPath("smartdns"), ["-f", "-c", config, "-p", "-"]);
  await waitForDns(port);
  return { name: "SmartDNS", port, process, pids: () => Promise.resolve({ smartdns: process.pid }) };
}

async function startDnsmasqServer(upstream: number, cache: boolean, size = 10000): Promise<Server> {
  const port = await freePort();
  const process = spawn(
    programPath("dnsmasq"),
    dnsmasqArgs(port, [`--server=127.0.0.1#${upstream}`, `--cache-size=${cache ? size : 0}`]),
  );
  await waitForDns(port);
  return { name: "dnsmasq", port, process, pids: () => Promise.resolve({ dnsmasq: process.pid }) };
}

async function startEcho(mode: "portable" | "batched"): Promise<Server> {
  const port = await freePort();
  const script = `${REPO_ROOT}bench/echo_server.ts`;
  const process = spawn(Deno.execPath(), ["run", "--allow-net", "--allow-ffi", script, String(port), mode]);
  await waitForDns(port);
  return {
    name: mode === "batched" ? "Deno batched FFI echo (ceiling)" : "Deno node:dgram echo (portable ceiling)",
    port,
    process,
    pids: () => Promise.resolve({ echo: process.pid }),
  };
}

function stop(server: { process: Deno.ChildProcess }): Promise<void> {
  return stopPeer(server.process);
}

interface Row {
  workload: string;
  server: string;
  result: Result;
  memory: string;
}

async function measure(workload: string, server: Server, file: string, prime: boolean): Promise<Row> {
  if (prime) await runDnsperf(server.port, file, 0, 1);
  const result = await runDnsperf(server.port, file, SECONDS);
  console.error(`  ${workload} / ${server.name}: ${result.qps.toFixed(0)} qps, lost ${result.lost}`);
  return { workload, server: server.name, result, memory: await memoryText(server) };
}

/**
 * Latency at a fixed `rate`, servers taking turns: each is primed and warmed up (so that the
 * garbage of priming is not measured), then five rounds of one 4 s run per server, so that a
 * noisy stretch of this shared machine hits every server alike. Keeps each server's median-p99 run.
 */
async function measureLatency(
  workload: string,
  servers: Server[],
  file: string,
  rate: number,
): Promise<Row[]> {
  for (const server of servers) {
    await runDnsperf(server.port, file, 0, 1);
    await runDnsperf(server.port, file, 3, undefined, rate);
  }
  const runs = servers.map((): Result[] => []);
  for (let round = 0; round < 5; round++) {
    for (const [i, server] of servers.entries()) {
      runs[i].push(await runDnsperf(server.port, file, 4, undefined, rate));
    }
  }
  const rows: Row[] = [];
  for (const [i, server] of servers.entries()) {
    const result = runs[i].sort((a, b) => a.p99Ms! - b.p99Ms!)[2];
    console.error(`  ${workload} / ${server.name}: p50 ${result.p50Ms} ms, p99 ${result.p99Ms} ms`);
    rows.push({ workload, server: server.name, result, memory: await memoryText(server) });
  }
  return rows;
}

/** RSS (and peak) of each of the server's processes, as a table cell. */
async function memoryText(server: Server): Promise<string> {
  const parts: string[] = [];
  for (const [role, pid] of Object.entries(await server.pids())) {
    const m = await memory(pid);
    parts.push(`${role} ${(m.rss / 1024).toFixed(1)} MB (peak ${(m.hwm / 1024).toFixed(1)})`);
  }
  return parts.join(", ");
}

async function machine(): Promise<string> {
  const cpu = /model name\s*:\s*(.*)/.exec(await Deno.readTextFile("/proc/cpuinfo"))?.[1] ?? "unknown CPU";
  const kernel = (await Deno.readTextFile("/proc/sys/kernel/osrelease")).trim();
  const mem = /MemTotal:\s+(\d+)/.exec(await Deno.readTextFile("/proc/meminfo"))?.[1];
  return `${navigator.hardwareConcurrency} cores, ${cpu}, ${
    (Number(mem) / 1024 / 1024).toFixed(0)
  } GB, Linux ${kernel}, Deno ${Deno.version.deno}`;
}

function table(rows: Row[]): string {
  const lines: string[] = [];
  for (const workload of [...new Set(rows.map((r) => r.workload))]) {
    const group = rows.filter((r) => r.workload === workload);
    const smart = group.find((r) => r.server === "SmartDNS")?.result.qps ?? NaN;
    const dnsmasq = group.find((r) => r.server === "dnsmasq")?.result.qps ?? NaN;
    lines.push(`\n**${workload}**\n`);
    const percentiles = group.some((r) => r.result.p99Ms !== undefined);
    lines.push(
      `| server | QPS | × SmartDNS | × dnsmasq | lost | avg latency |${
        percentiles ? " p50 | p99 |" : ""
      } RSS after the run |`,
    );
    lines.push(`|---|---:|---:|---:|---:|---:|${percentiles ? "---:|---:|" : ""}---|`);
    for (const r of group) {
      const p = percentiles ? ` ${r.result.p50Ms?.toFixed(3)} ms | ${r.result.p99Ms?.toFixed(3)} ms |` : "";
      lines.push(
        `| ${r.server} | ${r.result.qps.toFixed(0)} | ${(r.result.qps / smart).toFixed(2)} | ${
          (r.result.qps / dnsmasq).toFixed(2)
        } | ${r.result.lost} of ${r.result.sent} | ${
          r.result.avgLatencyMs.toFixed(2)
        } ms |${p} ${r.memory} |`,
      );
    }
  }
  return lines.join("\n");
}

// ---- run ----
const file = `${work}/queries.txt`;
await Deno.writeTextFile(
  file,
  Array.from({ length: NAMES }, (_, i) => `h${i}.bench.test A`).join("\n") + "\n",
);
const upstream = await startUpstream();
const rows: Row[] = [];
let rulesReport = "";
let encryptedReport = "";
let speedReport = "";
let cacheReport = "";
let killReport = "";
let dashboardReport = "";
try {
  console.error(`bench: ${NAMES} names, ${SECONDS} s per measurement, dnsperf -c ${CLIENTS} -T 1 -q 100`);
  const workloads: [string, boolean][] = [
    ...(ONLY.has("hits") ? [["cache hits (all names cached)", true] as [string, boolean]] : []),
    ...(ONLY.has("forwarding") ? [["forwarding, caches off", false] as [string, boolean]] : []),
  ];
  for (const [workload, cache] of workloads) {
    const starters = [
      startKeeldns,
      ...(cache ? [(u: number, c: boolean) => startKeeldns(u, c, "portable")] : []),
      startSmartdns,
      startDnsmasqServer,
    ];
    for (const start of starters) {
      const server = await start(upstream.port, cache);
      try {
        rows.push(await measure(workload, server, file, cache));
      } finally {
        await stop(server);
      }
    }
    if (cache) {
      for (const mode of ["portable", "batched"] as const) {
        const echo = await startEcho(mode);
        try {
          rows.push(await measure(workload, echo, file, false));
        } finally {
          await stop(echo);
        }
      }
    }
  }
  if (ONLY.has("latency")) {
    const latencyWorkload = "latency at a fixed 20k QPS (cached names; servers take turns)";
    const servers: Server[] = [];
    try {
      for (const start of [startKeeldns, startSmartdns, startDnsmasqServer]) {
        servers.push(await start(upstream.port, true));
      }
      servers.push(await startEcho("batched"));
      rows.push(...await measureLatency(latencyWorkload, servers, file, 20_000));
    } finally {
      for (const server of servers) await stop(server);
    }
  }
  if (MEMORY_NAMES > 0 && ONLY.has("memory")) {
    const big = `${work}/queries-${MEMORY_NAMES}.txt`;
    await Deno.writeTextFile(
      big,
      Array.from({ length: MEMORY_NAMES }, (_, i) => `m${i}.bench.test A`).join("\n") + "\n",
    );
    const memoryWorkload = `memory: ${MEMORY_NAMES} names cached, then hits`;
    const starters = [
      (u: number) => startKeeldns(u, true, "batched", MEMORY_NAMES * 2),
      (u: number) => startKeeldns(u, true, "batched", MEMORY_NAMES * 2, "memory"),
      (u: number) => startSmartdns(u, true, MEMORY_NAMES * 2),
      (u: number) => startDnsmasqServer(u, true, MEMORY_NAMES * 2),
    ];
    for (const start of starters) {
      const server = await start(upstream.port);
      try {
        rows.push(await measure(memoryWorkload, server, big, true));
      } finally {
        await stop(server);
      }
    }
  }
  if (ONLY.has("encrypted") || ONLY.has("connection-memory") || ONLY.has("miss-latency")) {
    encryptedReport = await encryptedBench({
      parts: ONLY,
      seconds: Number(opts["encrypted-seconds"]),
      rounds: Number(opts["encrypted-rounds"]),
      clients: CLIENTS,
      connections: Number(opts.connections),
      rate: Number(opts["miss-rate"]),
      file,
      work,
    });
  }
  if (ONLY.has("speed-check")) {
    speedReport = await speedCheckBench({
      seconds: Number(opts["speed-seconds"]),
      rounds: Number(opts["speed-rounds"]),
      hitSeconds: Number(opts["speed-hit-seconds"]),
      hitRounds: Number(opts["speed-hit-rounds"]),
      clients: CLIENTS,
      names: NAMES,
      rate: Number(opts["speed-rate"]),
      work,
    });
  }
  // The cached-QPS workloads measured in turns: the speed check's hit-run settings.
  const turns = {
    seconds: Number(opts["speed-hit-seconds"]),
    rounds: Number(opts["speed-hit-rounds"]),
    clients: CLIENTS,
    names: NAMES,
    upstream: upstream.port,
    work,
  };
  if (ONLY.has("serve-expired") || ONLY.has("cache-writes")) {
    cacheReport = await cachePolicyBench({
      ...turns,
      missRate: Number(opts["write-rate"]),
      missSeconds: Number(opts["write-seconds"]),
      serveExpired: ONLY.has("serve-expired"),
      cacheWrites: ONLY.has("cache-writes"),
    });
  }
  if (ONLY.has("metrics")) {
    cacheReport += (cacheReport ? "\n\n" : "") + await metricsBench(turns);
  }
  if (ONLY.has("audit")) {
    cacheReport += (cacheReport ? "\n\n" : "") + await auditBench(turns);
  }
  if (ONLY.has("dashboard")) {
    dashboardReport = await dashboardBench(turns);
  }
  if (ONLY.has("kill-loss")) {
    killReport = await killLossBench({
      rounds: Number(opts["kill-rounds"]),
      seconds: Number(opts["kill-seconds"]),
      rate: Number(opts["kill-rate"]),
      work,
    });
  }
  if (ONLY.has("rules")) {
    rulesReport = await rulesBench({
      seconds: Number(opts["rules-seconds"]),
      rounds: Number(opts["rules-rounds"]),
      clients: CLIENTS,
      check: 20000,
      sizes: opts["rules-sizes"].split(",").map(Number),
    });
  }
} finally {
  await stop(upstream);
  await Deno.remove(work, { recursive: true }).catch(() => {});
}

const when = new Date().toISOString().slice(0, 16).replace("T", " ") + " UTC";
const report = `### ${when}\n\nMachine: ${await machine()}. dnsperf ${CLIENTS} clients, 1 thread, ` +
  `100 outstanding, ${SECONDS} s per measurement, ${NAMES} names; upstream: dnsmasq on loopback.\n${
    table(rows)
  }\n${encryptedReport ? `\n${encryptedReport}\n` : ""}${speedReport ? `\n${speedReport}\n` : ""}${
    cacheReport ? `\n${cacheReport}\n` : ""
  }${killReport ? `\n${killReport}\n` : ""}${dashboardReport ? `\n${dashboardReport}\n` : ""}${
    rulesReport ? `\n**rules: block lists loaded** (bench/rules.ts)\n\n${rulesReport}\n` : ""
  }`;
console.log(report);
if (opts.record) {
  const path = `${REPO_ROOT}docs/benchmarks.md`;
  const old = await Deno.readTextFile(path).catch(() => "# Benchmarks\n");
  const marker = "<!-- runs -->";
  const next = old.includes(marker)
    ? old.replace(marker, `${marker}\n\n${report}`)
    : `${old}\n${marker}\n\n${report}`;
  await Deno.writeTextFile(path, next);
  console.error(`recorded in ${path}`);
}
