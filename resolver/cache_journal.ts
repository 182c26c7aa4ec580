/**
 * The crash-safe cache on disk: a snapshot (the cache file, {@link encodeCache}'s format) and a
 * journal beside it (`<file>.journal`) to which every answer the cache stores is appended, one
 * write per tick. After kill -9 or a power cut the next child loads the snapshot, then replays
 * the journal up to its last whole record: every entry stored more than a tick before the end
 * comes back. The journal is compacted into a new snapshot when it outgrows the snapshot (or at
 * `checkpoint-time`), and everything written counts against an hourly byte budget, because
 * routers keep their cache on flash.
 *
 * Journal layout: "KEELDNS-JOURNAL\n", u32 version, u32 the checksum that ends the snapshot it
 * follows (0: none); then records of u32 payload length, u32 FNV-1a of the payload, payload (one
 * entry as {@link writeEntry} writes it). All little-endian. A journal that follows another
 * snapshot is stale (a compaction was cut short after its snapshot was in place) and is ignored.
 *
 * One child writes at a time: the writer holds an exclusive lock on `<file>.lock`, which the
 * kernel frees when it dies. A child that starts beside a live one (a planned restart) loads the
 * files at once, keeps what it stores in memory, and starts writing when it gets the lock.
 *
 * Every failure (a full disk, a read-only file system) is logged and costs only persistence,
 * never the service.
 *
 * @module
 */
import { ByteBuffer } from "../net/byte_buffer.ts";
import type { StoredAnswer } from "../dns/stored_answer.ts";
import type { Logger } from "../ops/log.ts";
import type { AnswerCache } from "./answer_cache.ts";
import {
  decodeCache,
  encodeCacheInParts,
  entryLength,
  fnv1a,
  type ReadEntry,
  readEntry,
  snapshotName,
  writeEntry,
  writeFileAtomic,
} from "./cache_file.ts";

const MAGIC = new TextEncoder().encode("KEELDNS-JOURNAL\n");
const VERSION = 1;
/** Bytes of the journal's header. */
export const JOURNAL_HEADER_LENGTH = MAGIC.length + 8;
/** Bytes before each record's payload: its length and checksum. */
const RECORD_HEAD = 8;
/** How often what was stored is written. */
export const JOURNAL_TICK_MS = 500;
/** The journal is compacted once it holds more than the snapshot, and at least this much. */
const MIN_COMPACT_BYTES = 256 * 1024;
/** Records kept in memory while they cannot be written (no lock yet, a full disk) before more are dropped. */
const MAX_PENDING_BYTES = 8 << 20;
/** The budget's window. */
const HOUR_MS = 3600_000;
/** Fewest milliseconds between two warnings of one kind. */
const WARN_EVERY_MS = 60_000;

/** The journal's header for a journal that follows the snapshot named `base` ({@link snapshotName}). */
export function journalHeader(base: number): Uint8Array {
  const out = new Uint8Array(JOURNAL_HEADER_LENGTH);
  const view = new DataView(out.buffer);
  out.set(MAGIC);
  view.setUint32(MAGIC.length, VERSION, true);
  view.setUint32(MAGIC.length + 4, base, true);
  return out;
}

/** What {@link readJournal} found. */
export interface JournalRead {
  /** Entries put into the cache. */
  readonly loaded: number;
  /** Entries that had expired meanwhile. */
  readonly expired: number;
  /** Bytes from the start that are the header and whole, intact records (0: no usable journal). */
  readonly validLength: number;
  /** Why reading stopped before the end of `bytes`, if it did (a torn tail, garbage, another snapshot's journal). */
  readonly problem?: string;
}

/**
 * Replays a journal that follows the snapshot named `base` into `cache`, skipping entries expired
 * at `now`, up to the first record that is torn, corrupt or not a well-formed answer. With
 * `cache` undefined it only finds how much is intact. Never throws.
 */
export function readJournal(
  bytes: Uint8Array,
  cache: AnswerCache | undefined,
  now: number,
  base: number,
): JournalRead {
  if (bytes.length < JOURNAL_HEADER_LENGTH || MAGIC.some((b, i) => bytes[i] !== b)) {
    return { loaded: 0, expired: 0, validLength: 0, problem: "not a keeldns cache journal" };
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.getUint32(MAGIC.length, true) !== VERSION) {
    return { loaded: 0, expired: 0, validLength: 0, problem: "unknown journal version" };
  }
  if (view.getUint32(MAGIC.length + 4, true) !== base) {
    return { loaded: 0, expired: 0, validLength: 0, problem: "it follows another cache file" };
  }
  let loaded = 0;
  let expired = 0;
  let pos = JOURNAL_HEADER_LENGTH;
  let problem: string | undefined;
  while (pos < bytes.length) {
    if (pos + RECORD_HEAD > bytes.length) {
      problem = "a torn record at the end";
      break;
    }
    const length = view.getUint32(pos, true);
    const start = pos + RECORD_HEAD;
    if (start + length > bytes.length) {
      problem = "a torn record at the end";
      break;
    }
    const payload = bytes.subarray(start, start + length);
    if (view.getUint32(pos + 4, true) !== fnv1a(payload)) {
      problem = "a record whose checksum does not hold";
      break;
    }
    if (cache) {
      const entry = readEntry(bytes, view, start, start + length);
      if (typeof entry === "string" || entry.next !== start + length) {
        problem = `a record that is not a cache entry (${
          typeof entry === "string" ? entry : "trailing bytes"
        })`;
        break;
      }
      const { key, answer } = entry as ReadEntry;
      if (answer.expiresAt <= now) expired++;
      else {
        cache.setWithKey(key, answer);
        loaded++;
      }
    }
    pos = start + length;
  }
  return { loaded, expired, validLength: pos, problem };
}

/** Where the journal keeps its files and how much it may write. */
export interface JournalOptions {
  /** The snapshot (the cache file); the journal and the lock go beside it. */
  readonly file: string;
  /** Longest seconds between compactions while anything was journaled (0: by size and at a graceful stop only). */
  readonly checkpointTime: number;
  /** Most bytes written per hour, journal and snapshots together (0: no limit). */
  readonly writeBudget: number;
  /** Milliseconds between writes (default {@link JOURNAL_TICK_MS}). */
  readonly tickMs?: number;
}

/** What the journal has done since it opened (for `keeldns cache stats`). */
export interface JournalStats {
  /** Bytes written to the journal and the snapshot. */
  bytesWritten: number;
  /** Records appended to the journal. */
  records: number;
  /** Snapshots written. */
  compactions: number;
  /** Records not written: over the budget, a write that failed, or too many waiting. */
  dropped: number;
  /** Writes that failed. */
  failures: number;
  /** Whether this child holds the writer's lock. */
  writing: boolean;
}

/** The cache's journal and snapshot for one child; see the module. */
export class CacheJournal {
  readonly stats: JournalStats = {
    bytesWritten: 0,
    records: 0,
    compactions: 0,
    dropped: 0,
    failures: 0,
    writing: false,
  };
  private readonly journalPath: string;
  /** The records waiting for the next tick. */
  private readonly pending = new ByteBuffer();
  private lockFile?: Deno.FsFile;
  private journalFile?: Deno.FsFile;
  /** Bytes of the journal on disk that are whole records. */
  private journalLength = 0;
  private snapshotLength = 0;
  private lastCompaction: number;
  /** Entries went unwritten: the next compaction brings the files up to date. */
  private behind = false;
  private lastCatchUp = 0;
  /** One disk operation at a time. */
  private io: Promise<void> = Promise.resolve();
  private timer?: ReturnType<typeof setInterval>;
  private closed = false;
  private windowStart: number;
  private windowBytes = 0;
  private readonly lastWarning = new Map<string, number>();

  private constructor(
    /** The cache journaled. */
    readonly cache: AnswerCache,
    private readonly options: JournalOptions,
    private readonly log: Logger,
    private readonly now: () => number,
  ) {
    this.journalPath = `${options.file}.journal`;
    this.lastCompaction = this.windowStart = now();
  }

  /**
   * Loads the snapshot and the journal into `cache`, then journals what `cache` stores from now
   * on (writing once it holds the writer's lock). An unusable file is logged and set aside.
   */
  static async open(
    cache: AnswerCache,
    options: JournalOptions,
    log: Logger,
    now: () => number = Date.now,
  ): Promise<CacheJournal> {
    const journal = new CacheJournal(cache, options, log, now);
    await journal.load();
    cache.onStore = (key, answer) => journal.record(key, answer);
    journal.acquire();
    return journal;
  }

  private async load(): Promise<void> {
    const { file } = this.options;
    const at = this.now();
    let base = 0;
    let loaded = 0;
    let expired = 0;
    const snapshot = await readIfThere(file).catch((e) => {
      this.log.warn("cache: cannot read {file}: {error}", { file, error: (e as Error).message });
      return undefined;
    });
    if (snapshot) {
      base = snapshotName(snapshot);
      this.snapshotLength = snapshot.length;
      try {
        ({ loaded, expired } = decodeCache(snapshot, this.cache, at, file));
      } catch (e) {
        this.log.warn("{message}; its journal is still read", { message: (e as Error).message });
      }
    }
    const journal = await readIfThere(this.journalPath).catch(() => undefined);
    let replayed = 0;
    if (journal) {
      const read = readJournal(journal, this.cache, at, base);
      replayed = read.loaded;
      expired += read.expired;
      if (read.problem) {
        this.log.warn("cache journal {file}: {problem}; {dropped} bytes after {valid} set aside", {
          file: this.journalPath,
          problem: read.problem,
          dropped: journal.length - read.validLength,
          valid: read.validLength,
        });
      }
    }
    this.log.info(
      "cache: {loaded} entries loaded from {file}, {replayed} from its journal ({expired} had expired)",
      {
        loaded,
        replayed,
        expired,
        file,
      },
    );
  }

  /** Waits for the writer's lock in the background, then readies the journal and starts ticking. */
  private acquire(): void {
    const dir = this.options.file.slice(0, this.options.file.lastIndexOf("/"));
    (async () => {
      if (dir) await Deno.mkdir(dir, { recursive: true });
      const lock = await Deno.open(`${this.options.file}.lock`, {
        read: true,
        write: true,
        create: true,
        mode: 0o600,
      });
      this.lockFile = lock;
      await lock.lock(true);
      if (this.closed) return lock.close();
      await this.readyJournal();
      this.stats.writing = true;
      this.log.debug("cache journal: writing {file}", { file: this.journalPath });
      const timer = setInterval(() => this.tick(), this.options.tickMs ?? JOURNAL_TICK_MS);
      Deno.unrefTimer(timer);
      this.timer = timer;
    })().catch((e) =>
      this.warn("lock", "cache journal: cannot take {file}.lock, nothing is saved: {error}", e)
    );
  }

  /**
   * Opens the journal for appending after whatever is intact in it; a journal that follows another
   * snapshot (or none is there) starts afresh.
   */
  private async readyJournal(): Promise<void> {
    // A predecessor may have compacted since load(): the snapshot's name is its last 4 bytes.
    const { name: base, length } = await snapshotTail(this.options.file);
    this.snapshotLength = length;
    const journal = await readIfThere(this.journalPath).catch(() => undefined);
    const valid = journal ? readJournal(journal, undefined, 0, base).validLength : 0;
    if (valid === 0) {
      await writeFileAtomic(this.journalPath, journalHeader(base));
      this.journalLength = JOURNAL_HEADER_LENGTH;
      this.stats.bytesWritten += JOURNAL_HEADER_LENGTH;
      this.spend(JOURNAL_HEADER_LENGTH, true);
    } else {
      this.journalLength = valid;
    }
    this.journalFile = await Deno.open(this.journalPath, { write: true, append: true });
    if (journal && valid > 0 && valid < journal.length) await this.journalFile.truncate(valid);
  }

  /** Queues the entry `cache` just stored for the next write. */
  private record(key: Uint8Array, answer: StoredAnswer): void {
    const length = entryLength(key, answer);
    const pending = this.pending;
    if (pending.length + RECORD_HEAD + length > MAX_PENDING_BYTES) {
      this.stats.dropped++;
      this.behind = true;
      return;
    }
    pending.reserve(RECORD_HEAD + length);
    const start = pending.length + RECORD_HEAD;
    const end = writeEntry(pending.bytes, pending.view, start, key, answer);
    pending.view.setUint32(pending.length, end - start, true);
    pending.view.setUint32(pending.length + 4, fnv1a(pending.bytes.subarray(start, end)), true);
    pending.length = end;
  }

  /** One tick: write what waits, then compact if it is time. */
  private tick(): void {
    this.io = this.io.then(() => this.writePending()).then(() => this.compactIfDue());
  }

  /** Writes every record now (before a hand-over), waiting for the disk. */
  flush(): Promise<void> {
    this.io = this.io.then(() => this.writePending());
    return this.io;
  }

  /**
   * Writes a snapshot of the whole cache now and starts an empty journal (after a flush, at a
   * stop); within the hourly budget unless `anyway`.
   */
  compact(anyway = false): Promise<void> {
    this.io = this.io.then(() => this.writeSnapshot(anyway));
    return this.io;
  }

  /** Whether `bytes` more fit this hour's budget. */
  private affordable(bytes: number): boolean {
    const now = this.now();
    if (now - this.windowStart >= HOUR_MS) {
      this.windowStart = now;
      this.windowBytes = 0;
    }
    const budget = this.options.writeBudget;
    return budget <= 0 || this.windowBytes + bytes <= budget;
  }

  /** Counts `bytes` against this hour's budget if they fit (or `anyway`); says whether they did. */
  private spend(bytes: number, anyway = false): boolean {
    if (!this.affordable(bytes) && !anyway) return false;
    this.windowBytes += bytes;
    return true;
  }

  private async writePending(): Promise<void> {
    const file = this.journalFile;
    if (!file || this.pending.length === 0) return;
    const bytes = this.pending.take();
    const records = countRecords(bytes);
    if (!this.spend(bytes.length)) {
      this.stats.dropped += records;
      this.behind = true;
      this.warn(
        "budget",
        "cache journal: the write budget of {budget} bytes per hour is spent; new entries are kept in memory only until the hour is over",
        undefined,
      );
      return;
    }
    try {
      let written = 0;
      while (written < bytes.length) written += await file.write(bytes.subarray(written));
      await file.syncData();
      this.journalLength += bytes.length;
      this.stats.bytesWritten += bytes.length;
      this.stats.records += records;
    } catch (e) {
      this.stats.failures++;
      this.stats.dropped += records;
      this.behind = true;
      // A torn append must not hide the records after it: cut the journal back to its whole records.
      await file.truncate(this.journalLength).catch(() => {});
      this.warn(
        "write",
        "cache journal: writing {file} failed, {records} entries are not saved: {error}",
        e,
        {
          records,
        },
      );
    }
  }

  private async compactIfDue(): Promise<void> {
    const journaled = this.journalLength - JOURNAL_HEADER_LENGTH;
    const bySize = journaled > Math.max(this.snapshotLength, MIN_COMPACT_BYTES);
    const checkpoint = this.options.checkpointTime;
    const byTime = checkpoint > 0 && (journaled > 0 || this.behind) &&
      this.now() - this.lastCompaction >= checkpoint * 1000;
    // Entries went unwritten (the budget, a full disk): a snapshot brings the files up to date,
    // tried at most once a minute since it costs a pass over the cache.
    const catchUp = this.behind && this.now() - this.lastCatchUp >= WARN_EVERY_MS;
    if (catchUp) this.lastCatchUp = this.now();
    if (bySize || byTime || catchUp) await this.writeSnapshot();
  }

  /** Writes a snapshot and a fresh journal; within the budget unless `anyway` (a graceful stop). */
  private async writeSnapshot(anyway = false): Promise<void> {
    if (!this.journalFile) return;
    const overBudget = () =>
      this.warn(
        "budget",
        "cache journal: the write budget of {budget} bytes per hour is spent; compaction waits",
        undefined,
      );
    // The last snapshot's size says whether one can fit before the cache is encoded.
    if (!anyway && !this.affordable(this.snapshotLength)) return overBudget();
    const waiting = this.pending.take();
    // A part at a time: a large cache must not stall answering. What is stored meanwhile waits
    // for the fresh journal.
    const bytes = await encodeCacheInParts(this.cache, this.now());
    if (!this.spend(bytes.length + JOURNAL_HEADER_LENGTH, anyway)) {
      this.pending.prepend(waiting);
      return overBudget();
    }
    try {
      await writeFileAtomic(this.options.file, bytes);
    } catch (e) {
      this.pending.prepend(waiting);
      this.stats.failures++;
      this.warn(
        "snapshot",
        "cache: saving to {file} failed, the previous file and its journal stay: {error}",
        e,
      );
      return;
    }
    this.snapshotLength = bytes.length;
    this.stats.bytesWritten += bytes.length;
    this.stats.compactions++;
    this.lastCompaction = this.now();
    this.behind = false;
    // The snapshot holds everything now; a crash before the new journal is in place leaves the old
    // one, which follows the previous snapshot and so is ignored.
    try {
      this.journalFile.close();
      this.journalFile = undefined;
      await writeFileAtomic(this.journalPath, journalHeader(snapshotName(bytes)));
      this.journalFile = await Deno.open(this.journalPath, { write: true, append: true });
      this.journalLength = JOURNAL_HEADER_LENGTH;
      this.stats.bytesWritten += JOURNAL_HEADER_LENGTH;
    } catch (e) {
      this.stats.failures++;
      this.behind = true;
      this.warn("journal", "cache journal: cannot start {file} afresh, journaling stops: {error}", e);
    }
    this.log.debug("cache: {entries} entries saved to {file}", {
      entries: this.cache.size,
      file: this.options.file,
    });
  }

  /**
   * Stops journaling: writes what waits and, when `final` (a graceful stop), a fresh snapshot;
   * then frees the lock for the next child.
   */
  async close(final: boolean): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    if (this.cache.onStore) this.cache.onStore = undefined;
    await this.flush();
    if (final) await this.compact(true);
    await this.io;
    this.journalFile?.close();
    this.journalFile = undefined;
    this.stats.writing = false;
    try {
      this.lockFile?.close();
    } catch {
      // still waiting for the lock: the process's exit frees it
    }
  }

  /** Logs a warning of kind `kind` at most once a minute. */
  private warn(kind: string, message: string, error: unknown, extra: Record<string, unknown> = {}): void {
    const now = this.now();
    if (now - (this.lastWarning.get(kind) ?? -Infinity) < WARN_EVERY_MS) return;
    this.lastWarning.set(kind, now);
    this.log.warn(message, {
      file: this.journalPath,
      budget: this.options.writeBudget,
      error: error instanceof Error ? error.message : String(error),
      ...extra,
    });
  }
}

/** How many records `bytes` (whole records) hold. */
function countRecords(bytes: Uint8Array): number {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let n = 0;
  for (let pos = 0; pos + RECORD_HEAD <= bytes.length; pos += RECORD_HEAD + view.getUint32(pos, true)) n++;
  return n;
}

/** The name ({@link snapshotName}) and size of the snapshot at `path`, reading only its end; 0 and 0 without one. */
async function snapshotTail(path: string): Promise<{ name: number; length: number }> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch {
    return { name: 0, length: 0 };
  }
  try {
    const length = (await file.stat()).size;
    if (length < 4) return { name: 0, length };
    await file.seek(length - 4, Deno.SeekMode.Start);
    const tail = new Uint8Array(4);
    let got = 0;
    while (got < 4) {
      const n = await file.read(tail.subarray(got));
      if (n === null) return { name: 0, length };
      got += n;
    }
    return { name: snapshotName(tail), length };
  } catch {
    return { name: 0, length: 0 };
  } finally {
    file.close();
  }
}

/** The bytes of `path`, or undefined when there is no such file. */
async function readIfThere(path: string): Promise<Uint8Array | undefined> {
  try {
    return await Deno.readFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}
