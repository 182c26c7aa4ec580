/**
 * The rules benchmark (issue 11): keeldns, SmartDNS and dnsmasq with a generated ad-list-like
 * block list of 100k and 1M names (bench/domain_lists.ts, deterministic), and without one.
 *
 * - keeldns and SmartDNS read the same smartdns.conf: `domain-set -name ads -type list -file LIST`
 *   plus `address /domain-set:ads/#` (SmartDNS with `speed-check-mode none`); dnsmasq one
 *   `address=/NAME/` line per listed name in a `--conf-file`.
 * - **load**: from spawning the process until a listed name is answered as blocked (a UDP query
 *   every 10 ms); without a list, until a name is answered. keeldns: from the guardian's spawn, and
 *   from the moment its child appears in /proc.
 * - **memory**: PSS and RSS (`/proc/PID/smaps_rollup`) of the serving process (keeldns: the child)
 *   1 s after it answers, and after the QPS runs; "added" is with the list minus without.
 * - **match**: `--check` listed names sampled across the list must be answered blocked (NXDOMAIN, or
 *   NOERROR with no answer records), and as many unlisted names (no suffix of them listed) must be
 *   answered with the upstream's address.
 * - **QPS**: every server (3 kinds × no list, 100k, 1M) runs at once; in `--rounds` rounds each
 *   takes a turn of `--seconds` s of dnsperf on 5000 unlisted names (primed, so cache hits) and on
 *   5000 listed names (blocked); medians per server, of QPS and of the CPU time (utime + stime of
 *   all the server's processes and threads) per answered query, which a shared machine moves less.
 *
 * The upstream is a dnsmasq answering every name under the lists' TLDs with 192.0.2.1.
 *
 * Standalone: `deno run -A bench/rules.ts [--seconds 3] [--rounds 5] [--check 20000] [--sizes
 * 100000,1000000] [--checkout DIR] [--record]` (`--checkout`: run the keeldns of another checkout,
 * e.g. a clean `git worktree`); `deno task bench` runs it as its `rules` workload.
 *
 * @module
 */
import dgram from "node:dgram";
import type { Buffer } from "node:buffer";
import { parseArgs } from "node:util";
import { freePort, programPath, REPO_ROOT } from "../tests/helpers/keeldns_process.ts";
import { dnsmasqArgs, startDnsmasq, stopPeer } from "../tests/helpers/peers.ts";
import { BENCH_TLDS, listedNames, Mulberry32, unlistedNames } from "./domain_lists.ts";
import { checkoutArgs } from "./checkout.ts";
import { dnsperf, type DnsperfResult } from "./dnsperf.ts";
import { median } from "./median.ts";
import { childrenOf, cpuSeconds } from "./process_cpu.ts";
import { smartdnsLikeKeeldns } from "./smartdns_conf.ts";

export interface RulesOptions {
  seconds: number;
  rounds: number;
  clients: number;
  check: number;
  sizes: number[];
  /** The keeldns checkout to run (default: this one). */
  checkout?: string;
}

type Kind = "keeldns" | "SmartDNS" | "dnsmasq";

interface Server {
  kind: Kind;
  /** List size, 0 for none. */
  size: number;
  port: number;
  process: Deno.ChildProcess;
  /** The pid that serves (keeldns: the child). */
  servingPid: number;
  /** ms from spawn to the first right answer; keeldns also from the child's appearance. */
  loadMs: number;
  childLoadMs?: number;
  idle: Mem;
  afterRuns?: Mem;
  match?: Match;
  hitsQps: number[];
  blockedQps: number[];
  /** CPU µs per answered query (all processes of the server, all threads), per run. */
  hitsCpu: number[];
  blockedCpu: number[];
  log?: string;
}

interface Mem {
  pss: number;
  rss: number;
}

interface Match {
  listedBlocked: number;
  listedTotal: number;
  listedNoAnswer: number;
  unlistedAnswered: number;
  unlistedBlocked: number;
  unlistedTotal: number;
  unlistedNoAnswer: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** PSS and RSS (kB) of a pid. */
async function smaps(pid: number): Promise<Mem> {
  try {
    const text = await Deno.readTextFile(`/proc/${pid}/smaps_rollup`);
    const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+)`, "m").exec(text)?.[1] ?? NaN);
    return { pss: kb("Pss"), rss: kb("Rss") };
  } catch {
    return { pss: NaN, rss: NaN };
  }
}

/** An A query for `name` with `id`. */
function query(name: string, id: number): Uint8Array {
  const labels = name.split(".");
  const out = new Uint8Array(12 + name.length + 2 + 4);
  out[0] = id >> 8;
  out[1] = id & 0xff;
  out[2] = 0x01; // RD
  out[5] = 1; // QDCOUNT
  let at = 12;
  for (const l of labels) {
    out[at++] = l.length;
    for (let i = 0; i < l.length; i++) out[at++] = l.charCodeAt(i);
  }
  out[at++] = 0;
  out[at + 1] = 1; // A
  out[at + 3] = 1; // IN
  return out;
}

/** blocked: NXDOMAIN, or NOERROR with no answers; answered: NOERROR with answers; else other. */
function verdict(msg: Uint8Array): "blocked" | "answered" | "other" {
  const rcode = msg[3] & 0x0f;
  const ancount = (msg[6] << 8) | msg[7];
  if (rcode === 3 || (rcode === 0 && ancount === 0)) return "blocked";
  if (rcode === 0) return "answered";
  return "other";
}

/**
 * Sends a query for `name` every 10 ms until an answer satisfies `ok`; resolves with the time
 * (performance.now()) of that answer. Rejects after `timeoutMs`.
 */
function pollUntil(
  port: number,
  name: string,
  ok: (m: Uint8Array) => boolean,
  timeoutMs: number,
): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = dgram.createSocket("udp4");
    let id = 0;
    const done = (e?: Error, at?: number) => {
      clearInterval(timer);
      clearTimeout(deadline);
      socket.close();
      if (e) reject(e);
      else resolve(at!);
    };
    socket.on("message", (msg: Buffer) => {
      if (ok(new Uint8Array(msg))) done(undefined, performance.now());
    });
    socket.on("error", () => {});
    const send = () => socket.send(query(name, id = (id + 1) & 0xffff), port, "127.0.0.1");
    const timer = setInterval(send, 10);
    const deadline = setTimeout(() => done(new Error(`nothing answered ${name} on ${port}`)), timeoutMs);
    send();
  });
}

/** Asks every name once, `window` at a time (2 s timeout each); counts the verdicts. */
function ask(
  port: number,
  names: string[],
  window = 200,
): Promise<Record<"blocked" | "answered" | "other" | "none", number>> {
  return new Promise((resolve) => {
    const counts = { blocked: 0, answered: 0, other: 0, none: 0 };
    const socket = dgram.createSocket("udp4");
    const pending = new Map<number, number>(); // id → send time
    let next = 0;
    let finished = 0;
    const fill = () => {
      while (pending.size < window && next < names.length) {
        const id = next & 0xffff;
        pending.set(id, performance.now());
        socket.send(query(names[next], id), port, "127.0.0.1");
        next++;
      }
      if (finished === names.length) {
        clearInterval(sweeper);
        socket.close();
        resolve(counts);
      }
    };
    socket.on("message", (msg: Buffer) => {
      const id = (msg[0] << 8) | msg[1];
      if (!pending.delete(id)) return;
      counts[verdict(new Uint8Array(msg))]++;
      finished++;
      fill();
    });
    socket.on("error", () => {});
    const sweeper = setInterval(() => {
      const now = performance.now();
      for (const [id, at] of pending) {
        if (now - at > 2000) {
          pending.delete(id);
          counts.none++;
          finished++;
        }
      }
      fill();
    }, 100);
    socket.bind(0, "127.0.0.1", fill);
  });
}

const mb = (kb: number) => (kb / 1024).toFixed(1);

export async function rulesBench(o: RulesOptions): Promise<string> {
  const work = await Deno.makeTempDir({ prefix: "keeldns-rules-" });
  const biggest = Math.max(...o.sizes);
  const t0 = performance.now();
  const listed = listedNames(biggest);
  const listedSet = new Set(listed);
  const unlisted = unlistedNames(Math.max(o.check, 5000), listed, listedSet);
  const smallest = Math.min(...o.sizes);
  // names listed in every list (from the shared prefix), for dnsperf and the checks
  const r = new Mulberry32(7);
  const sampleOf = (size: number, n: number) => {
    const seen = new Set<number>();
    while (seen.size < Math.min(n, size)) seen.add(r.below(size));
    return [...seen].map((i) => listed[i]);
  };
  const blockedQueries = sampleOf(smallest, 5000);
  const hitsFile = `${work}/unlisted.txt`;
  const blockedFile = `${work}/blocked.txt`;
  await Deno.writeTextFile(hitsFile, unlisted.slice(0, 5000).map((n) => `${n} A\n`).join(""));
  await Deno.writeTextFile(blockedFile, blockedQueries.map((n) => `${n} A\n`).join(""));
  const lists = new Map<number, string>();
  for (const size of o.sizes) {
    const file = `${work}/list-${size}.txt`;
    await Deno.writeTextFile(file, listed.slice(0, size).join("\n") + "\n");
    await Deno.writeTextFile(
      `${work}/dnsmasq-${size}.conf`,
      listed.slice(0, size).map((n) => `address=/${n}/\n`).join(""),
    );
    lists.set(size, file);
  }
  const listBytes = new Map([...lists].map(([size, file]) => [size, Deno.statSync(file).size]));
  console.error(
    `rules: lists of ${o.sizes.join(", ")} names written in ${
      ((performance.now() - t0) / 1000).toFixed(1)
    } s`,
  );

  const upstreamPort = await freePort();
  const upstream = await startDnsmasq(
    upstreamPort,
    [
      "--cache-size=0",
      "--local-ttl=3600",
      ...BENCH_TLDS.map((t) => `--address=/${t}/192.0.2.1`),
      "--address=/bench.test/192.0.2.1",
    ],
    { name: "ready.bench.test", expect: "192.0.2." },
  );

  const servers: Server[] = [];
  const smartConf = (kind: Kind, port: number, size: number) =>
    [
      `bind 127.0.0.1:${port}`,
      `server 127.0.0.1:${upstreamPort}`,
      "cache-size 20000",
      ...(kind === "SmartDNS" ? smartdnsLikeKeeldns(`${work}/smartdns-${size}.log`) : ["log-level info"]),
      ...(size
        ? [`domain-set -name ads -type list -file ${lists.get(size)}`, "address /domain-set:ads/#"]
        : []),
      "",
    ].join("\n");

  async function start(kind: Kind, size: number): Promise<Server> {
    const port = await freePort();
    let command: string;
    let args: string[];
    let log: string | undefined;
    if (kind === "dnsmasq") {
      command = programPath("dnsmasq");
      args = dnsmasqArgs(port, [
        `--server=127.0.0.1#${upstreamPort}`,
        "--cache-size=20000",
        ...(size ? [`--conf-file=${work}/dnsmasq-${size}.conf`] : []),
      ]);
    } else {
      const conf = `${work}/${kind}-${size}.conf`;
      await Deno.writeTextFile(conf, smartConf(kind, port, size));
      if (kind === "SmartDNS") {
        command = programPath("smartdns");
        args = ["-f", "-c", conf, "-p", "-"];
      } else {
        const dir = (o.checkout ?? REPO_ROOT).replace(/\/$/, "");
        command = Deno.execPath();
        args = checkoutArgs(dir, ["run", "-c", conf, "-p", `${work}/keeldns-${size}.pid`]);
        log = `${work}/keeldns-${size}.log`;
      }
    }
    // stderr to a file (keeldns's log is read afterwards; nothing reads a pipe meanwhile)
    const process = new Deno.Command("sh", {
      args: ["-c", 'out="$1"; shift; exec "$@" 2> "$out"', "sh", log ?? "/dev/null", command, ...args],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    const spawned = performance.now();
    let childSeen = 0;
    let childPid = 0;
    const watchChild = kind === "keeldns"
      ? (async () => {
        while (!childSeen) {
          const c = (await childrenOf(process.pid))[0];
          if (c) {
            childSeen = performance.now();
            childPid = c;
          } else await sleep(5);
        }
      })()
      : Promise.resolve();
    const probe = size ? blockedQueries[0] : "ready.bench.test";
    const want = size ? "blocked" : "answered";
    let answeredAt: number;
    try {
      answeredAt = await pollUntil(port, probe, (m) => verdict(m) === want, 120_000);
    } catch (e) {
      const text = log ? await Deno.readTextFile(log).catch(() => "") : "";
      process.kill("SIGKILL");
      throw new Error(
        `${kind} with ${size} names: ${(e as Error).message}\n${text.split("\n").slice(-20).join("\n")}`,
      );
    }
    await watchChild;
    const servingPid = kind === "keeldns" ? (await childrenOf(process.pid))[0] ?? childPid : process.pid;
    await sleep(1000);
    const server: Server = {
      kind,
      size,
      port,
      process,
      servingPid,
      loadMs: answeredAt - spawned,
      ...(childSeen ? { childLoadMs: answeredAt - childSeen } : {}),
      idle: await smaps(servingPid),
      hitsQps: [],
      blockedQps: [],
      hitsCpu: [],
      blockedCpu: [],
      log,
    };
    console.error(
      `  ${kind} ${size || "no"} list: answering after ${server.loadMs.toFixed(0)} ms${
        server.childLoadMs ? ` (child ${server.childLoadMs.toFixed(0)} ms)` : ""
      }, PSS ${(server.idle.pss / 1024).toFixed(1)} MB`,
    );
    return server;
  }

  function runDnsperf(port: number, file: string, seconds: number, runs?: number): Promise<DnsperfResult> {
    return dnsperf({ port, file, seconds, runs, clients: o.clients, report: `${work}/dnsperf.out` });
  }

  /** dnsperf for `seconds`, and the CPU µs per answered query of the server's processes meanwhile. */
  async function timed(s: Server, file: string, seconds: number) {
    const pids = s.kind === "keeldns" ? [s.process.pid, s.servingPid] : [s.servingPid];
    const used = await cpuSeconds(pids);
    const result = await runDnsperf(s.port, file, seconds);
    return { ...result, cpu: (await cpuSeconds(pids) - used) * 1e6 / result.completed };
  }

  const kinds: Kind[] = ["keeldns", "SmartDNS", "dnsmasq"];
  const sizes = [0, ...o.sizes];
  let lostTotal = 0;
  const notes: string[] = [];
  try {
    // load, one at a time (those already started sit idle)
    for (const size of sizes) {
      for (const kind of kinds) servers.push(await start(kind, size));
    }
    // match
    for (const s of servers.filter((s) => s.size)) {
      const listedCheck = sampleOf(s.size, o.check);
      const a = await ask(s.port, listedCheck);
      const b = await ask(s.port, unlisted.slice(0, o.check));
      s.match = {
        listedBlocked: a.blocked,
        listedTotal: listedCheck.length,
        listedNoAnswer: a.none + a.other,
        unlistedAnswered: b.answered,
        unlistedBlocked: b.blocked,
        unlistedTotal: o.check,
        unlistedNoAnswer: b.none + b.other,
      };
      console.error(
        `  match ${s.kind} ${s.size}: listed blocked ${a.blocked}/${listedCheck.length}, unlisted answered ${b.answered}/${o.check} (blocked ${b.blocked})`,
      );
    }
    // prime every cache with both query sets, then warm up
    for (const s of servers) {
      await runDnsperf(s.port, hitsFile, 0, 1);
      await runDnsperf(s.port, blockedFile, 0, 1);
      await runDnsperf(s.port, hitsFile, 2);
    }
    for (let round = 0; round < o.rounds; round++) {
      const order = round % 2 ? [...servers].reverse() : servers;
      for (const s of order) {
        const h = await timed(s, hitsFile, o.seconds);
        const b = await timed(s, blockedFile, o.seconds);
        s.hitsQps.push(h.qps);
        s.blockedQps.push(b.qps);
        s.hitsCpu.push(h.cpu);
        s.blockedCpu.push(b.cpu);
        lostTotal += h.lost + b.lost;
        console.error(
          `  round ${round + 1} ${s.kind} ${s.size || "no"} list: hits ${h.qps.toFixed(0)} (${
            h.cpu.toFixed(2)
          } µs), blocked ${b.qps.toFixed(0)} qps (${b.cpu.toFixed(2)} µs CPU/query)`,
        );
      }
    }
    for (const s of servers) {
      s.afterRuns = await smaps(s.servingPid);
      if (s.kind === "keeldns") {
        const alive = (await childrenOf(s.process.pid))[0];
        if (alive !== s.servingPid) {
          notes.push(`keeldns ${s.size}: child ${s.servingPid} replaced by ${alive}`);
        }
        const dir = (o.checkout ?? REPO_ROOT).replace(/\/$/, "");
        const status = await new Deno.Command(Deno.execPath(), {
          args: [
            "run",
            "-A",
            "--config",
            `${dir}/deno.json`,
            `${dir}/main.ts`,
            "status",
            "-p",
            `${work}/keeldns-${s.size}.pid`,
          ],
          stdin: "null",
          stderr: "null",
        }).output();
        const text = new TextDecoder().decode(status.stdout);
        const stat = (key: string) => Number(new RegExp(`"${key}":(\\d+)`).exec(text)?.[1] ?? NaN);
        const restarts = /restarts: (\d+)/.exec(text)?.[1];
        notes.push(
          `keeldns ${
            s.size || "no"
          } list, \`keeldns status\` after the runs: restarts ${restarts}, child heap used ${
            mb(stat("heapUsedBytes") / 1024)
          } MB of ${mb(stat("heapTotalBytes") / 1024)} MB, external ${
            mb(stat("externalBytes") / 1024)
          } MB, rss ${mb(stat("rssBytes") / 1024)} MB`,
        );
      }
    }
  } finally {
    for (const s of servers) await stopPeer(s.process);
    await stopPeer(upstream);
  }
  // keeldns's log: the rules line, and anything the guardian said about its child
  for (const s of servers.filter((s) => s.log)) {
    const text = await Deno.readTextFile(s.log!).catch(() => "");
    for (const line of text.split("\n")) {
      if (/rules: \d+ rule lines|WRN|ERR|never became ready|hung|restarting|crash/.test(line)) {
        notes.push(`keeldns ${s.size || "no"} list: \`${line.replace(/^\S+ \S+ \S+ /, "")}\``);
      }
    }
  }
  await Deno.remove(work, { recursive: true }).catch(() => {});

  const find = (kind: Kind, size: number) => servers.find((s) => s.kind === kind && s.size === size)!;
  const out: string[] = [];
  out.push(
    `Lists: ${o.sizes.map((s) => `${s} names (${(listBytes.get(s)! / 1e6).toFixed(1)} MB)`).join(", ")}, ` +
      `generated by bench/domain_lists.ts (seed 11). QPS: dnsperf -c ${o.clients} -T 1 -q 100, ${o.rounds} rounds ` +
      `of ${o.seconds} s per server and query set, all ${servers.length} servers running at once and taking turns; ` +
      `medians. Match: ${o.check} listed names sampled across each list, ${o.check} unlisted names.`,
  );
  out.push("\n**load and memory**\n");
  out.push(
    "| server | list | answering after | PSS idle after load | added by the list | RSS idle | PSS after the QPS runs | added |",
  );
  out.push("|---|---:|---:|---:|---:|---:|---:|---:|");
  for (const size of sizes) {
    for (const kind of kinds) {
      const s = find(kind, size);
      const base = find(kind, 0);
      const load = `${(s.loadMs / 1000).toFixed(2)} s` +
        (s.childLoadMs !== undefined ? ` (child ${(s.childLoadMs / 1000).toFixed(2)} s)` : "");
      out.push(
        `| ${kind}${kind === "keeldns" ? " (child)" : ""} | ${size || "none"} | ${load} | ${
          mb(s.idle.pss)
        } MB | ${size ? `${mb(s.idle.pss - base.idle.pss)} MB` : ""} | ${mb(s.idle.rss)} MB | ${
          mb(s.afterRuns!.pss)
        } MB | ${size ? `${mb(s.afterRuns!.pss - base.afterRuns!.pss)} MB` : ""} |`,
      );
    }
  }
  out.push("\n**match**\n");
  out.push(
    "| server | list | listed answered blocked | unlisted answered (not blocked) | unlisted blocked | no answer |",
  );
  out.push("|---|---:|---:|---:|---:|---:|");
  for (const s of servers.filter((s) => s.match)) {
    const m = s.match!;
    out.push(
      `| ${s.kind} | ${s.size} | ${m.listedBlocked} of ${m.listedTotal} (${
        (100 * m.listedBlocked / m.listedTotal).toFixed(2)
      } %) | ${m.unlistedAnswered} of ${m.unlistedTotal} | ${m.unlistedBlocked} | ${
        m.listedNoAnswer + m.unlistedNoAnswer
      } |`,
    );
  }
  /** One table of a measure for hits and blocked names, with its ratios to no list and to SmartDNS. */
  const ratioTable = (
    title: string,
    hitsOf: (s: Server) => number[],
    blockedOf: (s: Server) => number[],
    format: (v: number) => string,
  ) => {
    out.push(`\n**${title}**\n`);
    out.push(
      "| server | list | cache hits, unlisted names | × same server, no list | × SmartDNS, same list | blocked names | × same server, no list | × SmartDNS, same list |",
    );
    out.push("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (const size of sizes) {
      for (const kind of kinds) {
        const s = find(kind, size);
        const h = median(hitsOf(s));
        const b = median(blockedOf(s));
        const h0 = median(hitsOf(find(kind, 0)));
        const b0 = median(blockedOf(find(kind, 0)));
        const hs = median(hitsOf(find("SmartDNS", size)));
        const bs = median(blockedOf(find("SmartDNS", size)));
        out.push(
          `| ${kind} | ${size || "none"} | ${format(h)} | ${(h / h0).toFixed(2)} | ${(h / hs).toFixed(2)} | ${
            format(b)
          } | ${(b / b0).toFixed(2)} | ${(b / bs).toFixed(2)} |`,
        );
      }
    }
  };
  ratioTable("QPS (medians)", (s) => s.hitsQps, (s) => s.blockedQps, (v) => v.toFixed(0));
  ratioTable(
    "CPU per answered query (medians; all of the server's processes and threads)",
    (s) => s.hitsCpu,
    (s) => s.blockedCpu,
    (v) => `${v.toFixed(2)} µs`,
  );
  out.push(
    `\nWithout a list the "blocked" names are ordinary names, answered by the upstream and then from cache. ` +
      `Queries lost over all QPS runs: ${lostTotal}. Every run: ${
        servers.map((s) =>
          `${s.kind} ${s.size || "none"} hits ${s.hitsQps.map((q) => q.toFixed(0)).join("/")}, blocked ${
            s.blockedQps.map((q) => q.toFixed(0)).join("/")
          }`
        ).join("; ")
      }.`,
  );
  if (notes.length) out.push("\nLog lines:\n\n" + notes.map((n) => `- ${n}`).join("\n"));
  return out.join("\n");
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      seconds: { type: "string", default: "3" },
      rounds: { type: "string", default: "5" },
      clients: { type: "string", default: "4" },
      check: { type: "string", default: "20000" },
      sizes: { type: "string", default: "100000,1000000" },
      checkout: { type: "string", default: REPO_ROOT },
      record: { type: "boolean", default: false },
    },
  });
  const body = await rulesBench({
    seconds: Number(values.seconds),
    rounds: Number(values.rounds),
    clients: Number(values.clients),
    check: Number(values.check),
    sizes: values.sizes.split(",").map(Number),
    checkout: values.checkout,
  });
  const when = new Date().toISOString().slice(0, 16).replace("T", " ") + " UTC";
  const report = `### ${when} — rules at scale\n\n${body}\n`;
  console.log(report);
  if (values.record) {
    const path = `${REPO_ROOT}docs/benchmarks.md`;
    const old = await Deno.readTextFile(path);
    const marker = "<!-- runs -->";
    await Deno.writeTextFile(
      path,
      old.includes(marker) ? old.replace(marker, `${marker}\n\n${report}`) : `${old}\n${report}`,
    );
  }
}
