/**
 * The speed check end to end, on loopback: the fake upstream answers three addresses for the name;
 * the first (127.0.0.4) is dropped by SmartDNS's ad-block vote (a lone server's first 127.x
 * address), of the other two only 127.0.0.3 completes a TCP handshake on the probe port and
 * 127.0.0.2 drops SYNs in silence. The speed check probes that port (`tcp:PORT`).
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

Deno.test("speed check first-ping: the address that answers the probe, alone; the cache keeps the ones that answered", async () => {
  await withSpeedCheck(`response-mode = "first-ping"`, async (k) => {
    assertEquals(await addresses(k.port, "fast.test"), ["127.0.0.3"]);
    // A RST is a reply: the refusing address wins over the silent one.
    assertEquals(await addresses(k.port, "refused.test"), ["127.0.0.5"]);
    await new Promise((r) => setTimeout(r, 1200)); // the silent probe's budget ends
    assertEquals(
      await addresses(k.port, "fast.test"),
      ["127.0.0.3"],
      "the cached answer leaves out the silent one",
    );
    await k.waitFor(/speed check: tcp:\d+/);
  });
});

Deno.test("speed check fastest-ip: the fastest address alone", async () => {
  await withSpeedCheck(`response-mode = "fastest-ip"`, async (k, _probe, plain) => {
    assertEquals(await addresses(k.port, "fast.test"), ["127.0.0.3"]);
    // A -no-speed-check listener gets the upstream's addresses, and its own cache entry.
    assertEquals(await addresses(plain, "fast.test"), ["127.0.0.2", "127.0.0.3"]);
    assertEquals(await addresses(k.port, "fast.test"), ["127.0.0.3"]);
  });
  // ::1 is a blocking address for the vote, so it is off here.
  await withSpeedCheck(`response-mode = "fastest-ip"`, async (k) => {
    assertEquals(await addresses(k.port, "six.test", "AAAA"), ["::1"], "AAAA the same, with ::1 answering");
  }, false);
});

Deno.test("speed check fastest-response: the upstream's answer at once, the sorted one once the probes are in", async () => {
  await withSpeedCheck(`response-mode = "fastest-response"`, async (k) => {
    const t0 = performance.now();
    assertEquals(await addresses(k.port, "fast.test"), ["127.0.0.2", "127.0.0.3"]);
    assert(performance.now() - t0 < 500, "not held for the probes");
    await new Promise((r) => setTimeout(r, 1200));
    assertEquals(await addresses(k.port, "fast.test"), ["127.0.0.3"]);
  });
});

Deno.test("speed check: no address answers → the upstream's addresses after the budget; the ad-block vote", async () => {
  await withSpeedCheck(`response-mode = "first-ping"`, async (k) => {
    const t0 = performance.now();
    assertEquals(await addresses(k.port, "silent.test"), ["127.0.0.2", "127.0.0.6"]);
    const took = performance.now() - t0;
    assert(took > 800 && took < 2500, `waited for the probes' budget: ${took} ms`);
    const blocked = await udpQuery(k.port, "blocked.test", "A");
    assertEquals(
      [blocked.rcode, blocked.answers.length],
      ["NOERROR", 0],
      "a lone server's 127.0.0.1 is dropped",
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
