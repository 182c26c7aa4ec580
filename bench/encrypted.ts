/**
 * The encrypted-upstream and miss-latency workloads of `deno task bench`: keeldns and SmartDNS read
 * the same smartdns.conf (`cache-size 0`, so every query goes upstream), dnsperf asks them over plain
 * UDP, and they forward to one local unbound (answering `*.bench.test` itself from a redirect zone,
 * its own caches off) — over DNS-over-TLS to unbound's `tls-port`, over DNS-over-HTTPS to dnsdist's
 * DoH listener in front of the same unbound (SmartDNS 40 speaks HTTP/1.1 to DoH servers, unbound's
 * DoH is HTTP/2 only; dnsdist takes both), or over UDP. The certificates: a test CA and a leaf made
 * with openssl (tests/helpers/test_pki.ts).
 *
 * - **DoT / DoH forwarding**: QPS and CPU per answered query, the two servers running at once and
 *   taking turns (`rounds` × `seconds`, medians), and the TCP connections each holds to the
 *   upstream afterwards (one reused connection is the point); dnsperf straight to the upstream over
 *   DoT/DoH (one connection per dnsperf client) as the upstream's own ceiling.
 * - **memory per upstream connection**: each server with `connections` distinct DoT upstreams
 *   (127.0.0.2…, the same unbound) against one, after a light load (50 QPS for 1 s, so every
 *   connection is open and has carried queries without the heap growing with throughput):
 *   (RSS with N − RSS with 1) / (N − 1), for keeldns's child and for SmartDNS.
 * - **miss latency**: dnsperf at a fixed `rate` against the upstream directly, through keeldns and
 *   through SmartDNS (UDP upstream, and DoT upstream with dnsperf speaking DoT to unbound directly),
 *   `rounds` runs of `seconds` each in turns; medians of p50 and p99, and what each server adds
 *   over the direct figure.
 *
 * @module
 */
import { freePort, keeldnsCommand, programPath } from "../tests/helpers/keeldns_process.ts";
import { stopPeer, waitForAnswer } from "../tests/helpers/peers.ts";
import { makeTestPki } from "../tests/helpers/test_pki.ts";
import { dnsperf, type DnsperfResult } from "./dnsperf.ts";
import { median } from "./median.ts";
import { childrenOf, cpuSeconds } from "./process_cpu.ts";
import { smartdnsLikeKeeldns } from "./smartdns_conf.ts";
import { benchUnboundConf } from "./unbound_conf.ts";

/** What the workloads are asked to do. */
export interface EncryptedBenchOptions {
  /** Which parts: "encrypted" (DoT/DoH QPS and memory), "connection-memory" (memory alone), "miss-latency". */
  parts: Set<string>;
  seconds: number;
  rounds: number;
  clients: number;
  /** Distinct DoT upstreams for the memory-per-connection figure. */
  connections: number;
  /** Fixed query rate of the latency runs. */
  rate: number;
  /** The query file (`hN.bench.test A` lines). */
  file: string;
  /** A scratch directory. */
  work: string;
}

/** The upstream side: unbound on UDP and TLS ports, dnsdist's DoH listener in front of it. */
interface Upstreams {
  udpPort: number;
  tlsPort: number;
  dohPort: number;
  caFile: string;
  processes: Deno.ChildProcess[];
}

/** A server under test started from a smartdns.conf. */
interface Server {
  name: string;
  port: number;
  process: Deno.ChildProcess;
  /** The pids whose CPU and sockets count (keeldns: guardian and child). */
  pids(): Promise<number[]>;
  /** The pid whose RSS is the memory figure (keeldns: the child). */
  memoryPid(): Promise<number>;
}

const HOST_NAME = "dot.test";

function spawn(command: string, args: string[], cwd?: string): Deno.ChildProcess {
  return new Deno.Command(command, { args, cwd, stdin: "null", stdout: "null", stderr: "null" }).spawn();
}

async function waitForTcp(port: number, host = "127.0.0.1"): Promise<void> {
  for (let i = 0; i < 200; i++) {
    try {
      (await Deno.connect({ hostname: host, port })).close();
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  throw new Error(`nothing listens on ${host}:${port}`);
}

/** unbound with its caches off; TLS also on 127.0.0.2… (`extraTls` addresses) for the memory figure. */
async function startUpstreams(dir: string, extraTls: number): Promise<Upstreams> {
  const pki = await makeTestPki(dir, HOST_NAME);
  const [udpPort, tlsPort, dohPort, dnsdistPort] = [
    await freePort(),
    await freePort(),
    await freePort(),
    await freePort(),
  ];
  const tlsInterfaces = Array.from({ length: extraTls }, (_, i) => `interface: 127.0.0.${i + 2}@${tlsPort}`);
  await Deno.writeTextFile(
    `${dir}/unbound.conf`,
    benchUnboundConf(dir, [
      `interface: 127.0.0.1@${udpPort}`,
      `interface: 127.0.0.1@${tlsPort}`,
      ...tlsInterfaces,
      `tls-port: ${tlsPort}`,
      `tls-service-key: "${pki.keyFile}"`,
      `tls-service-pem: "${pki.certFile}"`,
      "incoming-num-tcp: 256",
    ]),
  );
  const unbound = spawn(programPath("unbound"), ["-d", "-c", `${dir}/unbound.conf`]);
  await waitForTcp(tlsPort);
  await waitForAnswer(udpPort, "ready.bench.test", "192.0.2.");
  // dnsdist: a DoH listener only, every question passed to unbound over UDP, no packet cache, no
  // security polling (that would be a query leaving the machine).
  await Deno.writeTextFile(
    `${dir}/dnsdist.conf`,
    [
      `setSecurityPollSuffix("")`,
      `setLocal("127.0.0.1:${dnsdistPort}")`,
      `addDOHLocal("127.0.0.1:${dohPort}", "${pki.certFile}", "${pki.keyFile}", "/dns-query")`,
      `newServer({address="127.0.0.1:${udpPort}", checkName="bench.test."})`,
      "",
    ].join("\n"),
  );
  const dnsdist = spawn(programPath("dnsdist"), [
    "--supervised",
    "--disable-syslog",
    "-C",
    `${dir}/dnsdist.conf`,
  ]);
  await waitForTcp(dohPort);
  await waitForAnswer(dnsdistPort, "ready.bench.test", "192.0.2.");
  return { udpPort, tlsPort, dohPort, caFile: pki.caFile, processes: [unbound, dnsdist] };
}

/** The `server…` lines for a transport. */
function serverLines(up: Upstreams, transport: "udp" | "tls" | "https", count = 1): string[] {
  if (transport === "udp") return [`server 127.0.0.1:${up.udpPort}`];
  if (transport === "https") {
    return [`server-https https://127.0.0.1:${up.dohPort}/dns-query -host-name ${HOST_NAME}`];
  }
  const hosts = count === 1 ? ["127.0.0.1"] : Array.from({ length: count }, (_, i) => `127.0.0.${i + 2}`);
  return hosts.map((h) => `server-tls ${h}:${up.tlsPort} -host-name ${HOST_NAME}`);
}

/** One smartdns.conf for both servers: caches off, SmartDNS doing no more than keeldns does. */
async function writeConf(path: string, port: number, up: Upstreams, servers: string[]): Promise<void> {
  await Deno.writeTextFile(
    path,
    [
      `bind 127.0.0.1:${port}`,
      ...servers,
      `ca-file ${up.caFile}`,
      "cache-size 0",
      ...smartdnsLikeKeeldns(`${path}.log`),
      "",
    ].join("\n"),
  );
}

async function startKeeldns(dir: string, name: string, up: Upstreams, servers: string[]): Promise<Server> {
  const port = await freePort();
  const conf = `${dir}/${name}.conf`;
  await writeConf(conf, port, up, servers);
  const { command, args } = keeldnsCommand(["run", "-c", conf, "--control", `${dir}/${name}.sock`]);
  const process = spawn(command, args);
  await waitForAnswer(port, "ready.bench.test", "192.0.2.");
  const child = async () => (await childrenOf(process.pid))[0] ?? process.pid;
  return {
    name: "keeldns",
    port,
    process,
    pids: async () => [process.pid, ...(await childrenOf(process.pid))],
    memoryPid: child,
  };
}

async function startSmartdns(dir: string, name: string, up: Upstreams, servers: string[]): Promise<Server> {
  const port = await freePort();
  const conf = `${dir}/${name}.conf`;
  await writeConf(conf, port, up, servers);
  const process = spawn(programPath("smartdns"), ["-f", "-c", conf, "-p", "-"]);
  await waitForAnswer(port, "ready.bench.test", "192.0.2.");
  return {
    name: "SmartDNS",
    port,
    process,
    pids: () => Promise.resolve([process.pid]),
    memoryPid: () => Promise.resolve(process.pid),
  };
}

/** VmRSS of a pid in MB. */
async function rssMb(pid: number): Promise<number> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`).catch(() => "");
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN) / 1024;
}

/** Established TCP connections of `pids` to `port` on loopback (from /proc/PID/fd and /proc/net/tcp). */
async function connectionsTo(pids: number[], port: number): Promise<number> {
  const inodes = new Set<string>();
  for (const pid of pids) {
    try {
      for await (const fd of Deno.readDir(`/proc/${pid}/fd`)) {
        const link = await Deno.readLink(`/proc/${pid}/fd/${fd.name}`).catch(() => "");
        const m = /^socket:\[(\d+)\]$/.exec(link);
        if (m) inodes.add(m[1]);
      }
    } catch { /* gone */ }
  }
  const hexPort = port.toString(16).toUpperCase().padStart(4, "0");
  let count = 0;
  for (const line of (await Deno.readTextFile("/proc/net/tcp")).split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length > 9 && f[2].endsWith(`:${hexPort}`) && f[3] === "01" && inodes.has(f[9])) count++;
  }
  return count;
}

/** QPS and CPU per answered query of `servers`, in turns; medians. */
async function qpsInTurns(
  o: EncryptedBenchOptions,
  servers: Server[],
): Promise<{ qps: number[]; cpuUs: number[]; lost: number; runs: number[][] }> {
  const runs = servers.map((): number[] => []);
  const cpu = servers.map((): number[] => []);
  let lost = 0;
  for (const s of servers) await run(o, s.port, 1); // warm up: connections open, code optimised
  for (let round = 0; round < o.rounds; round++) {
    const order = round % 2 ? [...servers.keys()].reverse() : [...servers.keys()];
    for (const i of order) {
      const pids = await servers[i].pids();
      const before = await cpuSeconds(pids);
      const r = await run(o, servers[i].port, o.seconds);
      const used = await cpuSeconds(pids) - before;
      runs[i].push(r.qps);
      cpu[i].push(used * 1e6 / r.completed);
      lost += r.lost;
    }
  }
  return { qps: runs.map(median), cpuUs: cpu.map(median), lost, runs };
}

function run(
  o: EncryptedBenchOptions,
  port: number,
  seconds: number,
  extra: { rate?: number; mode?: "udp" | "dot" | "doh" } = {},
): Promise<DnsperfResult> {
  return dnsperf({
    port,
    file: o.file,
    seconds,
    clients: o.clients,
    report: `${o.work}/dnsperf-enc.out`,
    ...extra,
  });
}

/** DoT and DoH forwarding QPS, with the upstream's own ceiling; a markdown table. */
async function forwarding(o: EncryptedBenchOptions, up: Upstreams): Promise<string> {
  const lines = [
    "| upstream transport | server | QPS (median) | × SmartDNS | CPU per answered query | connections to the upstream after the runs | every run |",
    "|---|---|---:|---:|---:|---:|---|",
  ];
  for (
    const [transport, label, upstreamPort] of [["tls", "DoT", up.tlsPort], [
      "https",
      "DoH",
      up.dohPort,
    ]] as const
  ) {
    const servers: Server[] = [];
    try {
      servers.push(await startKeeldns(o.work, `keeldns-${transport}`, up, serverLines(up, transport)));
      servers.push(await startSmartdns(o.work, `smartdns-${transport}`, up, serverLines(up, transport)));
      const { qps, cpuUs, runs, lost } = await qpsInTurns(o, servers);
      for (const [i, s] of servers.entries()) {
        const conns = await connectionsTo(await s.pids(), upstreamPort);
        lines.push(
          `| ${label} | ${s.name} | ${qps[i].toFixed(0)} | ${(qps[i] / qps[1]).toFixed(2)} | ${
            cpuUs[i].toFixed(1)
          } µs | ${conns} | ${runs[i].map((q) => q.toFixed(0)).join(" / ")} |`,
        );
        console.error(
          `  ${label} / ${s.name}: ${qps[i].toFixed(0)} qps, ${cpuUs[i].toFixed(1)} µs CPU/query`,
        );
      }
      if (lost > 0) lines.push(`| ${label} | (queries lost over all runs: ${lost}) | | | | | |`);
      if (transport === "tls") {
        // dnsperf's DoH client stalls against dnsdist after a few queries: no such ceiling for DoH.
        const direct = await run(o, upstreamPort, o.seconds, { mode: "dot" });
        lines.push(
          `| ${label} | the upstream directly (dnsperf -m dot, ${o.clients} connections) | ${
            direct.qps.toFixed(0)
          } | ${(direct.qps / qps[1]).toFixed(2)} | | | |`,
        );
      }
    } finally {
      for (const s of servers) await stopPeer(s.process);
    }
  }
  return lines.join("\n");
}

/** RSS per open DoT upstream connection; a markdown table. */
async function memoryPerConnection(o: EncryptedBenchOptions, up: Upstreams): Promise<string> {
  const n = o.connections;
  const lines = [
    `| server | RSS, 1 DoT upstream | RSS, ${n} DoT upstreams | connections open | per extra connection |`,
    "|---|---:|---:|---:|---:|",
  ];
  for (const start of [startKeeldns, startSmartdns]) {
    const rss: number[] = [];
    let conns = 0;
    let name = "";
    for (const count of [1, n]) {
      const s = await start(
        o.work,
        `mem-${start === startKeeldns ? "k" : "s"}-${count}`,
        up,
        serverLines(up, "tls", count),
      );
      try {
        name = s.name;
        // The readiness query has opened every connection; a few more queries use them, few enough
        // that the heap of an N-way race does not count as connection memory.
        await run(o, s.port, 1, { rate: 50 });
        await new Promise((r) => setTimeout(r, 1000));
        rss.push(await rssMb(await s.memoryPid()));
        conns = await connectionsTo(await s.pids(), up.tlsPort);
      } finally {
        await stopPeer(s.process);
      }
    }
    const per = (rss[1] - rss[0]) * 1024 / (n - 1);
    lines.push(
      `| ${name}${name === "keeldns" ? " (child)" : ""} | ${rss[0].toFixed(1)} MB | ${
        rss[1].toFixed(1)
      } MB | ${conns} | ${per.toFixed(0)} kB |`,
    );
    console.error(
      `  memory / ${name}: ${rss[0].toFixed(1)} → ${rss[1].toFixed(1)} MB, ${
        per.toFixed(0)
      } kB per connection`,
    );
  }
  return lines.join("\n");
}

/** Miss latency at a fixed rate: directly, through keeldns, through SmartDNS; a markdown table. */
async function missLatency(o: EncryptedBenchOptions, up: Upstreams): Promise<string> {
  const lines = [
    `| upstream transport | path | QPS | p50 | p99 | p50 added (over UDP straight to unbound) | p99 added | lost |`,
    "|---|---|---:|---:|---:|---:|---:|---:|",
  ];
  let udpDirect = [NaN, NaN];
  for (const [transport, label] of [["udp", "UDP"], ["tls", "DoT"]] as const) {
    const servers: Server[] = [];
    try {
      servers.push(await startKeeldns(o.work, `lat-k-${transport}`, up, serverLines(up, transport)));
      servers.push(await startSmartdns(o.work, `lat-s-${transport}`, up, serverLines(up, transport)));
      const targets = [
        {
          name: `the upstream directly${transport === "tls" ? " (dnsperf speaks DoT)" : ""}`,
          port: transport === "udp" ? up.udpPort : up.tlsPort,
          mode: transport === "udp" ? "udp" as const : "dot" as const,
        },
        ...servers.map((s) => ({ name: `through ${s.name}`, port: s.port, mode: "udp" as const })),
      ];
      for (const t of targets) await run(o, t.port, 2, { rate: o.rate, mode: t.mode }); // warm up
      const p50 = targets.map((): number[] => []);
      const p99 = targets.map((): number[] => []);
      const qps = targets.map((): number[] => []);
      let lost = targets.map(() => 0);
      for (let round = 0; round < o.rounds + 2; round++) {
        for (const [i, t] of targets.entries()) {
          const r = await run(o, t.port, o.seconds, { rate: o.rate, mode: t.mode });
          p50[i].push(r.p50Ms!);
          p99[i].push(r.p99Ms!);
          qps[i].push(r.qps);
          lost = lost.map((l, j) => j === i ? l + r.lost : l);
        }
      }
      // What a server adds is measured against plain UDP straight to unbound (the fastest way to
      // it): a DoT client's own handshake and framing are not what the servers' clients pay.
      if (transport === "udp") udpDirect = [median(p50[0]), median(p99[0])];
      const [d50, d99] = udpDirect;
      for (const [i, t] of targets.entries()) {
        const [m50, m99] = [median(p50[i]), median(p99[i])];
        const added = i === 0
          ? "| | |"
          : `| ${((m50 - d50) * 1000).toFixed(0)} µs | ${((m99 - d99) * 1000).toFixed(0)} µs |`;
        lines.push(
          `| ${label} | ${t.name} | ${median(qps[i]).toFixed(0)} | ${m50.toFixed(3)} ms | ${
            m99.toFixed(3)
          } ms ${added} ${lost[i]} |`,
        );
        console.error(
          `  miss latency ${label} / ${t.name}: p50 ${m50.toFixed(3)} ms, p99 ${m99.toFixed(3)} ms`,
        );
      }
    } finally {
      for (const s of servers) await stopPeer(s.process);
    }
  }
  return lines.join("\n");
}

/** Runs the parts asked for; returns their markdown. */
export async function encryptedBench(o: EncryptedBenchOptions): Promise<string> {
  const dir = await Deno.makeTempDir({ dir: o.work, prefix: "encrypted-" });
  const memory = o.parts.has("encrypted") || o.parts.has("connection-memory");
  const up = await startUpstreams(dir, memory ? o.connections : 0);
  const out: string[] = [];
  try {
    if (o.parts.has("encrypted")) {
      console.error(`bench: DoT/DoH forwarding, ${o.rounds} rounds × ${o.seconds} s, caches off`);
      out.push(
        `**forwarding over DoT and DoH, caches off** (dnsperf over UDP to the server; the upstream: unbound, ` +
          `DoH through dnsdist's DoH listener in front of it; ${o.rounds} rounds of ${o.seconds} s, servers in turns)\n`,
        await forwarding({ ...o, work: dir }, up),
      );
    }
    if (memory) {
      out.push(
        `\n**memory per open DoT upstream connection** (${o.connections} distinct DoT upstreams vs 1, ` +
          "RSS 1 s after 1 s at 50 QPS)\n",
        await memoryPerConnection({ ...o, work: dir }, up),
      );
    }
    if (o.parts.has("miss-latency")) {
      console.error(`bench: miss latency at ${o.rate} QPS, ${o.rounds + 2} rounds × ${o.seconds} s`);
      out.push(
        `\n**miss latency at a fixed ${o.rate} QPS, caches off** (unbound upstream; ${
          o.rounds + 2
        } runs of ` +
          `${o.seconds} s each, in turns; medians of the runs' p50 and p99)\n`,
        await missLatency({ ...o, work: dir }, up),
      );
    }
  } finally {
    for (const p of up.processes) await stopPeer(p);
  }
  return out.join("\n");
}
