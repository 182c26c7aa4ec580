/**
 * Cache stage: answers from the {@link AnswerCache} when it can, and stores what the rest of the
 * chain answers (upstream answers only: local answers are made again for free). Owns SmartDNS's
 * `cache-size`, and `serve-expired` (RFC 8767): an expired answer still within the stale window is
 * served at once with the reply TTL while one refresh per entry goes upstream behind it. Owns
 * `prefetch-domain` and `serve-expired-prefetch-time` too: a timer refreshes entries in the
 * background, as SmartDNS's cache timer does (see {@link CacheStage.prefetchTick}).
 *
 * @module
 */
import type { CacheConfig } from "../config/schema.ts";
import { SERVE_EXPIRED_TTL_UNLIMITED } from "../config/defaults.ts";
import type { Answer } from "../dns/answer.ts";
import { StoredAnswer } from "../dns/stored_answer.ts";
import { Rcode } from "../dns/wire.ts";
import type { AnswerCache } from "./answer_cache.ts";
import { BindFlag, type ListenerProfile, parseContext, QueryContext, Reason } from "./query_context.ts";
import type { MaybePromise, Next, Stage } from "./stage.ts";

/** Counters the cache stage keeps. */
export interface CacheCounters {
  hits: number;
  misses: number;
  /** Hits served stale (counted in `hits` too). */
  staleHits?: number;
  /** Background refreshes started by the prefetch timer. */
  prefetches?: number;
}

/** How long before expiry SmartDNS prefetches an entry without serve-expired (ms). */
const PREFETCH_LEAD_MS = 3000;
/** The longest an entry waits stale before its background refresh when none is set (SmartDNS: 8 h). */
const EXPIRED_PREFETCH_MAX = 8 * 3600;
/** How often the prefetch timer looks for due entries (ms). */
const PREFETCH_TICK_MS = 1000;
/** The least TTL SmartDNS gives the first reply of a speed-checked miss (s). */
const FIRST_REPLY_TTL_MIN = 2;

/**
 * Seconds an entry is stale before its background refresh under `config` with prefetch and
 * serve-expired on: `serve-expired-prefetch-time`, else half the stale window, at most 8 h.
 */
export function expiredPrefetchTimeOf(config: CacheConfig): number {
  if (config.serveExpiredPrefetchTime > 0) return config.serveExpiredPrefetchTime;
  const half = Math.floor(staleWindowOf(config) / 2);
  return half > 0 && half < EXPIRED_PREFETCH_MAX ? half : EXPIRED_PREFETCH_MAX;
}

/**
 * What the cache stage asks of the domain rules, which come after it: a cached answer is one the
 * rules sent upstream, so a hit needs no rule lookup while the rules are the ones it was stored
 * under (`generation`); after the rules changed (a reload, a list file updated), the first hit of
 * each entry asks again.
 */
export interface RulesAfterCache {
  /** Changes whenever the rules do. */
  readonly generation: number;
  /** The upstream group the rules send `ctx` to, or -1 when they would answer it themselves. */
  upstreamGroupOf(ctx: QueryContext): number;
  /** Whether an expired entry may answer `ctx` (false: `domain-rules -no-serve-expired`). */
  servesStale?(ctx: QueryContext): boolean;
}

/** The listener flags that change what the rules decide (bind -no-rule-…, -no-rules). */
const RULE_FLAGS = BindFlag.NO_RULE_ADDR | BindFlag.NO_RULE_NAMESERVER | BindFlag.NO_RULE_SOA |
  BindFlag.NO_RULES;

/**
 * A cache entry's tag: the rules generation it was stored under, the rule flags of the listener
 * that asked (4 bits), and the upstream group that answered.
 */
function tagOf(generation: number, flags: number, group: number): number {
  return (((generation & 0xfffff) << 12) | ((flags & RULE_FLAGS) << 8) | (group & 0xff)) >>> 0;
}

/** Seconds past expiry an entry may be served stale under `config` (0: serve-expired off). */
export function staleWindowOf(config: CacheConfig): number {
  if (!config.serveExpired) return 0;
  return config.serveExpiredTtl > 0 ? config.serveExpiredTtl : SERVE_EXPIRED_TTL_UNLIMITED;
}

/** Serves cache hits synchronously; on a miss, asks `next` and caches the answer. */
export class CacheStage implements Stage {
  readonly counters: CacheCounters = { hits: 0, misses: 0 };
  /** The domain rules after this stage, if any (set when the chain is built). */
  rules?: RulesAfterCache;
  /** The TTL of every record of a stale answer (`serve-expired-reply-ttl`); stale entries come from the cache's window. */
  staleReplyTtl = 3;
  /** The entries being refreshed behind a stale answer: one upstream query each, however many ask. */
  private readonly refreshing = new Set<string>();
  /** The rest of the chain, for the prefetch timer's refreshes (set when the chain is built). */
  refreshVia?: Next;
  /** Prefetch: off, `ahead` (3 s before expiry, hot names), or `stale` (after `expiredPrefetchMs` stale). */
  private prefetchMode: "off" | "ahead" | "stale" = "off";
  private expiredPrefetchMs = 0;
  private prefetchTimer?: ReturnType<typeof setInterval>;

  constructor(readonly cache: AnswerCache, private readonly now: () => number = Date.now) {}

  /** Answers from the cache, or from `next` (then stores the answer). */
  resolve(ctx: QueryContext, next: Next): MaybePromise<Answer> {
    if (ctx.listener.flags & BindFlag.NO_CACHE) return next(ctx);
    // Client groups are kept apart: the group is in the key's last byte, above the DO bit; so are
    // the unsorted answers of -no-speed-check listeners (the top bit), as SmartDNS's key does.
    const variant = (ctx.dnssecOk ? 1 : 0) | (ctx.ruleGroup << 1) |
      ((ctx.listener.flags & BindFlag.NO_SPEED_CHECK) ? 0x80 : 0);
    const hit = this.cache.get(ctx, this.now(), variant);
    const rules = this.rules;
    if (hit !== undefined && this.stillUpstream(rules, ctx)) {
      this.counters.hits++;
      ctx.reason = Reason.CACHE;
      return hit;
    }
    if (hit === undefined && this.cache.staleWindow > 0) {
      const stale = this.cache.takeStale();
      if (
        stale !== undefined && !(ctx.listener.flags & BindFlag.NO_SERVE_EXPIRED) &&
        this.stillUpstream(rules, ctx) && (rules?.servesStale?.(ctx) ?? true)
      ) {
        return this.serveStale(ctx, next, stale, variant);
      }
    }
    this.counters.misses++;
    const answer = next(ctx);
    if (answer instanceof Promise) {
      return answer.then((a) => {
        if (a instanceof StoredAnswer) this.cache.set(ctx, a, variant, this.tagNow(ctx));
        // The speed check's sorted answer replaces the first one when its probes are in.
        ctx.refined?.then((r) => {
          if (r instanceof StoredAnswer) this.cache.set(ctx, r, variant, this.tagNow(ctx));
        });
        return ctx.speedCheckOn ? this.firstReply(ctx, a) : a;
      });
    }
    if (answer instanceof StoredAnswer) this.cache.set(ctx, answer, variant, this.tagNow(ctx));
    return ctx.speedCheckOn ? this.firstReply(ctx, answer) : answer;
  }

  /**
   * What the client gets of `a`, the upstream answer to a miss the speed check runs on (it was
   * stored as it is): SmartDNS's first reply, every record at `serve-expired-reply-ttl` (at least
   * 2 s, at most the answer's own TTL), so the client asks again soon and gets the sorted answer
   * from the cache; whether serve-expired is on or not. Not for `-no-serve-expired` (listener or
   * domain rule), nor for an answer without records (SOA, errors).
   */
  private firstReply(ctx: QueryContext, a: Answer): Answer {
    if (!(a instanceof StoredAnswer) || a.rcode !== Rcode.NOERROR || a.answerCount === 0) return a;
    if (ctx.listener.flags & BindFlag.NO_SERVE_EXPIRED) return a;
    if (this.rules?.servesStale && !this.rules.servesStale(ctx)) return a;
    const ttl = Math.max(this.staleReplyTtl, FIRST_REPLY_TTL_MIN);
    return a.lifetime <= ttl ? a : a.withFixedTtl(ttl, this.now());
  }

  /**
   * Answers `ctx` with `stale` at the reply TTL, and refreshes the entry behind it unless a refresh
   * is already under way. A refresh that fails stores nothing: the stale entry stays until its
   * window ends.
   */
  private serveStale(ctx: QueryContext, next: Next, stale: StoredAnswer, variant: number): Answer {
    this.counters.hits++;
    this.counters.staleHits = (this.counters.staleHits ?? 0) + 1;
    ctx.reason = Reason.STALE;
    const now = this.now();
    const answer = stale.withFixedTtl(this.staleReplyTtl, now);
    this.refresh(ctx, next, variant, 0);
    return answer;
  }

  /**
   * Asks `next` again for the entry of `ctx` (with `variant`) and stores the answer, unless a
   * refresh of it is already under way: one upstream query per entry, however many ask. An
   * answer is stored as if received at `anchoredAt` when that is set (a background refresh of
   * an expired entry: its stale window does not start again, as in SmartDNS). A refresh that
   * fails stores nothing: the entry stays as it was. Returns whether one was started.
   */
  private refresh(ctx: QueryContext, next: Next, variant: number, anchoredAt: number): boolean {
    const key = `${ctx.key}|${variant}|${ctx.upstreamGroup}`;
    if (this.refreshing.has(key)) return false;
    this.refreshing.add(key);
    const done = () => this.refreshing.delete(key);
    const refresh = detachedCopy(ctx);
    const store = (a: Answer) => {
      if (!(a instanceof StoredAnswer)) return;
      this.cache.set(refresh, anchoredAt > 0 ? a.withStoredAt(anchoredAt) : a, variant, this.tagNow(refresh));
    };
    try {
      Promise.resolve(next(refresh)).then((a) => {
        store(a);
        return refresh.refined?.then(store);
      }).catch(() => {}).finally(done);
    } catch {
      done();
    }
    return true;
  }

  /**
   * Turns the prefetch timer on or off for `config` (SmartDNS `prefetch-domain`): without
   * serve-expired, every entry still asked for is refreshed 3 s before it expires, each refresh
   * spending one of its hits (a name asked once is refreshed twice, then left to expire); with
   * serve-expired, every entry stale for `serve-expired-prefetch-time` seconds is refreshed,
   * without restarting its stale window, and again that long after, until the window ends.
   */
  configurePrefetch(config: CacheConfig): void {
    const mode = !config.prefetch ? "off" : config.serveExpired ? "stale" : "ahead";
    this.prefetchMode = mode;
    this.expiredPrefetchMs = expiredPrefetchTimeOf(config) * 1000;
    if (mode === "off") return this.stopPrefetch();
    if (this.prefetchTimer === undefined) {
      const timer = setInterval(() => this.prefetchTick(), PREFETCH_TICK_MS);
      Deno.unrefTimer(timer);
      this.prefetchTimer = timer;
    }
  }

  /** Stops the prefetch timer. */
  stopPrefetch(): void {
    if (this.prefetchTimer !== undefined) clearInterval(this.prefetchTimer);
    this.prefetchTimer = undefined;
  }

  /**
   * One look for entries whose background refresh is due (the timer's, every second), and a
   * refresh of each through {@link refreshVia}. Returns how many were started.
   */
  prefetchTick(now = this.now()): number {
    const next = this.refreshVia;
    const mode = this.prefetchMode;
    if (mode === "off" || !next) return 0;
    const after = this.expiredPrefetchMs;
    // Entries asked with DO are not prefetched (SmartDNS).
    const plan = mode === "ahead"
      ? (expiresAt: number, at: number, variant: number) =>
        variant & 1 ? Infinity : Math.max(expiresAt - PREFETCH_LEAD_MS, at + PREFETCH_TICK_MS)
      : (expiresAt: number, at: number, variant: number) =>
        variant & 1 ? Infinity : Math.max(expiresAt, at) + after;
    const due = this.cache.takeDue(now, plan, mode === "ahead" ? Infinity : after, mode === "ahead");
    let started = 0;
    for (const entry of due) {
      const ctx = contextOfKey(entry.key, entry.tag);
      if (!ctx) continue;
      const expired = now >= entry.expiresAt;
      // An expired name that may not be served stale is left to its next client.
      if (expired && this.rules?.servesStale && !this.rules.servesStale(ctx)) continue;
      const variant = entry.key[entry.key.length - 1];
      if (this.refresh(ctx, next, variant, expired ? entry.storedAt : 0)) started++;
    }
    this.counters.prefetches = (this.counters.prefetches ?? 0) + started;
    return started;
  }

  /**
   * What the cache holds for `ctx` and whether {@link resolve} would answer from it, without
   * changing anything (no LRU update, no hit counted, no entry dropped): for `explain`. Call it
   * where the chain would reach this stage (the client stage has set the groups).
   */
  inspect(ctx: QueryContext, now = this.now()): CacheInspection {
    if (ctx.listener.flags & BindFlag.NO_CACHE) return { state: "bypassed", wouldServe: false };
    const variant = (ctx.dnssecOk ? 1 : 0) | (ctx.ruleGroup << 1) |
      ((ctx.listener.flags & BindFlag.NO_SPEED_CHECK) ? 0x80 : 0);
    const entry = this.cache.peek(ctx, variant);
    if (!entry) return { state: "absent", wouldServe: false };
    const ttlLeft = Math.floor((entry.expiresAt - now) / 1000);
    const group = entry.tag & 0xff;
    const state = now < entry.expiresAt ? "fresh" : now < entry.staleUntil ? "stale" : "expired";
    if (state === "expired") {
      return { state, ttlLeft, group, wouldServe: false, why: "past the serve-expired window" };
    }
    const rules = this.rules;
    let why: string | undefined;
    if (tagOf(rules?.generation ?? 0, ctx.listener.flags, ctx.upstreamGroup) !== entry.tag) {
      const now = rules ? rules.upstreamGroupOf(ctx) : ctx.upstreamGroup;
      if (now < 0) why = "the rules answer this question themselves now";
      else if (now !== group) {
        why = `the rules send it to upstream group ${now} now, it came from group ${group}`;
      }
    }
    if (!why && state === "stale") {
      if (ctx.listener.flags & BindFlag.NO_SERVE_EXPIRED) why = "the listener is -no-serve-expired";
      else if (!(rules?.servesStale?.(ctx) ?? true)) why = "a domain-rules -no-serve-expired line";
    }
    const answer = why
      ? undefined
      : state === "stale"
      ? entry.answer.withFixedTtl(this.staleReplyTtl, now).render(ctx, now, 65535)
      : entry.answer.render(ctx, now, 65535);
    return { state, ttlLeft, group, wouldServe: !why, ...(why ? { why } : { answer }) };
  }

  /** The tag of an answer stored now (ctx.upstreamGroup is the group that answered). */
  private tagNow(ctx: QueryContext): number {
    return tagOf(this.rules?.generation ?? 0, ctx.listener.flags, ctx.upstreamGroup);
  }

  /**
   * Whether the entry just found may be served: stored under the current rules by the upstream
   * group this query goes to; else, when the rules still send its question to the group that
   * answered it (a nameserver rule, or rules that changed since), it is re-tagged and served.
   */
  private stillUpstream(rules: RulesAfterCache | undefined, ctx: QueryContext): boolean {
    const tag = this.cache.lastTag;
    const expected = tagOf(rules?.generation ?? 0, ctx.listener.flags, ctx.upstreamGroup);
    if (tag === expected) return true;
    const group = tag & 0xff;
    if (!rules) return group === ctx.upstreamGroup;
    // Stored under other rules, by a listener with other rule flags, or routed by a nameserver
    // rule: ask the rules whether this query would go to the group that answered.
    const now = rules.upstreamGroupOf(ctx);
    if (now < 0 || now !== group) return false;
    this.cache.retagLast(tagOf(rules.generation, ctx.listener.flags, group));
    ctx.upstreamGroup = group; // the group that answered: for the query recorder
    return true;
  }
}

/** What the cache holds for a question, as `explain` reports it. */
export interface CacheInspection {
  /**
   * `fresh`, `stale` (expired, within the serve-expired window), `expired` (past it: dropped when
   * next asked), `absent`, or `bypassed` (the listener is -no-cache).
   */
  readonly state: "fresh" | "stale" | "expired" | "absent" | "bypassed";
  /** Seconds of TTL left (negative: expired that long ago). */
  readonly ttlLeft?: number;
  /** Whether a query now would be answered from it (the rules still send it to the group that answered). */
  readonly wouldServe: boolean;
  /** Why it would not, when it is there. */
  readonly why?: string;
  /** The upstream group that answered it. */
  readonly group?: number;
  /** The answer it would give (rendered for the question now; a stale one at the reply TTL). */
  readonly answer?: Uint8Array;
}

/** The listener profiles of background refreshes, by the listener flags their entries were stored with. */
const REFRESH_LISTENERS = new Map<number, ListenerProfile>();

/**
 * A context for the question of a cache key (name, type, class, then the variant byte: DO bit,
 * client group, the -no-speed-check bit) and tag (rule flags, upstream group), for a background
 * refresh; undefined for a key that is not one.
 */
function contextOfKey(key: Uint8Array, tag: number): QueryContext | undefined {
  const wire = new Uint8Array(12 + key.length - 1);
  wire[2] = 0x01; // RD
  wire[5] = 1; // one question
  wire.set(key.subarray(0, key.length - 1), 12);
  let ctx: QueryContext;
  try {
    ctx = parseContext(wire);
  } catch {
    return undefined;
  }
  const variant = key[key.length - 1];
  const flags = ((tag >> 8) & RULE_FLAGS) | (variant & 0x80 ? BindFlag.NO_SPEED_CHECK : 0);
  let listener = REFRESH_LISTENERS.get(flags);
  if (!listener) REFRESH_LISTENERS.set(flags, listener = { address: "prefetch", flags });
  ctx.listener = listener;
  ctx.ruleGroup = (variant >> 1) & 0x3f;
  ctx.upstreamGroup = tag & 0xff;
  return ctx;
}

/**
 * A context for the same question with its own copy of the query bytes and no client address, for
 * a query that outlives the client's (the refresh behind a stale answer).
 */
function detachedCopy(ctx: QueryContext): QueryContext {
  const copy = new QueryContext(
    ctx.wire.slice(0, ctx.questionEnd),
    ctx.id,
    ctx.qtype,
    ctx.qclass,
    ctx.questionEnd,
    ctx.edns,
    ctx.dnssecOk,
    ctx.udpSize,
    ctx.recursionDesired,
  );
  copy.listener = ctx.listener;
  copy.upstreamGroup = ctx.upstreamGroup;
  copy.ruleGroup = ctx.ruleGroup;
  return copy;
}
