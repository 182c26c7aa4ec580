import { assertEquals } from "../tests/helpers/assert.ts";
import { decodePacket, encodePacket } from "./packet.ts";
import { limitAddresses } from "./address_limit.ts";

Deno.test("max-reply-ip-num keeps the first N addresses of each family and every other record", () => {
  const wire = encodePacket({
    type: "response",
    id: 5,
    flags: 0x8180,
    questions: [{ name: "many.test", type: "A", class: "IN" }],
    answers: [
      { name: "many.test", type: "CNAME", ttl: 60, data: "real.test" },
      ...Array.from(
        { length: 12 },
        (_, i) => ({ name: "real.test", type: "A" as const, ttl: 60, data: `192.0.2.${i + 1}` }),
      ),
    ],
  });
  const limited = decodePacket(limitAddresses(wire, 8));
  assertEquals(limited.answers!.map((r) => r.type === "A" ? r.data : r.type), [
    "CNAME",
    ...Array.from({ length: 8 }, (_, i) => `192.0.2.${i + 1}`),
  ]);
  assertEquals(limited.id, 5);
  assertEquals(limitAddresses(wire, 12), wire, "within the limit: the same bytes");
  assertEquals(limitAddresses(wire, 0), wire, "0: no limit");
});
