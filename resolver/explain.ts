/**
 * `keeldns explain NAME [TYPE] [--client IP]`: how the running resolver answers one question and
 * why, without touching its cache. The question goes down a trace chain made of the resolver's
 * own stages, except that the cache stage only looks (no LRU update, no hit counted, nothing
 * stored: {@link CacheStage.inspect}), the coalescing stage is left out (the trace must see its
 * own race) and so is the nftset stage (no set is changed). The query carries a
 * {@link QueryTrace} the stages fill where they already branch; a client's query carries none.
 *
 * The upstream servers are asked for real (their health counts it, as any query's would), so the
 * report can say what each one answered, in how long, and what became of it — even when the
 * cache would answer the client.
 *
 * @module
 */
import type { Answer } from "../dns/answer.ts";
import { decodePacket, encodePacket, type Packet } from "../dns/packet.ts";
import { StoredAnswer } from "../dns/stored_answer.ts";
import { Rcode, scanResponse } from "../dns/wire.ts";
import { ipBytes } from "../net/address.ts";
import { type CacheInspection, CacheStage } from "./cache_stage.ts";
import { ClientStage } from "./client_stage.ts";
import { CoalesceStage } from "./coalesce_stage.ts";
import { NftsetStage } from "./nftset_stage.ts";
import { parseContext, type QueryContext, Reason, type ReasonCode } from "./query_context.ts";
import { type DualstackTrace, QueryTrace, type SpeedTrace, type UpstreamAttempt } from "./query_trace.ts";
import type { Resolver } from "./resolver.ts";
import type { RuleMatch } from "./rule_set.ts";
import { chain, type Next, type Stage } from "./stage.ts";

/** The question to explain. */
export interface ExplainQuestion {
  /** The name, dotted (a trailing dot is fine). */
  readonly name: string;
  /** The record type's name (A, AAAA, MX …); A when not given. */
  readonly type?: string;
}

/** One record of an answer, readable. */
export interface ExplainRecord {
  readonly name: string;
  readonly type: string;
  readonly ttl: number;
  /** The record's data as text (an address, a name, JSON for structured data). */
  readonly data: string;
}

/** An answer, readable. */
export interface ExplainAnswer {
  /** Where it comes from: cache, stale, upstream, rule, blocked, soa, servfail. */
  readonly source: string;
  readonly rcode: string;
  readonly records: readonly ExplainRecord[];
  /** The authority section (the SOA of a negative answer). */
  readonly authority: readonly ExplainRecord[];
}

/** What `explain` reports: plain JSON. */
export interface ExplainReport {
  readonly question: { readonly name: string; readonly type: string; readonly client?: string };
  /** The client group whose rules apply (`client-rules`, `group-begin`), index 0 the default. */
  readonly clientGroup: { readonly index: number; readonly name: string };
  /** What the cache holds and whether it would answer. */
  readonly cache: Omit<CacheInspection, "answer"> | { readonly state: "off"; readonly wouldServe: false };
  readonly rules: {
    /** Every rule line that applies to the name, least specific first. */
    readonly matched: readonly RuleMatch[];
    /** The rule that decided the answer or the route (index into `matched`'s rules), or -1. */
    readonly winner: number;
    /** What the rules did: rule / blocked / soa (answered), or upstream (sent on). */
    readonly verdict: string;
    /** The nftables set the answer's addresses go to, if a rule names one. */
    readonly nftset?: string;
  };
  /** The upstream group raced and each server's exchange, when the question went upstream. */
  readonly upstream?: {
    readonly group: { readonly index: number; readonly name: string };
    /** The server whose answer was used, if one was. */
    readonly answeredBy?: string;
    readonly servers: readonly (UpstreamAttempt & { readonly chosen: boolean })[];
  };
  /** The speed check of the answer's addresses, when it ran. */
  readonly speed?: SpeedTrace;
  /** The dual-stack selection, when it ran. */
  readonly dualstack?: DualstackTrace;
  /** What a client asking now gets. */
  readonly answer: ExplainAnswer;
  /** When the cache answers the client: what the chain resolved now behind it (the cache kept as it was). */
  readonly resolvedNow?: ExplainAnswer;
  /** How long the explanation took (ms). */
  readonly tookMs: number;
}

/** The longest an explanation waits for its race and probes to end (ms). */
const SETTLE_MS = 12_000;

const REASON_NAMES: Record<ReasonCode, string> = {
  [Reason.UPSTREAM]: "upstream",
  [Reason.CACHE]: "cache",
  [Reason.COALESCED]: "coalesced",
  [Reason.RULE]: "rule",
  [Reason.BLOCKED]: "blocked",
  [Reason.SOA]: "soa",
  [Reason.SERVFAIL]: "servfail",
  [Reason.STALE]: "stale",
};

const RCODE_NAMES = ["NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED"];

/** A bad question or client address, said plainly. */
export class ExplainInputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ExplainInputError";
  }
}

/** The client's `sockaddr` bytes for `ip`, as a listener would give them (family little-endian). */
function sockaddrOf(ip: string): Uint8Array {
  let bytes: Uint8Array;
  try {
    bytes = ipBytes(ip);
  } catch {
    throw new ExplainInputError(`--client ${JSON.stringify(ip)} is not an IP address`);
  }
  if (bytes.length === 4) {
    const out = new Uint8Array(16);
    out[0] = 2; // AF_INET
    out.set(bytes, 4);
    return out;
  }
  const out = new Uint8Array(28);
  out[0] = 10; // AF_INET6
  out.set(bytes, 8);
  return out;
}

/** The query context of `question`, as a client's query would be parsed. */
function contextOf(question: ExplainQuestion): QueryContext {
  const name = question.name.trim().replace(/\.$/, "") || ".";
  const type = (question.type ?? "A").toUpperCase();
  let wire: Uint8Array;
  try {
    wire = encodePacket({
      type: "query",
      id: 0,
      flags: 0x0100,
      questions: [{ name, type: type as "A", class: "IN" }],
    });
  } catch (e) {
    throw new ExplainInputError(`cannot ask ${name} ${type}: ${(e as Error).message}`);
  }
  let ctx: QueryContext;
  try {
    ctx = parseContext(wire);
  } catch (e) {
    throw new ExplainInputError(`cannot ask ${name} ${type}: ${(e as Error).message}`);
  }
  if (ctx.qtype === 0) throw new ExplainInputError(`unknown record type ${JSON.stringify(question.type)}`);
  return ctx;
}

/** One record as text. */
function recordOf(r: { name: string; type: string; ttl?: number; data?: unknown }): ExplainRecord {
  const data = r.data;
  const text = typeof data === "string"
    ? data
    : data instanceof Uint8Array
    ? [...data].map((b) => b.toString(16).padStart(2, "0")).join("")
    : Array.isArray(data)
    ? data.map((d) => d instanceof Uint8Array ? new TextDecoder().decode(d) : String(d)).join(" ")
    : JSON.stringify(data);
  return { name: r.name, type: r.type, ttl: r.ttl ?? 0, data: text };
}

/** `wire` (a rendered answer), readable. */
function readable(wire: Uint8Array, source: string): ExplainAnswer {
  const rcode = RCODE_NAMES[wire[3] & 0x0f] ?? String(wire[3] & 0x0f);
  try {
    const packet = decodePacket(wire) as Packet;
    return {
      source,
      rcode,
      records: (packet.answers ?? []).map((r) => recordOf(r as never)),
      authority: (packet.authorities ?? []).map((r) => recordOf(r as never)),
    };
  } catch {
    return { source, rcode, records: [], authority: [] };
  }
}

/**
 * The trace chain of `resolver`: its stages with the cache stage only looking, and coalescing and
 * nftset left out. `onCache` is told what the cache holds for the question itself; the dual-stack
 * selection's other question is answered from the cache when the cache would answer it.
 */
function traceChain(
  resolver: Resolver,
  onCache: (ctx: QueryContext, inspection: CacheInspection) => void,
): { resolve: Next; fromCache: Next } {
  const stages: Stage[] = [];
  let fromCacheIndex = -1;
  for (const stage of resolver.stages) {
    if (stage instanceof NftsetStage || stage instanceof CoalesceStage) continue;
    if (fromCacheIndex < 0 && !(stage instanceof ClientStage)) fromCacheIndex = stages.length;
    if (stage instanceof CacheStage) {
      stages.push({
        resolve(ctx, next) {
          const inspection = stage.inspect(ctx);
          if (!ctx.sibling) onCache(ctx, inspection);
          else if (inspection.wouldServe && inspection.answer) {
            const layout = scanResponse(inspection.answer);
            if (layout) {
              return StoredAnswer.fromResponse(inspection.answer, layout, NO_TTL_CHANGE, Date.now());
            }
          }
          return next(ctx);
        },
      });
    } else {
      stages.push(stage);
    }
  }
  if (fromCacheIndex < 0) fromCacheIndex = stages.length;
  return {
    resolve: chain(stages, resolver.router),
    fromCache: chain(stages.slice(fromCacheIndex), resolver.router),
  };
}

/** A TTL policy that keeps the TTLs as they are. */
const NO_TTL_CHANGE = { rrTtl: 0, rrTtlMin: 0, rrTtlMax: 0 };

/**
 * Explains how `resolver` answers `question` for `client` (an IP address; none: a client of no
 * client group), without changing its cache. Throws {@link ExplainInputError} on a bad question.
 */
export async function explain(
  resolver: Resolver,
  question: ExplainQuestion,
  client?: string,
): Promise<ExplainReport> {
  const started = performance.now();
  const ctx = contextOf(question);
  if (client !== undefined) ctx.peer = sockaddrOf(client);
  let cache: CacheInspection | undefined;
  const { resolve, fromCache } = traceChain(resolver, (_, inspection) => cache ??= inspection);
  const trace = ctx.trace = new QueryTrace(fromCache);
  let answer: Answer;
  try {
    answer = await resolve(ctx);
  } catch (e) {
    answer = StoredAnswer.empty(ctx, Rcode.SERVFAIL, Date.now());
    trace.upstreams.push({ server: "(chain)", rttMs: 0, verdict: "failed", detail: String(e) });
  }
  await trace.settled(SETTLE_MS);
  const now = Date.now();
  const reason = REASON_NAMES[ctx.reason] ?? String(ctx.reason);
  // What the client gets now (in fastest-ip, the fastest address alone; the cache would keep
  // the sorted list the speed check's results show).
  const resolved = readable(answer.render(ctx, now, 65535), reason);

  const ruleGroup = ctx.ruleGroup;
  const sets = resolver.rules?.sets;
  const set = sets?.[ruleGroup] ?? sets?.[0];
  const matched = set ? set.matches(ctx.wire) : [];
  const verdict = set?.judge(ctx.wire, ctx.qtype);
  const wentUpstream = ctx.reason === Reason.UPSTREAM || ctx.reason === Reason.SERVFAIL ||
    trace.upstreams.length > 0;
  const groupIndex = ctx.upstreamGroup;
  const served = cache?.wouldServe && cache.answer
    ? readable(cache.answer, cache.state === "stale" ? "stale" : "cache")
    : undefined;
  const { answer: _bytes, ...cacheReport } = cache ?? { state: "off" as const, wouldServe: false as const };
  return {
    question: {
      name: ctx.name,
      type: (question.type ?? "A").toUpperCase(),
      ...(client !== undefined ? { client } : {}),
    },
    clientGroup: {
      index: ruleGroup,
      name: ruleGroup === 0 ? "default" : resolver.clientGroups[ruleGroup - 1] ?? String(ruleGroup),
    },
    cache: cacheReport,
    rules: {
      matched,
      winner: ctx.rule,
      verdict: ctx.reason === Reason.RULE || ctx.reason === Reason.BLOCKED || ctx.reason === Reason.SOA
        ? reason
        : "upstream",
      ...(verdict?.nftset
        ? { nftset: `${verdict.nftset.family}#${verdict.nftset.table}#${verdict.nftset.set}` }
        : {}),
    },
    ...(wentUpstream
      ? {
        upstream: {
          group: { index: groupIndex, name: resolver.router.names[groupIndex] ?? "default" },
          ...(ctx.answeredBy !== undefined ? { answeredBy: ctx.answeredBy } : {}),
          servers: trace.upstreams.map((u) => ({ ...u, chosen: u.server === ctx.answeredBy })),
        },
      }
      : {}),
    ...(trace.speed ? { speed: trace.speed } : {}),
    ...(trace.dualstack ? { dualstack: trace.dualstack } : {}),
    answer: served ?? resolved,
    ...(served ? { resolvedNow: resolved } : {}),
    tookMs: Math.round(performance.now() - started),
  };
}
