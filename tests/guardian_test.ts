/**
 * End to end: the guardian keeps the service up and stops cleanly.
 */
import { assert, assertEquals, assertLess, assertMatch } from "./helpers/assert.ts";
import { udpQuery } from "./helpers/dns_client.ts";
import { FakeUpstream } from "./helpers/fake_upstream.ts";
import {
  freePort,
  KeeldnsProcess,
  processExists,
  runKeeldns,
  testConfig,
  withKeeldns,
} from "./helpers/keeldns_process.ts";

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
