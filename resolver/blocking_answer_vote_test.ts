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
  assertEquals(answerAddresses(out, 1), ["127.0.0.2", "192.0.2.9"]);
  const plain = answer("192.0.2.9");
  assertEquals(vote.apply({ votes: 0 }, plain, 1), plain, "nothing to drop: the same bytes");
});

Deno.test("ad-block vote: with 3 servers, blocking answers count once more than half agree", () => {
  const vote = new BlockingAnswerVote(() => 3);
  const tally = { votes: 0 };
  assertEquals(answerAddresses(vote.apply(tally, answer("0.0.0.0"), 1), 1), []);
  assertEquals(answerAddresses(vote.apply(tally, answer("0.0.0.0"), 1), 1), []);
  assertEquals(answerAddresses(vote.apply(tally, answer("0.0.0.0"), 1), 1), ["0.0.0.0"]);
});
