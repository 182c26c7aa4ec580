import { assert, assertEquals } from "../tests/helpers/assert.ts";
import { buildQuery, decodeReply } from "../tests/helpers/dns_client.ts";
import { encodePacket } from "../dns/packet.ts";
import { StoredAnswer } from "../dns/stored_answer.ts";
import { parseQuery, scanResponse } from "../dns/wire.ts";
import { AnswerCache } from "./answer_cache.ts";
import { CacheFileError, decodeCache, encodeCache, loadCache, saveCache } from "./cache_file.ts";

const policy = { rrTtl: 0, rrTtlMin: 0, rrTtlMax: 0 };

function answer(name: string, ttl: number, storedAt: number): StoredAnswer {
  const wire = encodePacket({
    type: "response",
    flags: 0x8180,
    questions: [{ name, type: "A", class: "IN" }],
    answers: [{ name, type: "A", ttl, data: "192.0.2.1" }],
  });
  return StoredAnswer.fromResponse(wire, scanResponse(wire)!, policy, storedAt);
}

/** The question for `name` type A, as a client would send it. */
function q(name: string) {
  return parseQuery(buildQuery(name, "A", { id: 3 }));
}

function filled(now: number): AnswerCache {
  const cache = new AnswerCache(10);
  cache.set(q("a.test"), answer("a.test", 300, now - 100_000)); // 200 s left
  cache.set(q("b.test"), answer("b.test", 60, now - 100_000)); // expired
  cache.set(q("c.test"), answer("c.test", 600, now));
  return cache;
}

Deno.test("a saved cache loads back with its TTLs still counting down, expired entries skipped", () => {
  const now = 1_700_000_000_000;
  const bytes = encodeCache(filled(now), now);
  const restored = new AnswerCache(10);
  const later = now + 10_000;
  assertEquals(decodeCache(bytes, restored, later, "x"), { loaded: 2, expired: 0 });
  const hit = restored.get(q("a.TEST"), later)!;
  const reply = decodeReply(hit.render(q("a.test"), later, 512));
  assertEquals(reply.answers[0].ttl, 190);
  assertEquals(restored.get(q("b.TEST"), later), undefined);
  assertEquals(decodeCache(bytes, new AnswerCache(10), now + 250_000, "x"), { loaded: 1, expired: 1 });
});

Deno.test("truncated, corrupt and foreign files are refused whole, adding nothing", () => {
  const now = Date.now();
  const bytes = encodeCache(filled(now), now);
  const attempts: [string, Uint8Array][] = [
    ["empty", new Uint8Array(0)],
    ["foreign", new TextEncoder().encode("SmartDNS cache v3 .................")],
    ["truncated", bytes.subarray(0, bytes.length - 7)],
    ["one flipped bit", bytes.map((b, i) => i === 40 ? b ^ 1 : b)],
  ];
  for (const [what, data] of attempts) {
    const cache = new AnswerCache(10);
    let error: unknown;
    try {
      decodeCache(data, cache, now, "/x.cache");
    } catch (e) {
      error = e;
    }
    assert(error instanceof CacheFileError, what);
    assertEquals(cache.size, 0, what);
  }
});

Deno.test("a failed save leaves the previous file whole; a missing file loads nothing", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/k.cache`;
    const now = Date.now();
    assertEquals(await saveCache(filled(now), path, now), 2);
    const before = await Deno.readFile(path);
    // Make the temporary file impossible to create, as a full or read-only disk would.
    await Deno.mkdir(`${path}.${Deno.pid}.tmp`);
    const bigger = filled(now);
    bigger.set(q("d.test"), answer("d.test", 600, now));
    let failed = false;
    await saveCache(bigger, path, now).catch(() => failed = true);
    assert(failed, "the save must fail");
    assertEquals(await Deno.readFile(path), before);
    assertEquals((await loadCache(new AnswerCache(10), path, now)).loaded, 2);
    assertEquals(await loadCache(new AnswerCache(10), `${dir}/none.cache`), { loaded: 0, expired: 0 });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a file whose checksum holds but whose entries are crafted is refused whole", async (t) => {
  const now = Date.now();
  const good = encodeCache(filled(now), now);
  /** Re-seals `bytes` with a valid checksum, as someone crafting a file would. */
  const sealed = (bytes: Uint8Array) => {
    const out = bytes.slice();
    const body = out.length - 4;
    let h = 0x811c9dc5;
    for (let i = 0; i < body; i++) h = Math.imul(h ^ out[i], 0x01000193);
    new DataView(out.buffer).setUint32(body, h >>> 0, true);
    return out;
  };
  // The first entry's layout: magic (14) + version, count (8), key length (2), key, 14 bytes, wire.
  const keyLength = new DataView(good.buffer).getUint16(22, true);
  const wireAt = 24 + keyLength + 14;
  const wireLength = new DataView(good.buffer).getUint16(24 + keyLength + 12, true);
  const ttlTable = wireAt + wireLength + 2;
  const crafted: [string, (b: Uint8Array) => void, RegExp][] = [
    ["owner name pointing at itself", (b) => {
      const at = wireAt + wireLength - 16; // the A record: 2 bytes of owner pointer, 10 fixed, 4 rdata
      b[at] = 0xc0;
      b[at + 1] = wireLength - 16;
    }, /entry 1: not a well-formed answer/],
    ["TTL offset into the header (would overwrite the client's ID)", (b) => {
      new DataView(b.buffer).setUint32(ttlTable, 0, true);
    }, /entry 1: TTL table does not match/],
    ["an answer to another question", (b) => {
      b[wireAt + 13] = 0x7a; // a.test -> z.test in the wire, key unchanged
    }, /entry 1: answer to a question other than its key/],
    ["a query instead of an answer", (b) => {
      b[wireAt + 2] &= 0x7f;
    }, /entry 1: not an answer to one question/],
  ];
  for (const [what, craft, reason] of crafted) {
    await t.step(what, () => {
      const bytes = good.slice();
      craft(bytes);
      const cache = new AnswerCache(10);
      let error: unknown;
      try {
        decodeCache(sealed(bytes), cache, now, "/x.cache");
      } catch (e) {
        error = e;
      }
      assert(error instanceof CacheFileError, `${what}: refused`);
      assert(reason.test((error as Error).message), `${what}: ${(error as Error).message}`);
      assertEquals(cache.size, 0, what);
    });
  }
  assertEquals(
    decodeCache(sealed(good.slice()), new AnswerCache(10), now, "x").loaded,
    2,
    "resealing alone changes nothing",
  );
});
