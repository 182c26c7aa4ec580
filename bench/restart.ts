/**
 * Measures how fast the service is back after the child is killed: SIGKILL the child, then query
 * every 5 ms until an answer comes; repeat once the new child has served for over a second. Then
 * counts what dnsperf loses while `keeldns restart` replaces the child under load. Prints min/median/max and RSS of guardian and child.
 *
 * Usage: deno run -A bench/restart.ts [--runs 20] [--record]
 *
 * @module
 */
import { parseArgs } from "node:util";
import { udpQuery } from "../tests/helpers/dns_client.ts";
import { FakeUpstream } from "../tests/helpers/fake_upstream.ts";
import { KeeldnsProcess, programPath, REPO_ROOT, runKeeldns } from "../tests/helpers/keeldns_process.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: { runs: { type: "string", default: "20" }, record: { type: "boolean", default: false } },
});
const runs = Number(values.runs);

/**
 * Runs dnsperf at a fixed rate over cached names and issues `keeldns restart` in the middle;
 * returns a table row with what dnsperf counted as lost.
 */
async function restartUnderLoad(k: KeeldnsProcess): Promise<string> {
  const file = await Deno.makeTempFile();
  const names = Array.from({ length: 1000 }, (_, i) => `load${i}.test A`);
  await Deno.writeTextFile(file, names.join("\n") + "\n");
  const dnsperf = (seconds: number, rate: number) =>
    new Deno.Command(programPath("dnsperf"), {
      args: [
        "-s",
        "127.0.0.1",
        "-p",
        String(k.port),
        "-d",
        file,
        "-l",
        String(seconds),
        "-Q",
        String(rate),
        "-c",
        "4",
      ],
      stdout: "piped",
      stderr: "null",
    }).output();
  await dnsperf(2, 20000); // fill the cache
  const run = dnsperf(6, 20000);
  await new Promise((r) => setTimeout(r, 2000));
  const restart = await runKeeldns(["restart", "-p", `${k.dir}/keeldns.pid`]);
  const text = new TextDecoder().decode((await run).stdout);
  await Deno.remove(file);
  const sent = /Queries sent:\s+(\d+)/.exec(text)?.[1];
  const lost = /Queries lost:\s+(\d+)/.exec(text)?.[1];
  return `| queries lost during \`keeldns restart\` (dnsperf, 20k QPS for 6 s, restart at 2 s; ` +
    `restart ${restart.code === 0 ? "ok" : "FAILED"}) | ${lost} of ${sent} |`;
}

/** "RSS MB (private MB)" of a pid: VmRSS, and RssAnon (what is not shared binary pages). */
function rssMb(pid: number): string {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const mb = (key: string) => (Number(new RegExp(`${key}:\\s+(\\d+)`).exec(status)![1]) / 1024).toFixed(1);
  return `${mb("VmRSS")} MB (private ${mb("RssAnon")} MB)`;
}

const fake = await FakeUpstream.start();
const k = await KeeldnsProcess.start(
  `[server]\nbind = ["127.0.0.1:{port}"]\n[[upstream]]\naddress = "udp://127.0.0.1:${fake.port}"\n`,
);
const times: number[] = [];
let lossLine = "";
let guardianRss = "";
let childRss = "";
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
  lossLine = await restartUnderLoad(k);
} finally {
  await k.stop();
  await fake.close();
}
times.sort((a, b) => a - b);
const median = times[Math.floor(times.length / 2)];
const line = `${lossLine}\n` +
  `| SIGKILL of the child → first answer of the new child (${runs} runs) | min ${times[0].toFixed(0)} ms, ` +
  `median ${median.toFixed(0)} ms, max ${times.at(-1)!.toFixed(0)} ms |\n| RSS idle after start | guardian ` +
  `${guardianRss}, child ${childRss} |`;
const report = `### ${
  new Date().toISOString().slice(0, 16).replace("T", " ")
} UTC — restart\n\n| what | measured |\n|---|---|\n${line}\n`;
console.log(report);
if (values.record) {
  const path = `${REPO_ROOT}docs/benchmarks.md`;
  const old = await Deno.readTextFile(path);
  await Deno.writeTextFile(path, old.replace("<!-- runs -->", `<!-- runs -->\n\n${report}`));
}
