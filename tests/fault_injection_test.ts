/**
 * End to end: faults the guardian and child must ride out, each judged by what a user observes —
 * answers, exit codes, log lines.
 */
import { assert, assertEquals, assertLess, assertMatch } from "./helpers/assert.ts";
import { udpQuery } from "./helpers/dns_client.ts";
import { FakeUpstream } from "./helpers/fake_upstream.ts";
import { KeeldnsProcess, runKeeldns, withKeeldns } from "./helpers/keeldns_process.ts";

const config = (upstream: number, extra = "") => `
[server]
bind = ["127.0.0.1:{port}"]
upstream-timeout = 800
[[upstream]]
address = "udp://127.0.0.1:${upstream}"
[log]
level = "info"
${extra}`;

Deno.test({
  name:
    "a config file broken under a running service: children run on its last good version until it is fixed",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await withKeeldns((port) => config(port), async (k) => {
      const good = await Deno.readTextFile(k.configPath);
      const pidFile = `${k.dir}/keeldns.pid`;
      await Deno.writeTextFile(k.configPath, good.replace("[log]", "[log]\nlevle = 1"));
      const mark = k.lines.length;
      Deno.kill(k.childPid, "SIGKILL");
      await k.waitFor(
        /exited with code 78 \(invalid configuration\): invalid configuration: .*unknown key "levle"/,
        10_000,
        mark,
      );
      await k.waitFor(
        /keeldns\.toml is invalid now; serving its last good version \(validated .*\) until it is fixed/,
        5000,
        mark,
      );
      await k.waitFor(/child \d+ ready/, 10_000, mark);
      assertEquals((await udpQuery(k.port, "still-served.test", "A")).rcode, "NOERROR");
      const status = await runKeeldns(["status", "-p", pidFile]);
      assertMatch(status.stdout, /^servingLastGoodConfig: \d{4}-\d\d-\d\dT/m);
      assertMatch(status.stdout, /^lastCrash: .*invalid configuration/m);
      // Fixed: reload moves the service back onto the real file.
      await Deno.writeTextFile(k.configPath, good);
      const reload = await runKeeldns(["reload", "-p", pidFile]);
      assertEquals(reload.code, 0, reload.stderr);
      assertMatch(reload.stdout, /^servingLastGoodConfig: null$/m);
      await k.waitFor(/planned restart \(configuration fixed\)/, 5000, mark);
      assertEquals((await udpQuery(k.port, "back-on-file.test", "A")).rcode, "NOERROR");
    });
  },
});

Deno.test({
  name: "three crashes in a row: immediate, then growing delays",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await withKeeldns((port) => config(port), async (k) => {
      const mark = k.lines.length;
      for (let i = 0; i < 3; i++) {
        const from = k.lines.length;
        Deno.kill(k.childPid, "SIGKILL");
        await k.waitFor(/child \d+ ready/, 10_000, from);
      }
      const log = k.lines.slice(mark).join("\n");
      assert(!/restarting the child in \d+ ms \(failure 1 /.test(log), "the first restart is immediate");
      assertMatch(log, /restarting the child in 100 ms \(failure 2 in a row\)/);
      assertMatch(log, /restarting the child in 200 ms \(failure 3 in a row\)/);
      assertEquals((await udpQuery(k.port, "alive.test", "A")).rcode, "NOERROR");
    });
  },
});

Deno.test({
  name: "black-holed upstreams: SERVFAIL at the timeout, cached names still answered, the child stays",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    let holed = false;
    const fake = await FakeUpstream.start(() => holed ? { drop: true } : {});
    const k = await KeeldnsProcess.start(config(fake.port));
    const child = k.childPid;
    try {
      assertEquals((await udpQuery(k.port, "known.test", "A")).rcode, "NOERROR");
      holed = true;
      const started = performance.now();
      assertEquals((await udpQuery(k.port, "unknown.test", "A")).rcode, "SERVFAIL");
      const waited = performance.now() - started;
      assert(
        waited >= 700 && waited < 3000,
        `SERVFAIL after ${waited.toFixed(0)} ms, upstream-timeout is 800`,
      );
      assertEquals((await udpQuery(k.port, "known.test", "A")).answers[0].data, "192.0.2.1");
      assertEquals(k.childPid, child);
    } finally {
      await k.stop();
      await fake.close();
    }
  },
});

Deno.test({
  name: "SIGTERM during heavy load: clean exit 0 within the grace period, cache saved",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const fake = await FakeUpstream.start((name) => name.startsWith("slow") ? { delayMs: 200 } : {});
    const dir = await Deno.makeTempDir({ prefix: "keeldns-term-" });
    const k = await KeeldnsProcess.start(
      config(fake.port, `[cache]\npersist = true\nfile = "${dir}/k.cache"\ncheckpoint-time = 0\n`),
    );
    try {
      let stop = false;
      const flood = (async () => {
        let i = 0;
        while (!stop) {
          const batch = Array.from(
            { length: 50 },
            () =>
              udpQuery(k.port, `${i % 3 ? "" : "slow"}n${i++}.test`, "A", { timeoutMs: 500 }).catch(() =>
                null
              ),
          );
          await Promise.all(batch);
        }
      })();
      await new Promise((r) => setTimeout(r, 800));
      const started = performance.now();
      k.signal("SIGTERM");
      const status = await k.status();
      const took = performance.now() - started;
      stop = true;
      await flood;
      assertEquals(status.code, 0);
      assertLess(took, 8000);
      assert(!k.lines.some((l) => /did not stop in|killing it/.test(l)), "no forced kill");
      assertMatch(k.lines.join("\n"), /keeldns\.child: stopped: \{"received":\d+/);
      assert((await Deno.stat(`${dir}/k.cache`)).size > 100, "the cache was saved at the stop");
    } finally {
      await k.stop();
      await fake.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
