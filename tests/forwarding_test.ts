/**
 * End to end: the real keeldns (guardian + child) forwarding to a fake upstream, over UDP and TCP.
 */
import { assert, assertEquals, assertGreater, assertLess } from "./helpers/assert.ts";
import { tcpQuery, udpQuery } from "./helpers/dns_client.ts";
import { FakeUpstream, soa } from "./helpers/fake_upstream.ts";
import { KeeldnsProcess, UDP_TRANSPORTS } from "./helpers/keeldns_process.ts";
import type { Answer } from "../dns/packet.ts";

const bigTxt: Answer[] = Array.from({ length: 30 }, (_, i) => ({
  name: "big.test",
  type: "TXT",
  ttl: 300,
  data: `${i}`.padEnd(100, "x"),
}));

function script(name: string, type: string) {
  if (name === "nx.test") return { rcode: "NXDOMAIN" as const, authorities: [soa("test", 3600, 60)] };
  if (name === "fail.test") return { rcode: "SERVFAIL" as const };
  if (name === "slow.test") return { delayMs: 300 };
  if (name === "big.test") return { answers: bigTxt };
  if (name === "tc.test") {
    return { truncateUdp: true, answers: bigTxt.map((a) => ({ ...a, name: "tc.test" })) };
  }
  if (name === "spoof.test") return { wrongIdFirst: true };
  if (name === "ttl.test") return { answers: [{ name, type: "A" as const, ttl: 100, data: "192.0.2.7" }] };
  if (type === "AAAA") return { answers: [{ name, type: "AAAA" as const, ttl: 300, data: "2001:db8::1" }] };
  if (type === "MX") {
    return {
      answers: [{ name, type: "MX" as const, ttl: 300, data: { preference: 10, exchange: "mx.test" } }],
    };
  }
  if (type === "TXT") return { answers: [{ name, type: "TXT" as const, ttl: 300, data: "hello world" }] };
  return {};
}

for (const transport of UDP_TRANSPORTS) {
  Deno.test({
    name: `keeldns forwards, caches and truncates like a resolver should (${transport} UDP)`,
    sanitizeOps: false,
    sanitizeResources: false,
    async fn(t) {
      const fake = await FakeUpstream.start(script);
      const k = await KeeldnsProcess.start(`
[server]
bind = ["127.0.0.1:{port}", "[::1]:{port}"]
upstream-timeout = 1500
udp-transport = "${transport}"
[[upstream]]
address = "udp://127.0.0.1:${fake.port}"
[cache]
size = 1000
[log]
level = "info"
`);
      try {
        await t.step(`the ${transport} UDP transport is the one serving`, async () => {
          await k.waitFor(new RegExp(`UDP transport: ${transport}`), 5000);
        });
        await t.step("A is forwarded, ID and question echoed", async () => {
          const r = await udpQuery(k.port, "a.test", "A", { id: 4242 });
          assertEquals(r.id, 4242);
          assertEquals(r.rcode, "NOERROR");
          assertEquals(r.questions[0].name, "a.test");
          assertEquals(r.answers.map((a) => a.data), ["192.0.2.1"]);
          assertEquals(fake.count("a.test"), 1);
        });
        await t.step("a cache hit does not reach the upstream", async () => {
          const r = await udpQuery(k.port, "a.test", "A", { id: 7 });
          assertEquals(r.id, 7);
          assertEquals(r.answers.map((a) => a.data), ["192.0.2.1"]);
          assertEquals(fake.count("a.test"), 1);
        });
        await t.step("the client's spelling of the name is echoed on a hit", async () => {
          const r = await udpQuery(k.port, "A.TeSt", "A");
          assertEquals(r.questions[0].name, "A.TeSt");
          assertEquals(fake.count("a.test"), 1);
        });
        await t.step("AAAA, MX and TXT are forwarded", async () => {
          assertEquals((await udpQuery(k.port, "v6.test", "AAAA")).answers[0].data, "2001:db8::1");
          const mx = (await udpQuery(k.port, "mail.test", "MX")).answers[0].data as { exchange: string };
          assertEquals(mx.exchange, "mx.test");
          const txt = (await udpQuery(k.port, "txt.test", "TXT")).answers[0].data as Uint8Array[];
          assertEquals(new TextDecoder().decode(txt[0]), "hello world");
        });
        await t.step("cached TTLs count down", async () => {
          const first = (await udpQuery(k.port, "ttl.test", "A")).answers[0].ttl!;
          await new Promise((r) => setTimeout(r, 2100));
          const second = (await udpQuery(k.port, "ttl.test", "A")).answers[0].ttl!;
          assertEquals(first, 100);
          assertLess(second, first - 1);
          assertGreater(second, 90);
          assertEquals(fake.count("ttl.test"), 1);
        });
        await t.step("NXDOMAIN passes through and is cached (RFC 2308)", async () => {
          const r = await udpQuery(k.port, "nx.test", "A");
          assertEquals(r.rcode, "NXDOMAIN");
          assertEquals(r.authorities[0].type, "SOA");
          assertEquals((await udpQuery(k.port, "nx.test", "A")).rcode, "NXDOMAIN");
          assertEquals(fake.count("nx.test"), 1);
        });
        await t.step("all upstreams failing gives SERVFAIL", async () => {
          assertEquals((await udpQuery(k.port, "fail.test", "A")).rcode, "SERVFAIL");
        });
        await t.step("TCP queries are answered and share the cache", async () => {
          const r = await tcpQuery(k.port, "a.test", "A");
          assertEquals(r.answers.map((a) => a.data), ["192.0.2.1"]);
          assertEquals(fake.count("a.test"), 1);
        });
        await t.step("a UDP answer too big for the client comes with TC; TCP gets it whole", async () => {
          const small = await udpQuery(k.port, "big.test", "TXT");
          assert(small.tc, "TC must be set for a 512-byte client");
          assertEquals(small.answers.length, 0);
          const edns = await udpQuery(k.port, "big.test", "TXT", { edns: 4096 });
          assert(edns.tc, "the answer exceeds 1232 bytes too, so still TC");
          const full = await tcpQuery(k.port, "big.test", "TXT");
          assert(!full.tc);
          assertEquals(full.answers.length, 30);
        });
        await t.step("a truncated upstream answer is retried over TCP", async () => {
          const full = await tcpQuery(k.port, "tc.test", "TXT");
          assertEquals(full.answers.length, 30);
          assertEquals(fake.log.filter((l) => l.startsWith("tc.test")), [
            "tc.test TXT udp",
            "tc.test TXT tcp",
          ]);
        });
        await t.step("a reply with the wrong ID is ignored, the right one accepted", async () => {
          const r = await udpQuery(k.port, "spoof.test", "A");
          assertEquals(r.answers.map((a) => a.data), ["192.0.2.1"]);
        });
        await t.step("concurrent identical misses share one upstream query", async () => {
          const answers = await Promise.all(
            Array.from({ length: 10 }, () => udpQuery(k.port, "slow.test", "A")),
          );
          assert(answers.every((a) => a.answers[0].data === "192.0.2.1"));
          assertEquals(fake.count("slow.test"), 1);
        });
        await t.step("IPv6 listeners answer over UDP and TCP", async () => {
          const udp = await udpQuery(k.port, "six.test", "AAAA", { host: "::1" });
          assertEquals(udp.answers.map((a) => a.data), ["2001:db8::1"]);
          const tcp = await tcpQuery(k.port, "six.test", "AAAA", { host: "::1" });
          assertEquals(tcp.answers.map((a) => a.data), ["2001:db8::1"]);
          assertEquals(fake.count("six.test"), 1, "both listeners share one cache");
        });
        await t.step("EDNS0 clients get an OPT record back, others do not", async () => {
          const withEdns = await udpQuery(k.port, "a.test", "A", { edns: 1232 });
          assertEquals(withEdns.additionals.filter((a) => a.type === "OPT").length, 1);
          const without = await udpQuery(k.port, "a.test", "A");
          assertEquals(without.additionals.length, 0);
        });
        await t.step("the same name with another type is its own cache entry", async () => {
          assertEquals((await udpQuery(k.port, "a.test", "AAAA")).answers[0].data, "2001:db8::1");
          assertEquals(fake.count("a.test"), 2);
          assertEquals((await udpQuery(k.port, "A.TEST", "AAAA")).answers[0].data, "2001:db8::1");
          assertEquals(fake.count("a.test"), 2);
        });
        await t.step("1,200 names through a 1,000-entry cache: the least recently used go", async () => {
          for (let i = 0; i < 1200; i++) {
            assertEquals((await udpQuery(k.port, `n${i}.churn.test`, "A")).rcode, "NOERROR");
          }
          await udpQuery(k.port, "n1199.churn.test", "A");
          assertEquals(fake.count("n1199.churn.test"), 1, "a recent name is still cached");
          const again = await udpQuery(k.port, "n0.churn.test", "A");
          assertEquals(again.answers.map((a) => a.data), ["192.0.2.1"]);
          assertEquals(fake.count("n0.churn.test"), 2, "the oldest name was evicted and asked again");
        });
      } finally {
        const status = await k.stop();
        await fake.close();
        assertEquals(status.code, 0);
      }
    },
  });
}

Deno.test({
  name: "a dead upstream does not hold up the answer of a live one",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dead = await FakeUpstream.start(() => ({ drop: true }));
    const live = await FakeUpstream.start(() => ({ delayMs: 50 }));
    const k = await KeeldnsProcess.start(`
[server]
bind = ["127.0.0.1:{port}"]
upstream-timeout = 4000
[[upstream]]
address = "udp://127.0.0.1:${dead.port}"
[[upstream]]
address = "tcp://127.0.0.1:${live.port}"
`);
    try {
      const started = performance.now();
      const r = await udpQuery(k.port, "race.test", "A");
      const elapsed = performance.now() - started;
      assertEquals(r.answers[0].data, "192.0.2.1");
      assertEquals(dead.count("race.test"), 1, "the dead server was asked too");
      assertEquals(live.log, ["race.test A tcp"]);
      // Far below the 4 s upstream timeout: the race did not wait for the dead server.
      assertLess(elapsed, 2000);
    } finally {
      await k.stop();
      await dead.close();
      await live.close();
    }
  },
});
