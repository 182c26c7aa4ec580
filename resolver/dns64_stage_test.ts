import { assertEquals } from "../tests/helpers/assert.ts";
import { buildQuery, decodeReply } from "../tests/helpers/dns_client.ts";
import { encodePacket } from "../dns/packet.ts";
import { StoredAnswer } from "../dns/stored_answer.ts";
import { scanResponse } from "../dns/wire.ts";
import { Dns64Stage, synthesize } from "./dns64_stage.ts";
import { parseContext, type QueryContext } from "./query_context.ts";

const policy = { rrTtl: 0, rrTtlMin: 0, rrTtlMax: 0 };

/** An upstream stand-in: v4only.test has only A records, dual.test both. */
function upstream(ctx: QueryContext): StoredAnswer {
  const aaaa = ctx.qtype === 28;
  const answers = ctx.name === "dual.test"
    ? [{
      name: ctx.name,
      type: aaaa ? "AAAA" as const : "A" as const,
      ttl: 99,
      data: aaaa ? "2001:db8::5" : "192.0.2.5",
    }]
    : aaaa
    ? []
    : [{ name: ctx.name, type: "A" as const, ttl: 77, data: "192.0.2.33" }];
  const wire = encodePacket({
    type: "response",
    id: 0,
    flags: 0x8180,
    questions: [{ name: ctx.name, type: aaaa ? "AAAA" : "A", class: "IN" }],
    answers,
  });
  return StoredAnswer.fromResponse(wire, scanResponse(wire)!, policy, Date.now());
}

Deno.test("dns64: an AAAA question with no AAAA answer gets AAAA records made from the A records", async () => {
  const stage = new Dns64Stage("64:ff9b::");
  const ctx = parseContext(buildQuery("v4only.test", "AAAA", { id: 9 }));
  const answer = await stage.resolve(ctx, upstream);
  const reply = decodeReply(answer.render(ctx, Date.now(), 65535));
  assertEquals(reply.answers.map((r) => [r.type, r.data, r.ttl]), [["AAAA", "64:ff9b::c000:221", 77]]);
  assertEquals(reply.id, 9);
  const dual = parseContext(buildQuery("dual.test", "AAAA"));
  assertEquals(
    decodeReply((await stage.resolve(dual, upstream)).render(dual, Date.now(), 65535)).answers[0].data,
    "2001:db8::5",
  );
  assertEquals(stage.synthesized, 1);
  assertEquals(synthesize(new Uint8Array(16), "10.0.0.1"), "0:0:0:0:0:0:a00:1");
});
