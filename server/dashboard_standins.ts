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
import type { QueryRecordConsumer, QueryRecorder, QueryRecords } from "./query_recorder.ts";

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

/** STAND-IN query log: the last `capacity` answers as plain entries, searchable. */
export class RecentQueries implements QueryRecordConsumer {
  private readonly entries: QueryLogEntry[] = [];
  private next = 0;

  constructor(
    private readonly recorder: QueryRecorder,
    private readonly capacity = 2000,
    /** Oldest entry shown, in seconds (0: any). */
    private readonly maxAgeSeconds = 0,
  ) {}

  /** Takes one record. */
  consume(r: QueryRecords, i: number): void {
    const reason = REASON_NAMES[r.reason[i]] ?? String(r.reason[i]);
    const upstream = r.upstream[i];
    const entry: QueryLogEntry = {
      time: r.time[i],
      client: r.clientText(i),
      name: r.nameText(i),
      type: typeName(r.qtype[i]),
      rcode: RCODE_NAMES[r.rcode[i]] ?? `RCODE${r.rcode[i]}`,
      reason,
      detail: upstream >= 0
        ? this.recorder.upstreams[upstream] ?? ""
        : r.rule[i] >= 0
        ? `rule ${r.rule[i]}`
        : "",
      elapsedMs: r.elapsedUs[i] / 1000,
      answers: answerAddresses(r.answerBytes(i)),
    };
    if (this.entries.length < this.capacity) this.entries.push(entry);
    else this.entries[this.next] = entry;
    this.next = (this.next + 1) % this.capacity;
  }

  /** Newest first, filtered: name and client by substring, type and reason exactly. */
  search(q: QueryLogSearch): QueryLogEntry[] {
    const found: QueryLogEntry[] = [];
    const n = this.entries.length;
    const oldest = this.maxAgeSeconds > 0 ? Date.now() - this.maxAgeSeconds * 1000 : 0;
    const name = q.name?.toLowerCase();
    for (let k = 1; k <= n && found.length < q.limit; k++) {
      const e = this.entries[(this.next - k + n * 2) % n];
      if (e.time < oldest) break;
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

/** Counts in a capped map: when full, the entries counted once go. */
class CappedCounts {
  readonly counts = new Map<string, number>();
  add(key: string): void {
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
    if (this.counts.size > TOP_CAP) {
      for (const [k, v] of this.counts) if (v <= 1) this.counts.delete(k);
    }
  }
  top(n: number): [string, number][] {
    return [...this.counts].sort((a, b) => b[1] - a[1]).slice(0, n);
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
    const reasonName = REASON_NAMES[reason] ?? String(reason);
    this.totals[reasonName] = (this.totals[reasonName] ?? 0) + 1;
    if (reason === Reason.CACHE || reason === Reason.STALE) this.hits[b]++;
    const name = r.nameText(i);
    this.names.add(name);
    this.clients.add(r.clientText(i));
    if (reason === Reason.BLOCKED || reason === Reason.SOA) {
      this.blocked[b]++;
      this.blockedNames.add(name);
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
      counters: { ...this.totals },
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
  for (const [reason, n] of Object.entries(stats.totals)) {
    if (reason !== "queries") lines.push(`keeldns_queries_total{reason="${reason}"} ${n}`);
  }
  lines.push(
    "# HELP keeldns_cache_entries Answers in the cache.",
    "# TYPE keeldns_cache_entries gauge",
    `keeldns_cache_entries ${counters.cacheEntries ?? 0}`,
  );
  return lines.join("\n") + "\n";
}
