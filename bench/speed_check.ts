/**
 * The speed-check workload of `deno task bench` (`--only speed-check`): what SmartDNS's
 * `speed-check-mode tcp:PORT` with `response-mode first-ping` costs, keeldns with it against
 * keeldns without (`speed-check-mode none`), and SmartDNS doing the same. keeldns and SmartDNS read
 * the same smartdns.conf (only the port and the two speed lines differ; `serve-expired no`,
 * `prefetch-domain no`, `dualstack-ip-selection no`, `cache-size 100000`).
 *
 * Everything runs inside a network namespace of its own (loopback only, no default route):
 * SmartDNS with a speed check first probes [2001::]:80 to see whether IPv6 works, and nothing of
 * this bench may leave the machine. In it: the upstream (bench/address_upstream.ts: every answer
 * 3–5 addresses 127.x.y.z that no answer had before, so every probe is a real one — the checker
 * remembers an address's result for a minute), one python listener on 0.0.0.0:PORT that completes
 * the handshake for all of 127/8 and counts the connections it accepts, the servers and dnsperf.
 * One upstream: SmartDNS's ad-block vote (keeldns's too) drops the first 127.x address of a lone
 * server's answer, so 2–4 addresses are probed per miss.
 *
 * - **cache hits, speed check on vs off**: keeldns with `tcp:PORT` and keeldns with `none`, the same
 *   names primed (probed once, the refined answers cached), then hits in turns (order reversed every
 *   other round); QPS and CPU per answered query (guardian + child, every thread), medians.
 * - **misses, every name new**: dnsperf at full speed (`-q 100`), then at a fixed rate, against the
 *   four (keeldns and SmartDNS, with and without the check), in turns, each run with names of its
 *   own; QPS, CPU per miss, the handshakes the listener accepted per second, keeldns's own
 *   `speedProbes` / `speedChecked` counters (`keeldns status`).
 *
 * On loopback a handshake takes tens of microseconds: SmartDNS counts RTTs in 0.1 ms and takes 0 for
 * "no result", so it waits out every probe (about 1 s) before it answers, where keeldns answers at
 * the first result. Its full-speed QPS is then bound by dnsperf's 100 outstanding queries; the
 * fixed-rate runs (many more outstanding) compare CPU per miss at one load.
 *
 * @module
 */
import { keeldnsCommand, programPath, REPO_ROOT, runKeeldns } from "../tests/helpers/keeldns_process.ts";
import { stopPeer } from "../tests/helpers/peers.ts";
import {
  addNamespace,
  digIn,
  inNamespace,
  namespacesUnavailable,
  removeNamespace,
  sleep,
} from "../tests/helpers/netns.ts";
import { dnsperf, type DnsperfResult } from "./dnsperf.ts";
import { median } from "./median.ts";
import { childrenOf, cpuSeconds } from "./process_cpu.ts";

/** What the workload is asked to do. */
export interface SpeedBenchOptions {
  /** Seconds per miss run, and miss rounds. */
  seconds: number;
  rounds: number;
  /** Seconds per hit run, and hit rounds. */
  hitSeconds: number;
  hitRounds: number;
  clients: number;
  /** Names cached for the hit runs. */
  names: number;
  /** QPS of the fixed-rate miss runs. */
  rate: number;
  /** A scratch directory. */
  work: string;
}

/** The namespace is ours: fixed ports are free in it. */
const PROBE_PORT = 8080;
const UPSTREAM_PORT = 5300;
/** Names per full-speed miss run: more than any server answers in a run, so none is asked twice. */
const FULL_SPEED_NAMES = 400_000;

/** Accepts every connection to PORT on any loopback address and closes it; prints the count per stdin line. */
const LISTENER = `
import socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(4096)
count = [0]
def serve():
    while True:
        c, _ = s.accept(); c.close(); count[0] += 1
threading.Thread(target=serve, daemon=True).start()
print("ready", flush=True)
for line in sys.stdin:
    print(count[0], flush=True)
`;

/** The probe listener: accepts the handshakes, tells how many it accepted. */
class Listener {
  private readonly reader: ReadableStreamDefaultReader<string>;
  private readonly writer: WritableStreamDefaultWriter<Uint8Array>;
  private buffered = "";

  constructor(readonly process: Deno.ChildProcess) {
    this.reader = process.stdout.pipeThrough(new TextDecoderStream()).getReader();
    this.writer = process.stdin.getWriter();
  }

  /** The next line it prints. */
  async line(): Promise<string> {
    while (!this.buffered.includes("\n")) {
      const { value, done } = await this.reader.read();
      if (done) throw new Error("the probe listener exited");
      this.buffered += value;
    }
    const nl = this.buffered.indexOf("\n");
    const line = this.buffered.slice(0, nl);
    this.buffered = this.buffered.slice(nl + 1);
    return line;
  }

  /** Connections accepted so far. */
  async accepted(): Promise<number> {
    await this.writer.write(new TextEncoder().encode("\n"));
    return Number(await this.line());
  }

  async stop(): Promise<void> {
    await this.writer.close().catch(() => {});
    try {
      this.process.kill("SIGKILL");
    } catch { /* gone */ }
    await this.process.status;
    await this.reader.cancel().catch(() => {});
  }
}

/** A server under test, inside the namespace. */
interface Server {
  name: string;
  /** Whether its speed check is on. */
  speed: boolean;
  port: number;
  process: Deno.ChildProcess;
  /** Its control socket (keeldns). */
  control?: string;
  /** The pids whose CPU counts (keeldns: guardian and child). */
  pids(): Promise<number[]>;
}

function spawnIn(ns: string, command: string, args: string[], piped = false): Deno.ChildProcess {
  const c = inNamespace(ns, command, args);
  return new Deno.Command(c.command, {
    args: c.args,
    stdin: piped ? "piped" : "null",
    stdout: piped ? "piped" : "null",
    stderr: "null",
  }).spawn();
}

/** Resolves once 127.0.0.1:port in `ns` answers a name with addresses; throws after ~20 s. */
async function waitUp(ns: string, port: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const r = await digIn(ns, "127.0.0.1", port, `ready-${i}.speed.test`);
    if (r.status === "NOERROR" && r.addresses.length > 0) return;
    await sleep(100);
  }
  throw new Error(`nothing answers on port ${port} in ${ns}`);
}

/** The smartdns.conf both servers read. */
function conf(port: number, speed: boolean, dir: string, name: string): string {
  return [
    `bind 127.0.0.1:${port}`,
    `server 127.0.0.1:${UPSTREAM_PORT}`,
    speed ? `speed-check-mode tcp:${PROBE_PORT}` : "speed-check-mode none",
    speed ? "response-mode first-ping" : "response-mode fastest-response",
    "cache-size 100000",
    "serve-expired no",
    "prefetch-domain no",
    "dualstack-ip-selection no",
    "cache-persist no",
    "log-level error",
    `log-file ${dir}/${name}.log`,
    "",
  ].join("\n");
}

async function startKeeldns(ns: string, dir: string, port: number, speed: boolean): Promise<Server> {
  const name = `keeldns-${speed ? "on" : "off"}`;
  await Deno.writeTextFile(`${dir}/${name}.conf`, conf(port, speed, dir, name));
  const control = `${dir}/${name}.sock`;
  const k = keeldnsCommand(["run", "-c", `${dir}/${name}.conf`, "--control", control]);
  // `ip netns exec` execs the command: the pid is the guardian's.
  const process = spawnIn(ns, k.command, k.args);
  await waitUp(ns, port);
  return {
    name: "keeldns",
    speed,
    port,
    process,
    control,
    pids: async () => [process.pid, ...(await childrenOf(process.pid))],
  };
}

async function startSmartdns(ns: string, dir: string, port: number, speed: boolean): Promise<Server> {
  const name = `smartdns-${speed ? "on" : "off"}`;
  await Deno.writeTextFile(`${dir}/${name}.conf`, conf(port, speed, dir, name));
  const process = spawnIn(ns, programPath("smartdns"), ["-f", "-c", `${dir}/${name}.conf`, "-p", "-"]);
  await waitUp(ns, port);
  return { name: "SmartDNS", speed, port, process, pids: () => Promise.resolve([process.pid]) };
}

/** keeldns's counters from `keeldns status` (its `childStats` line, the child's latest report). */
async function counters(server: Server): Promise<Record<string, number>> {
  if (!server.control) return {};
  const r = await runKeeldns(["status", "--control", server.control]);
  const line = /^childStats: (.*)$/m.exec(r.stdout)?.[1];
  return line ? JSON.parse(line) : {};
}

/** Writes `count` names of their own (`TAG-N.speed.test A`) and returns the file. */
async function namesFile(work: string, tag: string, count: number): Promise<string> {
  const path = `${work}/names-${tag}.txt`;
  await Deno.writeTextFile(
    path,
    Array.from({ length: count }, (_, i) => `${tag}-${i}.speed.test A`).join("\n") + "\n",
  );
  return path;
}

/** One measured run: QPS, CPU per answered query, the handshakes the targets accepted. */
interface Measured {
  result: DnsperfResult;
  cpuUs: number;
  /** Handshakes the listener accepted per second of the run (counted until 1.2 s after it). */
  handshakesPerSecond: number;
}

/** Runs dnsperf once against `server` and measures it. */
async function measure(
  o: SpeedBenchOptions,
  ns: string,
  listener: Listener,
  server: Server,
  file: string,
  seconds: number,
  extra: { rate?: number; outstanding?: number } = {},
): Promise<Measured> {
  const pids = await server.pids();
  const accepted = await listener.accepted();
  const cpu = await cpuSeconds(pids);
  const result = await dnsperf({
    port: server.port,
    file,
    seconds,
    clients: o.clients,
    report: `${o.work}/dnsperf-speed.out`,
    netns: ns,
    ...extra,
  });
  const used = await cpuSeconds(pids) - cpu;
  await sleep(1200); // the probes first-ping did not wait for end after the answer
  return {
    result,
    cpuUs: used * 1e6 / result.completed,
    handshakesPerSecond: (await listener.accepted() - accepted) / seconds,
  };
}

const f0 = (x: number) => Number.isFinite(x) ? x.toFixed(0) : "";
const f2 = (x: number) => Number.isFinite(x) ? x.toFixed(2) : "";
const label = (s: Server) => `${s.name}, ${s.speed ? `tcp:${PROBE_PORT} first-ping` : "none"}`;

/** Cache hits with the speed check on and off, in turns; a markdown table. */
async function hits(
  o: SpeedBenchOptions,
  ns: string,
  listener: Listener,
  servers: Server[],
): Promise<string> {
  const file = await namesFile(o.work, "h", o.names);
  for (const s of servers) {
    await dnsperf({
      port: s.port,
      file,
      seconds: 0,
      runs: 1,
      clients: o.clients,
      report: `${o.work}/p.out`,
      netns: ns,
    });
  }
  await sleep(1500); // every probe in: the refined answers are what the cache holds
  for (const s of servers) {
    await dnsperf({
      port: s.port,
      file,
      seconds: 1,
      clients: o.clients,
      report: `${o.work}/p.out`,
      netns: ns,
    });
  }
  const runs = servers.map((): Measured[] => []);
  for (let round = 0; round < o.hitRounds; round++) {
    const order = round % 2 ? [...servers.keys()].reverse() : [...servers.keys()];
    for (const i of order) runs[i].push(await measure(o, ns, listener, servers[i], file, o.hitSeconds));
  }
  const qps = runs.map((r) => median(r.map((m) => m.result.qps)));
  const cpu = runs.map((r) => median(r.map((m) => m.cpuUs)));
  const off = servers.findIndex((s) => !s.speed);
  const qpsRatios = runs[1 - off].map((m, r) => m.result.qps / runs[off][r].result.qps);
  const cpuRatios = runs[1 - off].map((m, r) => m.cpuUs / runs[off][r].cpuUs);
  const lost = runs.flat().reduce((sum, m) => sum + m.result.lost, 0);
  const lines = [
    "| keeldns, speed-check-mode | hits QPS (median) | × none | CPU per answered query | × none | response size | every run |",
    "|---|---:|---:|---:|---:|---:|---|",
  ];
  for (const [i, s] of servers.entries()) {
    lines.push(
      `| ${s.speed ? `tcp:${PROBE_PORT}, first-ping` : "none"} | ${f0(qps[i])} | ${f2(qps[i] / qps[off])} | ${
        cpu[i].toFixed(2)
      } µs | ${f2(cpu[i] / cpu[off])} | ${f0(median(runs[i].map((m) => m.result.responseBytes)))} bytes | ${
        runs[i].map((m) => f0(m.result.qps)).join(" / ")
      } |`,
    );
    console.error(`  speed-check hits / ${label(s)}: ${f0(qps[i])} qps, ${cpu[i].toFixed(2)} µs CPU/query`);
  }
  const range = (xs: number[]) => `${Math.min(...xs).toFixed(3)}–${Math.max(...xs).toFixed(3)}`;
  lines.push(
    "",
    `Speed check on / off, per round (same round, one after the other): QPS median ${
      median(qpsRatios).toFixed(3)
    } (${range(qpsRatios)}), CPU per query median ${median(cpuRatios).toFixed(3)} (${range(cpuRatios)}). ` +
      `Queries lost: ${lost}. Handshakes at the targets during the hit runs: ${
        runs.flat().reduce((sum, m) => sum + m.handshakesPerSecond * o.hitSeconds, 0)
      }.`,
  );
  return lines.join("\n");
}

/** Misses with every name new: full speed, then a fixed rate; markdown tables. */
async function misses(
  o: SpeedBenchOptions,
  ns: string,
  listener: Listener,
  servers: Server[],
): Promise<string> {
  const out: string[] = [];
  for (const fixed of [false, true]) {
    const runs = servers.map((): Measured[] => []);
    const count = fixed ? Math.ceil(o.rate * o.seconds * 1.5) : FULL_SPEED_NAMES;
    for (let round = 0; round < o.rounds; round++) {
      const order = round % 2 ? [...servers.keys()].reverse() : [...servers.keys()];
      for (const i of order) {
        const tag = `${fixed ? "q" : "m"}${round}s${i}`;
        const file = await namesFile(o.work, tag, count);
        const extra = fixed ? { rate: o.rate, outstanding: Math.max(100, o.rate * 2) } : {};
        const m = await measure(o, ns, listener, servers[i], file, o.seconds, extra);
        if (m.result.sent > count) {
          console.error(`  (${tag}: ${m.result.sent} queries for ${count} names: some repeated)`);
        }
        runs[i].push(m);
        await Deno.remove(file).catch(() => {});
      }
    }
    const med = (i: number, f: (m: Measured) => number | undefined) =>
      median(runs[i].map((m) => f(m) ?? NaN));
    out.push(
      fixed
        ? `\n**misses at a fixed ${o.rate} QPS** (dnsperf -Q ${o.rate} -q ${
          Math.max(100, o.rate * 2)
        }; ${o.rounds} runs of ${o.seconds} s each, in turns; medians)\n`
        : `\n**misses at full speed, every name new** (dnsperf -q 100; ${o.rounds} runs of ${o.seconds} s each, in turns; medians)\n`,
      `| server | speed check | QPS | × same server, none | CPU per miss | CPU added by the check | avg latency |${
        fixed ? " p50 | p99 |" : ""
      } probe handshakes accepted / s | per answered miss | lost | every run (QPS) |`,
      `|---|---|---:|---:|---:|---:|---:|${fixed ? "---:|---:|" : ""}---:|---:|---:|---|`,
    );
    for (const [i, s] of servers.entries()) {
      const off = servers.findIndex((x) => x.name === s.name && !x.speed);
      const qps = med(i, (m) => m.result.qps);
      const cpu = med(i, (m) => m.cpuUs);
      const p = fixed
        ? ` ${med(i, (m) => m.result.p50Ms).toFixed(3)} ms | ${med(i, (m) => m.result.p99Ms).toFixed(3)} ms |`
        : "";
      out.push(
        `| ${s.name} | ${s.speed ? `tcp:${PROBE_PORT} first-ping` : "none"} | ${f0(qps)} | ${
          f2(qps / med(off, (m) => m.result.qps))
        } | ${cpu.toFixed(1)} µs | ${s.speed ? `${(cpu - med(off, (m) => m.cpuUs)).toFixed(1)} µs` : ""} | ${
          med(i, (m) => m.result.avgLatencyMs).toFixed(2)
        } ms |${p} ${f0(med(i, (m) => m.handshakesPerSecond))} | ${
          f2(med(i, (m) => m.handshakesPerSecond * o.seconds / m.result.completed))
        } | ${runs[i].reduce((sum, m) => sum + m.result.lost, 0)} | ${
          runs[i].map((m) => f0(m.result.qps)).join(" / ")
        } |`,
      );
      console.error(
        `  speed-check misses${fixed ? ` at ${o.rate} QPS` : ""} / ${label(s)}: ${f0(qps)} qps, ${
          cpu.toFixed(1)
        } µs CPU/miss, ${f0(med(i, (m) => m.handshakesPerSecond))} handshakes/s`,
      );
    }
  }
  return out.join("\n");
}

/** Runs the workload; returns its markdown (or why it could not run). */
export async function speedCheckBench(o: SpeedBenchOptions): Promise<string> {
  const why = namespacesUnavailable();
  if (why) {
    console.error(`bench: speed check skipped: ${why}`);
    return `**speed check**: not run (${why}; it needs a network namespace: SmartDNS probes [2001::]:80 at start).`;
  }
  const ns = `kd-bench-speed-${Deno.pid % 100_000}`;
  const dir = await Deno.makeTempDir({ dir: o.work, prefix: "speed-" });
  await addNamespace(ns);
  const started: Server[] = [];
  let upstream: Deno.ChildProcess | undefined;
  let listener: Listener | undefined;
  const out: string[] = [];
  try {
    upstream = spawnIn(ns, Deno.execPath(), [
      "run",
      "--allow-net",
      "--allow-ffi",
      "--config",
      `${REPO_ROOT}deno.json`,
      `${REPO_ROOT}bench/address_upstream.ts`,
      String(UPSTREAM_PORT),
    ]);
    listener = new Listener(spawnIn(ns, "python3", ["-c", LISTENER, String(PROBE_PORT)], true));
    if ((await listener.line()) !== "ready") throw new Error("the probe listener did not start");
    for (let i = 0; i < 100; i++) {
      if ((await digIn(ns, "127.0.0.1", UPSTREAM_PORT, "ready.speed.test")).addresses.length > 0) break;
      await sleep(100);
    }
    console.error(`bench: speed check, hits ${o.hitRounds} rounds × ${o.hitSeconds} s`);
    const keeldns = [await startKeeldns(ns, dir, 5401, false), await startKeeldns(ns, dir, 5402, true)];
    started.push(...keeldns);
    out.push(
      `**cache hits, keeldns with the speed check on vs off** (${o.names} names primed, then hits; ${o.hitRounds} rounds of ${o.hitSeconds} s, in turns, order reversed every other round; medians)\n`,
      await hits(o, ns, listener, keeldns),
    );
    const smartdns = [await startSmartdns(ns, dir, 5403, false), await startSmartdns(ns, dir, 5404, true)];
    started.push(...smartdns);
    console.error(
      `bench: speed check, misses ${o.rounds} rounds × ${o.seconds} s, full speed and ${o.rate} QPS`,
    );
    out.push(await misses(o, ns, listener, [...keeldns, ...smartdns]));
    // The child reports its counters every 10 s: wait for a report that has every run in it.
    await sleep(10_500);
    const k = await counters(keeldns[1]);
    out.push(
      "",
      `keeldns with the check, its counters over the whole section (\`keeldns status\`): ${k.speedChecked} answers ` +
        `checked, ${k.speedProbes} probes sent (${
          (k.speedProbes / k.speedChecked).toFixed(2)
        } per checked answer), ` +
        `${k.speedSelected} answered with a probed address, ${k.speedUnanswered} with no probe answered in time; ` +
        `${k.cacheMisses} cache misses.`,
    );
  } finally {
    for (const s of started) await stopPeer(s.process);
    if (upstream) await stopPeer(upstream);
    await listener?.stop();
    await removeNamespace(ns);
  }
  return out.join("\n");
}
