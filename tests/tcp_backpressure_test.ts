/**
 * End to end: TCP backpressure (issue 9). A client that floods one connection with queries and
 * never reads the answers must not grow the child without bound: the child stops reading that
 * connection, keeps serving everyone else, and closes it once it stays over its budget. A client
 * that reads slowly keeps being served in full.
 */
import { assert, assertEquals, assertGreater, assertLess } from "./helpers/assert.ts";
import { buildQuery, decodeReply, tcpQuery, udpQuery } from "./helpers/dns_client.ts";
import { FakeUpstream } from "./helpers/fake_upstream.ts";
import { KeeldnsProcess, processExists, testConfig } from "./helpers/keeldns_process.ts";
import { controlPathFor, sendControl } from "../ops/control_channel.ts";
import { frame, FramedReader, writeAll } from "../dns/stream_framing.ts";

/** The frame from the issue: a 29-byte query for c0.tcp.test A, with its 2-byte length. */
const FLOOD_FRAME = Uint8Array.from(
  "001d0000010000010000000000000263300374637004746573740000010001".match(/../g)!,
  (h) => parseInt(h, 16),
);
/** At most this much is sent, whatever happens. */
const MAX_FLOOD_BYTES = 64 * 1024 * 1024;
/** The flood gives up after this long (the fix closes the connection within a few seconds). */
const FLOOD_DEADLINE_MS = 15_000;
/** The old child died at its 128 MB V8 heap limit; a bounded one stays far below. */
const RSS_LIMIT_BYTES = 200 * 1024 * 1024;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The child's resident set size, from /proc (null once it is gone). */
function rssBytes(pid: number): number | null {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(Deno.readTextFileSync(`/proc/${pid}/status`));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/** The counters the child logs when it stops (the same object it reports to `keeldns status`). */
function stoppedCounters(k: KeeldnsProcess): Record<string, number> {
  const line = k.lines.find((l) => l.includes("stopped: {"));
  assert(line, `the child logged its counters at stop; log:\n${k.lines.join("\n")}`);
  return JSON.parse(line.slice(line.indexOf("stopped: {") + "stopped: ".length));
}

/**
 * Polls the guardian's status (what `keeldns status` prints) until the child's reported counters
 * satisfy `ok`, or the time is up.
 */
async function childStats(
  k: KeeldnsProcess,
  ok: (stats: Record<string, number>) => boolean,
  timeoutMs: number,
): Promise<Record<string, number>> {
  const until = performance.now() + timeoutMs;
  for (;;) {
    const reply = await sendControl(controlPathFor(`${k.dir}/keeldns.pid`), "status", 2000);
    const stats = (reply.status?.childStats ?? {}) as Record<string, number>;
    if (ok(stats) || performance.now() > until) return stats;
    await sleep(500);
  }
}

Deno.test({
  name: "TCP: a client that never reads is stopped and closed; the child stays small and keeps serving",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const fake = await FakeUpstream.start();
    // One TCP connection at most: after the flood, the next query only gets in if the flooding
    // connection was really let go.
    const k = await KeeldnsProcess.start(
      testConfig(fake.port).replace("[[upstream]]", "max-tcp-connections = 1\n[[upstream]]"),
    );
    let conn: Deno.TcpConn | undefined;
    try {
      // Cache the flooded name first, so every flooded query is answered at once from the cache.
      assertEquals((await udpQuery(k.port, "c0.tcp.test", "A")).rcode, "NOERROR");
      const childPid = k.childPid;
      const baseline = rssBytes(childPid)!;

      conn = await Deno.connect({ hostname: "127.0.0.1", port: k.port });
      const chunk = new Uint8Array(FLOOD_FRAME.length * 2048); // ~64 KB per write
      for (let i = 0; i < 2048; i++) chunk.set(FLOOD_FRAME, i * FLOOD_FRAME.length);

      // The flood: writes without ever reading, until the server ends the connection, the byte
      // cap, or the deadline. Each write races the deadline, so a write the server never takes
      // (it stopped reading) does not hang the test.
      const started = performance.now();
      let sent = 0;
      let closedAfterMs: number | null = null;
      let floodError = "";
      const flood = (async () => {
        while (sent < MAX_FLOOD_BYTES) {
          const left = FLOOD_DEADLINE_MS - (performance.now() - started);
          if (left <= 0) return;
          let timer: ReturnType<typeof setTimeout> | undefined;
          const outcome = await Promise.race([
            conn!.write(chunk).then((n) => n, (e: Error) => e),
            new Promise<"deadline">((r) => timer = setTimeout(() => r("deadline"), left)),
          ]);
          clearTimeout(timer);
          if (outcome === "deadline") return;
          if (outcome instanceof Error) {
            closedAfterMs = performance.now() - started;
            floodError = outcome.name;
            return;
          }
          sent += outcome;
        }
      })();

      // Meanwhile: the child's RSS, whether it is still the same child, and UDP service.
      let maxRss = baseline;
      let udpAnswered = 0;
      let udpFailed = 0;
      let floodDone = false;
      flood.finally(() => floodDone = true);
      for (let i = 0; !floodDone; i++) {
        const rss = rssBytes(childPid);
        assert(rss !== null && processExists(childPid), `the child ${childPid} is gone after ${sent} bytes`);
        maxRss = Math.max(maxRss, rss);
        const ok = await udpQuery(k.port, `u${i}.udp.test`, "A", { timeoutMs: 1000 }).then(
          (r) => r.rcode === "NOERROR",
          () => false,
        );
        if (ok) udpAnswered++;
        else udpFailed++;
        await sleep(100);
      }
      await flood;
      console.error(
        `flood: ${(sent / 1e6).toFixed(1)} MB sent; connection ended after ` +
          `${closedAfterMs === null ? "-" : (closedAfterMs / 1000).toFixed(1)} s (${floodError}); ` +
          `child RSS ${(baseline / 1e6).toFixed(0)} MB before, max ${(maxRss / 1e6).toFixed(0)} MB; ` +
          `UDP ${udpAnswered} answered, ${udpFailed} failed`,
      );

      assert(closedAfterMs !== null, `the server closed the connection (sent ${sent} bytes)`);
      assertLess(maxRss, RSS_LIMIT_BYTES, "the child's RSS stays bounded during the flood");
      assertGreater(udpAnswered, 0, "UDP was answered during the flood");
      assertEquals(udpFailed, 0, "no UDP query went unanswered during the flood");
      assert(processExists(childPid), "the child survived");
      assertEquals(k.childPid, childPid, "no new child became ready");
      assert(!k.lines.some((l) => /child \d+ exited/.test(l)), "no child exited");
      assertEquals((await udpQuery(k.port, "after.udp.test", "A")).rcode, "NOERROR");
      assertEquals((await tcpQuery(k.port, "after.tcp.test", "A")).rcode, "NOERROR", "the slot is free");

      conn.close();
      conn = undefined;

      // The counter reaches `keeldns status` with the child's next stats report (every 10 s).
      const status = await childStats(k, (s) => s.tcpClosedOverBudget > 0, 12_000);
      assertEquals(status.tcpClosedOverBudget, 1, JSON.stringify(status));
      assertEquals(status.tcpWriteTimeouts, 0, "an over-budget close, not a write timeout");

      await k.stop();
      const counters = stoppedCounters(k);
      assertEquals(counters.tcpClosedOverBudget, 1, JSON.stringify(counters));
      assertEquals(counters.tcpWriteTimeouts, 0);
    } finally {
      try {
        conn?.close();
      } catch { /* closed */ }
      await k.stop();
      await fake.close();
    }
  },
});

Deno.test({
  name: "TCP: a client that reads slowly gets every answer to many pipelined queries",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    // Names under slow.test take 200 ms upstream: with more queries than may be in flight, the
    // server has to stop reading, then resume, several times.
    const fake = await FakeUpstream.start((name) => name.endsWith(".slow.test") ? { delayMs: 200 } : {});
    const k = await KeeldnsProcess.start(testConfig(fake.port));
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: k.port });
    try {
      const count = 1000;
      const frames = [];
      for (let id = 0; id < count; id++) {
        const name = id % 2 ? `q${id}.slow.test` : "fast.test";
        frames.push(frame(buildQuery(name, "A", { id })));
      }
      const all = new Uint8Array(frames.reduce((n, f) => n + f.length, 0));
      frames.reduce((at, f) => (all.set(f, at), at + f.length), 0);
      const writing = writeAll(conn, all);

      // Read 256 bytes at a time with a pause in between (about 25 KB/s).
      const slow = {
        async read(p: Uint8Array): Promise<number | null> {
          await sleep(10);
          return await conn.read(p.subarray(0, Math.min(p.length, 256)));
        },
      };
      const reader = new FramedReader(slow);
      const ids = new Set<number>();
      const deadline = setTimeout(() => conn.close(), 20_000);
      try {
        while (ids.size < count) {
          const raw = await reader.next();
          assert(raw, `the server ended the connection after ${ids.size} of ${count} answers`);
          const reply = decodeReply(raw);
          assertEquals(reply.rcode, "NOERROR");
          ids.add(reply.id);
        }
      } finally {
        clearTimeout(deadline);
      }
      await writing;
      assertEquals(ids.size, count, "every query was answered once");

      // The connection is still open and usable.
      await writeAll(conn, frame(buildQuery("fast.test", "A", { id: 4242 })));
      assertEquals(decodeReply((await reader.next())!).id, 4242);
      conn.close();

      await k.stop();
      const counters = stoppedCounters(k);
      assertEquals(counters.tcpClosedOverBudget, 0, "not closed as over budget");
      assertEquals(counters.tcpWriteTimeouts, 0, "no write timeout");
    } finally {
      try {
        conn.close();
      } catch { /* closed */ }
      await k.stop();
      await fake.close();
    }
  },
});
