/**
 * End to end: `keeldns explain NAME [TYPE] [--client IP]` against the real program, forwarded by
 * the guardian to the child. Three fake upstreams race: one whose answer an `ignore-ip` rule
 * refuses (the fastest), one fast, one slow; a block list names a domain; a client group has a
 * rule of its own. The report must name the rule lines with their file:line (and the list line),
 * each server's verdict, the cache state, and the answer — and explaining must leave the cache as
 * it was (nothing stored, no hit counted).
 */
import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { udpQuery } from "./helpers/dns_client.ts";
import { FakeUpstream } from "./helpers/fake_upstream.ts";
import { freePort, KeeldnsProcess, runKeeldns, testConfig } from "./helpers/keeldns_process.ts";
import { ProbeTargets } from "./helpers/probe_targets.ts";
import type { ExplainReport } from "../resolver/explain.ts";

/** `keeldns explain ARGS --json` against `k`: the report (fails the test unless it exits 0). */
async function explainJson(k: KeeldnsProcess, ...args: string[]): Promise<ExplainReport> {
  const r = await runKeeldns(["explain", ...args, "--json", "-p", `${k.dir}/keeldns.pid`]);
  assertEquals(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
}

/** `keeldns cache stats` of `k` as numbers. */
async function cacheStats(k: KeeldnsProcess): Promise<Record<string, number>> {
  const r = await runKeeldns(["cache", "stats", "-p", `${k.dir}/keeldns.pid`]);
  assertEquals(r.code, 0, r.stderr);
  return Object.fromEntries(
    r.stdout.trim().split("\n").map((l) => l.split(": ")).map(([a, b]) => [a, Number(b)]),
  );
}

const KID = "127.0.0.9";

Deno.test({
  name: "explain: rules with file:line, the race's verdicts, the cache state, and the cache left alone",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const filtered = await FakeUpstream.start((name, type) =>
      type === "A" ? { answers: [{ name, type: "A", ttl: 300, data: "198.51.100.66" }] } : {}
    );
    const fast = await FakeUpstream.start((name, type) =>
      type === "A" ? { delayMs: 40, answers: [{ name, type: "A", ttl: 300, data: "192.0.2.1" }] } : {}
    );
    const slow = await FakeUpstream.start((name, type) =>
      type === "A" ? { delayMs: 600, answers: [{ name, type: "A", ttl: 300, data: "192.0.2.2" }] } : {}
    );
    const lists = await Deno.makeTempDir({ prefix: "keeldns-explain-" });
    await Deno.writeTextFile(`${lists}/ads.txt`, "# ads\nfoo.test\nads.example.test\n");
    const conf = [
      "bind 127.0.0.1:{port}",
      `server 127.0.0.1:${filtered.port}`,
      `server 127.0.0.1:${fast.port}`,
      `server 127.0.0.1:${slow.port}`,
      "log-level info",
      "ignore-ip 198.51.100.66",
      `domain-set -name ads -file ${lists}/ads.txt`,
      "address /domain-set:ads/#",
      "address /example.test/192.0.2.80",
      `client-rules ${KID}/32 -group kids`,
      "group-begin kids",
      "address /kid.test/#",
      "group-end",
      "",
    ].join("\n");
    const k = await KeeldnsProcess.start(conf, { name: "keeldns.conf" });
    const confPath = k.configPath;
    try {
      await t.step("an upstream answer: each server's verdict, the filtering rule, the winner", async () => {
        const r = await explainJson(k, "a.test");
        assertEquals(r.question, { name: "a.test", type: "A" });
        assertEquals(r.clientGroup, { index: 0, name: "default" });
        assertEquals(r.cache.state, "absent");
        assertEquals(r.rules.matched, []);
        assertEquals(r.rules.verdict, "upstream");
        const servers = r.upstream!.servers;
        const of = (port: number) => servers.find((s) => s.server.endsWith(`:${port}`))!;
        assertEquals(servers.length, 3, JSON.stringify(servers));
        assertEquals(of(filtered.port).verdict, "filtered");
        assertEquals(of(filtered.port).addresses, ["198.51.100.66"]);
        assertEquals(of(filtered.port).ipRules?.map((x) => [x.text, x.source.file, x.source.line]), [
          ["ignore-ip 198.51.100.66", confPath, 6],
        ]);
        assertEquals(of(fast.port).verdict, "accepted");
        assertEquals(of(fast.port).chosen, true);
        assert(of(fast.port).rttMs >= 30, `fast took ${of(fast.port).rttMs} ms`);
        assertEquals(of(slow.port).verdict, "outrun");
        assertEquals(of(slow.port).chosen, false);
        assertEquals(r.upstream!.answeredBy, `udp://127.0.0.1:${fast.port}`);
        assertEquals(r.answer.source, "upstream");
        assertEquals(r.answer.records.map((x) => x.data), ["192.0.2.1"]);
      });
      await t.step("explaining stored nothing and counted nothing in the cache", async () => {
        await explainJson(k, "a.test");
        const s = await cacheStats(k);
        assertEquals([s.entries, s.hits, s.misses], [0, 0, 0], JSON.stringify(s));
      });
      await t.step(
        "after a real query: the cache is fresh with its TTL, and still only looked at",
        async () => {
          assertEquals((await udpQuery(k.port, "a.test", "A")).rcode, "NOERROR");
          const before = await cacheStats(k);
          const r = await explainJson(k, "a.test", "A");
          assertEquals(r.cache.state, "fresh");
          // smartdns.conf's rr-ttl-min is SmartDNS's 600 s: the fake's 300 s is raised to it.
          assert(
            "ttlLeft" in r.cache && r.cache.ttlLeft! > 550 && r.cache.ttlLeft! <= 600,
            JSON.stringify(r.cache),
          );
          assertEquals(r.cache.wouldServe, true);
          assertEquals(r.answer.source, "cache");
          assertEquals(r.answer.records.map((x) => x.data), ["192.0.2.1"]);
          assertEquals(r.resolvedNow?.source, "upstream");
          const after = await cacheStats(k);
          assertEquals([after.entries, after.hits, after.misses], [
            before.entries,
            before.hits,
            before.misses,
          ]);
        },
      );
      await t.step("a block list: the rule line and the list line that names the domain", async () => {
        const r = await explainJson(k, "tracker.ads.example.test");
        assertEquals(r.rules.verdict, "blocked");
        assertEquals(r.upstream, undefined);
        assertEquals(r.answer.source, "blocked");
        assertEquals(r.answer.rcode, "NXDOMAIN");
        const lines = r.rules.matched.map((m) => [m.text, m.source.line, m.rule === r.rules.winner]);
        assertEquals(lines, [["address /domain-set:ads/#", 8, true], [
          "address /example.test/192.0.2.80",
          9,
          false,
        ]]);
        const block = r.rules.matched.find((m) => m.rule === r.rules.winner)!;
        assertEquals(block.source.file, confPath);
        assertEquals(block.listLine, {
          file: `${lists}/ads.txt`,
          line: 3,
          domain: "ads.example.test",
          kind: "block",
        });
        assertEquals(block.decides.includes("address (A)"), true, JSON.stringify(block));
      });
      await t.step("--client picks the client group, whose rules apply", async () => {
        const kid = await explainJson(k, "kid.test", "A", "--client", KID);
        assertEquals(kid.clientGroup, { index: 1, name: "kids" });
        assertEquals(kid.rules.verdict, "blocked");
        assertEquals(kid.rules.matched.map((m) => [m.text, m.source.line]), [["address /kid.test/#", 12]]);
        const other = await explainJson(k, "kid.test", "A", "--client", "127.0.0.10");
        assertEquals(other.clientGroup.name, "default");
        assertEquals(other.rules.verdict, "upstream");
      });
      await t.step("the text form names the same facts; bad input is refused plainly", async () => {
        const r = await runKeeldns(["explain", "tracker.ads.example.test", "-p", `${k.dir}/keeldns.pid`]);
        assertEquals(r.code, 0, r.stderr);
        assertMatch(r.stdout, /^rule: address \/domain-set:ads\/# at .*keeldns\.conf:8(:\d+)? \[wins\]$/m);
        assertMatch(r.stdout, /^ {2}listed at .*ads\.txt:3 as ads\.example\.test$/m);
        assertMatch(r.stdout, /^cache: absent$/m);
        const up = await runKeeldns(["explain", "b.test", "-p", `${k.dir}/keeldns.pid`]);
        assertMatch(
          up.stdout,
          /server udp:\/\/127\.0\.0\.1:\d+: filtered, [\d.]+ ms, NOERROR, 198\.51\.100\.66, .*by ignore-ip 198\.51\.100\.66 at .*keeldns\.conf:6/,
        );
        assertMatch(up.stdout, /: accepted, [\d.]+ ms, NOERROR, 192\.0\.2\.1 \[used\]$/m);
        const bad = await runKeeldns(["explain", "a.test", "NOPE", "-p", `${k.dir}/keeldns.pid`]);
        assertEquals(bad.code, 1);
        assertMatch(bad.stderr, /unknown record type "NOPE"|NOPE/);
        const badClient = await runKeeldns([
          "explain",
          "a.test",
          "--client",
          "x",
          "-p",
          `${k.dir}/keeldns.pid`,
        ]);
        assertEquals(badClient.code, 1);
        assertMatch(badClient.stderr, /--client "x" is not an IP address/);
      });
    } finally {
      await k.stop();
      await new Promise((r) => setTimeout(r, 700)); // the slow fake's last answers go out before it closes
      await Promise.all([filtered.close(), fast.close(), slow.close()]);
      await Deno.remove(lists, { recursive: true });
    }
  },
});

Deno.test({
  name: "explain: the speed check's result per address, and a stale entry served at the reply TTL",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const probePort = await freePort();
    // 127.0.0.3 completes the probe's handshake, 127.0.0.2 drops it in silence.
    const targets = await ProbeTargets.start(probePort, ["127.0.0.3"], ["127.0.0.2"]);
    const fake = await FakeUpstream.start((name, type) =>
      type !== "A"
        ? {}
        : name === "short.test"
        ? { answers: [{ name, type: "A", ttl: 1, data: "192.0.2.9" }] }
        : {
          answers: [
            { name, type: "A", ttl: 300, data: "127.0.0.2" },
            { name, type: "A", ttl: 300, data: "127.0.0.3" },
          ],
        }
    );
    const config = testConfig(
      fake.port,
      `[cache]\nrr-ttl-min = 0\nserve-expired = true\nserve-expired-reply-ttl = 5\n` +
        `[rules]\nspeed-check-mode = "tcp:${probePort}"\nresponse-mode = "fastest-ip"\n`,
    );
    const k = await KeeldnsProcess.start(config);
    try {
      await t.step("each probed address with its RTT, the silent one without", async () => {
        const r = await explainJson(k, "two.test");
        assertEquals(r.speed?.probes, `tcp:${probePort}`);
        assertEquals(r.speed?.responseMode, "fastest-ip");
        const results = Object.fromEntries(r.speed!.results.map((p) => [p.ip, p.rttMs]));
        assertEquals(Object.keys(results).sort(), ["127.0.0.2", "127.0.0.3"]);
        assertEquals(results["127.0.0.2"], null, "the silent address answered no probe");
        assert(typeof results["127.0.0.3"] === "number", JSON.stringify(results));
        assertEquals(r.answer.records.map((x) => x.data), ["127.0.0.3"], "fastest-ip: the fastest alone");
        assertEquals((await cacheStats(k)).entries, 0, "nothing stored, the sorted answer neither");
      });
      await t.step("an expired entry within serve-expired: stale, served at the reply TTL", async () => {
        assertEquals((await udpQuery(k.port, "short.test", "A")).rcode, "NOERROR");
        await new Promise((r) => setTimeout(r, 1300));
        const r = await explainJson(k, "short.test");
        assertEquals(r.cache.state, "stale");
        assert("ttlLeft" in r.cache && r.cache.ttlLeft! < 0, JSON.stringify(r.cache));
        assertEquals(r.cache.wouldServe, true);
        assertEquals(r.answer.source, "stale");
        assertEquals(r.answer.records.map((x) => [x.data, x.ttl]), [["192.0.2.9", 5]]);
        const s = await cacheStats(k);
        assertEquals(s.hits, 0, "stale hits count as hits: none was counted");
      });
    } finally {
      await k.stop();
      await fake.close();
      await targets.stop();
    }
  },
});
