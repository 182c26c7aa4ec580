import { assert, assertEquals } from "../tests/helpers/assert.ts";
import { buildQuery } from "../tests/helpers/dns_client.ts";
import { encodePacket } from "../dns/packet.ts";
import { StoredAnswer } from "../dns/stored_answer.ts";
import { parseQuery, scanResponse } from "../dns/wire.ts";
import { getLogger } from "../ops/log.ts";
import { AnswerCache } from "./answer_cache.ts";
import { decodeCache, encodeCache, entryLength, fnv1a, snapshotName, writeEntry } from "./cache_file.ts";
import { CacheJournal, JOURNAL_HEADER_LENGTH, journalHeader, readJournal } from "./cache_journal.ts";

const policy = { rrTtl: 0, rrTtlMin: 0, rrTtlMax: 0 };
const log = getLogger("test");

function answer(name: string, ttl: number, storedAt: number, address = "192.0.2.1"): StoredAnswer {
  const wire = encodePacket({
    type: "response",
    flags: 0x8180,
    questions: [{ name, type: "A", class: "IN" }],
    answers: [{ name, type: "A", ttl, data: address }],
  });
  return StoredAnswer.fromResponse(wire, scanResponse(wire)!, policy, storedAt);
}

function q(name: string) {
  return parseQuery(buildQuery(name, "A", { id: 3 }));
}

/** The key {@link AnswerCache.entries} gives for `name` type A (question bytes, DO byte 0). */
function keyOf(name: string): Uint8Array {
  const cache = new AnswerCache(1);
  cache.set(q(name), answer(name, 60, Date.now()));
  return [...cache.entries()][0][0];
}

/** A journal following `base` with one record per name, and where each record ends. */
function sampleJournal(names: string[], now: number, base = 0): { bytes: Uint8Array; ends: number[] } {
  const parts: Uint8Array[] = [journalHeader(base)];
  const ends: number[] = [];
  let length = JOURNAL_HEADER_LENGTH;
  for (const name of names) {
    const a = answer(name, 300, now);
    const key = keyOf(name);
    const payload = new Uint8Array(entryLength(key, a));
    writeEntry(payload, new DataView(payload.buffer), 0, key, a);
    const record = new Uint8Array(8 + payload.length);
    const view = new DataView(record.buffer);
    view.setUint32(0, payload.length, true);
    view.setUint32(4, fnv1a(payload), true);
    record.set(payload, 8);
    parts.push(record);
    length += record.length;
    ends.push(length);
  }
  const bytes = new Uint8Array(length);
  let at = 0;
  for (const p of parts) (bytes.set(p, at), at += p.length);
  return { bytes, ends };
}

const NAMES = ["a.test", "bb.test", "ccc.example", "d.test", "e.test"];

Deno.test("a journal cut at every offset gives back exactly the records wholly before the cut", () => {
  const now = Date.now();
  const { bytes, ends } = sampleJournal(NAMES, now);
  for (let cut = 0; cut <= bytes.length; cut++) {
    const cache = new AnswerCache(100);
    const read = readJournal(bytes.subarray(0, cut), cache, now, 0);
    const whole = ends.filter((e) => e <= cut).length;
    assertEquals(read.loaded, cut < JOURNAL_HEADER_LENGTH ? 0 : whole, `cut at ${cut}`);
    assertEquals(cache.size, read.loaded, `cut at ${cut}`);
    for (let i = 0; i < NAMES.length; i++) {
      assertEquals(cache.get(q(NAMES[i]), now) !== undefined, i < read.loaded, `cut at ${cut}: ${NAMES[i]}`);
    }
    const torn = cut >= JOURNAL_HEADER_LENGTH && !ends.includes(cut) && cut !== JOURNAL_HEADER_LENGTH;
    assertEquals(read.problem !== undefined, torn || cut < JOURNAL_HEADER_LENGTH, `cut at ${cut}`);
    if (cut >= JOURNAL_HEADER_LENGTH) {
      assertEquals(
        read.validLength,
        Math.max(JOURNAL_HEADER_LENGTH, ...ends.filter((e) => e <= cut)),
      );
    }
  }
});

Deno.test("garbage in a journal stops the replay there, never throws, and serves nothing it did not write", () => {
  const now = Date.now();
  const { bytes, ends } = sampleJournal(NAMES, now);
  let seed = 12345;
  const random = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
  for (let round = 0; round < 500; round++) {
    const damaged = bytes.slice();
    const at = Math.floor(random() * damaged.length);
    const span = 1 + Math.floor(random() * 16);
    for (let i = at; i < Math.min(damaged.length, at + span); i++) damaged[i] = Math.floor(random() * 256);
    const cache = new AnswerCache(100);
    const read = readJournal(damaged, cache, now, 0);
    // Whatever loaded is a prefix of the records, with their own answers.
    assert(
      read.loaded <= ends.filter((e) => e <= Math.max(at, JOURNAL_HEADER_LENGTH)).length ||
        read.problem === undefined,
    );
    for (const [key, stored] of cache.entries()) {
      const i = NAMES.findIndex((n) => keyOf(n).every((b, j) => b === key[j]));
      assert(i >= 0, `round ${round}: an entry nobody wrote`);
      assertEquals(stored.wire, answer(NAMES[i], 300, now).wire);
    }
  }
  // Random bytes after the header, and a whole file of noise.
  const noise = new Uint8Array(4096).map(() => Math.floor(random() * 256));
  const tail = new Uint8Array(bytes.length + noise.length);
  tail.set(bytes);
  tail.set(noise, bytes.length);
  const read = readJournal(tail, new AnswerCache(100), now, 0);
  assertEquals([read.loaded, read.validLength], [NAMES.length, bytes.length]);
  assertEquals(readJournal(noise, new AnswerCache(100), now, 0).loaded, 0);
});

Deno.test("a record whose checksum holds but which is no answer to its key stops the replay", () => {
  const now = Date.now();
  const { bytes, ends } = sampleJournal(NAMES, now);
  const crafted = bytes.slice();
  // Point the third record's answer at another name, then fix its checksum.
  const start = ends[1] + 8;
  const payload = crafted.subarray(start, ends[2]);
  const i = payload.indexOf("c".charCodeAt(0), 40);
  payload[i] = "x".charCodeAt(0);
  new DataView(crafted.buffer).setUint32(ends[1] + 4, fnv1a(payload), true);
  const read = readJournal(crafted, new AnswerCache(100), now, 0);
  assertEquals(read.loaded, 2);
  assert(/not a cache entry/.test(read.problem ?? ""), read.problem);
});

Deno.test("a journal that follows another snapshot is ignored; expired entries are skipped", () => {
  const now = Date.now();
  const { bytes } = sampleJournal(NAMES, now, 0xdead);
  const read = readJournal(bytes, new AnswerCache(100), now, 0xbeef);
  assertEquals([read.loaded, read.validLength], [0, 0]);
  assert(/another cache file/.test(read.problem!));
  const later = readJournal(bytes, new AnswerCache(100), now + 301_000, 0xdead);
  assertEquals([read.loaded, later.loaded, later.expired], [0, 0, NAMES.length]);
});

/** Waits until `check` holds (bounded). */
async function until(check: () => boolean | Promise<boolean>, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

Deno.test("stored answers reach the journal within a tick; a compaction folds them into the snapshot", async () => {
  const dir = await Deno.makeTempDir({ prefix: "keeldns-journal-" });
  const file = `${dir}/k.cache`;
  const cache = new AnswerCache(100);
  const journal = await CacheJournal.open(
    cache,
    { file, checkpointTime: 0, writeBudget: 0, tickMs: 50 },
    log,
  );
  try {
    await until(() => journal.stats.writing, "the lock");
    const now = Date.now();
    for (const name of NAMES) cache.set(q(name), answer(name, 300, now));
    await until(() => journal.stats.records === NAMES.length, "the records");
    // What a new child would load after kill -9 now: no snapshot yet, the journal.
    const fromJournal = new AnswerCache(100);
    assertEquals(
      readJournal(await Deno.readFile(`${file}.journal`), fromJournal, now, 0).loaded,
      NAMES.length,
    );
    // A refreshed entry is journaled again and the newer one wins on replay.
    cache.set(q("a.test"), answer("a.test", 300, now, "198.51.100.7"));
    await until(() => journal.stats.records === NAMES.length + 1, "the refresh");
    const replayed = new AnswerCache(100);
    readJournal(await Deno.readFile(`${file}.journal`), replayed, now, 0);
    assertEquals(replayed.get(q("a.test"), now)!.wire, answer("a.test", 300, now, "198.51.100.7").wire);

    await journal.compact();
    const snapshot = await Deno.readFile(file);
    const journalBytes = await Deno.readFile(`${file}.journal`);
    assertEquals(journalBytes, journalHeader(snapshotName(snapshot)));
    const fromSnapshot = new AnswerCache(100);
    assertEquals(decodeCache(snapshot, fromSnapshot, now, file).loaded, NAMES.length);
    assertEquals(journal.stats.compactions, 1);
    // The first journal's header, the records, the snapshot and the fresh journal's header.
    assertEquals(
      journal.stats.bytesWritten,
      JOURNAL_HEADER_LENGTH + recordsBytes() + snapshot.length + JOURNAL_HEADER_LENGTH,
    );
  } finally {
    await journal.close(false);
    await Deno.remove(dir, { recursive: true });
  }

  function recordsBytes(): number {
    const now = Date.now();
    return [...NAMES, "a.test"].reduce(
      (sum, name) => sum + 8 + entryLength(keyOf(name), answer(name, 300, now)),
      0,
    );
  }
});

Deno.test("a second journal on the same file waits for the first to let go, then appends after it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "keeldns-journal-" });
  const file = `${dir}/k.cache`;
  const options = { file, checkpointTime: 0, writeBudget: 0, tickMs: 30 };
  const first = await CacheJournal.open(new AnswerCache(100), options, log);
  const now = Date.now();
  try {
    await until(() => first.stats.writing, "the first lock");
    first.cache.set(q("a.test"), answer("a.test", 300, now));
    await until(() => first.stats.records === 1, "the first record");
    const secondCache = new AnswerCache(100);
    const second = await CacheJournal.open(secondCache, options, log);
    try {
      assert(secondCache.get(q("a.test"), now) !== undefined, "loaded what the first wrote");
      secondCache.set(q("b.test"), answer("b.test", 300, now));
      await new Promise((r) => setTimeout(r, 150));
      assertEquals([second.stats.writing, second.stats.records], [false, 0], "waits for the lock");
      await first.close(true);
      await until(() => second.stats.records === 1, "the second's record");
      const check = new AnswerCache(100);
      const snapshot = await Deno.readFile(file);
      decodeCache(snapshot, check, now, file);
      const read = readJournal(await Deno.readFile(`${file}.journal`), check, now, snapshotName(snapshot));
      assertEquals([read.loaded, read.problem, check.size], [1, undefined, 2]);
    } finally {
      await second.close(false);
    }
  } finally {
    await first.close(false);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("over the hourly write budget, entries are kept in memory only and counted as dropped", async () => {
  const dir = await Deno.makeTempDir({ prefix: "keeldns-journal-" });
  const file = `${dir}/k.cache`;
  const cache = new AnswerCache(100);
  const journal = await CacheJournal.open(
    cache,
    { file, checkpointTime: 0, writeBudget: 200, tickMs: 30 },
    log,
  );
  try {
    await until(() => journal.stats.writing, "the lock");
    const now = Date.now();
    cache.set(q("a.test"), answer("a.test", 300, now));
    await until(() => journal.stats.records === 1, "the first record");
    for (const name of NAMES.slice(1)) cache.set(q(name), answer(name, 300, now));
    await until(() => journal.stats.dropped === NAMES.length - 1, "the dropped records");
    assert(journal.stats.bytesWritten <= 200, `${journal.stats.bytesWritten} bytes written`);
    assertEquals(cache.size, NAMES.length, "the cache itself keeps them");
  } finally {
    await journal.close(false);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the snapshot and journal round-trip the cache's own encoding", () => {
  const now = Date.now();
  const cache = new AnswerCache(10);
  for (const name of NAMES) cache.set(q(name), answer(name, 300, now));
  const bytes = encodeCache(cache, now);
  assert(snapshotName(bytes) !== 0);
  const back = new AnswerCache(10);
  assertEquals(decodeCache(bytes, back, now, "x").loaded, NAMES.length);
});

Deno.test("a snapshot written in parts while the cache changes holds whole entries, each a stored answer", async () => {
  const { encodeCacheInParts } = await import("./cache_file.ts");
  const now = Date.now();
  const cache = new AnswerCache(20_000);
  const names = Array.from({ length: 9000 }, (_, i) => `p${i}.parts.test`);
  for (const name of names) cache.set(q(name), answer(name, 300, now));
  const writing = encodeCacheInParts(cache, now);
  // Between the parts: entries replaced, removed and added.
  let changes = 0;
  const churn = setInterval(() => {
    for (let k = 0; k < 200; k++) {
      const i = (changes * 7 + k * 13) % names.length;
      cache.set(q(names[i]), answer(names[i], 300, now, "198.51.100.1"));
      cache.set(q(`new${changes}-${k}.parts.test`), answer(`new${changes}-${k}.parts.test`, 300, now));
    }
    cache.removeWhere((key) =>
      key[1] === "p".charCodeAt(0) && key[2] === "1".charCodeAt(0) && key[3] === "7".charCodeAt(0)
    );
    changes++;
  }, 0);
  const bytes = await writing;
  clearInterval(churn);
  assert(changes > 0, "the cache changed while it was written");
  // decodeCache refuses the whole file if one entry is not a well-formed answer to its own key.
  const back = new AnswerCache(40_000);
  const { loaded } = decodeCache(bytes, back, now, "parts");
  assert(loaded >= names.length - 1200, `${loaded} entries`);
});
