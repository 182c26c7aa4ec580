/**
 * `deno run -A bench/recorder_cost.ts`: CPU per record of the query recorder's hot-path write and
 * of each consumer (audit line formatting, the query log), in process, on cached-answer records.
 * What the QPS ratios of `--only audit` come from, without dnsperf's noise.
 *
 * @module
 */
import { cpuUsage } from "node:process";
import { encodePacket } from "../dns/packet.ts";
import { StoredAnswer } from "../dns/stored_answer.ts";
import { parseContext, Reason } from "../resolver/query_context.ts";
import { scanResponse } from "../dns/wire.ts";
import { QueryRecorder } from "../server/query_recorder.ts";
import { AuditLineFormatter, LineBuffer } from "../ops/audit_file.ts";
import { QueryLog } from "../ops/query_log.ts";
import { encodeSockaddr } from "../net/linux_socket.ts";
import { buildQuery } from "../tests/helpers/dns_client.ts";
import type { RecordLookups } from "../ops/query_record_lookups.ts";

const N = 8192;
const recorder = new QueryRecorder(N, true);
const lookups: RecordLookups = {
  upstream: () => "udp://127.0.0.1:53",
  ruleSource: () => undefined,
  upstreamGroup: () => "default",
} as unknown as RecordLookups;
const peer = encodeSockaddr("192.168.1.20", 5353);
const contexts = Array.from({ length: 64 }, (_, i) => {
  const q = parseContext(buildQuery(`h${i}.bench.test`, "A", { id: i }));
  q.reason = Reason.CACHE;
  q.peer = peer;
  const wire = encodePacket({
    type: "response",
    id: i,
    flags: 0x8180,
    questions: [{ name: q.name, type: "A", class: "IN" }],
    answers: [{ name: q.name, type: "A", ttl: 3600, data: "192.0.2.1" }],
  });
  const answer = StoredAnswer.fromResponse(
    wire,
    scanResponse(wire)!,
    { rrTtl: 0, rrTtlMin: 0, rrTtlMax: 0 },
    Date.now(),
  );
  const out = new Uint8Array(1536);
  const length = answer.renderInto(q, Date.now(), 1232, out, 0);
  return { q, out, length };
});

/** Prints the process CPU time (not wall time: the machine is shared) per record of `fn`'s rounds. */
function time(what: string, fn: () => void, rounds = 40): void {
  fn();
  const t = cpuUsage();
  for (let r = 0; r < rounds; r++) fn();
  const used = cpuUsage(t);
  const us = (used.user + used.system) / (rounds * N);
  console.log(`${what}: ${us.toFixed(3)} µs CPU per record`);
}

time("record (hot path)", () => {
  for (let i = 0; i < N; i++) {
    const c = contexts[i & 63];
    recorder.record(c.q, c.out, 0, c.length, 0, false, 1_700_000_000_000);
  }
  (recorder as unknown as { read: number }).read = recorder.written;
});
const formatter = new AuditLineFormatter(lookups, true);
const lines = new LineBuffer();
time("audit line", () => {
  for (let i = 0; i < N; i++) formatter.write(recorder.records, i, lines);
  lines.take();
});
const log = new QueryLog(10000, lookups);
time("query log", () => {
  for (let i = 0; i < N; i++) log.consume(recorder.records, i);
});
