/**
 * The dashboard workload of `deno task bench` (`--only dashboard`):
 *
 * - **cached QPS, admin listener on with a browser polling it, vs off**: three keeldns, the same
 *   names primed in each; one has `[admin]` on and a headless Chromium logged in to its dashboard
 *   (the page polls the API every 2 s, so the query recorder, its consumers and the JSON API all
 *   run), one has `[admin]` on and no browser (the recorder and consumers alone), one has it off;
 *   dnsperf in turns, order reversed every other round; medians and the ratios to off (target ≥ 0.97).
 *   The browser shares the machine's cores with the servers, as it would not on a router.
 * - **page weight**: bytes of every response the page loads (HTML, script, styles, first API
 *   answers), and of the embedded assets alone, plain and gzip-compressed.
 * - **time to first chart**: from navigation start to the first uPlot chart drawn, for a browser
 *   already logged in (median of 5 loads).
 *
 * @module
 */
import { startBenchKeeldns, writeBenchNames } from "./bench_keeldns.ts";
import { hashAdminPassword } from "../config/admin.ts";
import { DASHBOARD_ASSETS } from "../server/dashboard_assets.ts";
import { freePort, programPath } from "../tests/helpers/keeldns_process.ts";
import { stopPeer } from "../tests/helpers/peers.ts";
import { dnsperf, type DnsperfResult } from "./dnsperf.ts";
import { childrenOf, cpuSeconds } from "./process_cpu.ts";
import { median } from "./median.ts";

/** What the workload is asked to do. */
export interface DashboardBenchOptions {
  seconds: number;
  rounds: number;
  clients: number;
  names: number;
  /** The upstream's port (a dnsmasq answering *.bench.test). */
  upstream: number;
  work: string;
}

const PASSWORD = "bench-password";

interface Running {
  port: number;
  process: Deno.ChildProcess;
  admin?: string;
}

async function start(o: DashboardBenchOptions, name: string, admin: boolean): Promise<Running> {
  const adminPort = await freePort();
  const k = await startBenchKeeldns({
    work: o.work,
    name,
    upstream: o.upstream,
    cacheSize: o.names * 2 + 10000,
    cacheLines: `file = "${o.work}/${name}.cache"\n`,
    extra: admin
      ? `[admin]\nlisten = "127.0.0.1:${adminPort}"\npassword-hash = "${
        hashAdminPassword(PASSWORD, 10_000)
      }"\n`
      : "",
  });
  return { port: k.port, process: k.process, ...(admin ? { admin: `http://127.0.0.1:${adminPort}` } : {}) };
}

/** The browser's processes: this process's descendants named chrom*. */
async function browserPids(): Promise<number[]> {
  const found: number[] = [];
  const walk = async (pid: number, depth: number) => {
    for (const child of await childrenOf(pid)) {
      const comm = await Deno.readTextFile(`/proc/${child}/comm`).catch(() => "");
      if (comm.startsWith("chrom")) found.push(child);
      if (depth < 6) await walk(child, depth + 1);
    }
  };
  await walk(Deno.pid, 0);
  return found;
}

/** Bytes of `text` gzip-compressed. */
async function gzipBytes(text: string): Promise<number> {
  const stream = new Blob([text]).stream().pipeThrough(new CompressionStream("gzip"));
  return (await new Response(stream).arrayBuffer()).byteLength;
}

/** The polled server's `recordsLost` counter, asked from the logged-in page. */
function recordsLost(page: import("playwright-core").Page): Promise<number> {
  return page.evaluate(() =>
    fetch("/api/stats", { headers: { "x-keeldns": "1" } }).then(async (r) => {
      const body = await r.json();
      if (!r.ok) throw new Error(`/api/stats: ${r.status} ${JSON.stringify(body)}`);
      return Number(body.counters.recordsLost ?? 0);
    })
  );
}

/** Runs the workload; returns the report's markdown. */
export async function dashboardBench(o: DashboardBenchOptions): Promise<string> {
  const { chromium } = await import("playwright-core");
  const file = `${o.work}/dashboard-names.txt`;
  await writeBenchNames(file, "db", o.names);
  const servers = [
    { label: "admin listener on, a browser polling it", r: await start(o, "dash-on", true) },
    { label: "admin listener on, no browser", r: await start(o, "dash-idle", true) },
    { label: "admin listener off", r: await start(o, "dash-off", false) },
  ];
  const off = servers.length - 1;
  const browser = await chromium.launch({ executablePath: programPath("chromium"), args: ["--no-sandbox"] });
  try {
    const page = await browser.newPage();
    let loaded = 0;
    page.on("response", (r) => void r.body().then((b) => loaded += b.length, () => {}));
    await page.goto(servers[0].r.admin!);
    await page.fill("input[name=password]", PASSWORD);
    await page.click("#login-form button[type=submit]");
    await page.waitForSelector("body[data-first-chart-ms]");
    // Time to first chart, logged in: fresh loads of the page.
    const firstChart: number[] = [];
    let weight = 0;
    for (let i = 0; i < 5; i++) {
      await page.waitForTimeout(300);
      loaded = 0;
      await page.reload();
      await page.waitForSelector("body[data-first-chart-ms]");
      firstChart.push(Number(await page.getAttribute("body", "data-first-chart-ms")));
      await page.waitForTimeout(200);
      weight = loaded;
    }
    const report = `${o.work}/dnsperf-dashboard.out`;
    for (const s of servers) {
      await dnsperf({ port: s.r.port, file, seconds: 0, runs: 1, clients: o.clients, report });
    }
    const runs = servers.map((): DnsperfResult[] => []);
    const pids = await browserPids();
    const browserCpu = await cpuSeconds(pids);
    const lostBefore = await recordsLost(page);
    const started = performance.now();
    for (let round = 0; round < o.rounds; round++) {
      const order = round % 2 ? [2, 1, 0] : [0, 1, 2];
      for (const i of order) {
        runs[i].push(
          await dnsperf({ port: servers[i].r.port, file, seconds: o.seconds, clients: o.clients, report }),
        );
      }
    }
    const browserShare = (await cpuSeconds(pids) - browserCpu) / ((performance.now() - started) / 1000);
    const lost = await recordsLost(page) - lostBefore;
    const polled = await page.getAttribute("body", "data-refreshed");
    if (!polled || Date.now() - Number(polled) > 10_000) {
      throw new Error("the page stopped polling during the bench");
    }
    const qps = runs.map((rs) => median(rs.map((r) => r.qps)));
    const dnsLost = runs.map((rs) => rs.reduce((sum, r) => sum + r.lost, 0));
    const answered = runs[0].reduce((sum, r) => sum + r.qps * o.seconds, 0);
    const assets = Object.values(DASHBOARD_ASSETS);
    const assetBytes = assets.reduce((n, a) => n + new TextEncoder().encode(a.body).length, 0);
    let assetGzip = 0;
    for (const a of assets) assetGzip += await gzipBytes(a.body);
    console.error(`  dashboard: ${servers.map((s, i) => `${s.label} ${qps[i].toFixed(0)} qps`).join(", ")}`);
    return [
      `**dashboard: cached QPS with the admin listener on and a browser polling it, vs off** ` +
      `(bench/dashboard.ts; ${o.names} names primed, ${o.rounds} rounds × ${o.seconds} s in turns, medians; ` +
      `headless Chromium logged in, polling every 2 s)`,
      "",
      "| keeldns | QPS (median) | lost | ratio to off |",
      "|---|---:|---:|---:|",
      ...servers.map((s, i) =>
        `| ${s.label} | ${qps[i].toFixed(0)} | ${dnsLost[i]} | ${(qps[i] / qps[off]).toFixed(3)} |`
      ),
      "",
      "| page | value |",
      "|---|---:|",
      `| embedded assets (HTML, app, styles, uPlot), bytes | ${assetBytes} |`,
      `| the same gzip-compressed (served plain; for scale) | ${assetGzip} |`,
      `| one logged-in page load (assets + first API answers), bytes | ${weight} |`,
      `| time to first chart, logged in (ms, median of 5) | ${median(firstChart).toFixed(0)} |`,
      `| the browser's CPU while polling (share of one core, same machine) | ${
        (browserShare * 100).toFixed(1)
      }% |`,
      `| query records lost (ring full between drains) in the polled server | ${lost} of ~${
        answered.toFixed(0)
      } |`,
    ].join("\n");
  } finally {
    await browser.close();
    for (const s of servers) await stopPeer(s.r.process);
  }
}
