/**
 * The speed check end to end, on loopback: the fake upstream answers three addresses for the name;
 * the first (127.0.0.4) is dropped by SmartDNS's ad-block vote (a lone server's first 127.x
 * address), of the other two only 127.0.0.3 completes a TCP handshake on the probe port and
 * 127.0.0.2 drops SYNs in silence. The speed check probes that port (`tcp:PORT`).
 *
 * TTLs, as SmartDNS's current source gives them: the first reply to a miss the speed check runs on
 * carries `serve-expired-reply-ttl` (3 s by default, at least 2) in every record, whatever the
 * response mode and whether any probe answered, so the client comes back for the sorted answer;
 * the cache keeps the upstream's TTL (300 s here; 300 s at most when no probe answered).
 */
import { assert, assertEquals } from "./helpers/assert.ts";
import { udpQuery } from "./helpers/dns_client.ts";
import type { Answer } from "../dns/packet.ts";
import { FakeUpstream } from "./helpers/fake_upstream.ts";
import { freePort, KeeldnsProcess } from "./helpers/keeldns_process.ts";
import { ProbeTargets } from "./helpers/probe_targets.ts";

const a = (name: string, data: string): Answer => ({ name, type: "A", ttl: 300, data });
const aaaa = (name: string, data: string): Answer => ({ name, type: "AAAA", ttl: 300, data });

const ADDRESSES: Record<string, Answer[]> = {
  "fast.test": [a("fast.test", "127.0.0.4"), a("fast.test", "127.0.0.2"), a("fast.test", "127.0.0.3")],
  // 127.0.0.5 has no listener: it answers the SYN with a RST, which counts as a reply.
  "refused.test": [
    a("refused.test", "127.0.0.4"),
    a("refused.test", "127.0.0.2"),
    a("refused.test", "127.0.0.5"),
  ],
  "blocked.test": [a("blocked.test", "127.0.0.1")],
  "v4fast.test": [a("v4fast.test", "127.0.0.3")],
  "v6fast.test": [a("v6fast.test", "127.0.0.2")],
  "silent.test": [
    a("silent.test", "127.0.0.4"),
    a("silent.test", "127.0.0.2"),
    a("silent.test", "127.0.0.6"),
  ],
};

async function withSpeedCheck(
  rules: string,
  fn: (k: KeeldnsProcess, probePort: number, plainPort: number) => Promise<void>,
  vote = true,
): Promise<void> {
  const plainPort = await freePort();
  const silent = ["127.0.0.2", "127.0.0.6"];
  const probePort = await freePort();
  const targets = await ProbeTargets.start(probePort, ["127.0.0.3", "::1"], silent);
  const fake = await FakeUpstream.start((name, type) => ({
    answers: type === "A"
      ? ADDRESSES[name] ?? []
      : type !== "AAAA"
      ? []
      : name === "six.test"
      ? [aaaa(name, "::ffff:127.0.0.2"), aaaa(name, "::1")] // the only IPv6 loopback address is ::1
      : name === "v4fast.test"
      ? [aaaa(name, "::ffff:127.0.0.2")] // silent: IPv4 is faster
      : name === "v6fast.test"
      ? [aaaa(name, "::1")]
      : [],
  }));
  const config =
    `[server]\nbind = ["127.0.0.1:{port}"]\n[[server.listen]]\naddress = "udp://127.0.0.1:${plainPort}"\n` +
    `flags = ["no-speed-check", "no-dualstack-selection"]\n[[upstream]]\naddress = "udp://127.0.0.1:${fake.port}"\n` +
    `[log]\nlevel = "info"\n[rules]\nspeed-check-mode = "tcp:${probePort}"\nblocking-answer-vote = ${vote}\n${rules}`;
  const k = await KeeldnsProcess.start(config);
  try {
    await fn(k, probePort, plainPort);
  } finally {
    await k.stop();
    await fake.close();
    await targets.stop();
  }
}

const addresses = async (port: number, name: string, type = "A") =>
  (await udpQuery(port, name, type)).answers.filter((r) => r.type === type).map((r) => String(r.data));

/** The TTLs of the answer records for `name`. */
const ttls = async (port: number, name: string, type = "A") =>
  (await udpQuery(port, name, type)).answers.map((r) => r.ttl ?? -1);

/** Asserts that `got` are the TTLs of `n` records cached with 300 s a few seconds ago. */
function assertCachedTtls(got: number[], n: number, what: string): void {
  assertEquals(got.length, n, what);
  for (const t of got) assert(t >= 295 && t <= 300, `${what}: ${got.join(",")}`);
}

Deno.test("speed check first-ping: the address that answers the probe, alone; the cache keeps the ones that answered", async () => {
  await withSpeedCheck(`response-mode = "first-ping"`, async (k) => {
    assertEquals(await ttls(k.port, "fast.test"), [3], "the first reply: serve-expired-reply-ttl");
    // A RST is a reply: the refusing address wins over the silent one.
    assertEquals(await addresses(k.port, "refused.test"), ["127.0.0.5"]);
    await new Promise((r) => setTimeout(r, 1200)); // the silent probe's budget ends
    assertEquals(
      await addresses(k.port, "fast.test"),
      ["127.0.0.3"],
      "the cached answer leaves out the silent one",
    );
    assertCachedTtls(await ttls(k.port, "fast.test"), 1, "the cached answer has the upstream's TTL");
    await k.waitFor(/speed check: tcp:\d+/);
  });
});

Deno.test("speed check fastest-ip: the fastest address alone", async () => {
  await withSpeedCheck(`response-mode = "fastest-ip"`, async (k, _probe, plain) => {
    const first = await udpQuery(k.port, "fast.test", "A");
    assertEquals(first.answers.map((r) => [r.data, r.ttl]), [["127.0.0.3", 3]]);
    // A -no-speed-check listener gets the upstream's addresses, and its own cache entry; its first
    // reply is short too, as in SmartDNS (the name has a speed check; the listener skips it).
    const unsorted = await udpQuery(plain, "fast.test", "A");
    assertEquals(unsorted.answers.map((r) => [r.data, r.ttl]), [["127.0.0.2", 3], ["127.0.0.3", 3]]);
    assertCachedTtls(await ttls(plain, "fast.test"), 2, "its cached answer");
    assertEquals(await addresses(k.port, "fast.test"), ["127.0.0.3"]);
    assertCachedTtls(await ttls(k.port, "fast.test"), 1, "the cached answer has the upstream's TTL");
  });
  // ::1 is a blocking address for the vote, so it is off here.
  await withSpeedCheck(`response-mode = "fastest-ip"`, async (k) => {
    assertEquals(await addresses(k.port, "six.test", "AAAA"), ["::1"], "AAAA the same, with ::1 answering");
  }, false);
});

Deno.test("speed check fastest-response: the upstream's answer at once, the sorted one once the probes are in", async () => {
  await withSpeedCheck(`response-mode = "fastest-response"`, async (k) => {
    const t0 = performance.now();
    const first = await udpQuery(k.port, "fast.test", "A");
    assertEquals(first.answers.map((r) => [r.data, r.ttl]), [["127.0.0.2", 3], ["127.0.0.3", 3]]);
    assert(performance.now() - t0 < 500, "not held for the probes");
    assertCachedTtls(
      await ttls(k.port, "fast.test"),
      2,
      "the upstream's answer, cached until the probes are in",
    );
    await new Promise((r) => setTimeout(r, 1200));
    assertEquals(await addresses(k.port, "fast.test"), ["127.0.0.3"]);
    assertCachedTtls(await ttls(k.port, "fast.test"), 1, "the sorted answer, cached");
  });
});

Deno.test("speed check: no address answers → the likeliest one after the budget; the ad-block vote", async () => {
  await withSpeedCheck(`response-mode = "first-ping"`, async (k) => {
    const t0 = performance.now();
    // As SmartDNS: one address, the last received (no other server gave any twice).
    const silent = await udpQuery(k.port, "silent.test", "A");
    assertEquals(silent.answers.map((r) => [r.data, r.ttl]), [["127.0.0.6", 3]], "short after the wait too");
    const took = performance.now() - t0;
    assert(took > 800 && took < 2500, `waited for the probes' budget: ${took} ms`);
    assertCachedTtls(await ttls(k.port, "silent.test"), 1, "cached for at most 300 s");
    const blocked = await udpQuery(k.port, "blocked.test", "A");
    assertEquals(
      blocked.answers.map((r) => [r.data, r.ttl]),
      [["127.0.0.1", 3]],
      "a lone server's lone 127.0.0.1 is answered as it came, as SmartDNS does, with the short TTL",
    );
  });
});

Deno.test("dual-stack selection: AAAA answered empty when IPv4 is faster, A kept unless allow-force-AAAA", async () => {
  await withSpeedCheck(
    `response-mode = "first-ping"\ndualstack-ip-selection = true`,
    async (k, _p, plainPort) => {
      const six = await udpQuery(k.port, "v4fast.test", "AAAA");
      assertEquals([six.rcode, six.answers.length, six.authorities[0]?.type], ["NOERROR", 0, "SOA"]);
      assertEquals(await addresses(k.port, "v4fast.test"), ["127.0.0.3"]);
      const again = await udpQuery(k.port, "v4fast.test", "AAAA");
      assertEquals(again.answers.length, 0, "a cache hit gives the same choice");
      const plain = await udpQuery(plainPort, "v4fast.test", "AAAA");
      assertEquals(plain.answers.length, 1, "a -no-dualstack-selection listener gets the AAAA record");
      // IPv6 faster: AAAA as it is; A kept (allow-force-AAAA is off).
      assertEquals(await addresses(k.port, "v6fast.test", "AAAA"), ["::1"]);
      assertEquals(await addresses(k.port, "v6fast.test"), ["127.0.0.2"]);
    },
    false,
  );
  await withSpeedCheck(
    `response-mode = "first-ping"\ndualstack-ip-selection = true\ndualstack-ip-allow-force-aaaa = true`,
    async (k) => {
      const four = await udpQuery(k.port, "v6fast.test", "A");
      assertEquals([four.rcode, four.answers.length, four.authorities[0]?.type], ["NOERROR", 0, "SOA"]);
      assertEquals(await addresses(k.port, "v6fast.test", "AAAA"), ["::1"]);
    },
    false,
  );
});

Deno.test("speed check: the addresses of a later server's answer are probed too (SmartDNS merges them)", async () => {
  const probePort = await freePort();
  const targets = await ProbeTargets.start(probePort, ["127.0.0.3"], ["127.0.0.2"]);
  // The fast server's only usable address drops SYNs; the slower one's answers the probe.
  const fast = await FakeUpstream.start((name, type) => ({
    answers: type === "A" ? [a(name, "127.0.0.4"), a(name, "127.0.0.2")] : [],
  }));
  const slow = await FakeUpstream.start((name, type) => ({
    answers: type === "A" ? [a(name, "127.0.0.3")] : [],
    delayMs: 40,
  }));
  const k = await KeeldnsProcess.start(
    `[server]\nbind = ["127.0.0.1:{port}"]\n` +
      `[[upstream]]\naddress = "udp://127.0.0.1:${fast.port}"\n[[upstream]]\naddress = "udp://127.0.0.1:${slow.port}"\n` +
      `[log]\nlevel = "info"\n[rules]\nspeed-check-mode = "tcp:${probePort}"\nblocking-answer-vote = true\n`,
  );
  try {
    const t0 = performance.now();
    assertEquals(await addresses(k.port, "merged.test"), ["127.0.0.3"]);
    assert(performance.now() - t0 < 700, "answered on the later server's probe, not at the budget's end");
    await new Promise((r) => setTimeout(r, 1200));
    assertEquals(await addresses(k.port, "merged.test"), ["127.0.0.3"], "cached: the one that answered");
  } finally {
    await k.stop();
    await fast.close();
    await slow.close();
    await targets.stop();
  }
});

Deno.test("speed check per domain: domain-rules -speed-check-mode none and -response-mode", async () => {
  const rules = `response-mode = "first-ping"\n` +
    `[[rule]]\ndomains = ["fast.test"]\nspeed-check-mode = "none"\n` +
    `[[rule]]\ndomains = ["refused.test"]\nresponse-mode = "fastest-response"\n`;
  await withSpeedCheck(rules, async (k) => {
    const none = await udpQuery(k.port, "fast.test", "A");
    assertEquals(
      none.answers.map((r) => [r.data, r.ttl]),
      [["127.0.0.2", 300], ["127.0.0.3", 300]],
      "no speed check for it, nor a short TTL",
    );
    const response = await udpQuery(k.port, "refused.test", "A");
    assertEquals(
      response.answers.map((r) => [r.data, r.ttl]),
      [["127.0.0.2", 3], ["127.0.0.5", 3]],
      "fastest-response for it",
    );
  });
});

Deno.test("speed check: the first reply's TTL follows serve-expired-reply-ttl; none for -no-serve-expired", async () => {
  const rules = `response-mode = "first-ping"
[[rule]]
domains = ["refused.test"]
no-serve-expired = true
` +
    `[cache]
serve-expired-reply-ttl = 7
`;
  await withSpeedCheck(rules, async (k, _probe, plain) => {
    assertEquals(await ttls(k.port, "fast.test"), [7], "serve-expired-reply-ttl, serve-expired off");
    assertEquals(await ttls(k.port, "refused.test"), [300], "domain-rules -no-serve-expired: the real TTL");
    assertEquals(await ttls(plain, "blocked.test"), [7], "a -no-speed-check listener");
  });
});
