import { assert, assertEquals } from "../tests/helpers/assert.ts";
import { buildQuery, decodeReply } from "../tests/helpers/dns_client.ts";
import { soa } from "../tests/helpers/fake_upstream.ts";
import { encodePacket, type Packet } from "./packet.ts";
import { clampTtl, setReplyTtlMax, StoredAnswer } from "./stored_answer.ts";
import { parseQuery, scanResponse } from "./wire.ts";

const noPolicy = { rrTtl: 0, rrTtlMin: 0, rrTtlMax: 0 };

function store(packet: Packet, policy = noPolicy, now = 1_000_000): StoredAnswer {
  const wire = encodePacket(packet);
  return StoredAnswer.fromResponse(wire, scanResponse(wire)!, policy, now);
}

const positive: Packet = {
  type: "response",
  id: 9,
  flags: 0x8180,
  questions: [{ name: "a.test", type: "A", class: "IN" }],
  answers: [
    { name: "a.test", type: "A", ttl: 300, data: "192.0.2.1" },
    { name: "a.test", type: "A", ttl: 60, data: "192.0.2.2" },
  ],
  additionals: [{ type: "OPT", name: ".", udpPayloadSize: 1232 } as never],
};

Deno.test("a stored answer lives for its smallest answer TTL and has its OPT cut out", () => {
  const a = store(positive);
  assertEquals(a.lifetime, 60);
  assertEquals(a.wire[11], 0, "arcount after removing OPT");
  assertEquals(scanResponse(a.wire)!.opt, null);
});

Deno.test("render patches ID, RD, case and counts TTLs down", () => {
  const a = store(positive);
  const q = parseQuery(buildQuery("A.TEST", "A", { id: 4321 }));
  const r = decodeReply(a.render(q, 1_000_000 + 10_500, 512));
  assertEquals(r.id, 4321);
  assertEquals(r.questions[0].name, "A.TEST");
  assertEquals(r.answers.map((x) => x.ttl), [290, 50]);
  assertEquals(r.additionals.length, 0);
});

Deno.test("render adds an OPT record for EDNS0 clients only", () => {
  const a = store(positive);
  const withEdns = decodeReply(
    a.render(parseQuery(buildQuery("a.test", "A", { edns: 1232 })), 1_000_000, 1232),
  );
  assertEquals(withEdns.additionals.map((x) => x.type), ["OPT"]);
});

Deno.test("render truncates to an empty TC answer when the client's size is too small", () => {
  const a = store(positive);
  const q = parseQuery(buildQuery("a.test", "A"));
  const out = a.render(q, 1_000_000, 40);
  const r = decodeReply(out);
  assert(r.tc);
  assertEquals(r.answers.length, 0);
  assertEquals(r.questions[0].name, "a.test");
});

Deno.test("TTLs never go below zero when rendered late", () => {
  const a = store(positive);
  const r = decodeReply(a.render(parseQuery(buildQuery("a.test", "A")), 1_000_000 + 400_000, 512));
  assertEquals(r.answers.map((x) => x.ttl), [0, 0]);
});

Deno.test("rr-ttl, rr-ttl-min and rr-ttl-max rewrite the stored TTLs", () => {
  assertEquals(clampTtl(5, { rrTtl: 0, rrTtlMin: 60, rrTtlMax: 0 }), 60);
  assertEquals(clampTtl(5000, { rrTtl: 0, rrTtlMin: 0, rrTtlMax: 600 }), 600);
  assertEquals(clampTtl(5000, { rrTtl: 30, rrTtlMin: 60, rrTtlMax: 600 }), 30);
  const a = store(positive, { rrTtl: 0, rrTtlMin: 100, rrTtlMax: 200 });
  assertEquals(a.lifetime, 100);
  const r = decodeReply(a.render(parseQuery(buildQuery("a.test", "A")), 1_000_000, 512));
  assertEquals(r.answers.map((x) => x.ttl), [200, 100]);
});

Deno.test("negative answers live for min(SOA TTL, MINIMUM); SERVFAIL and no-SOA are not cached", () => {
  const nx = store({
    type: "response",
    flags: 0x8183,
    questions: [{ name: "x.test", type: "A", class: "IN" }],
    authorities: [soa("test", 900, 120)],
  });
  assertEquals(nx.lifetime, 120);
  const nodata = store({
    type: "response",
    flags: 0x8180,
    questions: [{ name: "x.test", type: "AAAA", class: "IN" }],
    authorities: [soa("test", 30, 120)],
  });
  assertEquals(nodata.lifetime, 30);
  const servfail = store({
    type: "response",
    flags: 0x8182,
    questions: [{ name: "x.test", type: "A", class: "IN" }],
  });
  assertEquals(servfail.lifetime, 0);
  const bare = store({
    type: "response",
    flags: 0x8183,
    questions: [{ name: "x.test", type: "A", class: "IN" }],
  });
  assertEquals(bare.lifetime, 0);
});

Deno.test("rr-ttl-reply-max caps rendered TTLs only; the stored TTLs and lifetime stay", () => {
  const a = store(positive);
  const q = parseQuery(buildQuery("a.test", "A"));
  try {
    setReplyTtlMax(100);
    assertEquals(decodeReply(a.render(q, 1_000_000, 512)).answers.map((x) => x.ttl), [100, 60]);
    // Past the cap the real TTLs count down as before.
    assertEquals(decodeReply(a.render(q, 1_000_000 + 250_000, 512)).answers.map((x) => x.ttl), [50, 0]);
    assertEquals([a.ttl(0), a.ttl(1), a.lifetime], [300, 60, 60]);
    setReplyTtlMax(0);
    assertEquals(decodeReply(a.render(q, 1_000_000, 512)).answers.map((x) => x.ttl), [300, 60]);
  } finally {
    setReplyTtlMax(0);
  }
});

Deno.test("withFixedTtl renders every record with one TTL, however late; the original is unchanged", () => {
  const a = store(positive);
  const q = parseQuery(buildQuery("a.test", "A"));
  const stale = a.withFixedTtl(3, 5_000_000);
  assertEquals(stale.lifetime, 0);
  assertEquals(decodeReply(stale.render(q, 5_000_000, 512)).answers.map((x) => x.ttl), [3, 3]);
  assertEquals(decodeReply(stale.render(q, 5_000_999, 512)).answers.map((x) => x.ttl), [3, 3]);
  assertEquals(decodeReply(a.render(q, 1_000_000, 512)).answers.map((x) => x.ttl), [300, 60]);
  assertEquals([a.ttl(0), a.ttl(1)], [300, 60]);
});
