/**
 * What `keeldns cache list|flush|stats` see of the answer cache: entries by name (decoded from
 * their wire keys), name patterns, and the removal of the entries of a name. Only these commands
 * run it, never a query.
 *
 * @module
 */
import { typeName } from "../dns/packet.ts";
import type { AnswerCache } from "./answer_cache.ts";
import type { CacheStage } from "./cache_stage.ts";

/** The most entries `cache list` returns unless told otherwise. */
export const LIST_LIMIT = 1000;

/** One cache entry as `cache list` shows it. */
export interface CacheListEntry {
  readonly name: string;
  readonly type: string;
  /** Seconds until it expires (0: expired, dropped when next looked up). */
  readonly ttl: number;
  /** The client group it was stored for (0: the default). */
  readonly group: number;
  /** Stored for a DNSSEC-OK query. */
  readonly dnssecOk: boolean;
}

/** A `cache list` answer: the first entries that match, and how many more did. */
export interface CacheList {
  readonly entries: readonly CacheListEntry[];
  readonly more: number;
}

/** The name in a cache key (question name, type, class, variant byte), dotted, lower case. */
export function keyName(key: Uint8Array): string {
  const labels: string[] = [];
  const end = key.length - 5;
  for (let i = 0; i < end && key[i] !== 0;) {
    const length = key[i];
    let label = "";
    for (let j = i + 1; j <= i + length && j < end; j++) {
      const c = key[j];
      label += c === 0x2e || c === 0x5c
        ? "\\" + String.fromCharCode(c)
        : c > 0x20 && c < 0x7f
        ? String.fromCharCode(c)
        : "\\" + String(c).padStart(3, "0");
    }
    labels.push(label);
    i += length + 1;
  }
  return labels.length === 0 ? "." : labels.join(".");
}

/** The record type number in a cache key. */
export function keyType(key: Uint8Array): number {
  return (key[key.length - 5] << 8) | key[key.length - 4];
}

/**
 * A name pattern: `*` and `?` are globs over the whole name (`*.example.com`: the names below
 * example.com); a plain name is that name alone (`exact`) or it and the names below it (`suffix`).
 * Case and a trailing dot do not matter.
 */
export function nameMatcher(pattern: string, plain: "exact" | "suffix"): (name: string) => boolean {
  const p = pattern.toLowerCase().replace(/\.$/, "");
  if (/[*?]/.test(p)) {
    const source = p.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".");
    const re = new RegExp(`^${source}$`);
    return (name) => re.test(name);
  }
  if (plain === "exact") return (name) => name === p;
  return (name) => name === p || name.endsWith("." + p);
}

/** The entries (least recently used first) whose name matches `pattern` (any: all), at most `limit`. */
export function listCache(
  cache: AnswerCache,
  pattern: string | undefined,
  now: number,
  limit = LIST_LIMIT,
): CacheList {
  const matches = pattern ? nameMatcher(pattern, "suffix") : () => true;
  const entries: CacheListEntry[] = [];
  let more = 0;
  for (const [key, answer] of cache.entries()) {
    const name = keyName(key);
    if (!matches(name)) continue;
    if (entries.length >= limit) {
      more++;
      continue;
    }
    const variant = key[key.length - 1];
    entries.push({
      name,
      type: typeName(keyType(key)),
      ttl: Math.max(0, Math.ceil((answer.storedAt + answer.lifetime * 1000 - now) / 1000)),
      group: (variant >> 1) & 0x3f,
      dnssecOk: (variant & 1) === 1,
    });
  }
  return { entries, more };
}

/**
 * Removes the entries of `pattern` (every type and variant; see {@link nameMatcher}, a plain name
 * being that name alone), or every entry when there is none; returns how many went.
 */
export function flushCache(cache: AnswerCache, pattern: string | undefined): number {
  if (!pattern) {
    const size = cache.size;
    cache.clear();
    return size;
  }
  const matches = nameMatcher(pattern, "exact");
  return cache.removeWhere((key) => matches(keyName(key)));
}

/**
 * Carries out `keeldns cache list|flush|stats` on the cache stage (none: the cache is off);
 * returns what to show. Throws for an action it does not know.
 */
export function cacheAction(
  stage: CacheStage | undefined,
  action: string,
  pattern: string | undefined,
  now: number,
): Record<string, unknown> {
  if (!stage) throw new Error("the cache is off (cache-size 0)");
  switch (action) {
    case "stats":
      return {
        entries: stage.cache.size,
        capacity: stage.cache.capacity,
        bytes: stage.cache.reservedBytes,
        hits: stage.counters.hits,
        misses: stage.counters.misses,
      };
    case "list":
      return { ...listCache(stage.cache, pattern, now) };
    case "flush":
      return { removed: flushCache(stage.cache, pattern) };
  }
  throw new Error(`unknown cache action ${JSON.stringify(action)}`);
}
