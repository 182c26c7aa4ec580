import { assert, assertEquals, assertMatch } from "../tests/helpers/assert.ts";
import { MAX_TIMEOUT, NftBatcher, type NftLog, type NftSet } from "./nft_batch.ts";

/**
 * A fake `nft -i`: records every line (and each start) in $LOG, and answers on stderr as nft
 * does: the batch marker is a syntax error; set "missing" does not exist; set "plain" has no
 * timeout flag; set "v4only" refuses IPv6 addresses.
 */
const FAKE_NFT = `#!/bin/sh
echo START >> "$LOG"
while IFS= read -r line; do
  printf '%s\\n' "$line" >> "$LOG"
  case "$line" in
    keeldns-batch-*) printf 'Error: syntax error, unexpected newline\\n%s\\n      ^\\n' "$line" >&2 ;;
    "add element inet t missing "*) printf 'Error: No such file or directory\\n%s\\n   ^^^\\n' "$line" >&2 ;;
    "add element inet t plain "*timeout*) printf 'Error: Could not process rule: Invalid argument\\n%s\\n' "$line" >&2 ;;
    "add element inet t v4only "*:*) printf 'Error: Could not resolve hostname: Address family for hostname not supported\\n%s\\n' "$line" >&2 ;;
    "add element inet t die "*) exit 3 ;;
  esac
done
`;

interface Fake {
  readonly script: string;
  readonly log: string;
  lines(): string[];
}

async function fake(): Promise<Fake> {
  const dir = await Deno.makeTempDir();
  const script = `${dir}/nft`;
  await Deno.writeTextFile(script, FAKE_NFT);
  await Deno.chmod(script, 0o755);
  const log = `${dir}/log`;
  await Deno.writeTextFile(log, "");
  Deno.env.set("LOG", log);
  return {
    script,
    log,
    lines: () => Deno.readTextFileSync(log).split("\n").filter((l) => l !== ""),
  };
}

function logger(): { log: NftLog; warnings: string[]; infos: string[] } {
  const warnings: string[] = [];
  const infos: string[] = [];
  const render = (m: string, p: Record<string, unknown> = {}) =>
    m.replace(/\{(\w+)\}/g, (_, k) => String(p[k] ?? `{${k}}`));
  const log = {
    warn: (m: string, p?: Record<string, unknown>) => warnings.push(render(m, p)),
    info: (m: string, p?: Record<string, unknown>) => infos.push(render(m, p)),
  } as unknown as NftLog;
  return { log, warnings, infos };
}

const set = (name: string): NftSet => ({ family: "inet", table: "t", set: name });

Deno.test("one process, one line per set and family a batch, duplicates merged, settled after nft", async () => {
  const f = await fake();
  const { log, warnings, infos } = logger();
  const b = new NftBatcher(log, { command: [f.script, "-i"], debug: true });
  const s4 = set("s4");
  const s6 = set("s6");
  for (let i = 0; i < 1000; i++) b.add(s4, `10.0.${i >> 8}.${i & 255}`, 300);
  b.add(s4, "10.0.0.1", 600); // the longer timeout wins
  b.add(s6, "2001:db8::1", 0);
  b.add(set("s6"), "2001:db8::2", 0); // an equal object is the same set
  await b.settled();
  for (let i = 0; i < 10; i++) b.add(s4, "192.0.2.1", 60);
  await b.settled();
  await b.close();
  const lines = f.lines();
  assertEquals(lines.filter((l) => l === "START").length, 1);
  const adds = lines.filter((l) => l.startsWith("add element"));
  assertEquals(adds.length, 3);
  assertMatch(adds[0], /^add element inet t s4 \{ 10\.0\.0\.0 timeout 300s, 10\.0\.0\.1 timeout 600s, /);
  assertEquals(adds[0].split(",").length, 1000);
  assertEquals(adds[1], "add element inet t s6 { 2001:db8::1, 2001:db8::2 }");
  assertEquals(adds[2], "add element inet t s4 { 192.0.2.1 timeout 60s }");
  assertEquals(b.counters.processes, 1);
  assertEquals(b.counters.batches, 2);
  assertEquals(b.counters.queued, 1013);
  assertEquals(b.counters.sent, 1003);
  assertEquals(warnings, []);
  assertEquals(infos.length, 2);
  assertMatch(infos[0], /^nftset: batch 1: add element inet t s4/);
});

Deno.test("a refused set is logged at most once a minute and does not stop the others", async () => {
  const f = await fake();
  const { log, warnings } = logger();
  let now = 1_000_000;
  const b = new NftBatcher(log, { command: [f.script], now: () => now });
  b.add(set("missing"), "192.0.2.1", 0);
  b.add(set("ok"), "192.0.2.2", 0);
  await b.settled();
  b.add(set("missing"), "192.0.2.3", 0);
  await b.settled();
  assertEquals(warnings.length, 1);
  assertMatch(warnings[0], /nft refused adding 1 addresses to set inet t missing: No such file or directory/);
  assertMatch(warnings[0], /nft list set inet t missing/);
  now += 61_000;
  b.add(set("missing"), "192.0.2.4", 0);
  await b.settled();
  assertEquals(warnings.length, 2);
  assertMatch(warnings[1], /1 more refusals in the last minute/);
  assertEquals(b.counters.refused, 3);
  assert(f.lines().includes("add element inet t ok { 192.0.2.2 }"));
  await b.close();
});

Deno.test("a set without flags timeout gets its elements again without timeouts", async () => {
  const f = await fake();
  const { log, warnings } = logger();
  const b = new NftBatcher(log, { command: [f.script] });
  b.add(set("plain"), "192.0.2.1", 300);
  await b.settled();
  b.add(set("plain"), "192.0.2.2", 300);
  await b.settled();
  await b.close();
  const adds = f.lines().filter((l) => l.startsWith("add element"));
  assertEquals(adds, [
    "add element inet t plain { 192.0.2.1 timeout 300s }",
    "add element inet t plain { 192.0.2.1, 192.0.2.2 }", // the retry rides with the next batch
  ]);
  assertEquals(warnings.length, 1);
  assertMatch(warnings[0], /set inet t plain has no timeout flag/);
});

Deno.test("a set that refuses a family is not sent that family again for a while", async () => {
  const f = await fake();
  const { log, warnings } = logger();
  const b = new NftBatcher(log, { command: [f.script] });
  b.add(set("v4only"), "2001:db8::1", 0);
  b.add(set("v4only"), "192.0.2.1", 0);
  await b.settled();
  b.add(set("v4only"), "2001:db8::2", 0);
  b.add(set("v4only"), "192.0.2.2", 0);
  await b.settled();
  await b.close();
  const adds = f.lines().filter((l) => l.startsWith("add element"));
  assertEquals(adds, [
    "add element inet t v4only { 2001:db8::1 }",
    "add element inet t v4only { 192.0.2.1 }",
    "add element inet t v4only { 192.0.2.2 }",
  ]);
  assertEquals(warnings.length, 1);
  assertMatch(warnings[0], /does not take IPv6 addresses/);
});

Deno.test("nft that cannot start: one warning, elements dropped, waiters released", async () => {
  const { log, warnings } = logger();
  const b = new NftBatcher(log, { command: ["/nonexistent/nft", "-i"] });
  b.add(set("s"), "192.0.2.1", 0);
  await b.settled();
  b.add(set("s"), "192.0.2.2", 0);
  await new Promise((r) => setTimeout(r, 1_100));
  await b.settled();
  assertEquals(warnings.length, 1);
  assertMatch(warnings[0], /cannot start \/nonexistent\/nft -i: .*is nftables installed/);
  assertEquals(b.counters.dropped, 2);
  assertEquals(b.counters.processes, 0);
  await b.close();
});

Deno.test("nft that dies mid-batch: waiters released, a new process takes the next batch", async () => {
  const f = await fake();
  const { log, warnings } = logger();
  const b = new NftBatcher(log, { command: [f.script] });
  b.add(set("die"), "192.0.2.1", 0);
  await b.settled();
  b.add(set("ok"), "192.0.2.2", 0);
  await b.settled();
  await b.close();
  assertEquals(f.lines().filter((l) => l === "START").length, 2);
  assert(f.lines().includes("add element inet t ok { 192.0.2.2 }"));
  assertMatch(warnings[0], /ended \(exit 3\)/);
});

Deno.test("a shorter TTL never cuts short a timeout keeldns gave; timeouts are capped", async () => {
  const f = await fake();
  const { log } = logger();
  let now = 1_000_000;
  const b = new NftBatcher(log, { command: [f.script], now: () => now });
  b.add(set("s"), "192.0.2.1", 300);
  await b.settled();
  now += 100_000;
  b.add(set("s"), "192.0.2.1", 20); // another name with a short TTL: keeps the 200 s left
  b.add(set("s"), "192.0.2.2", 10 ** 9);
  await b.settled();
  await b.close();
  const adds = f.lines().filter((l) => l.startsWith("add element"));
  assertEquals(adds[1], `add element inet t s { 192.0.2.1 timeout 200s, 192.0.2.2 timeout ${MAX_TIMEOUT}s }`);
});
