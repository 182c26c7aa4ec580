/**
 * The child's query statistics, read from the query records off the hot path: counts per type,
 * reason and rcode, request-duration histograms (per reason, and per upstream that answered),
 * rolling per-bucket series for charts (10 s for the last hour, 5 min for the last day), and the
 * top names, clients and blocked names in bounded memory (Space-Saving sketches). Its whole state
 * is JSON-able so that a successor child takes it over across a planned restart (and, from the
 * guardian's last report, across a crash).
 *
 * @module
 */
import { nameText } from "../dns/name_text.ts";
import { addressText } from "../dns/answer_addresses.ts";
import { typeName } from "../dns/packet.ts";
import { Reason } from "../resolver/query_context.ts";
import { type QueryRecordConsumer, type QueryRecords, RECORD_NAME_BYTES } from "../server/query_recorder.ts";
import type { UpstreamHealthReport } from "../upstream/health.ts";
import { hashBytes, type HeavyHitter, HeavyHitters, type HeavyHitterState } from "./heavy_hitters.ts";
import { RollingSeries, type RollingSeriesState, type SeriesRows } from "./rolling_series.ts";

/** Each {@link Reason} code's name, as labels and the dashboard show it. */
export const REASON_NAMES: readonly string[] = (() => {
  const names: string[] = [];
  for (const [name, code] of Object.entries(Reason)) names[code] = name.toLowerCase();
  return names;
})();

/** Response code names (RFC 1035, 2136), by code; others are `RCODE<n>`. */
const RCODES = [
  "NOERROR",
  "FORMERR",
  "SERVFAIL",
  "NXDOMAIN",
  "NOTIMP",
  "REFUSED",
  "YXDOMAIN",
  "YXRRSET",
  "NXRRSET",
  "NOTAUTH",
  "NOTZONE",
];

/** The name of an rcode (the low 4 bits a record keeps). */
export function rcodeName(rcode: number): string {
  return RCODES[rcode] ?? `RCODE${rcode}`;
}

/** The label of a counted type: its mnemonic, or `OTHER` for one keeldns has no name for. */
export function typeLabel(qtype: number): string {
  return qtype === OTHER_TYPE ? "OTHER" : typeName(qtype);
}

/**
 * Types without a mnemonic are counted together (under this code, not a real type), so a client
 * sending random types cannot grow the counters or the metrics without bound.
 */
const OTHER_TYPE = 0;

/** A name in wire form (labels with their lengths, as a record keeps it) as text, "." for the root. */
export function wireNameText(bytes: Uint8Array): string {
  return nameText(bytes);
}

/** A client key (its family, 4 or 6, then the address's bytes) as text. */
export function clientKeyText(bytes: Uint8Array): string {
  return addressText(bytes, 1, bytes[0] === 4 ? 4 : 16);
}

/** Upper bounds of the request-duration histograms, in seconds (a cache hit is tens of µs). */
export const DURATION_BOUNDS: readonly number[] = [
  0.00005,
  0.0001,
  0.00025,
  0.0005,
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
];
const BOUNDS_US = DURATION_BOUNDS.map((s) => s * 1e6);

/** The bucket of a duration in µs (the last: above every bound). */
function bucketOf(us: number): number {
  let b = 0;
  while (b < BOUNDS_US.length && us > BOUNDS_US[b]) b++;
  return b;
}

/** A histogram of durations: counts per bucket of {@link DURATION_BOUNDS} (+1 above), and the sum. */
export class DurationHistogram {
  readonly counts = new Float64Array(DURATION_BOUNDS.length + 1);
  /** Sum of the durations in µs (whole numbers: no rounding drift). */
  private sumUs = 0;
  readonly bounds = DURATION_BOUNDS;

  /** Counts one duration of `us` microseconds. */
  observe(us: number): void {
    this.counts[bucketOf(us)]++;
    this.sumUs += us;
  }

  /** Counts `n` durations of `us` microseconds each. */
  observeMany(us: number, n: number): void {
    this.counts[bucketOf(us)] += n;
    this.sumUs += us * n;
  }

  /** Sum of the durations, in seconds. */
  get sum(): number {
    return this.sumUs / 1e6;
  }

  /** Observations in all. */
  get count(): number {
    let n = 0;
    for (const c of this.counts) n += c;
    return n;
  }

  /** Adds another histogram's counts (`[counts, sum]` as carried). */
  merge(counts: readonly number[], sum: number): void {
    if (!Array.isArray(counts) || counts.length !== this.counts.length) return;
    for (let b = 0; b < counts.length; b++) this.counts[b] += Number(counts[b]) || 0;
    this.sumUs += Math.round((Number(sum) || 0) * 1e6);
  }
}

/**
 * Answers counted by type, reason and rcode, in a dense table: each type seen gets a row of 256
 * counters (`reason * 16 + rcode`), so counting one is two array reads and an add.
 */
export class QueryCounts {
  /** Per type code: its row + 1 (0: none yet). */
  private readonly rowOf = new Uint16Array(65536);
  private readonly typeOfRow: number[] = [];
  private counts = new Float64Array(32 * 256);

  /** Counts `n` answers (`qtype` as counted: see {@link typeLabel}). */
  add(qtype: number, reason: number, rcode: number, n = 1): void {
    let row = this.rowOf[qtype];
    if (row === 0) row = this.newRow(qtype);
    this.counts[(row - 1) * 256 + ((reason & 15) << 4) + (rcode & 15)] += n;
  }

  /** Every non-zero count as `[type * 256 + reason * 16 + rcode, count]`, by key. */
  entries(): [number, number][] {
    const out: [number, number][] = [];
    this.typeOfRow.forEach((qtype, row) => {
      for (let k = 0; k < 256; k++) {
        const c = this.counts[row * 256 + k];
        if (c) out.push([qtype * 256 + k, c]);
      }
    });
    return out.sort((a, b) => a[0] - b[0]);
  }

  /** Everything counted. */
  get total(): number {
    let n = 0;
    for (let k = 0; k < this.typeOfRow.length * 256; k++) n += this.counts[k];
    return n;
  }

  private newRow(qtype: number): number {
    const row = this.typeOfRow.push(qtype);
    if (row * 256 > this.counts.length) {
      const grown = new Float64Array(this.counts.length * 2);
      grown.set(this.counts);
      this.counts = grown;
    }
    return this.rowOf[qtype] = row;
  }
}

/** The fields of the series charts are drawn from. */
export const SERIES_FIELDS = [
  "queries",
  "cache",
  "stale",
  "upstream",
  "blocked",
  "local",
  "servfail",
  "durationUs",
] as const;
const F = Object.fromEntries(SERIES_FIELDS.map((f, i) => [f, i])) as Record<
  typeof SERIES_FIELDS[number],
  number
>;

/** Which series field (besides `queries`) a reason counts in. */
const FIELD_OF_REASON: number[] = (() => {
  const of: number[] = [];
  of[Reason.UPSTREAM] = F.upstream;
  of[Reason.COALESCED] = F.upstream;
  of[Reason.CACHE] = F.cache;
  of[Reason.STALE] = F.stale;
  of[Reason.BLOCKED] = F.blocked;
  of[Reason.RULE] = F.local;
  of[Reason.SOA] = F.local;
  of[Reason.SERVFAIL] = F.servfail;
  return of;
})();

/**
 * Records a second the top-list sketches take in full (the counts, histograms and series always
 * take every one). Above it, they take a random sample, each sampled record counted as many
 * times as it stands for: the top lists stay right, their counts become estimates, and a busy
 * server does not spend its time on them.
 */
export const SKETCH_RECORDS_PER_SECOND = 10_000;

/** 10-second buckets for the last hour, and 5-minute buckets for the last day. */
const FINE = { widthMs: 10_000, length: 360 };
const COARSE = { widthMs: 300_000, length: 288 };

/** What is known of one upstream server: how fast its answers reached clients, how it failed. */
class UpstreamStats {
  /** Time from the query's receipt to the answer it gave the client (it won the race). */
  readonly duration = new DurationHistogram();
  /** Per 10-s bucket: answers it gave, and their summed duration in µs. */
  readonly series = new RollingSeries(FINE.widthMs, FINE.length, ["answers", "durationUs"]);
  /** Exchanges answered and failed, and probes while down, over every child (from health reports). */
  exchangesAnswered = 0;
  failures = 0;
  probes = 0;
  /** The last health report's counters, to add only what is new at the next. */
  seen?: { answers: number; failures: number; probes: number };
  constructor(readonly address: string) {}
}

/** An upstream's part of {@link QueryStatsState}. */
export interface UpstreamStatsState {
  readonly address: string;
  readonly duration: readonly [counts: number[], sum: number];
  readonly series: RollingSeriesState;
  readonly exchangesAnswered: number;
  readonly failures: number;
  readonly probes: number;
}

/** A sketch as carried: what it kept and what it counted in all. */
export interface SketchState {
  readonly entries: readonly HeavyHitterState[];
  readonly total: number;
}

/** Everything {@link QueryStats} counted, as JSON, for a successor to take over ({@link QueryStats.absorb}). */
export interface QueryStatsState {
  readonly version: 1;
  /** When counting began (the first child's start), ms since the epoch. */
  readonly since: number;
  /** `[type * 256 + reason * 16 + rcode, count]`. */
  readonly queries: readonly (readonly [number, number])[];
  /** Per reason code: `[reason, counts, sum in seconds]`. */
  readonly duration: readonly (readonly [number, number[], number])[];
  readonly fine: RollingSeriesState;
  readonly coarse: RollingSeriesState;
  readonly upstreams: readonly UpstreamStatsState[];
  readonly names: SketchState;
  readonly clients: SketchState;
  readonly blocked: SketchState;
  /** Other counters carried over (the listeners' ServerStats of earlier children). */
  readonly counters: Readonly<Record<string, number>>;
  /** Records the recorders lost (consumers a ring behind). */
  readonly lost: number;
}

/** Options of {@link QueryStats}. */
export interface QueryStatsOptions {
  /** The addresses a record's upstream index names (the recorder's `upstreams`). */
  readonly upstreams: readonly string[];
  /** Keys each top-list sketch keeps (the top lists are accurate for far fewer). */
  readonly sketchSize?: number;
  /** When counting began; now unless a predecessor's state says earlier. */
  readonly now?: number;
}

/** A top list as the dashboard and `keeldns metrics --json` show it. */
export interface TopEntry {
  readonly key: string;
  readonly count: number;
  /** The count may be up to this much too high (a sketch's overcount). */
  readonly error: number;
}

/** The query statistics part of {@link import("./child_metrics.ts").StatsSnapshot}. */
export interface QueryStatsSnapshot {
  readonly since: number;
  readonly queries: number;
  readonly byReason: Record<string, number>;
  readonly byRcode: Record<string, number>;
  readonly byType: Record<string, number>;
  /** Cache hits (fresh and stale) over the queries the cache saw (hits and forwarded). */
  readonly hitRatio: number;
  readonly series: { readonly fine: SeriesRows; readonly coarse: SeriesRows };
  readonly top: { readonly names: TopEntry[]; readonly clients: TopEntry[]; readonly blocked: TopEntry[] };
  readonly upstreams: readonly {
    readonly address: string;
    readonly answersGiven: number;
    readonly averageMs: number;
    readonly exchangesAnswered: number;
    readonly failures: number;
    readonly series: SeriesRows;
  }[];
  readonly lost: number;
}

/** The statistics consumer: add it to the query recorder. */
export class QueryStats implements QueryRecordConsumer {
  since: number;
  /** Counts by type, reason and rcode. */
  readonly queries = new QueryCounts();
  /** Per reason code. */
  readonly duration: DurationHistogram[] = REASON_NAMES.map(() => new DurationHistogram());
  readonly fine = new RollingSeries(FINE.widthMs, FINE.length, SERIES_FIELDS);
  readonly coarse = new RollingSeries(COARSE.widthMs, COARSE.length, SERIES_FIELDS);
  readonly names: HeavyHitters;
  readonly clients: HeavyHitters;
  readonly blocked: HeavyHitters;
  /** Counters carried over from earlier children (added to this one's own where they are shown). */
  readonly carried: Record<string, number> = {};
  /** Records lost by earlier children's recorders. */
  carriedLost = 0;
  private readonly upstreamByAddress = new Map<string, UpstreamStats>();
  /** By the recorder's upstream index. */
  private readonly upstreamByIndex: (UpstreamStats | undefined)[] = [];
  private readonly upstreamNames: readonly string[];
  /** Per type code: 1 counted under its own name, 2 under OTHER (0: not looked at yet). */
  private readonly typeKind = new Uint8Array(65536);
  /** A record's name lowercased, and its client as family + address: the sketches' keys. */
  private readonly nameKey = new Uint8Array(RECORD_NAME_BYTES);
  private readonly clientKey = new Uint8Array(17);
  /** The sketches take one record in `sampleEvery` (a power of two), chosen at random. */
  sampleEvery = 1;
  private random = 0x9e3779b9;
  private batchRecords = 0;
  private batchSince: number;

  constructor(options: QueryStatsOptions) {
    this.upstreamNames = options.upstreams;
    this.since = this.batchSince = options.now ?? Date.now();
    const size = options.sketchSize ?? 256;
    this.names = new HeavyHitters(size, RECORD_NAME_BYTES, wireNameText);
    this.clients = new HeavyHitters(size, 17, clientKeyText);
    this.blocked = new HeavyHitters(size, RECORD_NAME_BYTES, wireNameText);
  }

  /** Counts one record. */
  consume(r: QueryRecords, i: number): void {
    const reason = r.reason[i];
    const rcode = r.rcode[i];
    let qtype = r.qtype[i];
    let kind = this.typeKind[qtype];
    if (kind === 0) kind = this.typeKind[qtype] = typeName(qtype).startsWith("UNKNOWN_") ? 2 : 1;
    if (kind === 2) qtype = OTHER_TYPE;
    this.queries.add(qtype, reason, rcode);
    const us = r.elapsedUs[i];
    this.duration[reason]?.observe(us);
    const time = r.time[i];
    const field = FIELD_OF_REASON[reason];
    const fine = this.fine.values;
    let slot = this.fine.slot(time);
    fine[F.queries][slot]++;
    if (field !== undefined) fine[field][slot]++;
    fine[F.durationUs][slot] += us;
    const coarse = this.coarse.values;
    slot = this.coarse.slot(time);
    coarse[F.queries][slot]++;
    if (field !== undefined) coarse[field][slot]++;
    coarse[F.durationUs][slot] += us;
    const u = r.upstream[i];
    if (u >= 0) {
      const stats = this.upstreamByIndex[u] ??
        (this.upstreamByIndex[u] = this.upstream(this.upstreamNames[u]));
      stats.duration.observe(us);
      const at = stats.series.slot(time);
      stats.series.values[0][at]++;
      stats.series.values[1][at] += us;
    }
    this.batchRecords++;
    // A sampling recorder's record stands for `weight` answers: the sketches take it as many.
    const weight = r.weight[i];
    const every = weight > 1 ? weight : this.sampleEvery;
    if (weight <= 1 && every > 1) {
      let x = this.random;
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      this.random = x;
      if ((x & (every - 1)) !== 0) return;
    }
    // The name, lowercased (length bytes are below "A"), and hashed once for both sketches.
    const lower = this.nameKey;
    const length = r.nameLength[i];
    const from = i * RECORD_NAME_BYTES;
    const name = r.name;
    for (let j = 0; j < length; j++) {
      const c = name[from + j];
      lower[j] = c >= 0x41 && c <= 0x5a ? c | 0x20 : c;
    }
    const hash = hashBytes(lower, 0, length);
    this.names.add(lower, 0, length, every, 0, hash);
    if (reason === Reason.BLOCKED) this.blocked.add(lower, 0, length, every, 0, hash);
    const family = r.clientFamily[i];
    if (family !== 0) {
      const client = this.clientKey;
      const bytes = family === 4 ? 4 : 16;
      client[0] = family;
      for (let j = 0; j < bytes; j++) client[1 + j] = r.client[i * 16 + j];
      this.clients.add(client, 0, 1 + bytes, every);
    }
  }

  /** Counts answers a sampling recorder counted without a record (given at once: time 0). */
  skipped(qtype: number, reason: number, rcode: number, n: number, now: number): void {
    let kind = this.typeKind[qtype];
    if (kind === 0) kind = this.typeKind[qtype] = typeName(qtype).startsWith("UNKNOWN_") ? 2 : 1;
    this.queries.add(kind === 2 ? OTHER_TYPE : qtype, reason, rcode, n);
    this.duration[reason]?.observeMany(0, n);
    const field = FIELD_OF_REASON[reason];
    for (const series of [this.fine, this.coarse]) {
      const slot = series.slot(now);
      series.values[F.queries][slot] += n;
      if (field !== undefined) series.values[field][slot] += n;
    }
    this.batchRecords += n;
  }

  /**
   * After each drain: how much the sketches sample, from the rate records came in at over the
   * last 100 ms or more (a busy recorder drains far more often than that).
   */
  batchDone(now = Date.now()): void {
    if (now - this.batchSince < 100) return;
    const rate = this.batchRecords / ((now - this.batchSince) / 1000);
    let every = 1;
    while (every < 1024 && rate / every > SKETCH_RECORDS_PER_SECOND) every *= 2;
    this.sampleEvery = every;
    this.batchRecords = 0;
    this.batchSince = now;
  }

  /** Takes in the upstreams' health counters (answers, failures, probes), counting only what is new. */
  sampleUpstreams(reports: readonly UpstreamHealthReport[]): void {
    for (const report of reports) {
      const u = this.upstream(report.address);
      // A counter going down means a new resolver (reload): all it counted is new.
      const before = u.seen;
      const seen = before && report.answers >= before.answers && report.failures >= before.failures &&
          report.probes >= before.probes
        ? before
        : { answers: 0, failures: 0, probes: 0 };
      u.exchangesAnswered += report.answers - seen.answers;
      u.failures += report.failures - seen.failures;
      u.probes += report.probes - seen.probes;
      u.seen = { answers: report.answers, failures: report.failures, probes: report.probes };
    }
  }

  /** Every upstream seen so far, in the order first seen. */
  upstreams(): UpstreamStats[] {
    return [...this.upstreamByAddress.values()];
  }

  /** Queries counted in all. */
  get total(): number {
    let n = 0;
    n += this.queries.total;
    return n;
  }

  /** Everything counted, for a successor; `counters` are this child's own (added to the carried). */
  state(nowMs: number, counters: Readonly<Record<string, number>> = {}, lost = 0): QueryStatsState {
    const all: Record<string, number> = { ...this.carried };
    for (const [k, v] of Object.entries(counters)) all[k] = (all[k] ?? 0) + v;
    const sketch = (h: HeavyHitters): SketchState => ({ entries: h.state(), total: h.total });
    return {
      version: 1,
      since: this.since,
      queries: this.queries.entries(),
      duration: this.duration.flatMap((h, reason) =>
        h.count ? [[reason, [...h.counts], h.sum] as const] : []
      ),
      fine: this.fine.state(nowMs),
      coarse: this.coarse.state(nowMs),
      upstreams: this.upstreams().map((u) => ({
        address: u.address,
        duration: [[...u.duration.counts], u.duration.sum],
        series: u.series.state(nowMs),
        exchangesAnswered: u.exchangesAnswered,
        failures: u.failures,
        probes: u.probes,
      })),
      names: sketch(this.names),
      clients: sketch(this.clients),
      blocked: sketch(this.blocked),
      counters: all,
      lost: this.carriedLost + lost,
    };
  }

  /**
   * Adds a predecessor's {@link state} to what this one counts (the counts add up; series bucket by
   * bucket; sketches key by key). Ignores anything that is not such a state.
   */
  absorb(state: QueryStatsState, nowMs: number): void {
    if (!state || state.version !== 1) return;
    if (state.since < this.since) this.since = state.since;
    for (const [key, count] of state.queries ?? []) {
      this.queries.add(Math.floor(key / 256), (key >> 4) & 15, key & 15, Number(count) || 0);
    }
    for (const [reason, counts, sum] of state.duration ?? []) this.duration[reason]?.merge(counts, sum);
    this.fine.merge(state.fine, nowMs);
    this.coarse.merge(state.coarse, nowMs);
    for (const u of state.upstreams ?? []) {
      const mine = this.upstream(u.address);
      mine.duration.merge(u.duration[0], u.duration[1]);
      mine.series.merge(u.series, nowMs);
      mine.exchangesAnswered += u.exchangesAnswered;
      mine.failures += u.failures;
      mine.probes += u.probes;
    }
    this.names.merge(state.names.entries, state.names.total);
    this.clients.merge(state.clients.entries, state.clients.total);
    this.blocked.merge(state.blocked.entries, state.blocked.total);
    for (const [k, v] of Object.entries(state.counters ?? {})) this.carried[k] = (this.carried[k] ?? 0) + v;
    this.carriedLost += state.lost ?? 0;
  }

  /** The counts, series and top lists (`top` entries each) for the dashboard, at `nowMs`. */
  snapshot(nowMs: number, top = 20, lost = 0): QueryStatsSnapshot {
    const byReason: Record<string, number> = {};
    const byRcode: Record<string, number> = {};
    const byType: Record<string, number> = {};
    let queries = 0;
    for (const [key, count] of this.queries.entries()) {
      const reason = REASON_NAMES[(key >> 4) & 15] ?? `reason${(key >> 4) & 15}`;
      const rcode = rcodeName(key & 15);
      const type = typeLabel(Math.floor(key / 256));
      byReason[reason] = (byReason[reason] ?? 0) + count;
      byRcode[rcode] = (byRcode[rcode] ?? 0) + count;
      byType[type] = (byType[type] ?? 0) + count;
      queries += count;
    }
    const hits = (byReason.cache ?? 0) + (byReason.stale ?? 0);
    const seen = hits + (byReason.upstream ?? 0) + (byReason.coalesced ?? 0);
    const list = (h: HeavyHitters): TopEntry[] => h.top(top).map((e: HeavyHitter) => ({ ...e }));
    return {
      since: this.since,
      queries,
      byReason,
      byRcode,
      byType,
      hitRatio: seen ? hits / seen : 0,
      series: { fine: this.fine.rows(nowMs), coarse: this.coarse.rows(nowMs) },
      top: { names: list(this.names), clients: list(this.clients), blocked: list(this.blocked) },
      upstreams: this.upstreams().map((u) => {
        const n = u.duration.count;
        return {
          address: u.address,
          answersGiven: n,
          averageMs: n ? Math.round((u.duration.sum / n) * 1e6) / 1e3 : 0,
          exchangesAnswered: u.exchangesAnswered,
          failures: u.failures,
          series: u.series.rows(nowMs),
        };
      }),
      lost: this.carriedLost + lost,
    };
  }

  private upstream(address: string): UpstreamStats {
    let u = this.upstreamByAddress.get(address);
    if (!u) this.upstreamByAddress.set(address, u = new UpstreamStats(address));
    return u;
  }
}
