/**
 * End to end: `keeldns cache list|flush|stats` over the control socket, forwarded by the guardian to
 * the child: what a list shows, that a flushed name goes upstream again while the others stay
 * hits, that the counters move, and that the cache file does not bring flushed names back.
 */
import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { udpQuery } from "./helpers/dns_client.ts";
import { FakeUpstream } from "./helpers/fake_upstream.ts";
import { KeeldnsProcess, runKeeldns, testConfig } from "./helpers/keeldns_process.ts";

/** `keeldns cache ARGS` against the guardian of `k`; fails the test unless it exits 0. */
async function cache(k: KeeldnsProcess, ...args: string[]): Promise<string> {
  const r = await runKeeldns(["cache", ...args, "-p", `${k.dir}/keeldns.pid`]);
  assertEquals(r.code, 0, r.stderr);
  return r.stdout;
}

/** The `key: value` lines of `cache stats` as numbers. */
async function stats(k: KeeldnsProcess): Promise<Record<string, number>> {
  const out = await cache(k, "stats");
  return Object.fromEntries(
    out.trim().split("\n").map((l) => l.split(": ")).map(([key, v]) => [key, Number(v)]),
  );
}

Deno.test({
  name: "cache list, flush NAME, flush *.SUFFIX, flush all and stats reach the child's cache",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    // AAAA questions get an address too (the fake answers them empty, which is not cached).
    const fake = await FakeUpstream.start((name, type) =>
      type === "AAAA" ? { answers: [{ name, type: "AAAA", ttl: 300, data: "2001:db8::1" }] } : {}
    );
    const k = await KeeldnsProcess.start(testConfig(fake.port));
    try {
      for (const name of ["a.test", "b.test", "www.example.test"]) await udpQuery(k.port, name, "A");
      await udpQuery(k.port, "a.test", "AAAA");
      await t.step("stats counts the entries and the misses", async () => {
        const s = await stats(k);
        assertEquals([s.entries, s.hits, s.misses], [4, 0, 4]);
        assert(s.bytes > 0 && s.capacity > 0, JSON.stringify(s));
        await udpQuery(k.port, "b.test", "A");
        assertEquals((await stats(k)).hits, 1);
      });
      await t.step("list shows name, type, TTL left and group; a PATTERN narrows it", async () => {
        const all = await cache(k, "list");
        assertMatch(all, /^a\.test A ttl \d+ group 0$/m);
        assertMatch(all, /^a\.test AAAA ttl \d+ group 0$/m);
        assertMatch(all, /^b\.test A ttl \d+ group 0$/m);
        assertEquals(all.trim().split("\n").length, 4);
        assertEquals(
          (await cache(k, "list", "example.test")).trim(),
          (await cache(k, "list", "*.example.test")).trim(),
        );
        assertMatch(await cache(k, "list", "example.test"), /^www\.example\.test A ttl \d+ group 0\n$/);
        assertMatch(await cache(k, "list", "nothing.test"), /^no cached entries match nothing\.test$/m);
      });
      await t.step("flush NAME: that name goes upstream again, another one is still a hit", async () => {
        assertMatch(await cache(k, "flush", "A.Test."), /2 entries removed/);
        const [a, b] = [fake.count("a.test"), fake.count("b.test")];
        assertEquals((await udpQuery(k.port, "a.test", "A")).rcode, "NOERROR");
        assertEquals((await udpQuery(k.port, "b.test", "A")).rcode, "NOERROR");
        assertEquals(fake.count("a.test"), a + 1, "the flushed name was asked again");
        assertEquals(fake.count("b.test"), b, "the other name was a hit");
      });
      await t.step("flush *.SUFFIX removes the names below it", async () => {
        assertMatch(await cache(k, "flush", "*.example.test"), /1 entries removed/);
        const before = fake.count("www.example.test");
        await udpQuery(k.port, "www.example.test", "A");
        assertEquals(fake.count("www.example.test"), before + 1);
      });
      await t.step("flush (all) empties the cache; stats show it and keep counting", async () => {
        const hits = (await stats(k)).hits;
        assertMatch(await cache(k, "flush"), /3 entries removed \(all\)/);
        assertEquals((await stats(k)).entries, 0);
        const before = fake.count("b.test");
        await udpQuery(k.port, "b.test", "A");
        assertEquals(fake.count("b.test"), before + 1);
        await udpQuery(k.port, "b.test", "A");
        const s = await stats(k);
        assertEquals([s.entries, s.hits], [1, hits + 1]);
      });
      await t.step("bad arguments and a missing guardian are clear errors", async () => {
        const bad = await runKeeldns(["cache", "drop", "-p", `${k.dir}/keeldns.pid`]);
        assertEquals(bad.code, 64);
        assertMatch(bad.stderr, /expected list \[PATTERN\], flush \[NAME\] or stats/);
        const none = await runKeeldns(["cache", "stats", "-p", `${k.dir}/nobody.pid`]);
        assertEquals(none.code, 1);
        assertMatch(none.stderr, /keeldns cache: no guardian answers on .*nobody\.sock/);
      });
    } finally {
      await k.stop();
      await fake.close();
    }
  },
});

const persisted = (upstream: number, file: string) =>
  testConfig(upstream, `[cache]\nsize = 100\npersist = true\nfile = "${file}"\ncheckpoint-time = 3600\n`);

Deno.test({
  name: "a flushed name does not come back from the cache file when the next child starts",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const fake = await FakeUpstream.start();
    const dir = await Deno.makeTempDir({ prefix: "keeldns-cachecmd-" });
    const file = `${dir}/k.cache`;
    try {
      // A first run leaves both names in the file (a graceful stop saves it).
      const first = await KeeldnsProcess.start(persisted(fake.port, file));
      for (const name of ["one.test", "two.test"]) await udpQuery(first.port, name, "A");
      await first.stop();
      const k = await KeeldnsProcess.start(persisted(fake.port, file));
      try {
        await k.waitFor(/cache: 2 entries loaded/, 5000);
        assertMatch(await cache(k, "flush", "one.test"), /1 entries removed/);
        // The flush wrote a fresh snapshot; stats show what the journal wrote.
        const s = await stats(k);
        assertEquals(s["journal compactions"], 1);
        assert(s["journal bytes written"] > 24, `${s["journal bytes written"]} bytes`);
        // No checkpoint is due for an hour: only the flush itself can have saved the file.
        const mark = k.lines.length;
        Deno.kill(k.childPid, "SIGKILL");
        await k.waitFor(/cache: 1 entries loaded/, 5000, mark);
        await k.waitFor(/child \d+ ready/, 5000, mark);
        const [one, two] = [fake.count("one.test"), fake.count("two.test")];
        await udpQuery(k.port, "one.test", "A");
        await udpQuery(k.port, "two.test", "A");
        assertEquals([fake.count("one.test"), fake.count("two.test")], [one + 1, two]);
      } finally {
        await k.stop();
      }
    } finally {
      await fake.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
