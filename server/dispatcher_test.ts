import { assertEquals } from "../tests/helpers/assert.ts";
import { buildQuery, decodeReply } from "../tests/helpers/dns_client.ts";
import { StoredAnswer } from "../dns/stored_answer.ts";
import type { Question } from "../dns/wire.ts";
import { getLogger } from "../ops/log.ts";
import { QueryDispatcher } from "./dispatcher.ts";
import { ServerStats } from "./stats.ts";

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
