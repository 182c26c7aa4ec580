/**
 * Measures how fast the service is back after the child is killed: SIGKILL the child, then query
 * every 5 ms until an answer comes; repeat once the new child has served for over a second. Prints min/median/max and RSS of guardian and child.
 *
 * Usage: deno run -A bench/restart.ts [--runs 20] [--record]
 *
 * @module
 */
import { parseArgs } from "node:util";
import { udpQuery } from "../tests/helpers/dns_client.ts";
import { FakeUpstream } from "../tests/helpers/fake_upstream.ts";
import { KeeldnsProcess, REPO_ROOT } from "../tests/helpers/keeldns_process.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: { runs: { type: "string", default: "20" }, record: { type: "boolean", default: false } },
});
const runs = Number(values.runs);

/** VmRSS of a pid in MB. */
function rssMb(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  return Number(/VmRSS:\s+(\d+)/.exec(status)![1]) / 1024;
}

const fake = await FakeUpstream.start();
const k = await KeeldnsProcess.start(
  `[server]\nbind = ["127.0.0.1:{port}"]\n[[upstream]]\naddress = "udp://127.0.0.1:${fake.port}"\n`,
);
const times: number[] = [];
let guardianRss = 0;
let childRss = 0;
try {
  await udpQuery(k.port, "warm.test", "A");
  guardianRss = rssMb(k.pid);
  childRss = rssMb(k.childPid);
  for (let i = 0; i < runs; i++) {
    const mark = k.lines.length;
    const victim = k.childPid;
    const killed = performance.now();
    Deno.kill(victim, "SIGKILL");
    for (;;) {
      const ok = await udpQuery(k.port, `back${i}.test`, "A", { timeoutMs: 5 }).then(() => true, () => false);
      if (ok) break;
    }
    times.push(performance.now() - killed);
    await k.waitFor(/child \d+ ready/, 5000, mark);
    // Let the new child serve past the guardian's healthy mark, so each kill is a first failure.
    await new Promise((r) => setTimeout(r, 1200));
  }
} finally {
  await k.stop();
  await fake.close();
}
times.sort((a, b) => a - b);
const median = times[Math.floor(times.length / 2)];
const line =
  `| SIGKILL of the child → first answer of the new child (${runs} runs) | min ${times[0].toFixed(0)} ms, ` +
  `median ${median.toFixed(0)} ms, max ${times.at(-1)!.toFixed(0)} ms |\n| RSS idle after start | guardian ` +
  `${guardianRss.toFixed(1)} MB, child ${childRss.toFixed(1)} MB |`;
const report = `### ${
  new Date().toISOString().slice(0, 16).replace("T", " ")
} UTC — restart\n\n| what | measured |\n|---|---|\n${line}\n`;
console.log(report);
if (values.record) {
  const path = `${REPO_ROOT}docs/benchmarks.md`;
  const old = await Deno.readTextFile(path);
  await Deno.writeTextFile(path, old.replace("<!-- runs -->", `<!-- runs -->\n\n${report}`));
}
