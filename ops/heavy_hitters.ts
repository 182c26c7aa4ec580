/**
 * The most frequent keys of an unbounded stream (names asked, clients, names blocked) in bounded
 * memory: the Space-Saving sketch (Metwally, Agrawal, El Abbadi 2005). It keeps `capacity`
 * counters; a key not among them takes over the smallest counter, inheriting its count as its
 * possible overcount. Any key seen more than total/capacity times is guaranteed to be kept, and
 * each kept count is at most `error` above the truth.
 *
 * The counters sit in a min-heap (arrays, no object per entry), so a new key costs O(log capacity).
 *
 * @module
 */

/** One kept key: its estimated count and how much of that may be overcount. */
export interface HeavyHitter {
  readonly key: string;
  readonly count: number;
  /** The estimate is between `count - error` and `count`. */
  readonly error: number;
}

/** A Space-Saving sketch of at most `capacity` keys. */
export class HeavyHitters {
  private readonly keys: string[] = [];
  private readonly counts: number[] = [];
  private readonly errors: number[] = [];
  /** Each kept key's position in the heap. */
  private readonly where = new Map<string, number>();
  /** Everything counted, kept or not. */
  total = 0;

  constructor(readonly capacity: number) {
    if (!(capacity >= 1)) throw new RangeError(`a sketch needs at least one counter, not ${capacity}`);
  }

  /** Keys kept now. */
  get size(): number {
    return this.keys.length;
  }

  /** Counts `key` `weight` times (with a known overcount `error`, when merging another sketch). */
  add(key: string, weight = 1, error = 0): void {
    this.total += weight;
    const at = this.where.get(key);
    if (at !== undefined) {
      this.counts[at] += weight;
      this.errors[at] += error;
      this.down(at);
      return;
    }
    if (this.keys.length < this.capacity) {
      const i = this.keys.length;
      this.keys.push(key);
      this.counts.push(weight);
      this.errors.push(error);
      this.where.set(key, i);
      this.up(i);
      return;
    }
    // Full: the key takes over the smallest counter, which may all have been other keys'.
    const floor = this.counts[0];
    this.where.delete(this.keys[0]);
    this.keys[0] = key;
    this.counts[0] = floor + weight;
    this.errors[0] = floor + error;
    this.where.set(key, 0);
    this.down(0);
  }

  /** The `n` largest counts, largest first (ties by key). */
  top(n: number): HeavyHitter[] {
    const order = this.keys.map((_, i) => i).sort((a, b) =>
      this.counts[b] - this.counts[a] || (this.keys[a] < this.keys[b] ? -1 : 1)
    );
    return order.slice(0, n).map((i) => ({
      key: this.keys[i],
      count: this.counts[i],
      error: this.errors[i],
    }));
  }

  /** Everything kept, as JSON-able triples `[key, count, error]`, for a successor to {@link merge}. */
  state(): [string, number, number][] {
    return this.keys.map((k, i) => [k, this.counts[i], this.errors[i]]);
  }

  /** Adds what another sketch kept (its {@link state}); `total` is what that sketch counted in all. */
  merge(entries: readonly (readonly [string, number, number])[], total: number): void {
    let kept = 0;
    for (const [key, count, error] of entries) {
      this.add(key, count, error);
      kept += count;
    }
    this.total += Math.max(0, total - kept);
  }

  private swap(a: number, b: number): void {
    const k = this.keys[a], c = this.counts[a], e = this.errors[a];
    this.keys[a] = this.keys[b];
    this.counts[a] = this.counts[b];
    this.errors[a] = this.errors[b];
    this.keys[b] = k;
    this.counts[b] = c;
    this.errors[b] = e;
    this.where.set(this.keys[a], a);
    this.where.set(k, b);
  }

  private up(i: number): void {
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (this.counts[parent] <= this.counts[i]) return;
      this.swap(i, parent);
      i = parent;
    }
  }

  private down(i: number): void {
    const n = this.keys.length;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let least = i;
      if (l < n && this.counts[l] < this.counts[least]) least = l;
      if (r < n && this.counts[r] < this.counts[least]) least = r;
      if (least === i) return;
      this.swap(i, least);
      i = least;
    }
  }
}
