import { assert, assertEquals } from "../tests/helpers/assert.ts";
import { buildQuery, decodeReply } from "../tests/helpers/dns_client.ts";
import { encodePacket } from "../dns/packet.ts";
import { StoredAnswer } from "../dns/stored_answer.ts";
import { scanResponse } from "../dns/wire.ts";
import { encodeSockaddr } from "../net/linux_socket.ts";
import { getLogger } from "../ops/log.ts";
import { type QueryContext, Reason } from "../resolver/query_context.ts";
import { QueryDispatcher } from "./dispatcher.ts";
import { QueryRecorder, type QueryRecords, RecordFlag } from "./query_recorder.ts";
import { ServerStats } from "./stats.ts";

function answerFor(q: QueryContext, address: string): StoredAnswer {
  const wire = encodePacket({
    type: "response",
    id: 0,
    flags: 0x8180,
    questions: [{ name: q.name, type: "A", class: "IN" }],
    answers: [{ name: q.name, type: "A", ttl: 60, data: address }],
  });
  return StoredAnswer.fromResponse(
    wire,
    scanResponse(wire)!,
    { rrTtl: 0, rrTtlMin: 0, rrTtlMax: 0 },
    Date.now(),
  );
}

/** What a consumer saw of each record. */
function collect(recorder: QueryRecorder): Record<string, unknown>[] {
  const seen: Record<string, unknown>[] = [];
  recorder.addConsumer({
    consume(r: QueryRecords, i: number) {
      seen.push({
        name: r.nameText(i),
        client: r.clientText(i),
        qtype: r.qtype[i],
        rcode: r.rcode[i],
        reason: r.reason[i],
        upstream: r.upstream[i] < 0 ? undefined : recorder.upstreams[r.upstream[i]],
        listener: recorder.listeners[r.listener[i]],
        stream: (r.flags[i] & RecordFlag.STREAM) !== 0,
        addresses: r.answerBytes(i).length
          ? decodeReply(r.answerBytes(i).slice()).answers.map((a) => a.data)
          : [],
        elapsedUs: r.elapsedUs[i],
      });
    },
  });
  return seen;
}

Deno.test("the recorder keeps name, client, type, rcode, reason, upstream and answer of hits and misses", async () => {
  const resolve = (q: QueryContext) => {
    if (q.name.startsWith("hit")) {
      q.reason = Reason.CACHE;
      return answerFor(q, "192.0.2.1");
    }
    return new Promise<StoredAnswer>((done) =>
      setTimeout(() => {
        q.answeredBy = "udp://127.0.0.1:5300";
        done(answerFor(q, "198.51.100.9"));
      }, 20)
    );
  };
  const dispatcher = new QueryDispatcher(resolve, new ServerStats(), getLogger("test"));
  const recorder = new QueryRecorder(16, true);
  dispatcher.recorder = recorder;
  const seen = collect(recorder);
  const listener = { address: "udp://127.0.0.1:53", flags: 0 };
  const out = new Uint8Array(1536);
  // A hit through the batched path, the client's sockaddr in a shared buffer at an offset.
  const names = new Uint8Array(64);
  names.set(encodeSockaddr("10.1.2.3", 4000), 32);
  const hit = dispatcher.answerInto(
    buildQuery("Hit.Example", "A", { id: 1 }),
    out,
    0,
    undefined,
    listener,
    names,
    32,
  );
  assert(typeof hit === "number");
  // A miss through answer(), from an IPv6 client, over a stream.
  const miss = dispatcher.answer(
    buildQuery("miss.example", "A", { id: 2 }),
    false,
    { address: "tcp://[::1]:53", flags: 0 },
    encodeSockaddr("2001:db8::7", 5000),
  );
  assert(miss instanceof Promise);
  await miss;
  assertEquals(recorder.drain(), 2);
  assertEquals(seen.map(({ elapsedUs: _, ...rest }) => rest), [
    {
      name: "Hit.Example",
      client: "10.1.2.3",
      qtype: 1,
      rcode: 0,
      reason: Reason.CACHE,
      upstream: undefined,
      listener: "udp://127.0.0.1:53",
      stream: false,
      addresses: ["192.0.2.1"],
    },
    {
      name: "miss.example",
      client: "2001:db8::7",
      qtype: 1,
      rcode: 0,
      reason: Reason.UPSTREAM,
      upstream: "udp://127.0.0.1:5300",
      listener: "tcp://[::1]:53",
      stream: true,
      addresses: ["198.51.100.9"],
    },
  ]);
  assert((seen[1].elapsedUs as number) >= 15_000, `a miss's time: ${seen[1].elapsedUs} µs`);
  assert((seen[0].elapsedUs as number) < 15_000, `a hit's time: ${seen[0].elapsedUs} µs`);
  recorder.close();
});

Deno.test("a recorder whose consumers fall a ring behind loses the oldest records, counted", () => {
  const dispatcher = new QueryDispatcher(
    (q: QueryContext) => answerFor(q, "192.0.2.1"),
    new ServerStats(),
    getLogger("test"),
  );
  const recorder = new QueryRecorder(8, false);
  dispatcher.recorder = recorder;
  const seen = collect(recorder);
  const out = new Uint8Array(1536);
  for (let i = 0; i < 20; i++) dispatcher.answerInto(buildQuery(`n${i}.test`, "A", { id: i }), out, 0);
  assertEquals(recorder.drain(), 8);
  assertEquals(recorder.lost, 12);
  assertEquals(seen.map((s) => s.name), Array.from({ length: 8 }, (_, i) => `n${i + 12}.test`));
  assertEquals(seen[0].addresses, [], "answers not kept");
  assertEquals(seen[0].client, "", "no client address");
  recorder.close();
});

Deno.test("a busy recorder drains as soon as it is a quarter full, not only on its timer", async () => {
  const dispatcher = new QueryDispatcher(
    (q: QueryContext) => answerFor(q, "192.0.2.1"),
    new ServerStats(),
    getLogger("test"),
  );
  const recorder = new QueryRecorder(64, false);
  dispatcher.recorder = recorder;
  const seen = collect(recorder);
  const out = new Uint8Array(1536);
  const answer = (from: number, to: number) => {
    for (let i = from; i < to; i++) dispatcher.answerInto(buildQuery(`n${i}.test`, "A", { id: i }), out, 0);
  };
  answer(0, 15);
  await new Promise((r) => setTimeout(r, 5));
  assertEquals(seen.length, 0, "under a quarter of the ring waits for the timer");
  answer(15, 16);
  await new Promise((r) => setTimeout(r, 5)); // far less than the timer's 100 ms
  assertEquals(seen.length, 16);
  // Turn after turn of 40 answers (more than the ring holds between two timer drains): none lost.
  for (let turn = 0; turn < 10; turn++) {
    answer(100 + turn * 40, 140 + turn * 40);
    await new Promise((r) => setTimeout(r, 0));
  }
  recorder.close();
  assertEquals([seen.length, recorder.lost], [416, 0]);
});

Deno.test("a sampling recorder under load records one in N answers given at once, and counts every one", async () => {
  const dispatcher = new QueryDispatcher(
    (q: QueryContext) => {
      q.reason = Reason.CACHE;
      return answerFor(q, "192.0.2.1");
    },
    new ServerStats(),
    getLogger("test"),
  );
  const recorder = new QueryRecorder(1 << 16, false);
  recorder.sampling = true;
  dispatcher.recorder = recorder;
  let records = 0;
  let weighted = 0;
  let skipped = 0;
  recorder.addConsumer({
    consume(r, i) {
      records++;
      weighted += r.weight[i];
    },
    skipped(qtype, reason, rcode, n) {
      assertEquals([qtype, reason, rcode], [1, Reason.CACHE, 0]);
      skipped += n;
    },
  });
  const out = new Uint8Array(1536);
  const queries = Array.from({ length: 64 }, (_, i) => buildQuery(`s${i}.test`, "A", { id: i + 1 }));
  const ask = (n: number) => {
    for (let k = 0; k < n; k++) dispatcher.answerInto(queries[k & 63], out, 0);
  };
  await new Promise((r) => setTimeout(r, 110));
  ask(20_000); // ~180k a second: over the full-record rate
  recorder.drain();
  assert(recorder.sampleEvery > 1, `sampling one in ${recorder.sampleEvery}`);
  const every = recorder.sampleEvery;
  records = weighted = skipped = 0;
  ask(64_000);
  recorder.drain();
  assertEquals(records + skipped, 64_000, "every answer counted once");
  assert(records <= 64_000 / every + 1, `${records} records for one in ${every}`);
  assert(Math.abs(weighted - 64_000) <= every, `the records stand for ${weighted}`);
  // Without sampling (the audit file on), every answer is a record.
  recorder.sampling = false;
  await new Promise((r) => setTimeout(r, 110));
  recorder.drain();
  assertEquals(recorder.sampleEvery, 1);
  records = skipped = 0;
  ask(1000);
  recorder.drain();
  assertEquals([records, skipped], [1000, 0]);
  recorder.close();
});
