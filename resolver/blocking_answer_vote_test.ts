import { answerAddresses } from "../dns/address_selection.ts";
import { encodePacket } from "../dns/packet.ts";
import { assertEquals } from "../tests/helpers/assert.ts";
import { BlockingAnswerVote, isBlockingAddress } from "./blocking_answer_vote.ts";

function answer(...ips: string[]): Uint8Array {
  return encodePacket({
    type: "response",
    id: 1,
    flags: 0x8180,
    questions: [{ name: "x.test", type: "A", class: "IN" }],
    answers: [
      { name: "x.test", type: "CNAME", ttl: 60, data: "y.test" },
      ...ips.map((ip) => ({ name: "y.test", type: "A" as const, ttl: 60, data: ip })),
    ],
  });
}

Deno.test("ad-block vote: which addresses count", () => {
  for (const ip of ["0.0.0.0", "127.0.0.1", "127.9.9.9", "::", "::1"]) {
    assertEquals(isBlockingAddress(ip), true, ip);
  }
  for (const ip of ["1.0.0.0", "10.0.0.1", "::2", "2001:db8::1"]) {
    assertEquals(isBlockingAddress(ip), false, ip);
  }
});

Deno.test("ad-block vote: a lone server's first blocking address is dropped, later ones are kept", () => {
  const vote = new BlockingAnswerVote(() => 1);
  const tally = { votes: 0 };
  const out = vote.apply(tally, answer("127.0.0.4", "127.0.0.2", "192.0.2.9"), 1);
  assertEquals([answerAddresses(out.wire, 1), out.weak], [["127.0.0.2", "192.0.2.9"], false]);
  const plain = answer("192.0.2.9");
  assertEquals(
    vote.apply({ votes: 0 }, plain, 1),
    { wire: plain, weak: false },
    "nothing to drop: the same bytes",
  );
});

Deno.test("ad-block vote: an answer whose every address is dropped is kept as it came, weak", () => {
  // SmartDNS answers a lone server's lone 127.0.0.1 with 127.0.0.1 (release 40 and HEAD).
  const lone = answer("127.0.0.1");
  assertEquals(new BlockingAnswerVote(() => 1).apply({ votes: 0 }, lone, 1), { wire: lone, weak: true });
  const two = answer("0.0.0.0", "192.0.2.9");
  assertEquals(new BlockingAnswerVote(() => 1).apply({ votes: 0 }, two, 1).weak, false, "an address stays");
});

Deno.test("ad-block vote: with 3 servers, blocking answers count once more than half agree", () => {
  const vote = new BlockingAnswerVote(() => 3);
  const tally = { votes: 0 };
  const blocked = answer("0.0.0.0");
  assertEquals(vote.apply(tally, blocked, 1), { wire: blocked, weak: true });
  assertEquals(vote.apply(tally, blocked, 1), { wire: blocked, weak: true });
  assertEquals(vote.apply(tally, blocked, 1), { wire: blocked, weak: false });
});
