/**
 * End to end: the guardian keeps the service up and stops cleanly.
 */
import { assert, assertEquals, assertLess, assertMatch } from "./helpers/assert.ts";
import { udpQuery } from "./helpers/dns_client.ts";
import { FakeUpstream } from "./helpers/fake_upstream.ts";
import {
  freePort,
  keeldnsCommand,
  KeeldnsProcess,
  processExists,
  runKeeldns,
  testConfig,
  withKeeldns,
} from "./helpers/keeldns_process.ts";
import { TEST_STARTUP_DELAY_ENV } from "../ops/child_messages.ts";

const config = (upstreamPort: number) => `
[server]
bind = ["127.0.0.1:{port}"]
[[upstream]]
address = "udp://127.0.0.1:${upstreamPort}"
[guardian]
watchdog-timeout = 2
`;

/** Queries every 20 ms until an answer comes; returns the milliseconds it took. */
async function timeToAnswer(port: number, limitMs: number): Promise<number> {
  const started = performance.now();
  while (performance.now() - started < limitMs) {
    try {
      const r = await udpQuery(port, "back.test", "A", { timeoutMs: 50 });
      if (r.rcode === "NOERROR") return performance.now() - started;
    } catch {
      // not back yet
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`no answer within ${limitMs} ms`);
}

Deno.test({
  name: "kill -9 of the child: the guardian's new child answers within a second",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await withKeeldns(config, async (k) => {
      const first = k.childPid;
      assertEquals((await udpQuery(k.port, "before.test", "A")).rcode, "NOERROR");
      const mark = k.lines.length;
      Deno.kill(first, "SIGKILL");
      const ms = await timeToAnswer(k.port, 1000);
      await k.waitFor(/child \d+ ready/, 2000, mark);
      assert(k.childPid !== first, "a new child must be serving");
      assertMatch(k.lines.slice(mark).join("\n"), new RegExp(`child ${first} was killed by SIGKILL`));
      assertLess(ms, 1000);
      assert(processExists(k.pid), "the guardian survives its child");
    });
  },
});

Deno.test({
  name: "SIGTERM stops guardian and child with exit code 0; pid file removed",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const fake = await FakeUpstream.start();
    const k = await KeeldnsProcess.start(config(fake.port));
    const child = k.childPid;
    const pidFile = `${k.dir}/keeldns.pid`;
    assertEquals(Number(Deno.readTextFileSync(pidFile).trim()), k.pid);
    k.signal("SIGTERM");
    const status = await k.status();
    assertEquals(status.code, 0);
    assertEquals(status.signal, null);
    await new Promise((r) => setTimeout(r, 100));
    assert(!processExists(child), "the child must be gone");
    assert(!(await Deno.stat(pidFile).then(() => true, () => false)), "pid file removed");
    await k.stop();
    await fake.close();
  },
});

Deno.test({
  name: "SIGHUP is forwarded and kills nothing",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await withKeeldns(config, async (k) => {
      const child = k.childPid;
      const mark = k.lines.length;
      k.signal("SIGHUP");
      await k.waitFor(new RegExp(`SIGHUP forwarded to child ${child}`), 3000, mark);
      assertEquals((await udpQuery(k.port, "hup.test", "A")).rcode, "NOERROR");
      assertEquals(k.childPid, child);
      assert(processExists(child));
    });
  },
});

Deno.test({
  name: "a hung child (SIGSTOP) is detected by the watchdog and replaced",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await withKeeldns(config, async (k) => {
      const hung = k.childPid;
      const mark = k.lines.length;
      Deno.kill(hung, "SIGSTOP");
      await k.waitFor(new RegExp(`child ${hung} hung: no heartbeat for 2\\d{3} ms`), 5000, mark);
      await k.waitFor(/child \d+ ready/, 3000, mark);
      assert(k.childPid !== hung);
      assertEquals((await udpQuery(k.port, "unhung.test", "A")).rcode, "NOERROR");
    });
  },
});

Deno.test({
  name: "health exits 0 against a running server, 1 against a stopped one, 2 on SERVFAIL",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await withKeeldns(config, async (k) => {
      const ok = await runKeeldns(["health", "--server", `127.0.0.1:${k.port}`, "--timeout", "2000"]);
      assertEquals(ok.code, 0, ok.stderr);
      assertMatch(ok.stdout, /answered \. NS: NOERROR/);
      const quiet = await runKeeldns(["health", "-q", "--server", `127.0.0.1:${k.port}`]);
      assertEquals(quiet.code, 0);
      assertEquals(quiet.stdout, "");
      const viaConfig = await runKeeldns(["health", "-q", "-c", k.configPath]);
      assertEquals(viaConfig.code, 0, viaConfig.stderr);
      const servfail = await runKeeldns([
        "health",
        "--server",
        `127.0.0.1:${k.port}`,
        "--name",
        "broken.test",
        "--type",
        "A",
      ]);
      assertEquals(servfail.code, 2);
      assertMatch(servfail.stderr, /SERVFAIL/);
    }, (name) => name === "broken.test" ? { rcode: "SERVFAIL" } : {});
    const down = await runKeeldns([
      "health",
      "--server",
      `127.0.0.1:${await freePort()}`,
      "--timeout",
      "500",
    ]);
    assertEquals(down.code, 1);
    assertEquals(down.stderr.trim().split("\n").length, 1, "one line on failure");
  },
});

Deno.test({
  name: "a port already in use is reported and retried with backoff, not a spin",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const fake = await FakeUpstream.start();
    const port = await freePort();
    const blocker = Deno.listen({ hostname: "127.0.0.1", port });
    const k = await KeeldnsProcess.start(
      `[server]\nbind-tcp = ["127.0.0.1:{port}"]\n[[upstream]]\naddress = "udp://127.0.0.1:${fake.port}"\n`,
      { port, waitReady: false },
    );
    try {
      await k.waitFor(/cannot bind tcp 127\.0\.0\.1 port/, 10_000);
      await k.waitFor(/could not bind its sockets/, 5000);
      await k.waitFor(/restarting the child in \d+ ms/, 5000);
      await new Promise((r) => setTimeout(r, 1500));
      const attempts = k.lines.filter((l) => /could not bind its sockets/.test(l)).length;
      assertLess(attempts, 10, `backoff must slow the retries (saw ${attempts})`);
      const health = await runKeeldns([
        "health",
        "--server",
        `127.0.0.1:${port}`,
        "--timeout",
        "300",
        "-p",
        `${k.dir}/keeldns.pid`,
      ]);
      assertEquals(health.code, 1);
      assertMatch(
        health.stderr,
        /guardian: (waiting to restart|starting), last child exit: .*could not bind its sockets/,
      );
      assertEquals(health.stderr.trim().split("\n").length, 1, "one line for cron");
      blocker.close();
      await k.waitFor(/child \d+ ready/, 10_000);
    } finally {
      try {
        blocker.close();
      } catch { /* closed */ }
      await k.stop();
      await fake.close();
    }
  },
});

Deno.test({
  name: 'optimize-for = "memory" starts the child with V8 tuned for size, and it serves',
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await withKeeldns((port) => testConfig(port, '[guardian]\noptimize-for = "memory"\n'), async (k) => {
      const environ = (await Deno.readTextFile(`/proc/${k.childPid}/environ`)).split("\0");
      assert(
        environ.some((v) => /^DENO_V8_FLAGS=--optimize-for-size,--max-semi-space-size=1,/.test(v)),
        "the child's V8 flags",
      );
      const guardianEnv = (await Deno.readTextFile(`/proc/${k.pid}/environ`)).split("\0");
      assert(!guardianEnv.some((v) => v.includes("--optimize-for-size")), "only the child is tuned");
      assertEquals((await udpQuery(k.port, "small.test", "A")).rcode, "NOERROR");
    });
  },
});

/**
 * A guardian whose children take `delayMs` longer to start (the test-only hook in child.ts, set
 * through the environment the children inherit): its log lines, a waitFor, and stop.
 */
async function startSlowKeeldns(config: string, delayMs: number) {
  const port = await freePort();
  const dir = await Deno.makeTempDir({ prefix: "keeldns-slow-" });
  const configPath = `${dir}/keeldns.toml`;
  await Deno.writeTextFile(configPath, config.replaceAll("{port}", String(port)));
  const { command, args } = keeldnsCommand(["run", "-c", configPath, "-p", `${dir}/keeldns.pid`]);
  const process = new Deno.Command(command, {
    args,
    env: { [TEST_STARTUP_DELAY_ENV]: String(delayMs) },
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const lines: string[] = [];
  const pumped = (async () => {
    let rest = "";
    for await (const chunk of process.stderr.pipeThrough(new TextDecoderStream())) {
      rest += chunk;
      const parts = rest.split("\n");
      rest = parts.pop()!;
      lines.push(...parts);
    }
    if (rest) lines.push(rest);
  })();
  const waitFor = async (pattern: RegExp, timeoutMs: number): Promise<string> => {
    const until = performance.now() + timeoutMs;
    while (performance.now() < until) {
      const line = lines.find((l) => pattern.test(l));
      if (line) return line;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`no log line matched ${pattern} in ${timeoutMs} ms; log:\n${lines.join("\n")}`);
  };
  const stop = async () => {
    try {
      process.kill("SIGTERM");
    } catch { /* gone */ }
    const status = await process.status;
    await pumped;
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    return status;
  };
  return { port, dir, lines, waitFor, stop };
}

Deno.test({
  name: "a slow start-up (well past watchdog-timeout) is not taken for a hang: the child serves once ready",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const fake = await FakeUpstream.start();
    const k = await startSlowKeeldns(
      testConfig(fake.port, "[guardian]\nwatchdog-timeout = 1\nstartup-timeout = 30\n"),
      3500,
    );
    try {
      await k.waitFor(/child \d+ ready/, 20_000);
      const log = k.lines.join("\n");
      assert(!/killing it|hung|was killed by|restarting the child/.test(log), `no kill, no restart:\n${log}`);
      assert(!/has not beaten/.test(log), `beats kept flowing during the start-up:\n${log}`);
      assertEquals(k.lines.filter((l) => /child \d+ ready/.test(l)).length, 1);
      assertEquals((await udpQuery(k.port, "slow-start.test", "A")).rcode, "NOERROR");
      // and once ready, watchdog-timeout = 1 holds: it beats, so it stays.
      await new Promise((r) => setTimeout(r, 1500));
      assert(!k.lines.some((l) => /killing it/.test(l)), "a beating ready child stays");
    } finally {
      await k.stop();
      await fake.close();
    }
  },
});

Deno.test({
  name:
    "a child that never becomes ready is replaced at startup-timeout; log and crash report name its stage",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const fake = await FakeUpstream.start();
    const k = await startSlowKeeldns(
      testConfig(fake.port, "[guardian]\nwatchdog-timeout = 5\nstartup-timeout = 2\n"),
      60_000,
    );
    try {
      // The control socket may not be up yet at first (seconds on a loaded machine): asked up to 10 times.
      let status = await runKeeldns(["status", "-p", `${k.dir}/keeldns.pid`]);
      for (let i = 0; i < 10 && status.code !== 0; i++) {
        await new Promise((resolve) => setTimeout(resolve, 300));
        status = await runKeeldns(["status", "-p", `${k.dir}/keeldns.pid`]);
      }
      assertEquals(status.code, 0, status.stderr);
      assertMatch(status.stdout, /^state: starting$/m);
      assertMatch(status.stdout, /^startupStage: /m);
      const killed = await k.waitFor(/child \d+ never became ready in 2 s .*killing it/, 10_000);
      assertMatch(
        killed,
        /never became ready in 2 s \(last start-up stage: test-only start-up delay \(KEELDNS_TEST_STARTUP_DELAY_MS\)/,
      );
      await k.waitFor(/was killed by SIGKILL: never became ready in 2 s/, 5000);
      await k.waitFor(/crash report written to/, 5000);
      const reports = [...Deno.readDirSync(k.dir)].filter((e) => e.name.startsWith("keeldns-crash-"));
      assert(reports.length >= 1, "a crash report beside the pid file");
      const report = await Deno.readTextFile(`${k.dir}/${reports[0].name}`);
      assertMatch(report, /^how: was killed by SIGKILL: never became ready in 2 s/m);
      assertMatch(report, /^ready: never \(last start-up stage: test-only start-up delay/m);
      // it is replaced, and the replacement is judged the same way
      const kills = () => k.lines.filter((l) => /never became ready in 2 s .*killing it/.test(l)).length;
      const until = performance.now() + 8000;
      while (kills() < 2 && performance.now() < until) await new Promise((r) => setTimeout(r, 100));
      assert(kills() >= 2, `the replacement was started and judged too:\n${k.lines.join("\n")}`);
      assert(!k.lines.some((l) => /hung: no heartbeat/.test(l)), "it beat all along: not a hang");
    } finally {
      await k.stop();
      await fake.close();
    }
  },
});

Deno.test({
  name:
    "a child frozen while starting (SIGSTOP) is reported as silent, then replaced at the start-up deadline",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const fake = await FakeUpstream.start();
    const k = await startSlowKeeldns(
      testConfig(fake.port, "[guardian]\nwatchdog-timeout = 1\nstartup-timeout = 6\n"),
      60_000,
    );
    try {
      await k.waitFor(/UDP transport:/, 10_000); // the child is running its start-up
      const status = await runKeeldns(["status", "-p", `${k.dir}/keeldns.pid`]);
      assertMatch(status.stdout, /^state: starting$/m);
      const pid = Number(/^childPid: (\d+)$/m.exec(status.stdout)?.[1]);
      assert(pid > 0, status.stdout);
      Deno.kill(pid, "SIGSTOP");
      const warned = await k.waitFor(
        new RegExp(`child ${pid} has not beaten for \\d+ ms while starting`),
        5000,
      );
      assertMatch(warned, /stage: test-only start-up delay/);
      assert(!k.lines.some((l) => /killing it/.test(l)), "silence alone does not kill a starting child");
      await k.waitFor(new RegExp(`child ${pid} never became ready in 6 s .*killing it`), 8000);
      await k.waitFor(new RegExp(`child ${pid} was killed by SIGKILL: never became ready`), 3000);
    } finally {
      await k.stop();
      await fake.close();
    }
  },
});
