/**
 * `deno run -A bench/miss_compare.ts --before DIR [--after DIR]…`: the cost of a cache miss (plain
 * UDP forwarding, caches off) for keeldns checkouts side by side with SmartDNS and dnsmasq, all
 * running at once, forwarding to one unbound (caches off, `*.bench.test` from a redirect zone) and
 * measured in turns (order reversed every round). Per server: QPS at full load, CPU time per
 * answered query (every process and thread of the server, /proc/PID/stat), and p50/p99 at a fixed
 * `--rate`. Prints a markdown table of the medians and every run.
 *
 * Options: --before DIR (required), --after DIR (repeatable; default: this checkout), --rounds N
 * (default 6), --seconds N (default 4), --rate N (default 5000; 0 skips the latency runs),
 * --clients N (default 4), --names N (default 5000).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { freePort, programPath, REPO_ROOT } from "../tests/helpers/keeldns_process.ts";
import { dnsmasqArgs, stopPeer, waitForAnswer } from "../tests/helpers/peers.ts";
import { checkoutArgs, checkoutState } from "./checkout.ts";
import { dnsperf } from "./dnsperf.ts";
import { median } from "./median.ts";
import { childrenOf, cpuSeconds } from "./process_cpu.ts";
import { smartdnsLikeKeeldns } from "./smartdns_conf.ts";
import { benchUnboundConf } from "./unbound_conf.ts";

const { values: opts } = parseArgs({
  args: Deno.args,
  options: {
    before: { type: "string" },
    after: { type: "string", multiple: true, default: [REPO_ROOT] },
    rounds: { type: "string", default: "6" },
    seconds: { type: "string", default: "4" },
    rate: { type: "string", default: "5000" },
    clients: { type: "string", default: "4" },
    names: { type: "string", default: "5000" },
  },
});
if (!opts.before) throw new Error("--before DIR: the other checkout");
const ROUNDS = Number(opts.rounds);
const SECONDS = Number(opts.seconds);
const RATE = Number(opts.rate);
const CLIENTS = Number(opts.clients);
const NAMES = Number(opts.names);
const work = await Deno.makeTempDir({ prefix: "keeldns-miss-" });

/** A server under test. */
interface Contestant {
  label: string;
  port: number;
  /** Its CPU counts with its children's (keeldns: guardian and child). */
  process?: Deno.ChildProcess;
  qps: number[];
  /** CPU µs per answered query, per run. */
  cpu: number[];
  p50: number[];
  p99: number[];
}

function spawn(command: string, args: string[]): Deno.ChildProcess {
  return new Deno.Command(command, { args, stdin: "null", stdout: "null", stderr: "null" }).spawn();
}

async function commitOf(dir: string): Promise<string> {
  const { commit, dirty } = await checkoutState(dir);
  return commit + (dirty ? "+" : "");
}

const file = `${work}/queries.txt`;
await Deno.writeTextFile(
  file,
  Array.from({ length: NAMES }, (_, i) => `h${i}.bench.test A`).join("\n") + "\n",
);

const upstreamPort = await freePort();
await Deno.writeTextFile(
  `${work}/unbound.conf`,
  benchUnboundConf(work, [`interface: 127.0.0.1@${upstreamPort}`]),
);
const unbound = spawn(programPath("unbound"), ["-d", "-c", `${work}/unbound.conf`]);

/** One smartdns.conf for keeldns and SmartDNS: caches off, no more work than keeldns does. */
async function conf(name: string, port: number): Promise<string> {
  const path = `${work}/${name}.conf`;
  await Deno.writeTextFile(
    path,
    [
      `bind 127.0.0.1:${port}`,
      `server 127.0.0.1:${upstreamPort}`,
      "cache-size 0",
      ...smartdnsLikeKeeldns(`${path}.log`),
      "",
    ].join("\n"),
  );
  return path;
}

const contestants: Contestant[] = [];
const fresh = async (label: string): Promise<Contestant> => ({
  label,
  port: await freePort(),
  qps: [],
  cpu: [],
  p50: [],
  p99: [],
});
try {
  await waitForAnswer(upstreamPort, "ready.bench.test", "192.0.2.");
  for (const dir of [opts.before, ...opts.after]) {
    const d = dir.replace(/\/$/, "");
    const c = await fresh(`keeldns ${await commitOf(d)}`);
    const path = await conf(`k${contestants.length}`, c.port);
    c.process = spawn(
      Deno.execPath(),
      checkoutArgs(d, ["run", "-c", path, "--control", `${work}/k${contestants.length}.sock`]),
    );
    contestants.push(c);
  }
  const smartdns = await fresh("SmartDNS");
  smartdns.process = spawn(programPath("smartdns"), [
    "-f",
    "-c",
    await conf("smartdns", smartdns.port),
    "-p",
    "-",
  ]);
  contestants.push(smartdns);
  const dnsmasq = await fresh("dnsmasq");
  dnsmasq.process = spawn(
    programPath("dnsmasq"),
    dnsmasqArgs(dnsmasq.port, ["--cache-size=0", `--server=127.0.0.1#${upstreamPort}`]),
  );
  contestants.push(dnsmasq);
  for (const c of contestants) {
    for (let attempt = 1;; attempt++) {
      try {
        await waitForAnswer(c.port, "ready.bench.test", "192.0.2.");
        break;
      } catch (e) {
        if (attempt === 3) throw e;
      }
    }
  }
  const run = (port: number, seconds: number, rate?: number) =>
    dnsperf({ port, file, seconds, clients: CLIENTS, rate, report: `${work}/dnsperf.out` });
  for (const c of contestants) await run(c.port, 2); // warm up: code optimised
  for (let round = 0; round < ROUNDS; round++) {
    for (const c of round % 2 ? [...contestants].reverse() : contestants) {
      const pids = [c.process!.pid, ...await childrenOf(c.process!.pid)];
      const before = await cpuSeconds(pids);
      const r = await run(c.port, SECONDS);
      c.qps.push(r.qps);
      c.cpu.push((await cpuSeconds(pids) - before) * 1e6 / r.completed);
      console.error(
        `  round ${round + 1} ${c.label}: ${r.qps.toFixed(0)} qps, ${c.cpu.at(-1)!.toFixed(1)} µs`,
      );
    }
  }
  if (RATE > 0) {
    for (let round = 0; round < ROUNDS; round++) {
      for (const c of round % 2 ? [...contestants].reverse() : contestants) {
        const r = await run(c.port, SECONDS, RATE);
        c.p50.push(r.p50Ms!);
        c.p99.push(r.p99Ms!);
      }
    }
  }
} finally {
  for (const c of contestants) if (c.process) await stopPeer(c.process).catch(() => {});
  await stopPeer(unbound).catch(() => {});
  await Deno.remove(work, { recursive: true }).catch(() => {});
}

const smart = contestants.find((c) => c.label === "SmartDNS")!;
const masq = contestants.find((c) => c.label === "dnsmasq")!;
const lines = [
  `forwarding, caches off, plain UDP to one unbound (caches off); dnsperf -c ${CLIENTS} -T 1 -q 100, ` +
  `${ROUNDS} rounds of ${SECONDS} s, all servers running at once and measured in turns (order reversed ` +
  `every round); medians. CPU: every process and thread of the server per answered query.` +
  (RATE > 0 ? ` Latency: ${ROUNDS} more rounds at a fixed ${RATE} QPS.` : ""),
  "",
  "| server | QPS | × SmartDNS | × dnsmasq | CPU per miss | p50 | p99 | every run (QPS / µs) |",
  "|---|---:|---:|---:|---:|---:|---:|---|",
  ...contestants.map((c) =>
    `| ${c.label} | ${median(c.qps).toFixed(0)} | ${(median(c.qps) / median(smart.qps)).toFixed(2)} | ${
      (median(c.qps) / median(masq.qps)).toFixed(2)
    } | ${median(c.cpu).toFixed(1)} µs | ${median(c.p50).toFixed(3)} ms | ${median(c.p99).toFixed(3)} ms | ${
      c.qps.map((q, i) => `${q.toFixed(0)}/${c.cpu[i].toFixed(1)}`).join(" ")
    } |`
  ),
];
console.log(lines.join("\n"));
