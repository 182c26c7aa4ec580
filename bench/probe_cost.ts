/**
 * What one speed-check probe costs this runtime, apart from the rest of a miss: CPU per
 * `tcpConnectTime` (net/tcp_probe.ts), per bare `Deno.connect` + `close()`, and per rebuild of an
 * answer with chosen addresses (`withAddresses` + `StoredAnswer.fromResponse`, done twice per
 * first-ping miss). The probes go to fresh 127.x.y.z addresses (16 in flight) inside a network
 * namespace of its own, where a python listener on 0.0.0.0:8080 completes every handshake.
 *
 * Usage (root, `ip netns`): deno run -A bench/probe_cost.ts [PROBES]
 *
 * @module
 */
import packet from "dns-packet";
import { tcpConnectTime } from "../net/tcp_probe.ts";
import { withAddresses } from "../dns/address_selection.ts";
import { StoredAnswer } from "../dns/stored_answer.ts";
import { scanResponse } from "../dns/wire.ts";
import {
  addNamespace,
  inNamespace,
  namespacesUnavailable,
  removeNamespace,
  sleep,
} from "../tests/helpers/netns.ts";

const PORT = 8080;
const probes = Number(Deno.args[0] ?? 6000);

/** utime + stime of this process, in seconds. */
function cpu(): number {
  const stat = Deno.readTextFileSync("/proc/self/stat");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) / 100;
}

let next = 0;
/** A loopback address no probe of this run went to (127.80.0.1 on). */
function fresh(): string {
  const k = next++;
  return `127.${80 + Math.floor(k / 65024) % 160}.${Math.floor(k / 254) % 256}.${1 + k % 254}`;
}

/** Runs `probes` calls of `probe`, 16 at a time; prints rate and CPU per call. */
async function run(label: string, probe: (ip: string) => Promise<unknown>): Promise<void> {
  const [c0, t0] = [cpu(), performance.now()];
  let started = 0;
  let answered = 0;
  await Promise.all(Array.from({ length: 16 }, async () => {
    while (started < probes) {
      started++;
      if ((await probe(fresh())) !== undefined) answered++;
    }
  }));
  const [c, t] = [cpu() - c0, (performance.now() - t0) / 1000];
  console.log(
    `${label}: ${probes} probes, ${answered} answered, ${(probes / t).toFixed(0)}/s, ${
      (c * 1e6 / probes).toFixed(1)
    } µs CPU each`,
  );
}

if (Deno.args.includes("--inside")) {
  await run("warm-up: tcpConnectTime", (ip) => tcpConnectTime(ip, PORT, 950));
  await run("tcpConnectTime (Deno.connect + AbortSignal.timeout)", (ip) => tcpConnectTime(ip, PORT, 950));
  await run("Deno.connect + close alone", async (ip) => {
    (await Deno.connect({ hostname: ip, port: PORT })).close();
    return 1;
  });
  await run("tcpConnectTime again", (ip) => tcpConnectTime(ip, PORT, 950));
  const ips = ["127.1.2.3", "127.1.2.4", "127.1.2.5"];
  const wire = new Uint8Array(packet.encode({
    type: "response",
    id: 1,
    flags: 0x8180,
    questions: [{ type: "A", name: "x.speed.test" }],
    answers: ips.map((data) => ({ type: "A", name: "x.speed.test", ttl: 3600, data })),
  }));
  const policy = { rrTtl: 0, rrTtlMin: 0, rrTtlMax: 0 };
  const n = 20_000;
  const c0 = cpu();
  for (let i = 0; i < n; i++) {
    const w = withAddresses(wire, 1, [ips[1], ips[0]]);
    StoredAnswer.fromResponse(w, scanResponse(w)!, policy, Date.now());
  }
  console.log(
    `withAddresses + StoredAnswer.fromResponse: ${((cpu() - c0) * 1e6 / n).toFixed(1)} µs CPU each`,
  );
} else {
  const why = namespacesUnavailable();
  if (why) throw new Error(`needs a network namespace: ${why}`);
  const ns = `kd-probe-cost-${Deno.pid % 100_000}`;
  await addNamespace(ns);
  try {
    const script =
      "import socket\ns = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n" +
      `s.bind(("0.0.0.0", ${PORT})); s.listen(4096)\nwhile True:\n    c, _ = s.accept(); c.close()\n`;
    const l = inNamespace(ns, "python3", ["-c", script]);
    new Deno.Command(l.command, { args: l.args, stdin: "null", stdout: "null", stderr: "inherit" }).spawn();
    await sleep(300);
    const self = inNamespace(ns, Deno.execPath(), [
      "run",
      "-A",
      "--config",
      new URL("../deno.json", import.meta.url).pathname,
      new URL(import.meta.url).pathname,
      String(probes),
      "--inside",
    ]);
    await new Deno.Command(self.command, { args: self.args, stdin: "null" }).spawn().status;
  } finally {
    await removeNamespace(ns); // ends the listener
  }
}
