import { assert, assertEquals } from "../tests/helpers/assert.ts";
import { buildQuery, decodeReply } from "../tests/helpers/dns_client.ts";
import { messageProblem } from "../dns/message_check.ts";
import { encodePacket } from "../dns/packet.ts";
import { StoredAnswer } from "../dns/stored_answer.ts";
import { type Question, Rcode, scanResponse } from "../dns/wire.ts";
import { getLogger } from "../ops/log.ts";
import { QueryDispatcher } from "./dispatcher.ts";
import { ServerStats } from "./stats.ts";

const noPolicy = { rrTtl: 0, rrTtlMin: 0, rrTtlMax: 0 };

/** A stored answer whose rendering fails, as a bug in rendering would. */
class BrokenAnswer {
  renderInto(): number {
    throw new Error("render bug");
  }
  render(): Uint8Array {
    throw new Error("render bug");
  }
}

Deno.test("a bug while answering drops that one message and is counted; the next is answered", () => {
  const stats = new ServerStats();
  const broken = (q: Question) =>
    q.qtype === 16 ? new BrokenAnswer() as unknown as StoredAnswer : StoredAnswer.local(
      new Uint8Array([
        ...q.wire.subarray(0, 2),
        0x81,
        0x80,
        0,
        1,
        0,
        0,
        0,
        0,
        0,
        0,
        ...q.wire.subarray(12, q.questionEnd),
      ]),
      Date.now(),
    );
  const dispatcher = new QueryDispatcher(broken, stats, getLogger("server"));
  const out = new Uint8Array(1536);
  assertEquals(dispatcher.answerInto(buildQuery("x.test", "TXT"), out, 0), null);
  assertEquals(dispatcher.answer(buildQuery("x.test", "TXT"), false), null);
  assertEquals(stats.internalErrors, 2);
  const length = dispatcher.answerInto(buildQuery("x.test", "A", { id: 9 }), out, 0) as number;
  assertEquals(decodeReply(out.subarray(0, length)).id, 9);
});

/** How many OPT records `wire` carries (the message is checked as strictly as an upstream answer). */
function optCount(wire: Uint8Array): number {
  assertEquals(messageProblem(wire), null, `malformed answer ${Array.from(wire).join(",")}`);
  return decodeReply(wire).additionals.filter((r) => r.type === "OPT").length;
}

Deno.test("every kind of answer carries exactly one OPT for an EDNS0 client and none otherwise", async () => {
  /** An upstream answer for `name` with 8 TXT records (too big for a 512-byte UDP client). */
  const stored = (name: string) => {
    const wire = encodePacket({
      type: "response",
      id: 0,
      flags: 0x8180,
      questions: [{ name, type: "TXT", class: "IN" }],
      answers: Array.from({ length: 8 }, () => ({ name, type: "TXT", ttl: 60, data: ["x".repeat(100)] })),
      additionals: [{ type: "OPT", name: ".", udpPayloadSize: 1232 } as never],
    });
    return StoredAnswer.fromResponse(wire, scanResponse(wire)!, noPolicy, Date.now());
  };
  /** Which answer the chain gives, by name. */
  const chain = (q: Question): StoredAnswer | Promise<StoredAnswer> => {
    if (q.name === "servfail.test") return Promise.resolve(StoredAnswer.empty(q, Rcode.SERVFAIL, Date.now()));
    if (q.name === "throws.test") throw new Error("a bug in a stage");
    if (q.name === "rejects.test") return Promise.reject(new Error("a bug in a later stage"));
    return q.name === "later.test" ? Promise.resolve(stored(q.name)) : stored(q.name);
  };
  const dispatcher = new QueryDispatcher(chain, new ServerStats(), getLogger("server"));
  const kinds: [string, string, boolean][] = [
    ["big.test", "cached answer", true],
    ["later.test", "upstream answer", true],
    ["servfail.test", "locally made SERVFAIL", true],
    ["throws.test", "error answer", true],
    ["rejects.test", "error answer later", true],
    ["big.test", "truncated for the UDP size", false],
  ];
  for (const [name, what, tcp] of kinds) {
    for (const edns of [undefined, 1232]) {
      // A 512-byte EDNS size makes the 8 TXT records too big for UDP: the TC answer is checked too.
      const query = buildQuery(name, "TXT", { edns: tcp ? edns : edns && 512 });
      const label = `${what}, ${edns ? "EDNS0" : "no EDNS"}, ${tcp ? "TCP" : "UDP"}`;
      const answer = await dispatcher.answer(query, !tcp);
      assert(answer, label);
      if (!tcp) assert(decodeReply(answer).tc, `${label}: TC set`);
      assertEquals(optCount(answer), edns ? 1 : 0, label);
      const out = new Uint8Array(1536);
      const now = dispatcher.answerInto(query, out, 0);
      const written = typeof now === "number" ? out.subarray(0, now) : await now;
      assert(written, label);
      assertEquals(optCount(written), edns ? 1 : 0, `${label} (answerInto)`);
    }
  }
});
