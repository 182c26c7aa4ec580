/**
 * End to end: `keeldns metrics` (the Prometheus text the admin listener serves as /metrics) and
 * `keeldns metrics --json` (the dashboard's snapshot) from the real program after real queries —
 * answered upstream, from the cache, blocked — checked with `promtool check metrics`; the counts
 * kept across a planned restart, and across a kill -9 of the child up to its last report.
 */
import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { udpQuery } from "./helpers/dns_client.ts";
import { FakeUpstream } from "./helpers/fake_upstream.ts";
import { KeeldnsProcess, runKeeldns, skipWithout, testConfig } from "./helpers/keeldns_process.ts";
import { promtoolCheck } from "./helpers/promtool.ts";

const RULES = '[[rule]]\ndomains = ["ads.test"]\naddress = "#"\n';

/** `keeldns metrics ARGS` against `k`; fails the test unless it exits 0. */
async function metrics(k: KeeldnsProcess, ...args: string[]): Promise<string> {
  const r = await runKeeldns(["metrics", ...args, "-p", `${k.dir}/keeldns.pid`]);
  assertEquals(r.code, 0, r.stderr);
  return r.stdout;
}

/** The value of the sample `series` (name and labels exactly as written), or undefined. */
function value(text: string, series: string): number | undefined {
  for (const line of text.split("\n")) {
    if (line.startsWith(series + " ")) return Number(line.slice(series.length + 1));
  }
  return undefined;
}

const queries = (type: string, reason: string, rcode = "NOERROR") =>
  `keeldns_queries_total{type="${type}",reason="${reason}",rcode="${rcode}"}`;

/** Sends the same mix each time: 3 upstream answers, 3 cache hits, 2 blocked, 1 AAAA upstream. */
async function mix(k: KeeldnsProcess, round: number): Promise<void> {
  for (const name of [`a${round}.test`, `b${round}.test`, `c${round}.test`]) {
    assertEquals((await udpQuery(k.port, name, "A")).rcode, "NOERROR");
  }
  for (const name of [`a${round}.test`, `a${round}.test`, `b${round}.test`]) {
    await udpQuery(k.port, name, "A");
  }
  for (let i = 0; i < 2; i++) assertEquals((await udpQuery(k.port, "ads.test", "A")).rcode, "NXDOMAIN");
  await udpQuery(k.port, `a${round}.test`, "AAAA");
}

Deno.test({
  name:
    "keeldns metrics: promtool accepts the text; counts, histograms, upstreams and top lists follow real queries",
  ignore: skipWithout("promtool"),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const fake = await FakeUpstream.start();
    const k = await KeeldnsProcess.start(testConfig(fake.port, RULES));
    try {
      await mix(k, 1);
      const text = await metrics(k);
      await t.step("promtool check metrics finds nothing wrong", async () => {
        const check = await promtoolCheck(text);
        assertEquals(check.code, 0, check.output);
        assertEquals(check.output, "");
      });
      await t.step("queries by type, reason and rcode", () => {
        assertEquals(value(text, queries("A", "upstream")), 3);
        assertEquals(value(text, queries("A", "cache")), 3);
        assertEquals(value(text, queries("A", "blocked", "NXDOMAIN")), 2);
        assertEquals(value(text, queries("AAAA", "upstream")), 1);
        assertEquals(value(text, "keeldns_answers_sent_total"), 9);
      });
      await t.step("duration histograms, cache, upstream and build info", () => {
        assertEquals(value(text, 'keeldns_request_duration_seconds_count{reason="cache"}'), 3);
        assertEquals(value(text, 'keeldns_request_duration_seconds_bucket{reason="cache",le="+Inf"}'), 3);
        assert(value(text, 'keeldns_request_duration_seconds_sum{reason="upstream"}')! > 0);
        // a1, b1 and c1 A (the fake answers AAAA empty, without an SOA: not cached).
        assertEquals(value(text, "keeldns_cache_entries"), 3);
        const upstream = `udp://127.0.0.1:${fake.port}`;
        assertEquals(value(text, `keeldns_upstream_up{upstream="${upstream}"}`), 1);
        assertEquals(value(text, `keeldns_upstream_answers_total{upstream="${upstream}"}`), 4);
        assertEquals(
          value(text, `keeldns_upstream_answer_duration_seconds_count{upstream="${upstream}"}`),
          4,
        );
        assertMatch(
          text,
          /^keeldns_build_info\{version="[^"]+",deno="[^"]+",target="[^"]+",kind="source"\} 1$/m,
        );
      });
      await t.step("--json: the dashboard's snapshot with series and top lists", async () => {
        const s = JSON.parse(await metrics(k, "--json"));
        assertEquals(s.queries, 9);
        assertEquals(s.byReason, { upstream: 4, cache: 3, blocked: 2 });
        assertEquals(s.top.names[0], { key: "a1.test", count: 4, error: 0 });
        assertEquals(s.top.blocked, [{ key: "ads.test", count: 2, error: 0 }]);
        assertEquals(s.top.clients.map((c: { key: string }) => c.key), ["127.0.0.1"]);
        assertEquals(s.series.fine.values.queries.reduce((a: number, b: number) => a + b, 0), 9);
        assertEquals(s.series.fine.values.queries.length, 360);
        assertEquals(s.upstreams[0].health.state, "up");
        assertEquals(s.cache.entries, 3);
      });
    } finally {
      await k.stop();
      await fake.close();
    }
  },
});

Deno.test({
  name:
    "keeldns metrics: the counts go on across a planned restart, and across a kill -9 up to the last report",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const fake = await FakeUpstream.start();
    const k = await KeeldnsProcess.start(testConfig(fake.port, RULES));
    const pidFile = `${k.dir}/keeldns.pid`;
    try {
      await mix(k, 1);
      await t.step("a planned restart hands the counts to the new child, which adds its own", async () => {
        const before = k.childPid;
        const mark = k.lines.length;
        const r = await runKeeldns(["restart", "-p", pidFile]);
        assertEquals(r.code, 0, r.stderr);
        await k.waitFor(new RegExp(`child ${before} drained and stopped`), 10_000, mark);
        assert(k.childPid !== before);
        // The old child's last report reaches the new one once the old has exited.
        let text = "";
        for (let i = 0; i < 50 && value(text, queries("A", "cache")) !== 3; i++) {
          text = await metrics(k);
          if (value(text, queries("A", "cache")) !== 3) await new Promise((r) => setTimeout(r, 100));
        }
        assertEquals(value(text, queries("A", "cache")), 3, text);
        assertEquals(value(text, queries("A", "blocked", "NXDOMAIN")), 2);
        assertEquals(value(text, "keeldns_answers_sent_total"), 9);
        await mix(k, 2);
        text = await metrics(k);
        assertEquals(value(text, queries("A", "upstream")), 6);
        assertEquals(value(text, queries("A", "blocked", "NXDOMAIN")), 4);
        assertEquals(value(text, "keeldns_answers_sent_total"), 18);
        const s = JSON.parse(await metrics(k, "--json"));
        assertEquals(s.top.blocked, [{ key: "ads.test", count: 4, error: 0 }]);
      });
      await t.step("kill -9: the new child starts from the dead one's last report", async () => {
        // Wait until the guardian holds a report with all 18 answers (one comes every 10 s).
        for (let i = 0; i < 150; i++) {
          const status = await runKeeldns(["status", "-p", pidFile]);
          const stats = JSON.parse(/^childStats: (.*)$/m.exec(status.stdout)?.[1] ?? "{}");
          if (stats.answered >= 9) break; // this child's own 9; its report holds the carried 9 too
          await new Promise((r) => setTimeout(r, 100));
        }
        const dead = k.childPid;
        const mark = k.lines.length;
        Deno.kill(dead, "SIGKILL");
        await k.waitFor(/child \d+ ready/, 10_000, mark);
        let text = "";
        for (let i = 0; i < 50 && value(text, "keeldns_answers_sent_total") !== 18; i++) {
          text = await metrics(k);
          if (value(text, "keeldns_answers_sent_total") !== 18) await new Promise((r) => setTimeout(r, 100));
        }
        assertEquals(value(text, "keeldns_answers_sent_total"), 18, text);
        assertEquals(value(text, queries("A", "upstream")), 6);
        assertEquals(value(text, queries("A", "cache")), 6);
      });
    } finally {
      await k.stop();
      await fake.close();
    }
  },
});

Deno.test({
  name: "keeldns metrics with [metrics] enable = false says they are off (exit 1)",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const fake = await FakeUpstream.start();
    const k = await KeeldnsProcess.start(testConfig(fake.port, "[metrics]\nenable = false\n"));
    try {
      await udpQuery(k.port, "a.test", "A");
      const r = await runKeeldns(["metrics", "-p", `${k.dir}/keeldns.pid`]);
      assertEquals(r.code, 1);
      assertMatch(r.stderr, /keeldns metrics: metrics are off \(\[metrics\] enable = false\)/);
    } finally {
      await k.stop();
      await fake.close();
    }
  },
});
