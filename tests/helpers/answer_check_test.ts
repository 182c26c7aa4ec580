import { assertEquals, assertMatch, assertThrows } from "./assert.ts";
import { answerProblem, assertValidAnswer, hex } from "./answer_check.ts";
import { buildQuery } from "./dns_client.ts";
import { type Answer, encodePacket, type Packet } from "../../dns/packet.ts";

const OPT = { type: "OPT", name: ".", udpPayloadSize: 1232 } as unknown as Answer;

function answerTo(query: Packet, extra: Partial<Packet> = {}): Uint8Array {
  return encodePacket({
    type: "response",
    id: query.id,
    flags: 0x8180,
    questions: query.questions,
    answers: [{ name: query.questions![0].name, type: "A", ttl: 60, data: "192.0.2.1" }],
    ...extra,
  });
}

const plain: Packet = {
  type: "query",
  id: 77,
  flags: 0x0100,
  questions: [{ name: "a.test", type: "A", class: "IN" }],
};
const plainWire = encodePacket(plain);
const ednsWire = buildQuery("a.test", "A", { id: 77, edns: 1232 });

Deno.test("answer check: well-formed answers pass, with and without the query", () => {
  assertEquals(answerProblem(answerTo(plain)), null);
  assertEquals(answerProblem(answerTo(plain), plainWire), null);
  assertEquals(answerProblem(answerTo(plain, { additionals: [OPT] }), ednsWire), null);
  // The client's spelling may differ in case only.
  const upper = buildQuery("A.TeSt", "A", { id: 77 });
  assertEquals(answerProblem(answerTo(plain), upper), null);
});

Deno.test("answer check: header-only FORMERR/NOTIMP is a valid answer to garbage, nothing else is", () => {
  const garbage = new Uint8Array([0x12, 0x34, 0x01, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0xc0, 0x0c]);
  const formerr = new Uint8Array([0x12, 0x34, 0x81, 0x81, 0, 0, 0, 0, 0, 0, 0, 0]);
  assertEquals(answerProblem(formerr, garbage), null);
  const notimp = new Uint8Array([0x12, 0x34, 0xa9, 0x84, 0, 0, 0, 0, 0, 0, 0, 0]);
  assertEquals(answerProblem(notimp, new Uint8Array([0x12, 0x34, 0x29, 0, 0, 1, 0, 0, 0, 0, 0, 0])), null);
  const servfail = new Uint8Array([0x12, 0x34, 0x81, 0x82, 0, 0, 0, 0, 0, 0, 0, 0]);
  assertMatch(answerProblem(servfail, garbage)!, /question count differs/);
  assertMatch(answerProblem(formerr, new Uint8Array([1, 2, 3]))!, /shorter than a header/);
});

Deno.test("answer check: each rule names its problem", () => {
  const good = answerTo(plain);
  const cases: [string, Uint8Array, Uint8Array | undefined, RegExp][] = [
    [
      "structure",
      good.subarray(0, good.length - 1),
      undefined,
      /malformed \(answer record 1: rdata runs past/,
    ],
    ["trailing byte", new Uint8Array([...good, 0]), undefined, /malformed \(1 bytes after the last record\)/],
    [
      "QR",
      (() => {
        const w = good.slice();
        w[2] &= 0x7f;
        return w;
      })(),
      undefined,
      /QR bit not set/,
    ],
    ["ID", answerTo({ ...plain, id: 78 }), plainWire, /ID 78 is not the query's 77/],
    [
      "RD",
      (() => {
        const w = good.slice();
        w[2] &= 0xfe;
        return w;
      })(),
      plainWire,
      /RD bit not copied/,
    ],
    [
      "question",
      answerTo({ ...plain, questions: [{ name: "b.test", type: "A", class: "IN" }] }),
      plainWire,
      /question section differs/,
    ],
    [
      "qtype",
      answerTo({ ...plain, questions: [{ name: "a.test", type: "AAAA", class: "IN" }] }),
      plainWire,
      /question section differs/,
    ],
    ["no OPT for EDNS0", good, ednsWire, /0 OPT records for a query with EDNS0/],
    [
      "OPT without EDNS0",
      answerTo(plain, { additionals: [OPT] }),
      plainWire,
      /1 OPT records for a query without EDNS0/,
    ],
    ["two OPT", answerTo(plain, { additionals: [OPT, OPT] }), ednsWire, /more than one OPT record/],
  ];
  for (const [what, answer, query, pattern] of cases) {
    const problem = answerProblem(answer, query);
    assertMatch(problem ?? "(none)", pattern, what);
  }
});

Deno.test("answer check: a pointer to itself is caught before dns-packet could loop on it", () => {
  const w = answerTo(plain).slice();
  const at = 12 + 8 + 4; // the answer's owner name
  w[at] = 0xc0 | (at >> 8);
  w[at + 1] = at & 0xff;
  assertMatch(answerProblem(w)!, /compression pointer that does not point backwards/);
});

Deno.test("answer check: assertValidAnswer throws an AssertionError with the hex", () => {
  const w = answerTo(plain, { additionals: [OPT] });
  const error = assertThrows(() => assertValidAnswer(w, plainWire, "unit"));
  assertEquals(error.name, "AssertionError");
  assertMatch(error.message, /invalid DNS answer \(unit\): 1 OPT records/);
  assertMatch(error.message, new RegExp(`answer: ${hex(w)}`));
  assertValidAnswer(answerTo(plain), plainWire);
});
