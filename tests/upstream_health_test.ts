/**
 * End to end: upstream health with the real program and two fake upstreams, one black-holed. After
 * two unanswered exchanges the dead one is set aside (no more client questions reach it, only
 * probes) and `keeldns status` shows it down; once it answers again a probe brings it back up.
 */
import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { udpQuery } from "./helpers/dns_client.ts";
import { FakeUpstream } from "./helpers/fake_upstream.ts";
import { KeeldnsProcess, runKeeldns } from "./helpers/keeldns_process.ts";
import { controlPathFor, sendControl } from "../ops/control_channel.ts";
import type { UpstreamHealthReport } from "../upstream/health.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Client questions (not probes) the fake received. */
const clientQuestions = (fake: FakeUpstream) => fake.log.filter((l) => /^q\d+\.health\.test /.test(l)).length;

/** Polls the guardian until `address` has `state` in its upstream list; returns the list (bounded). */
async function waitForState(
  k: KeeldnsProcess,
  address: string,
  state: "up" | "down",
  timeoutMs: number,
): Promise<UpstreamHealthReport[]> {
  const path = controlPathFor(`${k.dir}/keeldns.pid`);
  const deadline = Date.now() + timeoutMs;
  let last: UpstreamHealthReport[] = [];
  while (Date.now() < deadline) {
    const reply = await sendControl(path, "status", 1000).catch(() => null);
    last = (reply?.status?.upstreams ?? []) as UpstreamHealthReport[];
    if (last.find((u) => u.address === address)?.state === state) return last;
    await sleep(200);
  }
  throw new Error(`${address} not ${state} within ${timeoutMs} ms: ${JSON.stringify(last)}`);
}

Deno.test({
  name: "a black-holed upstream is set aside after two failures, shown down, and comes back up",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    let dead = true;
    const good = await FakeUpstream.start();
    const hole = await FakeUpstream.start(() => dead ? { drop: true } : {});
    const goodAddress = `udp://127.0.0.1:${good.port}`;
    const holeAddress = `udp://127.0.0.1:${hole.port}`;
    const k = await KeeldnsProcess.start(
      `[server]\nbind = ["127.0.0.1:{port}"]\nupstream-timeout = 500\n` +
        `[[upstream]]\naddress = "${goodAddress}"\n[[upstream]]\naddress = "${holeAddress}"\n` +
        `[log]\nlevel = "info"\n`,
    );
    try {
      // Two questions: both answered at once by the good server; the silent one times out twice.
      for (let i = 1; i <= 2; i++) {
        const started = performance.now();
        const r = await udpQuery(k.port, `q${i}.health.test`, "A", { timeoutMs: 3000 });
        assertEquals(r.rcode, "NOERROR");
        assert(performance.now() - started < 400, "the answer does not wait for the dead server");
      }
      assertEquals(clientQuestions(hole), 2);
      const list = await waitForState(k, holeAddress, "down", 5000);
      assertEquals(list.map((u) => u.address), [goodAddress, holeAddress]);
      const goodReport = list[0];
      assertEquals(goodReport.state, "up");
      assert(goodReport.samples >= 2 && goodReport.rttP50Ms > 0, JSON.stringify(goodReport));
      await k.waitFor(/is down; probing it/, 2000);

      // Set aside: further questions reach only the good server.
      for (let i = 3; i <= 6; i++) {
        assertEquals(
          (await udpQuery(k.port, `q${i}.health.test`, "A", { timeoutMs: 3000 })).rcode,
          "NOERROR",
        );
      }
      assertEquals(clientQuestions(hole), 2, "the dead server's query log stops growing");
      assertEquals(clientQuestions(good), 6);

      // `keeldns status` (the real command) shows it.
      const status = await runKeeldns(["status", "-p", `${k.dir}/keeldns.pid`]);
      assertEquals(status.code, 0, status.stderr);
      assertMatch(
        status.stdout,
        new RegExp(`^upstream ${holeAddress}: down, .*failures \\(2 in a row\\)`, "m"),
      );
      assertMatch(
        status.stdout,
        new RegExp(`^upstream ${goodAddress}: up, rtt p50 [\\d.]+ ms, p95 [\\d.]+ ms`, "m"),
      );

      // It answers again: a probe (every 2 s, backing off) brings it back within a few seconds.
      dead = false;
      const back = performance.now();
      await waitForState(k, holeAddress, "up", 12_000);
      const upAfter = Math.round(performance.now() - back);
      assert(hole.log.some((l) => !/health\.test/.test(l)), "it was probed");
      for (let i = 7; i <= 8; i++) {
        assertEquals(
          (await udpQuery(k.port, `q${i}.health.test`, "A", { timeoutMs: 3000 })).rcode,
          "NOERROR",
        );
      }
      assertEquals(clientQuestions(hole), 4, "asked again once up");
      console.log(`back up ${upAfter} ms after it answered again`);
    } finally {
      await k.stop();
      await good.close();
      await hole.close();
    }
  },
});

Deno.test({
  name: "smartdns.conf `server … -fallback`: asked only when the primary gives nothing usable",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const primary = await FakeUpstream.start((name) =>
      name.startsWith("broken.") ? { rcode: "SERVFAIL" } : {
        answers: [{ name, type: "A", ttl: 60, data: "192.0.2.1" }],
      }
    );
    const fallback = await FakeUpstream.start((name) => ({
      answers: [{ name, type: "A", ttl: 60, data: "192.0.2.9" }],
    }));
    const k = await KeeldnsProcess.start(
      `bind 127.0.0.1:{port}\nserver 127.0.0.1:${primary.port}\n` +
        `server 127.0.0.1:${fallback.port} -fallback\nspeed-check-mode none\n`,
      { name: "smartdns.conf" },
    );
    try {
      for (let i = 0; i < 3; i++) {
        const r = await udpQuery(k.port, `ok${i}.fallback.test`, "A");
        assertEquals(r.answers.map((a) => a.data), ["192.0.2.1"]);
      }
      assertEquals(
        fallback.log.filter((l) => l.includes("fallback.test")).length,
        0,
        "not asked while the primary answers",
      );
      const r = await udpQuery(k.port, "broken.fallback.test", "A", { timeoutMs: 3000 });
      assertEquals(r.answers.map((a) => a.data), ["192.0.2.9"]);
      assertEquals(fallback.count("broken.fallback.test"), 1);
    } finally {
      await k.stop();
      await primary.close();
      await fallback.close();
    }
  },
});
