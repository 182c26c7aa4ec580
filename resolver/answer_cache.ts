/**
 * The answer cache: stored wire answers keyed by (name, type, class, DO), bounded by entry count
 * with least-recently-used eviction. Expired entries are dropped when looked up.
 *
 * @module
 */
import type { StoredAnswer } from "../dns/stored_answer.ts";

/** An LRU map of {@link StoredAnswer}s. */
export class AnswerCache {
  private readonly byKey = new Map<string, StoredAnswer>();

  /** @param capacity the most entries kept (0 keeps none) */
  constructor(private capacityLimit: number) {}

  /** The most entries kept. */
  get capacity(): number {
    return this.capacityLimit;
  }

  /** Changes the capacity (on reload), evicting the least recently used entries beyond it. */
  resize(capacity: number): void {
    this.capacityLimit = capacity;
    this.evict();
  }

  private evict(): void {
    while (this.byKey.size > this.capacityLimit) {
      this.byKey.delete(this.byKey.keys().next().value!);
    }
  }

  /** Number of entries held (fresh or not yet found expired). */
  get size(): number {
    return this.byKey.size;
  }

  /** Returns the fresh entry for `key` at time `now`, marking it recently used; else undefined. */
  get(key: string, now: number): StoredAnswer | undefined {
    const entry = this.byKey.get(key);
    if (entry === undefined) return undefined;
    this.byKey.delete(key);
    if (now >= entry.expiresAt) return undefined;
    this.byKey.set(key, entry);
    return entry;
  }

  /** Stores `answer` if it may be cached, evicting the least recently used entries over capacity. */
  set(key: string, answer: StoredAnswer): void {
    if (this.capacity <= 0 || answer.lifetime <= 0) return;
    this.byKey.delete(key);
    this.byKey.set(key, answer);
    this.evict();
  }

  /** Every entry, least recently used first (expired ones included until looked up). */
  entries(): IterableIterator<[string, StoredAnswer]> {
    return this.byKey.entries();
  }

  /** Drops every entry. */
  clear(): void {
    this.byKey.clear();
  }
}
