/**
 * The cache on disk (SmartDNS's `cache-persist`, `cache-file`, `cache-checkpoint-time`): written
 * atomically (temporary file, then rename) so a crash or a full disk leaves the previous file whole;
 * read back skipping expired entries. A truncated, corrupt or foreign file is reported, never fatal;
 * so is a file whose checksum holds but one of whose entries is not a well-formed answer to its own
 * key (every entry is checked as strictly as an upstream answer: a crafted file serves nothing).
 *
 * Layout: "KEELDNS-CACHE\n" magic, u32 version, u32 entry count, then per entry: u16 key length, key
 * (as {@link AnswerCache.entries} gives it: the question section, then a DO byte), f64 storedAt, u32 lifetime, u16 wire length, wire, u16 TTL count, u32 offsets, u32 TTLs;
 * last a u32 FNV-1a checksum of everything before it. All little-endian.
 *
 * @module
 */
import { messageProblem } from "../dns/message_check.ts";
import { StoredAnswer } from "../dns/stored_answer.ts";
import { HEADER_LENGTH, scanResponse, skipName } from "../dns/wire.ts";
import type { AnswerCache } from "./answer_cache.ts";

const MAGIC = new TextEncoder().encode("KEELDNS-CACHE\n");
/** 2: keys are question bytes (1 had strings). */
const VERSION = 2;

/** The cache file could not be used; `message` says why. */
export class CacheFileError extends Error {
  constructor(readonly path: string, reason: string) {
    super(`cache file ${path}: ${reason}`);
    this.name = "CacheFileError";
  }
}

/** FNV-1a over bytes; `h` carries on from the bytes before them. */
export function fnv1a(bytes: Uint8Array, h = 0x811c9dc5): number {
  for (let i = 0; i < bytes.length; i++) {
    h ^= bytes[i];
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** Bytes {@link writeEntry} takes for one entry. */
export function entryLength(key: Uint8Array, answer: StoredAnswer): number {
  return 2 + key.length + 8 + 4 + 2 + answer.wireLength + 2 + answer.ttlCount * 8;
}

/**
 * Writes one entry (key, storedAt, lifetime, wire, TTL table; see the module's layout) at `pos` of
 * `out` (viewed by `view`); returns the position after it.
 */
export function writeEntry(
  out: Uint8Array,
  view: DataView,
  pos: number,
  key: Uint8Array,
  answer: StoredAnswer,
): number {
  view.setUint16(pos, key.length, true);
  out.set(key, pos + 2);
  pos += 2 + key.length;
  view.setFloat64(pos, answer.storedAt, true);
  view.setUint32(pos + 8, answer.lifetime, true);
  view.setUint16(pos + 12, answer.wireLength, true);
  out.set(answer.wire, pos + 14);
  pos += 14 + answer.wireLength;
  const count = answer.ttlCount;
  view.setUint16(pos, count, true);
  pos += 2;
  for (let i = 0; i < count; i++) pos = (view.setUint32(pos, answer.ttlOffset(i), true), pos + 4);
  for (let i = 0; i < count; i++) pos = (view.setUint32(pos, answer.ttl(i), true), pos + 4);
  return pos;
}

/** Encodes the fresh entries of `cache` (oldest use first) at time `now`. */
export function encodeCache(cache: AnswerCache, now: number): Uint8Array {
  const parts: { key: Uint8Array; answer: StoredAnswer }[] = [];
  let size = MAGIC.length + 8 + 4;
  for (const [key, answer] of cache.entries()) {
    if (answer.expiresAt <= now) continue;
    parts.push({ key, answer });
    size += entryLength(key, answer);
  }
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  out.set(MAGIC);
  let pos = MAGIC.length;
  view.setUint32(pos, VERSION, true);
  view.setUint32(pos + 4, parts.length, true);
  pos += 8;
  for (const { key, answer } of parts) pos = writeEntry(out, view, pos, key, answer);
  view.setUint32(pos, fnv1a(out.subarray(0, pos)), true);
  return out;
}

/** Entries encoded per turn of the event loop by {@link encodeCacheInParts}. */
const ENTRIES_PER_PART = 2048;

/**
 * {@link encodeCache} a part at a time, yielding to the event loop between parts, so a large cache
 * does not stall answering while it is written. The cache may change meanwhile: what is encoded is
 * every entry as it was when its part was read (whole entries, a key at most twice; the later
 * one wins when loaded).
 */
export async function encodeCacheInParts(cache: AnswerCache, now: number): Promise<Uint8Array> {
  const slots = cache.slotsInOrder();
  const parts: Uint8Array[] = [];
  let count = 0;
  let size = MAGIC.length + 8 + 4;
  for (let from = 0; from < slots.length; from += ENTRIES_PER_PART) {
    if (from > 0) await new Promise((r) => setTimeout(r, 0));
    const entries: [Uint8Array, StoredAnswer][] = [];
    let partSize = 0;
    for (let k = from; k < Math.min(slots.length, from + ENTRIES_PER_PART); k++) {
      const entry = cache.entryAt(slots[k]);
      if (!entry || entry[1].expiresAt <= now) continue;
      entries.push(entry);
      partSize += entryLength(entry[0], entry[1]);
    }
    const part = new Uint8Array(partSize);
    const view = new DataView(part.buffer);
    let pos = 0;
    for (const [key, answer] of entries) pos = writeEntry(part, view, pos, key, answer);
    parts.push(part);
    count += entries.length;
    size += partSize;
  }
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  out.set(MAGIC);
  let pos = MAGIC.length;
  view.setUint32(pos, VERSION, true);
  view.setUint32(pos + 4, count, true);
  pos += 8;
  for (const part of parts) (out.set(part, pos), pos += part.length);
  // The checksum a megabyte per turn too.
  let h = 0x811c9dc5;
  for (let at = 0; at < pos; at += 1 << 20) {
    if (at > 0) await new Promise((r) => setTimeout(r, 0));
    h = fnv1a(out.subarray(at, Math.min(pos, at + (1 << 20))), h);
  }
  view.setUint32(pos, h, true);
  return out;
}

/** The checksum a cache file ends with, which names it (a journal records the one it follows); 0 if too short. */
export function snapshotName(bytes: Uint8Array): number {
  if (bytes.length < 4) return 0;
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(bytes.length - 4, true);
}

/**
 * Why a stored entry may not be served, or null: its wire must be a well-formed message in the
 * stored form (no OPT record) with one question equal to its key's, and its TTL table must list
 * exactly the TTL fields of its records.
 */
function entryProblem(key: Uint8Array, wire: Uint8Array, offsets: Uint32Array): string | null {
  const problem = messageProblem(wire);
  if (problem) return `not a well-formed answer (${problem})`;
  const layout = scanResponse(wire);
  if (!layout || layout.opt) return "not in the stored form";
  if (((wire[4] << 8) | wire[5]) !== 1 || !(wire[2] & 0x80)) return "not an answer to one question";
  const questionLength = key.length - 1;
  if (skipName(wire, HEADER_LENGTH) + 4 - HEADER_LENGTH !== questionLength || key[questionLength] > 1) {
    return "key is not the answer's question";
  }
  for (let i = 0; i < questionLength; i++) {
    let c = wire[HEADER_LENGTH + i];
    if (i < questionLength - 4 && c >= 0x41 && c <= 0x5a) c |= 0x20;
    if (c !== key[i]) return "answer to a question other than its key";
  }
  const expected = layout.ttlOffsets;
  if (expected.length !== offsets.length || expected.some((o, j) => o !== offsets[j])) {
    return "TTL table does not match its records";
  }
  return null;
}

/** One entry {@link readEntry} read, and where the next starts. */
export interface ReadEntry {
  readonly key: Uint8Array;
  readonly answer: StoredAnswer;
  readonly next: number;
}

/**
 * Reads the entry {@link writeEntry} wrote at `pos` of `bytes` (viewed by `view`), not past `end`,
 * checked as strictly as an upstream answer; or says why it cannot be served. The key is a view of
 * `bytes`; the answer owns its bytes.
 */
export function readEntry(bytes: Uint8Array, view: DataView, pos: number, end: number): ReadEntry | string {
  if (pos + 2 > end) return "entry runs past the end";
  const keyLength = view.getUint16(pos, true);
  if (pos + 2 + keyLength + 14 > end) return "entry runs past the end";
  const key = bytes.subarray(pos + 2, pos + 2 + keyLength);
  pos += 2 + keyLength;
  const storedAt = view.getFloat64(pos, true);
  const lifetime = view.getUint32(pos + 8, true);
  const wireLength = view.getUint16(pos + 12, true);
  pos += 14;
  if (pos + wireLength + 2 > end) return "entry runs past the end";
  const wire = bytes.slice(pos, pos + wireLength);
  pos += wireLength;
  const ttlCount = view.getUint16(pos, true);
  pos += 2;
  if (pos + ttlCount * 8 > end) return "entry runs past the end";
  const offsets = new Uint32Array(ttlCount);
  const ttls = new Uint32Array(ttlCount);
  for (let j = 0; j < ttlCount; j++) offsets[j] = view.getUint32(pos + j * 4, true);
  pos += ttlCount * 4;
  for (let j = 0; j < ttlCount; j++) ttls[j] = view.getUint32(pos + j * 4, true);
  pos += ttlCount * 4;
  if (!Number.isFinite(storedAt)) return "stored at no valid time";
  const problem = entryProblem(key, wire, offsets);
  if (problem) return problem;
  return { key, answer: StoredAnswer.create(wire, offsets, ttls, storedAt, lifetime), next: pos };
}

/** What reading a cache file did. */
export interface LoadResult {
  /** Entries put into the cache. */
  readonly loaded: number;
  /** Entries that had expired meanwhile. */
  readonly expired: number;
}

/**
 * Decodes a cache file into `cache`, skipping entries expired at `now`. Throws
 * {@link CacheFileError} (and adds nothing) if the file is not a whole, intact keeldns cache file.
 */
export function decodeCache(bytes: Uint8Array, cache: AnswerCache, now: number, path: string): LoadResult {
  const fail = (reason: string): never => {
    throw new CacheFileError(path, reason);
  };
  if (bytes.length < MAGIC.length + 12 || MAGIC.some((b, i) => bytes[i] !== b)) {
    fail("not a keeldns cache file");
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const body = bytes.length - 4;
  if (view.getUint32(body, true) !== fnv1a(bytes.subarray(0, body))) {
    fail("checksum mismatch (truncated or corrupt)");
  }
  if (view.getUint32(MAGIC.length, true) !== VERSION) {
    fail(`unknown version ${view.getUint32(MAGIC.length, true)}`);
  }
  const count = view.getUint32(MAGIC.length + 4, true);
  const entries: [Uint8Array, StoredAnswer][] = [];
  let pos = MAGIC.length + 8;
  for (let i = 0; i < count; i++) {
    const entry = readEntry(bytes, view, pos, body);
    if (typeof entry === "string") fail(`entry ${i + 1}: ${entry}`);
    const { key, answer, next } = entry as ReadEntry;
    entries.push([key, answer]);
    pos = next;
  }
  if (pos !== body) fail("trailing bytes");
  let loaded = 0;
  let expired = 0;
  for (const [key, answer] of entries) {
    if (answer.expiresAt <= now) {
      expired++;
    } else {
      cache.setWithKey(key, answer);
      loaded++;
    }
  }
  return { loaded, expired };
}

/** Writes `bytes` to `path` atomically: a temporary file beside it, synced, then renamed over it. */
export async function writeFileAtomic(path: string, bytes: Uint8Array): Promise<void> {
  const temp = `${path}.${Deno.pid}.tmp`;
  try {
    const file = await Deno.open(temp, { write: true, create: true, truncate: true, mode: 0o600 });
    try {
      let written = 0;
      while (written < bytes.length) written += await file.write(bytes.subarray(written));
      await file.syncData();
    } finally {
      file.close();
    }
    await Deno.rename(temp, path);
  } catch (e) {
    await Deno.remove(temp).catch(() => {});
    throw e;
  }
}

/** Saves the cache to `path`; returns how many entries were written. */
export async function saveCache(cache: AnswerCache, path: string, now = Date.now()): Promise<number> {
  const bytes = encodeCache(cache, now);
  await writeFileAtomic(path, bytes);
  return new DataView(bytes.buffer).getUint32(MAGIC.length + 4, true);
}

/** Loads `path` into `cache`. A missing file loads nothing; an unusable one throws {@link CacheFileError}. */
export async function loadCache(cache: AnswerCache, path: string, now = Date.now()): Promise<LoadResult> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return { loaded: 0, expired: 0 };
    throw new CacheFileError(path, (e as Error).message);
  }
  return decodeCache(bytes, cache, now, path);
}
