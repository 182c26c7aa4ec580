import { assert, assertEquals, assertThrows } from "../tests/helpers/assert.ts";
import { decodePacket, encodePacket } from "./packet.ts";
import {
  buildEmptyAnswer,
  buildUpstreamQuery,
  MalformedQuery,
  parseQuery,
  Rcode,
  readU32,
  sameQuestion,
  scanResponse,
  skipName,
} from "./wire.ts";
import { soa } from "../tests/helpers/fake_upstream.ts";
import { buildQuery } from "../tests/helpers/dns_client.ts";

Deno.test("parseQuery reads name, type, class and a lower-cased key", () => {
  const q = parseQuery(buildQuery("WwW.Example.COM", "AAAA", { id: 0xbeef }));
  assertEquals(q.id, 0xbeef);
  assertEquals(q.name, "www.example.com");
  assertEquals(q.qtype, 28);
  assertEquals(q.qclass, 1);
  assertEquals(q.key, "www.example.com|28|1");
  assertEquals(q.edns, false);
  assertEquals(q.udpSize, 512);
  assert(q.recursionDesired);
});

Deno.test("parseQuery reads the EDNS0 size (clamped to 512..1232) and the DO bit", () => {
  assertEquals(parseQuery(buildQuery("a.b", "A", { edns: 4096 })).udpSize, 1232);
  assertEquals(parseQuery(buildQuery("a.b", "A", { edns: 100 })).udpSize, 512);
  const withDo = encodePacket({
    type: "query",
    id: 1,
    questions: [{ name: "a.b", type: "A", class: "IN" }],
    additionals: [{ type: "OPT", name: ".", udpPayloadSize: 1400, flags: 0x8000 } as never],
  });
  const q = parseQuery(withDo);
  assert(q.edns && q.dnssecOk);
  assertEquals(q.key, "a.b|1|1|do");
});

Deno.test("parseQuery keeps dots and odd bytes inside labels distinct in the key", () => {
  const wire = new Uint8Array([0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, 0x61, 0x2e, 0x62, 0, 0, 1, 0, 1]);
  assertEquals(parseQuery(wire).name, "a\\046b");
});

Deno.test("parseQuery rejects malformed queries with the rcode to answer", () => {
  const cases: [number[], number | null][] = [
    [[1, 2, 3], null],
    [[0, 1, 0x81, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1], null], // a response
    [[0, 1, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0], Rcode.FORMERR],
    [[0, 1, 0x10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1], Rcode.NOTIMP], // opcode 2
    [[0, 1, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1], Rcode.FORMERR], // pointer
    [[0, 1, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0, 5, 97, 0], Rcode.FORMERR],
    [[0, 1, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 97, 0, 0], Rcode.FORMERR],
  ];
  for (const [bytes, rcode] of cases) {
    const e = assertThrows(() => parseQuery(new Uint8Array(bytes)));
    assert(e instanceof MalformedQuery);
    assertEquals(e.rcode, rcode, Deno.inspect(bytes));
  }
});

Deno.test("skipName stops at pointers and refuses runaway names", () => {
  assertEquals(skipName(new Uint8Array([1, 97, 0xc0, 0]), 0), 4);
  assertEquals(skipName(new Uint8Array([0xc0]), 0), -1);
  assertEquals(skipName(new Uint8Array([0x40, 0]), 0), -1);
  assertEquals(skipName(new Uint8Array(300).fill(1), 0), -1);
});

Deno.test("scanResponse finds TTL offsets, the OPT record and the RFC 2308 negative TTL", () => {
  const wire = encodePacket({
    type: "response",
    id: 1,
    flags: 0x8183,
    questions: [{ name: "x.test", type: "A", class: "IN" }],
    authorities: [soa("test", 900, 120)],
    additionals: [{ type: "OPT", name: ".", udpPayloadSize: 1232 } as never],
  });
  const layout = scanResponse(wire)!;
  assertEquals(layout.rcode, Rcode.NXDOMAIN);
  assertEquals(layout.ttls, [900]);
  assertEquals(readU32(wire, layout.ttlOffsets[0]), 900);
  assertEquals(layout.negativeTtl, 120);
  assertEquals(layout.opt!.end, wire.length);
  assertEquals(layout.authorityStart, 0);
});

Deno.test("scanResponse returns null for truncated or looping records instead of throwing", () => {
  const good = encodePacket({
    type: "response",
    id: 1,
    questions: [{ name: "x.test", type: "A", class: "IN" }],
    answers: [{ name: "x.test", type: "A", ttl: 5, data: "192.0.2.1" }],
  });
  for (let cut = 0; cut < good.length; cut++) {
    assertEquals(scanResponse(good.subarray(0, cut)), null, `cut ${cut}`);
  }
});

Deno.test("scanResponse walks a self-pointing owner name without following it", () => {
  // Header, question "a." A IN, then one answer whose owner is a pointer to itself (offset 19).
  const wire = new Uint8Array([
    0,
    1,
    0x81,
    0x80,
    0,
    1,
    0,
    1,
    0,
    0,
    0,
    0,
    1,
    97,
    0,
    0,
    1,
    0,
    1,
    0xc0,
    19,
    0,
    1,
    0,
    1,
    0,
    0,
    0,
    60,
    0,
    4,
    192,
    0,
    2,
    1,
  ]);
  const layout = scanResponse(wire)!;
  assertEquals(layout.ttls, [60]);
  assertThrows(() => decodePacket(wire));
});

Deno.test("buildUpstreamQuery keeps the question, sets a new ID, RD and our OPT", () => {
  const q = parseQuery(buildQuery("a.test", "MX", { id: 5 }));
  const up = buildUpstreamQuery(q, 0x1234);
  assertEquals((up[0] << 8) | up[1], 0x1234);
  assert(sameQuestion(up, q.questionEnd, q.wire));
  assertEquals(up[11], 1);
  assertEquals(parseQuery(up).udpSize, 1232);
});

Deno.test("sameQuestion ignores case but not content", () => {
  const a = buildQuery("abc.test", "A", { id: 1 });
  const b = buildQuery("ABC.test", "A", { id: 2 });
  const c = buildQuery("abd.test", "A", { id: 1 });
  const end = parseQuery(a).questionEnd;
  assert(sameQuestion(a, end, b));
  assert(!sameQuestion(a, end, c));
});

Deno.test("buildEmptyAnswer answers with the question, rcode, TC and OPT as asked", () => {
  const q = parseQuery(buildQuery("a.test", "A", { id: 77, edns: 1232 }));
  const out = buildEmptyAnswer(q, Rcode.SERVFAIL, true);
  assertEquals((out[0] << 8) | out[1], 77);
  assertEquals(out[2] & 0x82, 0x82);
  assertEquals(out[3] & 0x0f, Rcode.SERVFAIL);
  assertEquals(out[11], 1);
  assertEquals(scanResponse(out)!.opt!.end, out.length);
});

Deno.test("parseQuery reads only the first `length` bytes of a larger receive slot", () => {
  const query = buildQuery("slot.example", "A", { edns: 1232 });
  const slot = new Uint8Array(4096).fill(0xff);
  slot.set(query);
  const q = parseQuery(slot, query.length);
  assertEquals([q.name, q.qtype, q.edns, q.udpSize], ["slot.example", 1, true, 1232]);
  // Cut inside the OPT record, then inside the question: the rest of the slot must not count.
  assertEquals(errorOf(() => parseQuery(slot, query.length - 3)), Rcode.FORMERR);
  assertEquals(errorOf(() => parseQuery(slot, 20)), Rcode.FORMERR);
});

function errorOf(parse: () => unknown): number | null | undefined {
  try {
    parse();
  } catch (e) {
    return (e as MalformedQuery).rcode;
  }
  return undefined;
}
