/**
 * The guardian ⇄ child protocol: the child writes one JSON object per line on its stdout; the
 * guardian writes {@link CacheRequest}s, one a line, on the child's stdin.
 *
 * @module
 */
import type { UpstreamHealthReport } from "../upstream/health.ts";
import type { QueryStatsState } from "./query_stats.ts";

/** Sent once every listener is bound. */
export interface ReadyMessage {
  readonly ready: { readonly pid: number; readonly listeners: readonly string[] };
}

/** Sent every second from the child's event loop; its absence means the child is hung. */
export interface BeatMessage {
  readonly beat: number;
}

/**
 * Sent during start-up as each step begins ("reading the configuration", "loading the cache
 * file", …), and by long loads now and then with how far they are. The guardian keeps the last one
 * to say how far a child that never became ready got.
 */
export interface ProgressMessage {
  readonly progress: {
    readonly stage: string;
    /** Items done so far in a long step, when it counts them. */
    readonly done?: number;
    /** Items the step has in all, when known. */
    readonly total?: number;
  };
}

/** Sent now and then with the child's counters, and at once when an upstream goes down or up. */
export interface StatsMessage {
  readonly stats: Record<string, number>;
  /** Each upstream server's health (state, RTT p50/p95 in ms, failures), in configuration order. */
  readonly upstreams?: readonly UpstreamHealthReport[];
  /**
   * Everything the query statistics counted (with what predecessors handed over): the guardian
   * keeps the last one and hands it to the next child ({@link CarryRequest}). Sent with every
   * report and once more as the child stops, so a crash loses at most one report interval.
   */
  readonly queryStats?: CarriedStats;
}

/** A child's query statistics as carried, with the ids of the {@link CarryRequest}s they include. */
export type CarriedStats = QueryStatsState & { readonly absorbed: readonly number[] };

/** Sent before the child exits on purpose, saying why (e.g. a bind failure). */
export interface FatalMessage {
  readonly fatal: string;
}

/** Sent after SIGUSR2: the cache was written to the hand-over file (entries, or -1 on failure). */
export interface CheckpointedMessage {
  readonly checkpointed: number;
}

/** What `keeldns cache` asks of the child. */
export type CacheAction = "list" | "flush" | "stats";

/** The cache actions. */
export const CACHE_ACTIONS: readonly CacheAction[] = ["list", "flush", "stats"];

/** A request the guardian writes on the child's stdin (`keeldns cache …`); `id` pairs the reply. */
export interface CacheRequest {
  readonly id: number;
  readonly cache: CacheAction;
  /** The name or pattern of `list` and `flush`, when given. */
  readonly pattern?: string;
}

/** What `keeldns metrics` asks of the child: the Prometheus text, or the dashboard's JSON snapshot. */
export interface MetricsRequest {
  readonly id: number;
  readonly metrics: "text" | "json";
}

/**
 * The statistics of the children before this one (a planned restart's predecessor, a crashed
 * child's last report), for it to add to its own. The child reports (a {@link StatsMessage}
 * listing `id` in `absorbed`) before it replies, so the guardian can tell whether they made it.
 */
export interface CarryRequest {
  readonly id: number;
  readonly carry: readonly QueryStatsState[];
}

/** `keeldns explain NAME [TYPE] [--client IP]` asked of the child (resolver/explain.ts); `id` pairs the reply. */
export interface ExplainRequest {
  readonly id: number;
  readonly explain: { readonly name: string; readonly type?: string; readonly client?: string };
}

/** Whether a request line the child read is an {@link ExplainRequest}. */
export function isExplainRequest(request: unknown): request is ExplainRequest {
  const explain = (request as Partial<ExplainRequest> | null)?.explain;
  return typeof explain === "object" && explain !== null && typeof explain.name === "string";
}

/**
 * The child's answer to a {@link CacheRequest} (or an {@link ExplainRequest}: the report is the result; a
 * {@link MetricsRequest}: the text or snapshot; a {@link CarryRequest}: ok).
 */
export interface CacheReplyMessage {
  readonly reply: {
    readonly id: number;
    readonly ok: boolean;
    readonly error?: string;
    readonly result?: Record<string, unknown>;
  };
}

/** Anything the child tells the guardian. */
export type ChildMessage =
  | ReadyMessage
  | BeatMessage
  | ProgressMessage
  | StatsMessage
  | FatalMessage
  | CheckpointedMessage
  | CacheReplyMessage;

/** Environment variable naming the file a child writes its cache to on SIGUSR2 (planned restart). */
export const HANDOVER_FILE_ENV = "KEELDNS_HANDOVER_FILE";
/** Environment variable telling a new child to load (then delete) that file before it is ready. */
export const HANDOVER_LOAD_ENV = "KEELDNS_HANDOVER_LOAD";
/**
 * Set ("1") for a child started beside the one it replaces (planned restart): a port only the
 * predecessor can hold for now (QUIC: no SO_REUSEPORT in Deno) is waited for, not a failure.
 */
export const BESIDE_PREDECESSOR_ENV = "KEELDNS_BESIDE_PREDECESSOR";

/**
 * Test-only: milliseconds the child spends in an extra start-up step before it binds and reports
 * ready, still beating and reporting progress, so tests can play a slow board. Never set it in
 * production.
 */
export const TEST_STARTUP_DELAY_ENV = "KEELDNS_TEST_STARTUP_DELAY_MS";

/** Milliseconds between heartbeats. */
export const BEAT_INTERVAL_MS = 1000;

/** Parses one line from the child; returns null for anything that is not a message. */
export function parseChildMessage(line: string): ChildMessage | null {
  try {
    const value = JSON.parse(line);
    return typeof value === "object" && value !== null ? value as ChildMessage : null;
  } catch {
    return null;
  }
}

/** Exit code of a child whose configuration could not be loaded. */
export const EXIT_CONFIG = 78;
/** Exit code of a child that could not bind its sockets. */
export const EXIT_BIND = 75;
/** Exit code of a child that could not switch to the configured `user` (EX_NOPERM). */
export const EXIT_PRIVILEGES = 77;
/** Exit code of a child that died of an unexpected error (SmartDNS's crash code). */
export const EXIT_CRASH = 254;
