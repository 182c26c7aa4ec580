/**
 * `deno run -A bench/compare.ts --before DIR [--after DIR]…`: cache-hit QPS of keeldns checkouts
 * (e.g. `git worktree`s of an older commit and of HEAD), all running at once on the same upstream
 * and config, measured in turns with the same dnsperf load so that a noisy stretch of a shared
 * machine hits them alike. Each is primed (every name asked once) and warmed up, then `--rounds`
 * rounds of one `--seconds` run each, the order reversing every round (A B, B A, …). Prints every
 * run, the medians, each `--after`'s ratio of medians to `--before` and the median of its per-round
 * ratios, as a markdown table. Beside QPS, each run's CPU time of guardian + child (all threads,
 * /proc/PID/stat) per answered query: on a shared machine QPS moves with what else runs, while the
 * CPU a query costs moves much less.
 *
 * Options: --before DIR (required), --after DIR (repeatable; default: this checkout), --rounds N
 * (default 8), --seconds N (default 5), --names N (default 5000), --clients N (default 4),
 * --after-extra FILE (TOML appended to the --after configurations: the same checkout twice then
 * measures what a configuration costs, e.g. 10,000 IP rules and 1,000 client rules).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { freePort, REPO_ROOT } from "../tests/helpers/keeldns_process.ts";
import { startDnsmasq, stopPeer, waitForAnswer } from "../tests/helpers/peers.ts";
import { checkoutArgs, checkoutState } from "./checkout.ts";
import { dnsperf } from "./dnsperf.ts";
import { median } from "./median.ts";
import { childrenOf, cpuSeconds } from "./process_cpu.ts";

const { values: opts } = parseArgs({
  args: Deno.args,
  options: {
    before: { type: "string" },
    after: { type: "string", multiple: true, default: [REPO_ROOT] },
    rounds: { type: "string", default: "8" },
    seconds: { type: "string", default: "5" },
    names: { type: "string", default: "5000" },
    clients: { type: "string", default: "4" },
    "after-extra": { type: "string" },
  },
});
/** TOML appended to every --after checkout's configuration (e.g. rules whose cost is measured). */
const AFTER_EXTRA = opts["after-extra"] ? await Deno.readTextFile(opts["after-extra"]) : "";
if (!opts.before) throw new Error("--before DIR: the other checkout");
const ROUNDS = Number(opts.rounds);
const SECONDS = Number(opts.seconds);
const NAMES = Number(opts.names);
const CLIENTS = Number(opts.clients);

const work = await Deno.makeTempDir({ prefix: "keeldns-compare-" });

/** Runs dnsperf for `seconds` (or `runs` passes over the file); says when queries were lost. */
async function runDnsperf(port: number, file: string, seconds: number, runs?: number) {
  const result = await dnsperf({
    port,
    file,
    seconds,
    runs,
    clients: CLIENTS,
    report: `${work}/dnsperf.out`,
  });
  if (result.lost > 0) console.error(`  (${result.lost} queries lost)`);
  return result;
}

interface Checkout {
  label: string;
  dir: string;
  commit: string;
  port: number;
  process?: Deno.ChildProcess;
  qps: number[];
  /** CPU µs per answered query, per run. */
  cpu: number[];
}

async function start(c: Checkout, upstream: number): Promise<void> {
  const config = `${work}/${c.label}.toml`;
  await Deno.writeTextFile(
    config,
    `[server]\nbind = ["127.0.0.1:${c.port}"]\nudp-transport = "batched"\n` +
      `[[upstream]]\naddress = "udp://127.0.0.1:${upstream}"\n` +
      `[cache]\nsize = ${NAMES * 2}\n[log]\nlevel = "error"\n[guardian]\noptimize-for = "speed"\n` +
      (c.label === "before" ? "" : AFTER_EXTRA),
  );
  c.process = new Deno.Command(Deno.execPath(), {
    args: checkoutArgs(c.dir, ["run", "-c", config, "-p", `${work}/${c.label}.pid`]),
    stdin: "null",
    stdout: "null",
    stderr: Deno.env.get("COMPARE_DEBUG") ? "inherit" : "null",
  }).spawn();
  // a checkout run for the first time is transpiled first: allow it 30 s
  for (let attempt = 1;; attempt++) {
    try {
      return await waitForAnswer(c.port, "ready.bench.test", "192.0.2.");
    } catch (e) {
      if (attempt === 3) throw e;
    }
  }
}

const file = `${work}/queries.txt`;
await Deno.writeTextFile(
  file,
  Array.from({ length: NAMES }, (_, i) => `h${i}.bench.test A`).join("\n") + "\n",
);
const upstreamPort = await freePort();
const upstream = await startDnsmasq(
  upstreamPort,
  ["--cache-size=0", "--local-ttl=3600", "--address=/bench.test/192.0.2.1"],
  { name: "ready.bench.test", expect: "192.0.2." },
);
const describe = async (dir: string) => {
  const { commit, dirty } = await checkoutState(dir);
  return commit + (dirty ? " + uncommitted changes" : "");
};
const before: Checkout = {
  label: "before",
  dir: opts.before.replace(/\/$/, ""),
  commit: await describe(opts.before),
  port: await freePort(),
  qps: [],
  cpu: [],
};
const afters: Checkout[] = [];
for (const [i, dir] of opts.after.entries()) {
  afters.push({
    label: `after${i + 1}`,
    dir: dir.replace(/\/$/, ""),
    commit: await describe(dir),
    port: await freePort(),
    qps: [],
    cpu: [],
  });
}
const all = [before, ...afters];
try {
  for (const c of all) await start(c, upstreamPort);
  for (const c of all) {
    await runDnsperf(c.port, file, 0, 1);
    await runDnsperf(c.port, file, 3);
  }
  for (let round = 0; round < ROUNDS; round++) {
    for (const c of round % 2 ? [...all].reverse() : all) {
      const pids = [c.process!.pid, ...await childrenOf(c.process!.pid)];
      const used = await cpuSeconds(pids);
      const { qps, completed } = await runDnsperf(c.port, file, SECONDS);
      const cpu = (await cpuSeconds(pids) - used) * 1e6 / completed;
      c.qps.push(qps);
      c.cpu.push(cpu);
      console.error(
        `  round ${round + 1} ${c.label} (${c.commit}): ${qps.toFixed(0)} qps, ${
          cpu.toFixed(2)
        } µs CPU/query`,
      );
    }
  }
} finally {
  for (const c of all) if (c.process) await stopPeer(c.process);
  await stopPeer(upstream);
  await Deno.remove(work, { recursive: true }).catch(() => {});
}

const ratios = afters.map((a) => a.qps.map((q, i) => q / before.qps[i]));
const cpuRatios = afters.map((a) => a.cpu.map((q, i) => q / before.cpu[i]));
const lines = [
  `cache hits, ${NAMES} names all cached, dnsperf -c ${CLIENTS} -T 1 -q 100, ${ROUNDS} rounds of ${SECONDS} s ` +
  `each, all checkouts running at once and measured in turns (order reversed every round). ` +
  `QPS, and CPU time (guardian + child, all threads) per answered query.`,
  "",
  `| round | ${all.map((c) => `${c.commit} QPS`).join(" | ")} | ${
    afters.map((a) => `${a.commit} / ${before.commit} QPS`).join(" | ")
  } | ${all.map((c) => `${c.commit} µs CPU/query`).join(" | ")} |`,
  `|---:|${all.map(() => "---:|").join("")}${afters.map(() => "---:|").join("")}${
    all.map(() => "---:|").join("")
  }`,
  ...before.qps.map((_, i) =>
    `| ${i + 1} | ${all.map((c) => c.qps[i].toFixed(0)).join(" | ")} | ${
      ratios.map((r) => r[i].toFixed(3)).join(" | ")
    } | ${all.map((c) => c.cpu[i].toFixed(2)).join(" | ")} |`
  ),
  `| **median** | ${all.map((c) => `**${median(c.qps).toFixed(0)}**`).join(" | ")} | ${
    afters.map((a, j) =>
      `**${(median(a.qps) / median(before.qps)).toFixed(3)}** (median of the per-round ratios ${
        median(ratios[j]).toFixed(3)
      })`
    ).join(" | ")
  } | ${all.map((c) => `**${median(c.cpu).toFixed(2)}**`).join(" | ")} |`,
  "",
  ...afters.map((a, j) =>
    `${a.commit} vs ${before.commit}: QPS ×${
      (median(a.qps) / median(before.qps)).toFixed(3)
    } (per-round ratios ` +
    `median ${median(ratios[j]).toFixed(3)}, range ${Math.min(...ratios[j]).toFixed(2)}–${
      Math.max(...ratios[j]).toFixed(2)
    }); CPU per query ×${(median(a.cpu) / median(before.cpu)).toFixed(3)} (per-round median ${
      median(cpuRatios[j]).toFixed(3)
    }, range ${Math.min(...cpuRatios[j]).toFixed(2)}–${Math.max(...cpuRatios[j]).toFixed(2)}).`
  ),
];
console.log(lines.join("\n"));
