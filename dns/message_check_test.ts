import { assert, assertEquals } from "../tests/helpers/assert.ts";
import { soa } from "../tests/helpers/fake_upstream.ts";
import { encodePacket, type Packet } from "./packet.ts";
import { checkName, messageProblem } from "./message_check.ts";

const good: Packet = {
  type: "response",
  id: 7,
  flags: 0x8180,
  questions: [{ name: "www.example.test", type: "A", class: "IN" }],
  answers: [
    { name: "www.example.test", type: "CNAME", ttl: 60, data: "web.example.test" },
    { name: "web.example.test", type: "A", ttl: 60, data: "192.0.2.1" },
    { name: "web.example.test", type: "AAAA", ttl: 60, data: "2001:db8::1" },
    { name: "web.example.test", type: "MX", ttl: 60, data: { preference: 10, exchange: "mx.example.test" } },
    {
      name: "_x._tcp.example.test",
      type: "SRV",
      ttl: 60,
      data: { priority: 1, weight: 2, port: 3, target: "web.example.test" },
    },
    { name: "web.example.test", type: "TXT", ttl: 60, data: ["hello"] },
  ],
  authorities: [soa("example.test", 60, 30)],
  additionals: [{ type: "OPT", name: ".", udpPayloadSize: 1232 } as never],
};

/** Offset of the first answer record (after the question). */
function answerStart(_wire: Uint8Array): number {
  return 12 + "www.example.test".length + 2 + 4;
}

Deno.test("well-formed answers of many record types pass", () => {
  assertEquals(messageProblem(encodePacket(good)), null);
  assertEquals(messageProblem(encodePacket({ type: "query", id: 1, questions: [] })), null);
});

Deno.test("an owner name that is a pointer to itself, or points forwards, is refused", () => {
  const wire = encodePacket(good);
  const at = answerStart(wire);
  const self = wire.slice();
  self[at] = 0xc0 | (at >> 8);
  self[at + 1] = at & 0xff;
  assertEquals(messageProblem(self), "answer record 1: compression pointer that does not point backwards");
  const forward = wire.slice();
  forward[at] = 0xc0;
  forward[at + 1] = at + 40;
  assert(messageProblem(forward)?.includes("does not point backwards"));
  const header = wire.slice();
  header[at] = 0xc0;
  header[at + 1] = 2;
  assert(messageProblem(header)?.includes("into the header"));
});

Deno.test("pointers that go backwards end, whatever they form", () => {
  // A chain of backward pointers that lands on labels: always finishes, names bounded.
  const buf = new Uint8Array(40);
  buf.set([1, 0x61, 0], 12); // "a." at 12
  buf[15] = 0xc0, buf[16] = 12; // pointer to 12 at 15
  buf[17] = 0xc0, buf[18] = 15; // pointer to the pointer
  assertEquals(checkName(buf, 17, buf.length), 19);
  assertEquals(checkName(buf, 12, buf.length), 15);
});

Deno.test("count lies, short rdata, bad lengths and trailing bytes are refused", () => {
  const wire = encodePacket(good);
  const more = wire.slice();
  more[7] += 1; // one more answer than present
  assert(messageProblem(more) !== null);
  const fewer = wire.slice();
  fewer[11] = 0; // the OPT record becomes trailing bytes
  assert(messageProblem(fewer)?.includes("after the last record"));
  assert(messageProblem(wire.subarray(0, wire.length - 1)) !== null);
  const a = encodePacket({
    type: "response",
    id: 1,
    flags: 0x8180,
    questions: [{ name: "a.test", type: "A", class: "IN" }],
    answers: [{ name: "a.test", type: "A", ttl: 1, data: "192.0.2.1" }],
  });
  const shortA = new Uint8Array([...a.subarray(0, a.length - 6), 0, 3, 192, 0, 2]);
  assertEquals(messageProblem(shortA), "answer record 1: A record whose rdata is not 4 bytes");
  assertEquals(messageProblem(new Uint8Array(11)), "shorter than a DNS header");
});

Deno.test("a second OPT, an OPT outside the additional section, or not owned by the root is refused", () => {
  const two = encodePacket({
    ...good,
    additionals: [
      { type: "OPT", name: ".", udpPayloadSize: 1232 } as never,
      { type: "OPT", name: ".", udpPayloadSize: 1232 } as never,
    ],
  });
  assertEquals(messageProblem(two), "more than one OPT record");
  const inAnswer = encodePacket({
    ...good,
    answers: [{ type: "OPT", name: ".", udpPayloadSize: 1232 } as never],
    additionals: [],
  });
  assert(messageProblem(inAnswer)?.includes("OPT outside the additional section"));
  // The OPT is the last 11 bytes: give it the question's name (a pointer to offset 12) as owner.
  const wire = encodePacket(good);
  const owned = new Uint8Array([
    ...wire.subarray(0, wire.length - 11),
    0xc0,
    12,
    ...wire.subarray(wire.length - 10),
  ]);
  assert(messageProblem(owned)?.includes("not the root"));
});

Deno.test("a name longer than 255 bytes, or with a reserved label type, is refused", () => {
  const buf = new Uint8Array(12 + 300);
  let p = 12;
  for (let i = 0; i < 5; i++) {
    buf[p] = 60;
    p += 61;
  }
  buf[p] = 0;
  assertEquals(checkName(buf, 12, buf.length), "name longer than 255 bytes");
  const reserved = new Uint8Array([...new Uint8Array(12), 0x40, 0]);
  assertEquals(checkName(reserved, 12, reserved.length), "label with a reserved type");
});

Deno.test("character-strings, NAPTR, DNSKEY protocol, type bitmaps and OPT options are checked inside", () => {
  /** A one-record answer of `type` with `rdata`. */
  const one = (type: number, rdata: number[]) =>
    new Uint8Array([
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
      0, // header
      1,
      0x78,
      0,
      type >> 8,
      type & 0xff,
      0,
      1, // question x. TYPE IN
      0xc0,
      12,
      type >> 8,
      type & 0xff,
      0,
      1,
      0,
      0,
      0,
      60,
      rdata.length >> 8,
      rdata.length & 0xff,
      ...rdata,
    ]);
  assertEquals(messageProblem(one(16, [5, 104, 101, 108, 108, 111])), null);
  assert(messageProblem(one(16, [192, 97, 98, 99]))?.includes("character-string runs past"));
  assert(messageProblem(one(16, []))?.includes("no character-string"));
  assertEquals(
    messageProblem(one(35, [0, 1, 0, 1, 1, 0x53, 0, 0, 0])),
    null,
    "NAPTR: order, pref, 3 strings, root",
  );
  assert(messageProblem(one(35, [0, 1, 0, 1, 9, 0x53]))?.includes("character-string"));
  assert(messageProblem(one(48, [1, 0, 2, 8, 1, 2]))?.includes("DNSKEY protocol is not 3"));
  assertEquals(messageProblem(one(48, [1, 0, 3, 8, 1, 2])), null);
  assertEquals(
    messageProblem(one(47, [0, 0, 6, 0x40, 0, 0, 0, 0, 3])),
    null,
    "NSEC: root, window 0 of 6 bytes",
  );
  assert(messageProblem(one(47, [0, 0, 40]))?.includes("bitmap"));
  assert(messageProblem(one(43, [0, 1]))?.includes("shorter than its fields"), "DS needs 4 bytes");
  // OPT with an option whose length runs past the record.
  const opt = new Uint8Array([
    0,
    1,
    0x81,
    0x80,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    1,
    0,
    0,
    41,
    4,
    208,
    0,
    0,
    0,
    0,
    0,
    4,
    0,
    8,
    0,
    9,
  ]);
  assertEquals(messageProblem(opt), "additional record 1: OPT option runs past the record");
});
