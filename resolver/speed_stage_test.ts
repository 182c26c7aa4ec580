import { assertEquals } from "../tests/helpers/assert.ts";
import { buildQuery } from "../tests/helpers/dns_client.ts";
import { encodePacket } from "../dns/packet.ts";
import { StoredAnswer } from "../dns/stored_answer.ts";
import { scanResponse } from "../dns/wire.ts";
import { BindFlag, parseContext, type QueryContext } from "./query_context.ts";
import type { SpeedChecker } from "./speed_checker.ts";
import { SpeedStage } from "./speed_stage.ts";

const policy = { rrTtl: 0, rrTtlMin: 0, rrTtlMax: 0 };
/** A checker whose probes all answer in 1 ms. */
const checker = { check: () => Promise.resolve(1) } as unknown as SpeedChecker;

/** An upstream stand-in answering 192.0.2.1 to every question. */
function upstream(ctx: QueryContext): Promise<StoredAnswer> {
  const wire = encodePacket({
    type: "response",
    id: 0,
    flags: 0x8180,
    questions: [{ name: ctx.name, type: "A", class: "IN" }],
    answers: [{ name: ctx.name, type: "A", ttl: 300, data: "192.0.2.1" }],
  });
  return Promise.resolve(StoredAnswer.fromResponse(wire, scanResponse(wire)!, policy, Date.now()));
}

/** A query for x.example of `type`, with EDNS0 and the DO bit when `dnssecOk`. */
function query(type: string, dnssecOk: boolean): Uint8Array {
  return encodePacket({
    type: "query",
    id: 1,
    flags: 0x0100,
    questions: [{ name: "x.example", type: type as "A", class: "IN" }],
    additionals: dnssecOk ? [{ type: "OPT", name: ".", udpPayloadSize: 1232, flags: 0x8000 } as never] : [],
  });
}

Deno.test("the speed stage marks the misses whose first reply SmartDNS shortens", async () => {
  const on = new SpeedStage([{ checker, mode: "first-ping", maxAddresses: 0 }], () => undefined, policy);
  const off = new SpeedStage([{ mode: "first-ping", maxAddresses: 0 }], () => undefined, policy);
  const cases: [SpeedStage, string, number, boolean, boolean, string][] = [
    [on, "A", 0, false, true, "A with a speed check"],
    [on, "AAAA", 0, false, true, "AAAA with a speed check"],
    [on, "A", 0, true, true, "a DO query"],
    [on, "TXT", 0, false, false, "not A or AAAA"],
    [off, "A", 0, false, false, "speed-check-mode none"],
    [on, "A", BindFlag.NO_SPEED_CHECK, false, true, "a -no-speed-check listener (SmartDNS's passthrough 2)"],
    [on, "A", BindFlag.NO_SPEED_CHECK, true, false, "its DO query (passed through as it came)"],
  ];
  for (const [stage, type, flags, dnssecOk, want, why] of cases) {
    const ctx = parseContext(query(type, dnssecOk));
    ctx.listener = { address: "test", flags };
    await stage.resolve(ctx, upstream);
    assertEquals(ctx.speedCheckOn === true, want, why);
  }
  // A domain rule's speed-check-mode none turns it off for its names.
  const ctx = parseContext(buildQuery("x.example", "A"));
  ctx.speedRule = { speedCheck: [] };
  await on.resolve(ctx, upstream);
  assertEquals(ctx.speedCheckOn, undefined, "-speed-check-mode none");
});
