/**
 * The answer cache: stored wire answers keyed by the question as it is on the wire (name lower-cased,
 * type, class) and the DO bit, bounded by entry count and optionally by the bytes its records take
 * (SmartDNS `cache-mem-size`), with least-recently-used eviction. Expired
 * entries are dropped when looked up, unless still within the stale window (RFC 8767; SmartDNS
 * `serve-expired-ttl`): then {@link AnswerCache.takeStale} gives them. A lookup reads the query's
 * bytes: no string is built.
 *
 * No JavaScript object per entry: keys and answers live in a {@link ByteArena}, and the hash
 * index, LRU links and timestamps in typed arrays indexed by slot. A cache of 100k names is then
 * ~180 bytes a name the garbage collector never visits, instead of a Map entry, a key string, an
 * answer object and an ArrayBuffer each.
 *
 * @module
 */
import { StoredAnswer } from "../dns/stored_answer.ts";
import { HEADER_LENGTH, type Question } from "../dns/wire.ts";
import { ByteArena } from "./byte_arena.ts";

const NONE = -1;
const FIRST_SLOTS = 1024;
/**
 * FNV-1a's offset basis mixed with a per-process random value, so that clients cannot choose names
 * whose keys all land in one hash chain.
 */
const HASH_SEED = (0x811c9dc5 ^ crypto.getRandomValues(new Uint32Array(1))[0]) >>> 0;
/** Chunk bytes allowed beyond twice the live records before the arena is compacted. */
const COMPACT_SLACK = 4 << 20;

/** Bytes of index per slot: the per-slot typed arrays of {@link AnswerCache}, one element each. */
const SLOT_BYTES = 8 + 4 + 2 + 2 + 4 + 8 + 4 + 4 + 4 + 4 + 2 + 1 + 8;

/** SmartDNS's hit budget: a new entry's, the first step a hit adds, the largest step and the cap. */
const FIRST_HITS = 3;
const FIRST_STEP = 3;
const MAX_STEP = 6;
const MAX_HITS = 6000;

/** An entry whose background refresh is due (see {@link AnswerCache.takeDue}). */
export interface DueEntry {
  /** Its key, as {@link AnswerCache.entries} gives it (a copy). */
  readonly key: Uint8Array;
  /** Its tag. */
  readonly tag: number;
  /** When its answer was stored, and when it stops being fresh (ms since the epoch). */
  readonly storedAt: number;
  readonly expiresAt: number;
}

/** An entry as {@link AnswerCache.peek} finds it. */
export interface PeekedEntry {
  /** A view of its answer (valid until the cache next changes). */
  readonly answer: StoredAnswer;
  /** When it was stored, stops being fresh, and stops being served stale (ms since the epoch). */
  readonly storedAt: number;
  readonly expiresAt: number;
  readonly staleUntil: number;
  /** Its tag. */
  readonly tag: number;
}

/**
 * A key is the question section (name, type, class) with the name lower-cased, then one byte for
 * the DO bit: `end - start + 1` bytes. This is byte `i` of it, read from `src` where the name ends
 * at `nameEnd`. Label length bytes are below "A", so lower-casing every byte of the name leaves
 * them alone; type and class are taken as they are.
 */
function keyByte(src: Uint8Array, i: number, nameEnd: number): number {
  const c = src[i];
  return i < nameEnd && c >= 0x41 && c <= 0x5a ? c | 0x20 : c;
}

/** FNV-1a (seeded) over the key read from `src[start, end)` and the DO byte. */
function hashKey(src: Uint8Array, start: number, end: number, dnssecOk: number): number {
  let h = HASH_SEED;
  for (let i = start; i < end; i++) h = Math.imul(h ^ keyByte(src, i, end - 4), 0x01000193);
  return Math.imul(h ^ dnssecOk, 0x01000193) >>> 0;
}

/** An LRU cache of {@link StoredAnswer}s held in shared buffers. */
export class AnswerCache {
  private arena = new ByteArena();
  /** Bytes of the live records (rounded as the arena rounds them). */
  private liveBytes = 0;
  private slots = 0;
  private count = 0;
  // Per slot: where its record is, how it splits, when it was stored, and its links.
  private address = new Float64Array(0);
  private hash = new Uint32Array(0);
  private keyLength = new Uint16Array(0);
  private wireLength = new Uint16Array(0);
  private storedLength = new Uint32Array(0);
  private storedAt = new Float64Array(0);
  private lifetime = new Uint32Array(0);
  /** Per slot: an opaque tag its storer gave it (the cache stage: rules generation and group). */
  private tag = new Uint32Array(0);
  /**
   * Per slot, for background refresh (prefetch): SmartDNS's hit budget (each fresh hit adds a
   * step that grows from 3 to 6, each prefetch spends one and shrinks the step), and when the
   * next refresh is due (ms; 0: not planned yet, Infinity: none).
   */
  private hits = new Uint16Array(0);
  private hitStep = new Uint8Array(0);
  private due = new Float64Array(0);
  /** The slot of the last hit, for {@link lastTag} and {@link retagLast}. */
  private lastHit = NONE;
  /** Milliseconds past its lifetime an entry is kept and may be served stale (0: none). */
  private staleMs = 0;
  /** The expired entry within the stale window the last {@link get} found, or NONE. */
  private staleSlot = NONE;
  /** LRU list: `newer`/`older` neighbours; the free slots are chained through `older`. */
  private newer = new Int32Array(0);
  private older = new Int32Array(0);
  /** Hash chains: bucket heads and the next slot of the same bucket. */
  private buckets = new Int32Array(0);
  private chain = new Int32Array(0);
  private newest = NONE;
  private oldest = NONE;
  private freeSlot = NONE;

  /**
   * @param capacity the most entries kept (0 keeps none)
   * @param memoryLimit the most bytes of records kept, keys included (0: no byte budget)
   */
  constructor(private capacityLimit: number, private memoryLimit = 0) {}

  /** The byte budget of the records (0: none). */
  get memoryBudget(): number {
    return this.memoryLimit;
  }

  /** Bytes the live records take in the arena (what {@link memoryBudget} bounds). */
  get storedBytes(): number {
    return this.liveBytes;
  }

  /** Seconds past its lifetime an entry may still be served stale (0: expired entries go at once). */
  get staleWindow(): number {
    return this.staleMs / 1000;
  }

  set staleWindow(seconds: number) {
    this.staleMs = seconds > 0 ? seconds * 1000 : 0;
  }

  /** The most entries kept. */
  get capacity(): number {
    return this.capacityLimit;
  }

  /** Number of entries held (fresh or not yet found expired). */
  get size(): number {
    return this.count;
  }

  /** Bytes the cache holds in buffers: its index and its records' chunks. */
  get reservedBytes(): number {
    return this.slots * SLOT_BYTES + this.buckets.length * 4 + this.arena.reservedBytes;
  }

  /** Changes the capacity and byte budget (on reload), evicting the least recently used beyond them. */
  resize(capacity: number, memoryLimit = 0): void {
    this.capacityLimit = capacity;
    this.memoryLimit = memoryLimit;
    this.staleSlot = NONE;
    while (this.count > this.capacityLimit) this.remove(this.oldest);
    while (memoryLimit > 0 && this.liveBytes > memoryLimit) this.remove(this.oldest);
  }

  /**
   * Returns the fresh entry for `q` at time `now`, marking it recently used; else undefined.
   * The answer is a view into the cache's buffers: use it before the cache is next changed.
   * `variant` is the key's last byte: the DO bit, and the client group above it. An expired entry
   * still within the stale window is kept and left for {@link takeStale}.
   */
  get(q: Question, now: number, variant = q.dnssecOk ? 1 : 0): StoredAnswer | undefined {
    const dnssecOk = variant;
    const slot = this.find(
      q.wire,
      HEADER_LENGTH,
      q.questionEnd,
      dnssecOk,
      hashKey(q.wire, HEADER_LENGTH, q.questionEnd, dnssecOk),
    );
    if (slot === NONE) {
      this.staleSlot = NONE;
      return undefined;
    }
    const expiresAt = this.storedAt[slot] + this.lifetime[slot] * 1000;
    if (now >= expiresAt) {
      if (now < expiresAt + this.staleMs) this.staleSlot = slot;
      else {
        this.remove(slot);
        this.staleSlot = NONE;
      }
      return undefined;
    }
    this.lastHit = slot;
    this.touch(slot);
    const step = this.hitStep[slot];
    const hits = this.hits[slot] + step;
    this.hits[slot] = hits > MAX_HITS ? MAX_HITS : hits;
    if (step < MAX_STEP) this.hitStep[slot] = step + 1;
    return this.answerAt(slot);
  }

  /**
   * The expired entry within the stale window that the {@link get} just before found (it returned
   * undefined), marking it recently used and the last hit (see {@link lastTag}); else undefined.
   * Ask right after that get: the entry is a view, like a fresh one, and any change forgets it.
   */
  takeStale(): StoredAnswer | undefined {
    const slot = this.staleSlot;
    if (slot === NONE) return undefined;
    this.staleSlot = NONE;
    this.lastHit = slot;
    this.touch(slot);
    return this.answerAt(slot);
  }

  /**
   * The entry for `q` with `variant` as it is, fresh, stale or expired, without marking it used,
   * counting a hit or dropping it (for `explain`; a query uses {@link get}). The answer is a view:
   * use it before the cache next changes.
   */
  peek(q: Question, variant: number): PeekedEntry | undefined {
    const slot = this.find(
      q.wire,
      HEADER_LENGTH,
      q.questionEnd,
      variant,
      hashKey(q.wire, HEADER_LENGTH, q.questionEnd, variant),
    );
    if (slot === NONE) return undefined;
    const expiresAt = this.storedAt[slot] + this.lifetime[slot] * 1000;
    return {
      answer: this.answerAt(slot),
      storedAt: this.storedAt[slot],
      expiresAt,
      staleUntil: expiresAt + this.staleMs,
      tag: this.tag[slot],
    };
  }

  /**
   * Called with each entry {@link set} stores (not {@link setWithKey}'s): its key as {@link entries}
   * gives it and its answer, both views valid only during the call. The cache journal listens here.
   */
  onStore?: (key: Uint8Array, answer: StoredAnswer) => void;

  /** Stores a copy of `answer` for `q` if it may be cached, evicting the least recently used entries over capacity. */
  set(q: Question, answer: StoredAnswer, variant = q.dnssecOk ? 1 : 0, tag = 0): void {
    const slot = this.store(q.wire, HEADER_LENGTH, q.questionEnd, variant, answer, tag);
    if (slot !== NONE && this.onStore) {
      const address = this.address[slot];
      const at = ByteArena.offsetOf(address);
      this.onStore(this.arena.chunkOf(address).subarray(at, at + this.keyLength[slot]), this.answerAt(slot));
    }
  }

  /** {@link set} with a key as {@link entries} gives it (for a cache file); a malformed key is ignored. */
  setWithKey(key: Uint8Array, answer: StoredAnswer): void {
    if (key.length < 6 || key.length > 261) return;
    this.store(key, 0, key.length - 1, key[key.length - 1], answer);
  }

  /** The tag of the entry the last {@link get} found. */
  get lastTag(): number {
    return this.lastHit === NONE ? 0 : this.tag[this.lastHit];
  }

  /** Gives the entry the last {@link get} found a new tag. */
  retagLast(tag: number): void {
    if (this.lastHit !== NONE) this.tag[this.lastHit] = tag;
  }

  private store(
    src: Uint8Array,
    start: number,
    end: number,
    dnssecOk: number,
    answer: StoredAnswer,
    tag = 0,
  ): number {
    if (this.capacityLimit <= 0 || answer.lifetime <= 0) return NONE;
    const keyLength = end - start + 1;
    const recordLength = keyLength + answer.storedLength;
    const rounded = ByteArena.roundedLength(recordLength);
    const budget = this.memoryLimit;
    if (budget > 0 && rounded > budget) return NONE; // one answer bigger than the whole budget
    const h = hashKey(src, start, end, dnssecOk);
    this.staleSlot = NONE;
    const existing = this.find(src, start, end, dnssecOk, h);
    // A replaced entry (a refresh) keeps its hit budget, as SmartDNS's does.
    let hits = FIRST_HITS;
    let step = FIRST_STEP;
    if (existing !== NONE) {
      hits = this.hits[existing];
      step = this.hitStep[existing];
      this.remove(existing);
    }
    while (this.count >= this.capacityLimit) this.remove(this.oldest);
    while (budget > 0 && this.liveBytes + rounded > budget) this.remove(this.oldest);
    const slot = this.takeSlot();
    if (this.arena.reservedBytes > 2 * (this.liveBytes + recordLength) + COMPACT_SLACK) this.compact();
    const address = this.arena.allocate(recordLength);
    this.liveBytes += rounded;
    const chunk = this.arena.chunkOf(address);
    const at = ByteArena.offsetOf(address);
    for (let i = start, o = at; i < end; i++, o++) chunk[o] = keyByte(src, i, end - 4);
    chunk[at + keyLength - 1] = dnssecOk;
    answer.copyTo(chunk, at + keyLength);
    this.address[slot] = address;
    this.hash[slot] = h;
    this.keyLength[slot] = keyLength;
    this.wireLength[slot] = answer.wireLength;
    this.storedLength[slot] = answer.storedLength;
    this.storedAt[slot] = answer.storedAt;
    this.lifetime[slot] = answer.lifetime;
    this.tag[slot] = tag;
    this.hits[slot] = hits;
    this.hitStep[slot] = step;
    this.due[slot] = 0;
    const bucket = h & (this.buckets.length - 1);
    this.chain[slot] = this.buckets[bucket];
    this.buckets[bucket] = slot;
    this.linkNewest(slot);
    this.count++;
    return slot;
  }

  /**
   * Every entry, least recently used first (expired ones included until looked up). The answers
   * are views (see {@link get}): the cache must not change while they are used.
   */
  *entries(): IterableIterator<[Uint8Array, StoredAnswer]> {
    for (let slot = this.oldest; slot !== NONE; slot = this.newer[slot]) {
      const address = this.address[slot];
      const at = ByteArena.offsetOf(address);
      yield [this.arena.chunkOf(address).slice(at, at + this.keyLength[slot]), this.answerAt(slot)];
    }
  }

  /**
   * The entries whose background refresh is due at `now`, each planned anew: `plan` gives the time
   * of an entry's first refresh once it is stored (from its expiry and key's last byte; Infinity:
   * none); a due entry's next one is `retryAfter` ms later (a refresh that succeeds stores a new
   * entry, planned afresh). With `spendHits` a due entry spends one of its hit budget and is left
   * out, never due again, once the budget is gone. An expired entry is left out once less than a
   * second of its stale window remains. O(entries): for a timer, never a query.
   */
  takeDue(
    now: number,
    plan: (expiresAt: number, now: number, variant: number) => number,
    retryAfter: number,
    spendHits: boolean,
  ): DueEntry[] {
    const due: DueEntry[] = [];
    for (let slot = this.oldest; slot !== NONE; slot = this.newer[slot]) {
      const expiresAt = this.storedAt[slot] + this.lifetime[slot] * 1000;
      let at = this.due[slot];
      if (at === 0) {
        const address = this.address[slot];
        const variant = this.arena.chunkOf(address)[ByteArena.offsetOf(address) + this.keyLength[slot] - 1];
        at = this.due[slot] = plan(expiresAt, now, variant);
      }
      if (at > now) continue;
      this.due[slot] = now + retryAfter;
      if (spendHits) {
        const hits = this.hits[slot];
        this.hits[slot] = hits > 0 ? hits - 1 : 0;
        if (this.hitStep[slot] > FIRST_STEP) this.hitStep[slot]--;
        if (hits <= 1) {
          this.due[slot] = Infinity;
          continue;
        }
      }
      if (now >= expiresAt && now >= expiresAt + this.staleMs - 1000) {
        this.due[slot] = Infinity;
        continue;
      }
      const address = this.address[slot];
      const at0 = ByteArena.offsetOf(address);
      due.push({
        key: this.arena.chunkOf(address).slice(at0, at0 + this.keyLength[slot]),
        tag: this.tag[slot],
        storedAt: this.storedAt[slot],
        expiresAt,
      });
    }
    return due;
  }

  /**
   * Removes every entry whose key (as {@link entries} gives it; a view valid only during the call)
   * `match` accepts; returns how many went. O(entries); for `keeldns cache flush`, never a query.
   */
  removeWhere(match: (key: Uint8Array) => boolean): number {
    let removed = 0;
    for (let slot = this.oldest; slot !== NONE;) {
      const next = this.newer[slot];
      const address = this.address[slot];
      const at = ByteArena.offsetOf(address);
      if (match(this.arena.chunkOf(address).subarray(at, at + this.keyLength[slot]))) {
        this.remove(slot);
        removed++;
      }
      slot = next;
    }
    // The last hit's slot may be free (or reused) now: its tag is no longer the last hit's.
    if (removed > 0) this.lastHit = this.staleSlot = NONE;
    return removed;
  }

  /** A view of the answer stored in `slot` (valid until the cache next changes). */
  private answerAt(slot: number): StoredAnswer {
    const address = this.address[slot];
    return StoredAnswer.view(
      this.arena.chunkOf(address),
      ByteArena.offsetOf(address) + this.keyLength[slot],
      this.wireLength[slot],
      this.storedLength[slot],
      this.storedAt[slot],
      this.lifetime[slot],
    );
  }

  /** Drops every entry. */
  clear(): void {
    this.arena.clear();
    this.lastHit = this.staleSlot = NONE;
    this.liveBytes = 0;
    this.slots = 0;
    this.count = 0;
    this.newest = this.oldest = this.freeSlot = NONE;
    this.resizeSlots(0);
  }

  /**
   * Copies every live record into a fresh arena, dropping the old one: free lists of sizes no
   * longer asked for (the answers of one size replaced by answers of another) would otherwise keep
   * their chunks. Runs when the chunks exceed twice the live records, so rarely and in O(entries).
   */
  private compact(): void {
    const fresh = new ByteArena();
    for (let slot = this.oldest; slot !== NONE; slot = this.newer[slot]) {
      const length = this.keyLength[slot] + this.storedLength[slot];
      const from = this.address[slot];
      const at = ByteArena.offsetOf(from);
      const to = fresh.allocate(length);
      fresh.chunkOf(to).set(this.arena.chunkOf(from).subarray(at, at + length), ByteArena.offsetOf(to));
      this.address[slot] = to;
    }
    this.arena = fresh;
  }

  /** The slot holding the key read from `src` (see {@link hashKey}), whose hash is `h`; or NONE. */
  private find(src: Uint8Array, start: number, end: number, dnssecOk: number, h: number): number {
    if (this.count === 0) return NONE;
    for (let slot = this.buckets[h & (this.buckets.length - 1)]; slot !== NONE; slot = this.chain[slot]) {
      if (this.hash[slot] === h && this.keyIs(slot, src, start, end, dnssecOk)) return slot;
    }
    return NONE;
  }

  private keyIs(slot: number, src: Uint8Array, start: number, end: number, dnssecOk: number): boolean {
    const keyLength = end - start + 1;
    if (this.keyLength[slot] !== keyLength) return false;
    const address = this.address[slot];
    const chunk = this.arena.chunkOf(address);
    const at = ByteArena.offsetOf(address);
    for (let i = start, o = at; i < end; i++, o++) if (chunk[o] !== keyByte(src, i, end - 4)) return false;
    return chunk[at + keyLength - 1] === dnssecOk;
  }

  /** Unlinks `slot`, frees its record and returns it to the free slots. */
  private remove(slot: number): void {
    const bucket = this.hash[slot] & (this.buckets.length - 1);
    if (this.buckets[bucket] === slot) {
      this.buckets[bucket] = this.chain[slot];
    } else {
      let s = this.buckets[bucket];
      while (this.chain[s] !== slot) s = this.chain[s];
      this.chain[s] = this.chain[slot];
    }
    this.unlink(slot);
    const recordLength = this.keyLength[slot] + this.storedLength[slot];
    this.arena.free(this.address[slot], recordLength);
    this.liveBytes -= ByteArena.roundedLength(recordLength);
    this.older[slot] = this.freeSlot;
    this.freeSlot = slot;
    this.count--;
  }

  /** Makes `slot` the most recently used. */
  private touch(slot: number): void {
    if (this.newest === slot) return;
    this.unlink(slot);
    this.linkNewest(slot);
  }

  private unlink(slot: number): void {
    const newer = this.newer[slot];
    const older = this.older[slot];
    if (newer === NONE) this.newest = older;
    else this.older[newer] = older;
    if (older === NONE) this.oldest = newer;
    else this.newer[older] = newer;
  }

  private linkNewest(slot: number): void {
    this.older[slot] = this.newest;
    this.newer[slot] = NONE;
    if (this.newest !== NONE) this.newer[this.newest] = slot;
    else this.oldest = slot;
    this.newest = slot;
  }

  /** A free slot, growing the slot arrays (by doubling, up to the capacity) when none is left. */
  private takeSlot(): number {
    if (this.freeSlot === NONE) {
      const used = this.slots;
      this.resizeSlots(Math.max(used + 1, Math.min(Math.max(FIRST_SLOTS, used * 2), this.capacityLimit)));
      for (let s = this.slots - 1; s >= used; s--) {
        this.older[s] = this.freeSlot;
        this.freeSlot = s;
      }
    }
    const slot = this.freeSlot;
    this.freeSlot = this.older[slot];
    return slot;
  }

  /** Reallocates the per-slot arrays for `slots` slots, and the buckets to match (rehashing). */
  private resizeSlots(slots: number): void {
    const grow = <T extends Float64Array | Uint32Array | Uint16Array | Uint8Array | Int32Array>(
      old: T,
      make: (n: number) => T,
    ): T => {
      const next = make(slots);
      next.set(old.subarray(0, Math.min(old.length, slots)) as never);
      return next;
    };
    this.address = grow(this.address, (n) => new Float64Array(n));
    this.hash = grow(this.hash, (n) => new Uint32Array(n));
    this.keyLength = grow(this.keyLength, (n) => new Uint16Array(n));
    this.wireLength = grow(this.wireLength, (n) => new Uint16Array(n));
    this.storedLength = grow(this.storedLength, (n) => new Uint32Array(n));
    this.storedAt = grow(this.storedAt, (n) => new Float64Array(n));
    this.lifetime = grow(this.lifetime, (n) => new Uint32Array(n));
    this.tag = grow(this.tag, (n) => new Uint32Array(n));
    this.hits = grow(this.hits, (n) => new Uint16Array(n));
    this.hitStep = grow(this.hitStep, (n) => new Uint8Array(n));
    this.due = grow(this.due, (n) => new Float64Array(n));
    this.newer = grow(this.newer, (n) => new Int32Array(n));
    this.older = grow(this.older, (n) => new Int32Array(n));
    this.chain = grow(this.chain, (n) => new Int32Array(n));
    this.slots = slots;
    // One bucket per slot, a power of two; every live slot is rechained.
    let buckets = 1;
    while (buckets < slots) buckets *= 2;
    this.buckets = new Int32Array(slots === 0 ? 0 : buckets).fill(NONE);
    for (let slot = this.oldest; slot !== NONE; slot = this.newer[slot]) {
      const bucket = this.hash[slot] & (buckets - 1);
      this.chain[slot] = this.buckets[bucket];
      this.buckets[bucket] = slot;
    }
  }
}
