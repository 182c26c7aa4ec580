import { assert, assertEquals } from "../tests/helpers/assert.ts";
import { buildQuery } from "../tests/helpers/dns_client.ts";
import { encodePacket } from "../dns/packet.ts";
import { StoredAnswer } from "../dns/stored_answer.ts";
import { scanResponse } from "../dns/wire.ts";
import { encodeSockaddr } from "../net/linux_socket.ts";
import { getLogger } from "./log.ts";
import { type QueryContext, Reason } from "../resolver/query_context.ts";
import { QueryDispatcher } from "../server/dispatcher.ts";
import { QueryRecorder } from "../server/query_recorder.ts";
import { ServerStats } from "../server/stats.ts";
import { QueryLog } from "./query_log.ts";
import type { RecordLookups } from "./query_record_lookups.ts";

function answerFor(q: QueryContext, addresses: string[]): StoredAnswer {
  const wire = encodePacket({
    type: "response",
    id: 0,
    flags: 0x8180,
    questions: [{ name: q.name, type: q.qtype === 28 ? "AAAA" : "A", class: "IN" }],
    answers: addresses.map((data) => ({
      name: q.name,
      type: data.includes(":") ? "AAAA" as const : "A" as const,
      ttl: 60,
      data,
    })),
  });
  return StoredAnswer.fromResponse(
    wire,
    scanResponse(wire)!,
    { rrTtl: 0, rrTtlMin: 0, rrTtlMax: 0 },
    Date.now(),
  );
}

const LOOKUPS: RecordLookups = {
  upstream: (i) => i >= 0 ? "udp://192.0.2.53:53" : undefined,
  ruleSource: (_g, rule) =>
    rule === 7
      ? { text: "address /ads.test/#", source: { file: "/etc/keeldns/block.conf", line: 3, col: 1 } }
      : undefined,
  upstreamGroup: () => "default",
};

/** A dispatcher answering every name from a rule of its own: `ads.*` blocked, `v6.*` AAAA, else A. */
function rig(capacity: number) {
  const dispatcher = new QueryDispatcher(
    (q: QueryContext) => {
      if (q.name.startsWith("ads.")) {
        q.reason = Reason.BLOCKED;
        q.rule = 7;
        return answerFor(q, []);
      }
      q.reason = q.name.startsWith("hit.") ? Reason.CACHE : Reason.UPSTREAM;
      if (q.reason === Reason.UPSTREAM) q.answeredBy = "udp://192.0.2.53:53";
      return answerFor(q, q.qtype === 28 ? ["2001:db8::1", "2001:db8:0:0:1::2"] : ["192.0.2.1", "192.0.2.2"]);
    },
    new ServerStats(),
    getLogger("test"),
  );
  const recorder = new QueryRecorder(4096, true);
  dispatcher.recorder = recorder;
  const log = new QueryLog(capacity, LOOKUPS);
  recorder.addConsumer(log);
  const out = new Uint8Array(1536);
  const peer = new Uint8Array(64);
  const ask = (name: string, type: "A" | "AAAA" = "A", client = "10.0.0.1") => {
    peer.set(encodeSockaddr(client, 4000), 0);
    const r = dispatcher.answerInto(buildQuery(name, type, { id: 1 }), out, 0, undefined, undefined, peer, 0);
    assert(typeof r === "number");
  };
  return { recorder, log, ask };
}

Deno.test("the query log keeps each answer's client, name, type, rcode, reason, detail and addresses", () => {
  const { recorder, log, ask } = rig(100);
  ask("www.example", "A", "10.0.0.1");
  ask("ads.tracker.test", "A", "10.0.0.2");
  ask("v6.example", "AAAA", "2001:db8::99");
  ask("hit.example", "A", "10.0.0.1");
  recorder.drain();
  const all = log.search();
  assertEquals(all.map(({ time: _t, elapsedMs: _e, ...rest }) => rest), [
    {
      client: "10.0.0.1",
      name: "hit.example",
      type: "A",
      rcode: "NOERROR",
      reason: "cache",
      detail: "",
      answers: ["192.0.2.1", "192.0.2.2"],
    },
    {
      client: "2001:db8::99",
      name: "v6.example",
      type: "AAAA",
      rcode: "NOERROR",
      reason: "upstream",
      detail: "udp://192.0.2.53:53",
      answers: ["2001:db8::1", "2001:db8::1:0:0:2"],
    },
    {
      client: "10.0.0.2",
      name: "ads.tracker.test",
      type: "A",
      rcode: "NOERROR",
      reason: "blocked",
      detail: "/etc/keeldns/block.conf:3",
      answers: [],
    },
    {
      client: "10.0.0.1",
      name: "www.example",
      type: "A",
      rcode: "NOERROR",
      reason: "upstream",
      detail: "udp://192.0.2.53:53",
      answers: ["192.0.2.1", "192.0.2.2"],
    },
  ]);
  assert(all.every((e) => e.time > Date.now() - 5000 && e.elapsedMs >= 0));
  recorder.close();
});

Deno.test("the query log searches by name part, client, type, reason, time and limit", () => {
  const { recorder, log, ask } = rig(100);
  for (let i = 0; i < 10; i++) ask(`n${i}.Example.COM`, i % 2 ? "AAAA" : "A", `10.0.0.${i % 3}`);
  ask("ads.example.com");
  recorder.drain();
  assertEquals(log.search({ name: "n3.example" }).map((e) => e.name), ["n3.Example.COM"]);
  assertEquals(log.search({ name: "EXAMPLE.com", limit: 3 }).map((e) => e.name), [
    "ads.example.com",
    "n9.Example.COM",
    "n8.Example.COM",
  ]);
  assertEquals(log.search({ client: "10.0.0.2" }).map((e) => e.name), [
    "n8.Example.COM",
    "n5.Example.COM",
    "n2.Example.COM",
  ]);
  assertEquals(log.search({ type: "AAAA" }).length, 5);
  assertEquals(log.search({ type: "28" }).length, 5);
  assertEquals(log.search({ reason: "blocked" }).map((e) => e.name), ["ads.example.com"]);
  assertEquals(log.search({ reason: "blocked", type: "AAAA" }), []);
  assertEquals(log.search({ type: "NOSUCHTYPE" }), []);
  assertEquals(log.search({ before: 0 }), []);
  recorder.close();
});

Deno.test("a full query log drops the oldest entries, by count and by name bytes, and stays the same size", () => {
  const { recorder, log, ask } = rig(50);
  const bytes = log.bytes;
  for (let i = 0; i < 120; i++) ask(`short${i}.test`);
  recorder.drain();
  assertEquals(log.size, 50);
  assertEquals(log.search({ limit: 1000 }).map((e) => e.name).at(-1), "short70.test");
  // Long names (about 200 bytes each with their addresses) push out more than one entry each.
  const label = "x".repeat(60);
  for (let i = 0; i < 40; i++) ask(`${label}.${label}.${label}.long${i}.test`);
  recorder.drain();
  const kept = log.search({ limit: 1000 });
  assert(kept.length < 50 && kept.length >= 10, `${kept.length} long entries kept`);
  assertEquals(kept[0].name, `${label}.${label}.${label}.long39.test`);
  for (let j = 1; j < kept.length; j++) {
    assertEquals(kept[j].name, `${label}.${label}.${label}.long${39 - j}.test`, "newest first, none garbled");
  }
  assertEquals(log.bytes, bytes, "no growth");
  recorder.close();
});

Deno.test("the query log's memory: about 113 bytes an entry (1.1 MB per 10,000)", () => {
  const log = new QueryLog(10_000, LOOKUPS);
  assertEquals(log.bytes, 10_000 * 113);
});
