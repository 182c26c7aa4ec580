/**
 * End to end: the guardian's control socket — status, reload, restart without losing a query or
 * the cache, stop — and the crash reports it keeps next to the pid file.
 */
import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { udpQuery } from "./helpers/dns_client.ts";
import { FakeUpstream } from "./helpers/fake_upstream.ts";
import { KeeldnsProcess, runKeeldns, testConfig, withKeeldns } from "./helpers/keeldns_process.ts";

const config = testConfig;

/** Sends `rate` queries a second for `ms` and counts the answers (no retries: a lost one is lost). */
async function steadyLoad(
  port: number,
  rate: number,
  ms: number,
  names: string[],
): Promise<{ sent: number; answered: number }> {
  const pending: Promise<boolean>[] = [];
  const started = performance.now();
  let i = 0;
  while (performance.now() - started < ms) {
    pending.push(
      udpQuery(port, names[i++ % names.length], "A", { timeoutMs: 3000 }).then(
        (r) => r.rcode === "NOERROR",
        () => false,
      ),
    );
    await new Promise((r) => setTimeout(r, 1000 / rate));
  }
  const results = await Promise.all(pending);
  return { sent: results.length, answered: results.filter(Boolean).length };
}

Deno.test({
  name: "status, reload, restart (no query lost, cache kept) and stop over the control socket",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const fake = await FakeUpstream.start();
    const k = await KeeldnsProcess.start(config(fake.port));
    const pidFile = `${k.dir}/keeldns.pid`;
    try {
      await t.step("status names the child, its listeners and the config", async () => {
        const r = await runKeeldns(["status", "-p", pidFile]);
        assertEquals(r.code, 0, r.stderr);
        assertMatch(r.stdout, /^state: running$/m);
        assertMatch(r.stdout, new RegExp(`^childPid: ${k.childPid}$`, "m"));
        assertMatch(r.stdout, new RegExp(`^guardianPid: ${k.pid}$`, "m"));
        assertMatch(r.stdout, new RegExp(`^config: ${k.configPath}$`, "m"));
        assertMatch(r.stdout, new RegExp(`udp://127.0.0.1:${k.port}`));
        const mode = (await Deno.stat(`${k.dir}/keeldns.sock`)).mode! & 0o777;
        assertEquals(mode, 0o600);
      });
      await t.step("reload refuses a bad file with its position and keeps serving", async () => {
        const good = await Deno.readTextFile(k.configPath);
        await Deno.writeTextFile(k.configPath, good + "\n[cache]\nsize = -5\n");
        const r = await runKeeldns(["reload", "-p", pidFile]);
        assertEquals(r.code, 1);
        assertMatch(r.stderr, new RegExp(`${k.configPath}:\\d+:1: size must be an integer in -1\\.\\.`));
        await Deno.writeTextFile(k.configPath, good);
        assertEquals((await runKeeldns(["reload", "-p", pidFile])).code, 0);
        assertEquals((await udpQuery(k.port, "after-reload.test", "A")).rcode, "NOERROR");
      });
      await t.step("restart replaces the child with no query lost and the cache kept", async () => {
        const names = Array.from({ length: 20 }, (_, i) => `warm${i}.test`);
        for (const name of names) await udpQuery(k.port, name, "A");
        const asked = fake.log.length;
        const before = k.childPid;
        const mark = k.lines.length;
        const load = steadyLoad(k.port, 400, 2500, names);
        await new Promise((r) => setTimeout(r, 500));
        const r = await runKeeldns(["restart", "-p", pidFile]);
        assertEquals(r.code, 0, r.stderr);
        const { sent, answered } = await load;
        const [, taken] = await k.waitFor(
          /cache: (\d+) entries taken over from the previous child/,
          5000,
          mark,
        );
        assert(Number(taken) >= 20, `only ${taken} entries taken over`);
        assert(k.childPid !== before, "a new child serves");
        assertEquals(answered, sent, `${sent - answered} of ${sent} queries lost during the restart`);
        assertEquals(fake.log.length, asked, "every answer came from the cache, old or new child");
        assertMatch(r.stdout, new RegExp(`^childPid: ${k.childPid}$`, "m"));
      });
      await t.step("stop ends guardian and child with exit 0", async () => {
        const child = k.childPid;
        assertEquals((await runKeeldns(["stop", "-p", pidFile])).code, 0);
        assertEquals((await k.status()).code, 0);
        await new Promise((r) => setTimeout(r, 100));
        assert(!(await Deno.stat(`/proc/${child}`).then(() => true, () => false)), "child gone");
        const gone = await runKeeldns(["status", "-p", pidFile]);
        assertEquals(gone.code, 1);
        assertMatch(gone.stderr, /no guardian answers/);
      });
    } finally {
      await k.stop();
      await fake.close();
    }
  },
});

Deno.test({
  name: "a second guardian on the same control socket refuses to start",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await withKeeldns((port) => config(port), async (k) => {
      const r = await runKeeldns(["run", "-c", k.configPath, "--control", `${k.dir}/keeldns.sock`]);
      assertEquals(r.code, 1);
      assertMatch(r.stderr, /another keeldns answers on .*keeldns\.sock/);
      assertEquals((await udpQuery(k.port, "still.test", "A")).rcode, "NOERROR");
    });
  },
});

Deno.test({
  name: "every dead child leaves a crash report beside the pid file; only the newest are kept",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await withKeeldns((port) => config(port, "[guardian]\ncrash-files = 2\n"), async (k) => {
      for (let i = 0; i < 3; i++) {
        const mark = k.lines.length;
        const victim = k.childPid;
        Deno.kill(victim, "SIGKILL");
        await k.waitFor(/crash report written to/, 5000, mark);
        await k.waitFor(/child \d+ ready/, 5000, mark);
        await new Promise((r) => setTimeout(r, 1100)); // served long enough to be a first failure
      }
      const reports = [...Deno.readDirSync(k.dir)].map((e) => e.name).filter((n) =>
        n.startsWith("keeldns-crash-")
      );
      assertEquals(reports.length, 2);
      const text = await Deno.readTextFile(`${k.dir}/${reports.sort().at(-1)}`);
      assertMatch(text, /^how: was killed by SIGKILL$/m);
      assertMatch(text, /^restarts before this one: 2$/m);
      assertMatch(text, /last \d+ lines of the child's output:\n[\s\S]*serving on/);
    });
  },
});

Deno.test({
  name: "a child over max-memory is replaced by a planned restart; the service goes on",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await withKeeldns((port) => config(port, '[guardian]\nmax-memory = "8m"\n'), async (k) => {
      const first = k.childPid;
      const mark = k.lines.length;
      await k.waitFor(/planned restart \(child RSS [\d.]+ MB is over max-memory 8\.0 MB\)/, 5000, mark);
      await k.waitFor(new RegExp(`child ${first} drained and stopped`), 15_000, mark);
      assert(k.childPid !== first);
      assertEquals((await udpQuery(k.port, "mem.test", "A")).rcode, "NOERROR");
      assert(!k.lines.slice(mark).some((l) => /exited with code|was killed by/.test(l)), "not a crash");
    });
  },
});
