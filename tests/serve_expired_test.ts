/**
 * End to end: `[cache] serve-expired` (RFC 8767). An expired answer is served at once with the
 * reply TTL while the upstream no longer answers, and twenty clients asking for it at once cause
 * one refresh query, not twenty. Without serve-expired the same query waits for the dead upstream.
 */
import { assert, assertEquals } from "./helpers/assert.ts";
import { udpQuery } from "./helpers/dns_client.ts";
import { type FakeBehaviour, FakeUpstream } from "./helpers/fake_upstream.ts";
import { KeeldnsProcess, testConfig } from "./helpers/keeldns_process.ts";

const RECORD = { name: "stale.test", type: "A", ttl: 1, data: "192.0.2.77" } as const;

/** A fake answering stale.test with TTL 1 until `dead` is set, then dropping every query. */
async function dyingUpstream(): Promise<{ fake: FakeUpstream; kill: () => void }> {
  let dead = false;
  const fake = await FakeUpstream.start((): FakeBehaviour => dead ? { drop: true } : { answers: [RECORD] });
  return { fake, kill: () => dead = true };
}

Deno.test({
  name: "serve-expired: a dead upstream's expired answer is served at once with the reply TTL, one refresh",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const { fake, kill } = await dyingUpstream();
    const k = await KeeldnsProcess.start(
      testConfig(fake.port, "[cache]\nrr-ttl-min = 0\nserve-expired = true\nserve-expired-reply-ttl = 5\n"),
    );
    try {
      const first = await udpQuery(k.port, "stale.test", "A");
      assertEquals([first.answers[0].data, first.answers[0].ttl], ["192.0.2.77", 1]);
      assertEquals(fake.count("stale.test"), 1);
      await new Promise((r) => setTimeout(r, 1500)); // expired now
      kill();
      const started = performance.now();
      const stale = await udpQuery(k.port, "stale.test", "A", { timeoutMs: 1000 });
      const took = performance.now() - started;
      assertEquals([stale.rcode, stale.answers[0].data, stale.answers[0].ttl], ["NOERROR", "192.0.2.77", 5]);
      assert(took < 100, `a stale answer waits for nothing (took ${took.toFixed(1)} ms)`);
      // Twenty clients at once while that refresh (dropped, so still waiting) is out.
      const replies = await Promise.all(
        Array.from({ length: 20 }, () => udpQuery(k.port, "stale.test", "A", { timeoutMs: 1000 })),
      );
      for (const r of replies) assertEquals([r.answers[0].data, r.answers[0].ttl], ["192.0.2.77", 5]);
      const refreshes = fake.count("stale.test") - 1;
      assertEquals(refreshes, 1, "one refresh for twenty-one stale hits");
    } finally {
      await k.stop();
      await fake.close();
    }
  },
});

Deno.test({
  name: "without serve-expired an expired answer is not served: the client waits for the dead upstream",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const { fake, kill } = await dyingUpstream();
    const k = await KeeldnsProcess.start(testConfig(fake.port, "[cache]\nrr-ttl-min = 0\n"));
    try {
      await udpQuery(k.port, "stale.test", "A");
      await new Promise((r) => setTimeout(r, 1500));
      kill();
      let reply;
      try {
        reply = await udpQuery(k.port, "stale.test", "A", { timeoutMs: 1000 });
      } catch {
        reply = undefined; // no answer within a second: not served from the expired entry
      }
      assert(
        reply === undefined || reply.answers.length === 0,
        `no stale answer: ${JSON.stringify(reply?.answers)}`,
      );
    } finally {
      await k.stop();
      await fake.close();
    }
  },
});
