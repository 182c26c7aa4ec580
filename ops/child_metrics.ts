/**
 * What the running child shows of itself: the Prometheus exposition (`/metrics`, `keeldns
 * metrics`) and a JSON snapshot for the dashboard's charts, both made from the query statistics,
 * the listeners' counters, the cache and the upstreams' health. The statistics a predecessor
 * counted come in through {@link ChildMetrics.absorb} and go on in {@link ChildMetrics.state}.
 *
 * @module
 */
import denoJson from "../deno.json" with { type: "json" };
import type { Resolver } from "../resolver/resolver.ts";
import type { QueryRecorder } from "../server/query_recorder.ts";
import type { ServerStats } from "../server/stats.ts";
import type { UpstreamHealthReport } from "../upstream/health.ts";
import { PrometheusText } from "./prometheus.ts";
import {
  type QueryStats,
  type QueryStatsSnapshot,
  type QueryStatsState,
  rcodeName,
  REASON_NAMES,
  typeLabel,
} from "./query_stats.ts";

/** Per-upstream gauges from the servers' health: name, type, help, value. */
const UPSTREAM_HEALTH: readonly [string, "gauge", string, (u: UpstreamHealthReport) => number][] = [
  [
    "keeldns_upstream_up",
    "gauge",
    "1 while the upstream server is up, 0 while it is down.",
    (u) => u.state === "up" ? 1 : 0,
  ],
  [
    "keeldns_upstream_rtt_p50_seconds",
    "gauge",
    "Median round trip to the upstream over its recent window.",
    (u) => u.rttP50Ms / 1000,
  ],
  [
    "keeldns_upstream_rtt_p95_seconds",
    "gauge",
    "95th percentile round trip over its recent window.",
    (u) => u.rttP95Ms / 1000,
  ],
  [
    "keeldns_upstream_timeout_seconds",
    "gauge",
    "The per-exchange timeout in force for the upstream.",
    (u) => u.timeoutMs / 1000,
  ],
];

/** What the statistics keep per upstream. */
type UpstreamCounts = ReturnType<QueryStats["upstreams"]>[number];

/** Per-upstream counters the statistics keep: name, help, value. */
const UPSTREAM_COUNTERS: readonly [string, string, (u: UpstreamCounts) => number][] = [
  ["keeldns_upstream_answers_total", "Exchanges the upstream answered.", (u) => u.exchangesAnswered],
  ["keeldns_upstream_failures_total", "Exchanges with the upstream that failed.", (u) => u.failures],
  ["keeldns_upstream_probes_total", "Probes sent to the upstream while it was down.", (u) => u.probes],
];

/** The listeners' counters as Prometheus counters: field of ServerStats, metric name, help. */
const SERVER_COUNTERS: readonly [keyof ServerStats, string, string][] = [
  ["received", "keeldns_messages_received_total", "DNS messages received (datagrams and stream messages)."],
  ["answered", "keeldns_answers_sent_total", "Answers sent."],
  ["malformed", "keeldns_malformed_messages_total", "Messages that were not a parseable query."],
  ["truncated", "keeldns_truncated_answers_total", "Answers sent with TC set (too large for UDP)."],
  ["internalErrors", "keeldns_internal_errors_total", "Errors while resolving or rendering an answer."],
  ["refused", "keeldns_refused_queries_total", "Queries refused or dropped by the access rules."],
  ["tcpAccepted", "keeldns_tcp_connections_accepted_total", "Stream connections accepted."],
  ["tcpRefused", "keeldns_tcp_connections_refused_total", "Stream connections refused at the cap."],
  [
    "tcpClosedOverBudget",
    "keeldns_tcp_connections_closed_over_budget_total",
    "Stream connections closed for staying over their budget.",
  ],
  ["tcpWriteTimeouts", "keeldns_tcp_write_timeouts_total", "Stream connections closed on a write timeout."],
];

/** One upstream server as the dashboard's table shows it: health, and what the statistics saw. */
export interface UpstreamSnapshot {
  readonly address: string;
  /** From the running resolver's health (absent for a server no longer configured). */
  readonly health?: UpstreamHealthReport;
  /** Answers of this server that reached clients, and their average time (ms), since counting began. */
  readonly answersGiven: number;
  readonly averageMs: number;
  /** Exchanges answered and failed, over every child since counting began. */
  readonly exchangesAnswered: number;
  readonly failures: number;
  readonly series: QueryStatsSnapshot["upstreams"][number]["series"];
}

/** The dashboard's data: counters, series for charts, top lists, upstreams, cache, memory. */
export interface StatsSnapshot extends Omit<QueryStatsSnapshot, "upstreams"> {
  /** When this was made, and when this child started (ms since the epoch). */
  readonly now: number;
  readonly childStartedAt: number;
  readonly version: string;
  readonly upstreams: readonly UpstreamSnapshot[];
  /** The answer cache (null when it is off). */
  readonly cache: {
    readonly entries: number;
    readonly capacity: number;
    readonly bytes: number;
    readonly prefetches: number;
  } | null;
  /** The listeners' counters, over every child since counting began. */
  readonly server: Readonly<Record<string, number>>;
  readonly memory: { readonly rssBytes: number; readonly heapUsedBytes: number };
}

/** What {@link ChildMetrics} reads. */
export interface ChildMetricsSources {
  /** The resolver serving now (it changes on reload). */
  readonly resolver: () => Resolver;
  readonly stats: ServerStats;
  readonly queryStats: QueryStats;
  /** The recorder feeding `queryStats` (drained before each reading, for what was just answered). */
  readonly recorder: QueryRecorder;
}

/** The kind of build running (as `keeldns version` says it). */
function buildKind(): string {
  if (Deno.build.standalone) return "compiled";
  return Deno.mainModule.endsWith(".ts") ? "source" : "runtime";
}

/** The child's metrics: Prometheus text, the dashboard's snapshot, and the state a successor takes over. */
export class ChildMetrics {
  readonly startedAt = Date.now();
  /** The carries taken in (their ids), so the guardian knows a carry made it into a report. */
  private readonly absorbed: number[] = [];

  constructor(private readonly sources: ChildMetricsSources) {}

  /** Reads what the recorder holds and the upstreams' counters, so a reading is current. */
  private refresh(): void {
    this.sources.recorder.drain();
    this.sources.queryStats.sampleUpstreams(this.sources.resolver().upstreams());
  }

  /** The listeners' counters: this child's plus those carried over. */
  private serverCounters(): Record<string, number> {
    const carried = this.sources.queryStats.carried;
    const out: Record<string, number> = {};
    for (const [field] of SERVER_COUNTERS) out[field] = (carried[field] ?? 0) + this.sources.stats[field];
    return out;
  }

  /** Everything counted, for the guardian to hand to a successor. */
  state(now = Date.now()): QueryStatsState & { absorbed: number[] } {
    this.refresh();
    const own: Record<string, number> = {};
    for (const [field] of SERVER_COUNTERS) own[field] = this.sources.stats[field];
    return {
      ...this.sources.queryStats.state(now, own, this.sources.recorder.lost),
      absorbed: [...this.absorbed],
    };
  }

  /** Takes over predecessors' states (carry `id`, remembered for {@link state}). */
  absorb(id: number, states: readonly QueryStatsState[], now = Date.now()): void {
    for (const s of states) this.sources.queryStats.absorb(s, now);
    this.absorbed.push(id);
  }

  /** The Prometheus text exposition of everything. */
  metricsText(): string {
    this.refresh();
    const { resolver, queryStats, recorder } = this.sources;
    const r = resolver();
    const p = new PrometheusText();
    p.family(
      "keeldns_build_info",
      "gauge",
      "keeldns's version, Deno version, target and build kind (always 1).",
    )
      .sample("keeldns_build_info", 1, {
        version: denoJson.version,
        deno: Deno.version.deno,
        target: Deno.build.target,
        kind: buildKind(),
      });
    p.family("keeldns_child_start_time_seconds", "gauge", "When the serving child started (Unix time).")
      .sample("keeldns_child_start_time_seconds", this.startedAt / 1000);
    p.family(
      "keeldns_stats_start_time_seconds",
      "gauge",
      "When counting began, kept across restarts (Unix time).",
    )
      .sample("keeldns_stats_start_time_seconds", queryStats.since / 1000);

    p.family(
      "keeldns_queries_total",
      "counter",
      "Queries answered, by question type, reason and response code.",
    );
    for (const [key, count] of queryStats.queries.entries()) {
      p.sample("keeldns_queries_total", count, {
        type: typeLabel(Math.floor(key / 256)),
        reason: REASON_NAMES[(key >> 4) & 15] ?? `reason${(key >> 4) & 15}`,
        rcode: rcodeName(key & 15),
      });
    }
    p.family(
      "keeldns_request_duration_seconds",
      "histogram",
      "Time from a query's receipt to its answer, by reason (cache, upstream, …).",
    );
    queryStats.duration.forEach((h, reason) => {
      if (h.count) p.histogram("keeldns_request_duration_seconds", h, { reason: REASON_NAMES[reason] });
    });

    const cache = r.cache;
    p.family("keeldns_cache_entries", "gauge", "Answers in the cache.")
      .sample("keeldns_cache_entries", cache?.cache.size ?? 0);
    p.family(
      "keeldns_cache_capacity_entries",
      "gauge",
      "The most answers the cache keeps (0: the cache is off).",
    )
      .sample("keeldns_cache_capacity_entries", cache?.cache.capacity ?? 0);
    p.family("keeldns_cache_bytes", "gauge", "Memory the cache holds.")
      .sample("keeldns_cache_bytes", cache?.cache.reservedBytes ?? 0);

    const health = r.upstreams();
    for (const [name, type, help, value] of UPSTREAM_HEALTH) {
      p.family(name, type, help);
      for (const u of health) p.sample(name, value(u), { upstream: u.address });
    }
    const stats = queryStats.upstreams();
    for (const [name, help, value] of UPSTREAM_COUNTERS) {
      p.family(name, "counter", help);
      for (const u of stats) p.sample(name, value(u), { upstream: u.address });
    }
    p.family(
      "keeldns_upstream_answer_duration_seconds",
      "histogram",
      "Time from a query's receipt to its answer, for answers this upstream gave (it won the race).",
    );
    for (const u of stats) {
      if (u.duration.count) {
        p.histogram("keeldns_upstream_answer_duration_seconds", u.duration, { upstream: u.address });
      }
    }

    const server = this.serverCounters();
    for (const [field, name, help] of SERVER_COUNTERS) {
      p.family(name, "counter", help).sample(name, server[field]);
    }
    p.family(
      "keeldns_query_records_lost_total",
      "counter",
      "Query records overwritten before the statistics read them.",
    )
      .sample("keeldns_query_records_lost_total", queryStats.carriedLost + recorder.lost);
    const memory = Deno.memoryUsage();
    p.family("keeldns_child_resident_memory_bytes", "gauge", "The serving child's resident memory.")
      .sample("keeldns_child_resident_memory_bytes", memory.rss);
    p.family("keeldns_child_heap_used_bytes", "gauge", "The serving child's JavaScript heap in use.")
      .sample("keeldns_child_heap_used_bytes", memory.heapUsed);
    return p.text();
  }

  /** The dashboard's data (`top` entries per top list). */
  statsSnapshot(top = 20): StatsSnapshot {
    this.refresh();
    const now = Date.now();
    const { resolver, queryStats, recorder } = this.sources;
    const r = resolver();
    const snapshot = queryStats.snapshot(now, top, recorder.lost);
    const health = new Map(r.upstreams().map((u) => [u.address, u]));
    const memory = Deno.memoryUsage();
    const cache = r.cache;
    return {
      ...snapshot,
      now,
      childStartedAt: this.startedAt,
      version: denoJson.version,
      // Every configured server is among them (refresh() sampled its health); earlier ones stay.
      upstreams: snapshot.upstreams.map((u) => ({ ...u, health: health.get(u.address) })),
      cache: cache
        ? {
          entries: cache.cache.size,
          capacity: cache.cache.capacity,
          bytes: cache.cache.reservedBytes,
          prefetches: cache.counters.prefetches ?? 0,
        }
        : null,
      server: this.serverCounters(),
      memory: { rssBytes: memory.rss, heapUsedBytes: memory.heapUsed },
    };
  }
}
