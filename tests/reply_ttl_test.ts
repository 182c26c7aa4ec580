/**
 * End to end: `rr-ttl-reply-max` caps the TTL clients see, on cached and local answers, while the
 * cache keeps the upstream's TTL: the entry is still served from the cache after the capped TTL
 * has run out, without asking upstream again. `cache-mem-size` sets the cache's byte budget.
 */
import { assertEquals } from "./helpers/assert.ts";
import { udpQuery } from "./helpers/dns_client.ts";
import { FakeUpstream } from "./helpers/fake_upstream.ts";
import { KeeldnsProcess } from "./helpers/keeldns_process.ts";

Deno.test({
  name: "rr-ttl-reply-max: clients see the capped TTL; the cache still serves the entry past it",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const fake = await FakeUpstream.start(() => ({
      answers: [{ name: "far.test", type: "A", ttl: 300, data: "192.0.2.44" }],
    }));
    const k = await KeeldnsProcess.start(
      `bind 127.0.0.1:{port}
server 127.0.0.1:${fake.port}
rr-ttl-min 0
rr-ttl-reply-max 1
cache-mem-size 1m
address /local.test/192.0.2.9
`,
      { name: "smartdns.conf" },
    );
    try {
      const first = await udpQuery(k.port, "far.test", "A");
      assertEquals([first.answers[0].data, first.answers[0].ttl], ["192.0.2.44", 1]);
      assertEquals(fake.count("far.test"), 1);
      // Past the TTL the client was given: a lifetime change would ask upstream again.
      await new Promise((r) => setTimeout(r, 2200));
      const again = await udpQuery(k.port, "far.test", "A");
      assertEquals([again.answers[0].data, again.answers[0].ttl], ["192.0.2.44", 1]);
      assertEquals(fake.count("far.test"), 1, "served from the cache, not asked again");
      // A local answer (60 s with rr-ttl-min 0) is capped the same way.
      const local = await udpQuery(k.port, "local.test", "A");
      assertEquals([local.answers[0].data, local.answers[0].ttl], ["192.0.2.9", 1]);
    } finally {
      await k.stop();
      await fake.close();
    }
  },
});

Deno.test({
  name: "without rr-ttl-reply-max the cached TTL counts down from the upstream's",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const fake = await FakeUpstream.start(() => ({
      answers: [{ name: "far.test", type: "A", ttl: 300, data: "192.0.2.44" }],
    }));
    const k = await KeeldnsProcess.start(
      `[server]
bind = ["127.0.0.1:{port}"]
[[upstream]]
address = "udp://127.0.0.1:${fake.port}"
[cache]
mem-size = "1m"
`,
    );
    try {
      const ttl = (await udpQuery(k.port, "far.test", "A")).answers[0].ttl ?? 0;
      assertEquals(ttl > 290 && ttl <= 300, true, `ttl ${ttl}`);
      await udpQuery(k.port, "far.test", "A");
      assertEquals(fake.count("far.test"), 1, "the mem-size cache serves the second query");
    } finally {
      await k.stop();
      await fake.close();
    }
  },
});
