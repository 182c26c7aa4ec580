/**
 * The most frequent keys of an unbounded stream (names asked, clients, names blocked) in bounded
 * memory: the Space-Saving sketch (Metwally, Agrawal, El Abbadi 2005). It keeps `capacity`
 * counters; a key not among them takes over the smallest counter, inheriting its count as its
 * possible overcount. Any key seen more than total/capacity times is guaranteed to be kept, and
 * each kept count is at most `error` above the truth.
 *
 * Keys are byte strings (a name's wire form, an address), counted without making a string: a
 * 52-bit hash finds the counter, and the key's bytes are copied into the counter's slot only when
 * it takes one. Text is made only when the top list is read. The counters sit in typed arrays and
 * an index min-heap, so a new key costs O(log capacity) and no allocation.
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

/** A kept key as carried to a successor: its bytes in hex, its count, its overcount. */
export type HeavyHitterState = readonly [bytes: string, count: number, error: number];

/** A 52-bit hash of `length` bytes at `at` (two FNV-1a variants), exact as a JS number. */
export function hashBytes(bytes: Uint8Array, at: number, length: number): number {
  let a = 0x811c9dc5;
  let b = 0x01000193 ^ length;
  for (let i = at; i < at + length; i++) {
    const c = bytes[i];
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x5bd1e995) ^ (b >>> 15);
  }
  return (a >>> 0) * 0x100000 + (b & 0xfffff);
}

const hex = (bytes: Uint8Array): string => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
const unhex = (text: string): Uint8Array =>
  Uint8Array.from(text.match(/[0-9a-f]{2}/gi) ?? [], (h) => parseInt(h, 16));

/** A Space-Saving sketch of at most `capacity` keys of at most `keyBytes` bytes each. */
export class HeavyHitters {
  /** Per counter (by its id): the key's hash, count, overcount, bytes and their length. */
  private readonly hashes: Float64Array;
  private readonly counts: Float64Array;
  private readonly errors: Float64Array;
  private readonly lengths: Uint16Array;
  private readonly bytes: Uint8Array;
  /** The min-heap of counter ids by count, and each id's place in it. */
  private readonly heap: Int32Array;
  private readonly place: Int32Array;
  private used = 0;
  /** Counter id by key hash. */
  private readonly where = new Map<number, number>();
  /** Everything counted, kept or not. */
  total = 0;

  /**
   * @param capacity counters kept
   * @param keyBytes the longest key (longer ones are cut)
   * @param describe a key's bytes as text, for the top list
   */
  constructor(
    readonly capacity: number,
    private readonly keyBytes: number,
    private readonly describe: (bytes: Uint8Array) => string,
  ) {
    if (!(capacity >= 1)) throw new RangeError(`a sketch needs at least one counter, not ${capacity}`);
    this.hashes = new Float64Array(capacity);
    this.counts = new Float64Array(capacity);
    this.errors = new Float64Array(capacity);
    this.lengths = new Uint16Array(capacity);
    this.bytes = new Uint8Array(capacity * keyBytes);
    this.heap = new Int32Array(capacity);
    this.place = new Int32Array(capacity);
  }

  /** Keys kept now. */
  get size(): number {
    return this.used;
  }

  /**
   * Counts the key of `length` bytes at `at` of `source` `weight` times (with a known overcount
   * `error`, when merging another sketch); `hash` is {@link hashBytes} of it when the caller has it.
   */
  add(
    source: Uint8Array,
    at: number,
    length: number,
    weight = 1,
    error = 0,
    hash = hashBytes(source, at, length > this.keyBytes ? this.keyBytes : length),
  ): void {
    this.total += weight;
    const found = this.where.get(hash);
    if (found !== undefined) {
      this.counts[found] += weight;
      this.errors[found] += error;
      this.down(this.place[found]);
      return;
    }
    const fresh = this.used < this.capacity;
    let id: number;
    let floor = 0;
    if (fresh) {
      id = this.used;
      this.heap[id] = id;
      this.place[id] = id;
      this.used++;
    } else {
      // Full: the key takes over the smallest counter, which may all have been other keys'.
      id = this.heap[0];
      floor = this.counts[id];
      this.where.delete(this.hashes[id]);
    }
    const n = length > this.keyBytes ? this.keyBytes : length;
    const to = id * this.keyBytes;
    for (let i = 0; i < n; i++) this.bytes[to + i] = source[at + i];
    this.lengths[id] = n;
    this.hashes[id] = hash;
    this.counts[id] = floor + weight;
    this.errors[id] = floor + error;
    this.where.set(hash, id);
    if (fresh) this.up(this.place[id]);
    else this.down(this.place[id]);
  }

  /** Counts a key given as text (UTF-8 bytes; for tests and merging). */
  addText(key: string, weight = 1): void {
    const bytes = new TextEncoder().encode(key);
    this.add(bytes, 0, bytes.length, weight);
  }

  private keyOf(id: number): Uint8Array {
    const at = id * this.keyBytes;
    return this.bytes.subarray(at, at + this.lengths[id]);
  }

  private ids(): number[] {
    return Array.from(this.heap.subarray(0, this.used));
  }

  /** The `n` largest counts, largest first (ties by key). */
  top(n: number): HeavyHitter[] {
    const entries = this.ids().map((id) => ({
      key: this.describe(this.keyOf(id)),
      count: this.counts[id],
      error: this.errors[id],
    }));
    entries.sort((a, b) => b.count - a.count || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    return entries.slice(0, n);
  }

  /** Everything kept, as JSON-able triples, for a successor to {@link merge}. */
  state(): HeavyHitterState[] {
    return this.ids().map((id) => [hex(this.keyOf(id)), this.counts[id], this.errors[id]]);
  }

  /** Adds what another sketch kept (its {@link state}); `total` is what that sketch counted in all. */
  merge(entries: readonly HeavyHitterState[], total: number): void {
    let kept = 0;
    for (const [key, count, error] of entries) {
      const bytes = unhex(String(key));
      const c = Number(count) || 0;
      this.add(bytes, 0, bytes.length, c, Number(error) || 0);
      kept += c;
    }
    this.total += Math.max(0, (Number(total) || 0) - kept);
  }

  private swap(a: number, b: number): void {
    const x = this.heap[a];
    const y = this.heap[b];
    this.heap[a] = y;
    this.heap[b] = x;
    this.place[y] = a;
    this.place[x] = b;
  }

  private up(i: number): void {
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (this.counts[this.heap[parent]] <= this.counts[this.heap[i]]) return;
      this.swap(i, parent);
      i = parent;
    }
  }

  private down(i: number): void {
    const n = this.used;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let least = i;
      if (l < n && this.counts[this.heap[l]] < this.counts[this.heap[least]]) least = l;
      if (r < n && this.counts[this.heap[r]] < this.counts[this.heap[least]]) least = r;
      if (least === i) return;
      this.swap(i, least);
      i = least;
    }
  }
}
