/**
 * STAND-INS for the dashboard until the other parts of issue 15 are merged — the merger replaces
 * each with the real one and deletes this file:
 * - {@link RecentQueries} → the audit part's query log (ops/query_log.ts `search()`),
 * - {@link RollingStats} and {@link standInMetricsText} → the metrics part's QueryStats,
 *   `statsSnapshot()` and `metricsText()` (ops/query_stats.ts, ops/prometheus.ts).
 * They are QueryRecordConsumers fed off the hot path, kept small: a ring of the last entries as
 * plain objects, 10-second buckets for the last hour, and capped count maps (not a sketch).
 *
 * @module
 */
import { typeName } from "../dns/packet.ts";
import { Reason } from "../resolver/query_context.ts";
import type { DashboardStats, QueryLogEntry, QueryLogSearch } from "./dashboard.ts";
import {
  type QueryRecordConsumer,
  type QueryRecorder,
  QueryRecords,
  RECORD_ANSWER_BYTES,
  RECORD_NAME_BYTES,
  RecordFlag,
} from "./query_recorder.ts";

/** Reason codes by name, as the query log and the metrics name them. */
export const REASON_NAMES: readonly string[] = Object.entries(Reason).sort((a, b) => a[1] - b[1]).map((
  [k],
) => k.toLowerCase());
const RCODE_NAMES = ["NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED"];

/** The A/AAAA/CNAME data of the answer section of a (possibly cut) answer. */
export function answerAddresses(wire: Uint8Array): string[] {
  const out: string[] = [];
  if (wire.length < 12) return out;
  const qd = (wire[4] << 8) | wire[5];
  const an = (wire[6] << 8) | wire[7];
  let p = 12;
  const skipName = () => {
    while (p < wire.length) {
      const len = wire[p];
      if (len === 0) return void p++;
      if ((len & 0xc0) === 0xc0) return void (p += 2);
      p += len + 1;
    }
  };
  for (let i = 0; i < qd; i++) {
    skipName();
    p += 4;
  }
  for (let i = 0; i < an && p < wire.length; i++) {
    skipName();
    if (p + 10 > wire.length) break;
    const type = (wire[p] << 8) | wire[p + 1];
    const length = (wire[p + 8] << 8) | wire[p + 9];
    p += 10;
    if (p + length > wire.length) break;
    if (type === 1 && length === 4) out.push(wire.subarray(p, p + 4).join("."));
    else if (type === 28 && length === 16) {
      const groups: string[] = [];
      for (let g = 0; g < 8; g++) groups.push(((wire[p + 2 * g] << 8) | wire[p + 2 * g + 1]).toString(16));
      out.push(groups.join(":").replace(/(^|:)0(:0)+(:|$)/, "::").replace(/:::+/, "::"));
    }
    p += length;
  }
  return out;
}

/** Copies slot `i` of `from` into slot `j` of `to` (the name and the kept answer bytes only). */
function copySlot(from: QueryRecords, i: number, to: QueryRecords, j: number): void {
  to.time[j] = from.time[i];
  to.elapsedUs[j] = from.elapsedUs[i];
  to.qtype[j] = from.qtype[i];
  to.qclass[j] = from.qclass[i];
  to.rcode[j] = from.rcode[i];
  to.reason[j] = from.reason[i];
  to.flags[j] = from.flags[i];
  to.rule[j] = from.rule[i];
  to.upstream[j] = from.upstream[i];
  to.listener[j] = from.listener[i];
  to.ruleGroup[j] = from.ruleGroup[i];
  to.clientFamily[j] = from.clientFamily[i];
  for (let k = 0; k < 16; k++) to.client[j * 16 + k] = from.client[i * 16 + k];
  const n = from.nameLength[i];
  to.nameLength[j] = n;
  for (let k = 0, a = i * RECORD_NAME_BYTES, b = j * RECORD_NAME_BYTES; k < n; k++) {
    to.name[b + k] = from.name[a + k];
  }
  to.answerLength[j] = from.answerLength[i];
  if (to.answer.length && from.flags[i] & RecordFlag.ANSWER_KEPT) {
    const kept = Math.min(from.answerLength[i], RECORD_ANSWER_BYTES);
    for (let k = 0, a = i * RECORD_ANSWER_BYTES, b = j * RECORD_ANSWER_BYTES; k < kept; k++) {
      to.answer[b + k] = from.answer[a + k];
    }
  }
}

/**
 * STAND-IN query log: the last `capacity` records, copied into a ring of its own (no object per
 * answer); formatted into entries only when searched.
 */
export class RecentQueries implements QueryRecordConsumer {
  private readonly ring: QueryRecords;
  private written = 0;

  constructor(
    private readonly recorder: QueryRecorder,
    capacity = 2048,
    /** Oldest entry shown, in seconds (0: any). */
    private readonly maxAgeSeconds = 0,
  ) {
    this.ring = new QueryRecords(capacity, recorder.keepAnswers);
  }

  /** Takes one record. */
  consume(r: QueryRecords, i: number): void {
    copySlot(r, i, this.ring, this.written & (this.ring.capacity - 1));
    this.written++;
  }

  private entry(j: number): QueryLogEntry {
    const r = this.ring;
    const upstream = r.upstream[j];
    return {
      time: r.time[j],
      client: r.clientText(j),
      name: r.nameText(j),
      type: typeName(r.qtype[j]),
      rcode: RCODE_NAMES[r.rcode[j]] ?? `RCODE${r.rcode[j]}`,
      reason: REASON_NAMES[r.reason[j]] ?? String(r.reason[j]),
      detail: upstream >= 0
        ? this.recorder.upstreams[upstream] ?? ""
        : r.rule[j] >= 0
        ? `rule ${r.rule[j]}`
        : "",
      elapsedMs: r.elapsedUs[j] / 1000,
      answers: answerAddresses(r.answerBytes(j)),
    };
  }

  /** Newest first, filtered: name and client by substring, type and reason exactly. */
  search(q: QueryLogSearch): QueryLogEntry[] {
    const found: QueryLogEntry[] = [];
    const held = Math.min(this.written, this.ring.capacity);
    const oldest = this.maxAgeSeconds > 0 ? Date.now() - this.maxAgeSeconds * 1000 : 0;
    const name = q.name?.toLowerCase();
    for (let k = 1; k <= held && found.length < q.limit; k++) {
      const j = (this.written - k) & (this.ring.capacity - 1);
      if (this.ring.time[j] < oldest) break;
      const e = this.entry(j);
      if (name && !e.name.toLowerCase().includes(name)) continue;
      if (q.client && !e.client.includes(q.client)) continue;
      if (q.type && e.type !== q.type) continue;
      if (q.reason && e.reason !== q.reason) continue;
      found.push(e);
    }
    return found;
  }
}

/** Seconds per bucket, and buckets kept (an hour). */
const STEP = 10;
const BUCKETS = 360;
/** Distinct names/clients counted before the smallest are dropped. */
const TOP_CAP = 2000;

/** FNV-1a of `length` bytes of `bytes` from `at`, with `seed` mixed in first. */
function hashBytes(bytes: Uint8Array, at: number, length: number, seed: number): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let k = at; k < at + length; k++) h = Math.imul(h ^ bytes[k], 0x01000193);
  return h >>> 0;
}

/**
 * Counts by a hash of the key's bytes; the key's text is made once, when it is first seen. When
 * full, the entries counted once go.
 */
class CappedCounts {
  readonly counts = new Map<number, { text: string; n: number }>();
  add(hash: number, text: () => string): void {
    const e = this.counts.get(hash);
    if (e) return void e.n++;
    this.counts.set(hash, { text: text(), n: 1 });
    if (this.counts.size > TOP_CAP) {
      for (const [k, v] of this.counts) if (v.n <= 1) this.counts.delete(k);
    }
  }
  top(n: number): [string, number][] {
    return [...this.counts.values()].sort((a, b) => b.n - a.n).slice(0, n).map((e) => [e.text, e.n]);
  }
}

/** STAND-IN statistics: 10-s buckets for the last hour, totals, top lists. */
export class RollingStats implements QueryRecordConsumer {
  private start = Math.floor(Date.now() / 1000 / STEP) * STEP * 1000;
  private readonly queries: number[] = [0];
  private readonly hits: number[] = [0];
  private readonly blocked: number[] = [0];
  private readonly latency = new Map<string, { sum: number[]; count: number[] }>();
  readonly totals: Record<string, number> = { queries: 0 };
  private readonly byReason = new Float64Array(256);
  private readonly names = new CappedCounts();
  private readonly clients = new CappedCounts();
  private readonly blockedNames = new CappedCounts();

  constructor(private readonly recorder: QueryRecorder) {}

  /** Takes one record. */
  consume(r: QueryRecords, i: number): void {
    const b = this.bucket(r.time[i]);
    const reason = r.reason[i];
    this.queries[b]++;
    this.totals.queries++;
    this.byReason[reason]++;
    if (reason === Reason.CACHE || reason === Reason.STALE) this.hits[b]++;
    const nameHash = hashBytes(r.name, i * RECORD_NAME_BYTES, r.nameLength[i], 0);
    this.names.add(nameHash, () => r.nameText(i));
    this.clients.add(hashBytes(r.client, i * 16, 16, r.clientFamily[i]), () => r.clientText(i));
    if (reason === Reason.BLOCKED || reason === Reason.SOA) {
      this.blocked[b]++;
      this.blockedNames.add(nameHash, () => r.nameText(i));
    }
    const u = r.upstream[i];
    if (u >= 0 && reason === Reason.UPSTREAM) {
      const address = this.recorder.upstreams[u];
      let l = this.latency.get(address);
      if (!l) {
        this.latency.set(
          address,
          l = { sum: this.queries.map(() => 0), count: this.queries.map(() => 0) },
        );
      }
      l.sum[b] += r.elapsedUs[i] / 1000;
      l.count[b]++;
    }
  }

  /** The bucket of `time`, adding buckets up to it (and dropping those older than an hour). */
  private bucket(time: number): number {
    let b = Math.floor((time - this.start) / 1000 / STEP);
    if (b < 0) return 0;
    while (b >= this.queries.length) {
      for (const a of [this.queries, this.hits, this.blocked]) a.push(0);
      for (const l of this.latency.values()) l.sum.push(0), l.count.push(0);
    }
    while (this.queries.length > BUCKETS) {
      for (const a of [this.queries, this.hits, this.blocked]) a.shift();
      for (const l of this.latency.values()) l.sum.shift(), l.count.shift();
      this.start += STEP * 1000;
      b--;
    }
    return b;
  }

  /** Totals: queries, and each reason's count by its name. */
  counters(): Record<string, number> {
    const out: Record<string, number> = { queries: this.totals.queries, recordsLost: this.recorder.lost };
    this.byReason.forEach((n, code) => {
      if (n > 0) out[REASON_NAMES[code] ?? String(code)] = n;
    });
    return out;
  }

  /** The snapshot the dashboard's charts and top lists show. */
  snapshot(): DashboardStats {
    this.bucket(Date.now());
    return {
      series: {
        start: this.start,
        step: STEP,
        queries: this.queries,
        cacheHits: this.hits,
        blocked: this.blocked,
        upstreamLatencyMs: Object.fromEntries(
          [...this.latency].map(([a, l]) => [a, l.sum.map((s, k) => l.count[k] ? s / l.count[k] : null)]),
        ),
      },
      counters: this.counters(),
      top: { names: this.names.top(10), clients: this.clients.top(10), blocked: this.blockedNames.top(10) },
    };
  }
}

/** STAND-IN `/metrics`: a few counters in Prometheus text, until the metrics part's exposition. */
export function standInMetricsText(stats: RollingStats, counters: Record<string, number>): string {
  const lines = [
    "# HELP keeldns_queries_total Queries answered, by reason.",
    "# TYPE keeldns_queries_total counter",
  ];
  for (const [reason, n] of Object.entries(stats.counters())) {
    if (reason !== "queries" && reason !== "recordsLost") {
      lines.push(`keeldns_queries_total{reason="${reason}"} ${n}`);
    }
  }
  lines.push(
    "# HELP keeldns_cache_entries Answers in the cache.",
    "# TYPE keeldns_cache_entries gauge",
    `keeldns_cache_entries ${counters.cacheEntries ?? 0}`,
  );
  return lines.join("\n") + "\n";
}
