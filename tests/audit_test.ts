/**
 * End to end: SmartDNS's audit file (`audit-enable`, `audit-file`, `audit-SOA`, `audit-size`,
 * `audit-num`, `audit-file-mode`) from a smartdns.conf, against the real program and a fake
 * upstream: one line per answer in SmartDNS's shape with keeldns's fields after it — for an
 * upstream answer (its address), a cached one, a stale one, a local rule and a block (their
 * `file:line`) — rotated at its size keeping `audit-num` files, with the mode asked for.
 */
import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { udpQuery } from "./helpers/dns_client.ts";
import { FakeUpstream } from "./helpers/fake_upstream.ts";
import { KeeldnsProcess } from "./helpers/keeldns_process.ts";

/** Waits until `file` has at least `lines` lines (or `timeoutMs` passes); returns its lines. */
async function auditLines(file: string, lines: number, timeoutMs = 5000): Promise<string[]> {
  const until = Date.now() + timeoutMs;
  let got: string[] = [];
  while (Date.now() < until) {
    try {
      got = (await Deno.readTextFile(file)).split("\n").filter((l) => l !== "");
    } catch {
      got = [];
    }
    if (got.length >= lines) return got;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${file}: ${got.length} of ${lines} lines after ${timeoutMs} ms:\n${got.join("\n")}`);
}

const LINE = new RegExp(
  String.raw`^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\] (\S+) query (\S+), type (\d+), time (\d+)ms, ` +
    String.raw`speed: (-?[\d.]+)ms, group (\S+), result (.*); rcode (\S+), reason (.+), elapsed ([\d.]+)ms$`,
);

Deno.test({
  name: "audit: one SmartDNS-shaped line per answer: upstream, cache, stale, rule and block with file:line",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const fake = await FakeUpstream.start((name) =>
      name === "stale.test" ? { answers: [{ name, type: "A", ttl: 1, data: "192.0.2.77" }] } : {
        answers: [{ name, type: "A", ttl: 300, data: "192.0.2.10" }, {
          name,
          type: "A",
          ttl: 300,
          data: "192.0.2.11",
        }],
      }
    );
    const conf = [
      "bind 127.0.0.1:{port}",
      `server 127.0.0.1:${fake.port}`,
      "log-level info",
      "rr-ttl-min 0",
      "serve-expired yes",
      "serve-expired-reply-ttl 5",
      "audit-enable yes",
      "audit-file audit.log",
      "audit-SOA yes",
      "audit-file-mode 600",
      "address /local.test/192.0.2.5",
      "address /blocked.test/#",
      "",
    ].join("\n");
    const k = await KeeldnsProcess.start(conf, { name: "smartdns.conf" });
    const file = `${k.dir}/audit.log`;
    try {
      assertEquals((await udpQuery(k.port, "up.test", "A")).answers.length, 2);
      assertEquals((await udpQuery(k.port, "up.test", "A")).answers.length, 2); // cached
      assertEquals((await udpQuery(k.port, "local.test", "A")).answers[0].data, "192.0.2.5");
      assertEquals((await udpQuery(k.port, "blocked.test", "A")).answers.length, 0);
      await udpQuery(k.port, "stale.test", "A");
      await new Promise((r) => setTimeout(r, 1500)); // expired now
      const stale = await udpQuery(k.port, "stale.test", "A");
      assertEquals(stale.answers[0].ttl, 5, "served stale");
      const lines = await auditLines(file, 6);
      const parsed = lines.map((l) => {
        const m = LINE.exec(l);
        assert(m, `not in the audit shape: ${l}`);
        return { client: m[2], name: m[3], type: m[4], result: m[8], rcode: m[9], reason: m[10] };
      });
      const upstream = `udp://127.0.0.1:${fake.port}`;
      assertEquals(parsed, [
        {
          client: "127.0.0.1",
          name: "up.test",
          type: "1",
          result: "192.0.2.10, 192.0.2.11",
          rcode: "NOERROR",
          reason: `upstream ${upstream}`,
        },
        {
          client: "127.0.0.1",
          name: "up.test",
          type: "1",
          result: "192.0.2.10, 192.0.2.11",
          rcode: "NOERROR",
          reason: "cache",
        },
        {
          client: "127.0.0.1",
          name: "local.test",
          type: "1",
          result: "192.0.2.5",
          rcode: "NOERROR",
          reason: `rule ${k.dir}/smartdns.conf:11`,
        },
        {
          client: "127.0.0.1",
          name: "blocked.test",
          type: "1",
          result: "soa",
          rcode: "NXDOMAIN",
          reason: `blocked ${k.dir}/smartdns.conf:12`,
        },
        {
          client: "127.0.0.1",
          name: "stale.test",
          type: "1",
          result: "192.0.2.77",
          rcode: "NOERROR",
          reason: `upstream ${upstream}`,
        },
        {
          client: "127.0.0.1",
          name: "stale.test",
          type: "1",
          result: "192.0.2.77",
          rcode: "NOERROR",
          reason: "stale",
        },
      ]);
      assertMatch(lines[0], /, speed: -0\.1ms, group default, /);
      assertEquals((await Deno.stat(file)).mode! & 0o777, 0o600, "audit-file-mode 600");
    } finally {
      await k.stop();
      await fake.close();
    }
  },
});

Deno.test({
  name:
    "audit: without audit-SOA a blocked answer writes no line (SmartDNS's default); rotation at audit-size keeps audit-num files",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const fake = await FakeUpstream.start();
    const conf = [
      "bind 127.0.0.1:{port}",
      `server 127.0.0.1:${fake.port}`,
      "audit-enable yes",
      "audit-file audit/queries.log",
      "audit-size 2k",
      "audit-num 2",
      "address /blocked.test/#",
      "",
    ].join("\n");
    const dir = await Deno.makeTempDir({ prefix: "keeldns-audit-" });
    const k = await KeeldnsProcess.start(conf.replace("audit/queries.log", `${dir}/queries.log`), {
      name: "smartdns.conf",
    });
    const file = `${dir}/queries.log`;
    try {
      await udpQuery(k.port, "blocked.test", "A");
      await udpQuery(k.port, "first.test", "A");
      const first = await auditLines(file, 1);
      assertEquals(first.length, 1, `the block is not audited: ${first.join("\n")}`);
      assertMatch(first[0], / query first\.test, /);
      assertEquals((await Deno.stat(file)).mode! & 0o777, 0o640, "SmartDNS's default mode");
      // ~190-byte lines: 60 of them are 11 kB, five and more files' worth at 2k.
      for (let i = 0; i < 60; i++) {
        await udpQuery(k.port, `name-${String(i).padStart(3, "0")}.rotation.test`, "A");
      }
      await new Promise((r) => setTimeout(r, 400));
      const names = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
      assertEquals(names, ["queries.log", "queries.log.1", "queries.log.2"], "audit-num 2: two old files");
      const all: string[] = [];
      for (const name of ["queries.log.2", "queries.log.1", "queries.log"]) {
        const text = await Deno.readTextFile(`${dir}/${name}`);
        assert(text.length <= 2048, `${name} is ${text.length} bytes, over audit-size`);
        assert(text.endsWith("\n"), `${name} ends with a whole line`);
        all.push(...text.split("\n").filter((l) => l));
      }
      const numbers = all.map((l) => Number(/name-(\d+)\.rotation/.exec(l)?.[1]));
      assertEquals(numbers.at(-1), 59, "the newest line is in the current file");
      for (let j = 1; j < numbers.length; j++) {
        assertEquals(numbers[j], numbers[j - 1] + 1, "in order, none lost");
      }
      assert(numbers[0] > 0, "the oldest lines were dropped with the oldest file");
    } finally {
      await k.stop();
      await fake.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "log-console no keeps the log off stderr, log-file-mode sets its mode, audit-console writes the lines there",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const fake = await FakeUpstream.start();
    const dir = await Deno.makeTempDir({ prefix: "keeldns-console-" });
    const logFile = `${dir}/keeldns.log`;
    const k = await KeeldnsProcess.start(
      [
        "bind 127.0.0.1:{port}",
        `server 127.0.0.1:${fake.port}`,
        "log-level info",
        `log-file ${logFile}`,
        "log-file-mode 600",
        "log-console no",
        "audit-enable yes",
        "audit-console yes",
        `audit-file ${dir}/audit.log`,
        "audit-num 0",
        "",
      ].join("\n"),
      { name: "smartdns.conf", waitReady: false },
    );
    try {
      // Ready once it answers (the guardian's own "ready" line may be off stderr too).
      const until = Date.now() + 20_000;
      let answered = false;
      while (!answered && Date.now() < until) {
        answered = await udpQuery(k.port, "console.test", "A", { timeoutMs: 300 }).then(
          () => true,
          () => false,
        );
      }
      assert(answered, "keeldns answers");
      await k.waitFor(/query console\.test, type 1, .*reason upstream/, 5000);
      const log = await Deno.readTextFile(logFile);
      assertMatch(log, /serving on udp:\/\/127\.0\.0\.1:\d+/);
      assertEquals((await Deno.stat(logFile)).mode! & 0o777, 0o600);
      assert(!k.lines.some((l) => /serving on udp:/.test(l)), "the child's log line is not on stderr");
      assert(
        !(await Array.fromAsync(Deno.readDir(dir))).some((e) => e.name.startsWith("audit")),
        "audit-num 0 writes no audit file",
      );
    } finally {
      await k.stop();
      await fake.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
