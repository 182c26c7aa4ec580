/**
 * End to end: nftset and ipset rules in the real keeldns against Debian's nftables, inside a
 * network namespace of its own (root only; skipped with the reason otherwise). The test creates
 * the namespace and its tables and sets, then runs this file again inside it (`ip netns exec`),
 * where a fake upstream and keeldns serve on the namespace's loopback: answer addresses must be
 * in their sets with the TTL as timeout, a name without a rule must add nothing, a refused set
 * must be logged and the name still answered, a flushed set must be refilled by cache hits, and
 * the number of nft processes per 1,000 answers and the elements added per second are measured.
 */
import { assert, assertEquals, assertLess } from "./helpers/assert.ts";
import { udpQuery } from "./helpers/dns_client.ts";
import { exec, findingsInside, runInsideHalf } from "./helpers/netns.ts";
import { FakeUpstream } from "./helpers/fake_upstream.ts";
import { KeeldnsProcess } from "./helpers/keeldns_process.ts";
import { NftBatcher, type NftLog } from "../ops/nft_batch.ts";

const INSIDE = "KEELDNS_NFTSET_INSIDE";
const BULK = 3_000;

/** Why the test cannot run here, or undefined. */
function cannotRun(): string | undefined {
  if (Deno.build.os !== "linux") return "not Linux";
  if (Deno.uid() !== 0) return "not root (network namespaces and nftables need it)";
  for (const tool of ["nft", "ip"]) {
    try {
      new Deno.Command(tool, { args: ["--version"], stdout: "null", stderr: "null" }).outputSync();
    } catch {
      return `no ${tool} command (Debian: apt-get install nftables iproute2)`;
    }
  }
  return undefined;
}

const RULESET = `
table inet kt {
  set t4 { type ipv4_addr; flags timeout; }
  set t6 { type ipv6_addr; flags timeout; }
  set p4 { type ipv4_addr; }
  set bulk4 { type ipv4_addr; flags timeout; }
  set raw4 { type ipv4_addr; flags timeout; }
}
table inet fw4 {
  set gfw { type ipv4_addr; }
}
`;

/** One element as `nft -j list set` gives it. */
interface Element {
  ip: string;
  timeout?: number;
  expires?: number;
}

/** The elements of `inet TABLE SET` (inside the namespace). */
async function elements(table: string, set: string): Promise<Element[]> {
  const r = await exec(["nft", "-j", "list", "set", "inet", table, set]);
  if (r.code !== 0) throw new Error(`nft list set ${table} ${set}: ${r.err}`);
  const doc = JSON.parse(r.out) as { nftables: { set?: { elem?: unknown[] } }[] };
  const elem = doc.nftables.find((x) => x.set)?.set?.elem ?? [];
  return elem.map((e) => {
    if (typeof e === "string") return { ip: e };
    const x = (e as { elem: { val: string; timeout?: number; expires?: number } }).elem;
    return { ip: x.val, timeout: x.timeout, expires: x.expires };
  });
}

/** What the run inside the namespace found (printed as JSON on its last line). */
interface Findings {
  t4: Element[];
  t6: Element[];
  p4: Element[];
  gfw: Element[];
  untouched: number;
  refusedLogged: boolean;
  missingAnswered: string[];
  refilled: string[];
  bulkAnswers: number;
  bulkSeconds: number;
  bulkElements: number;
  bulkFillSeconds: number;
  hitSeconds: number;
  nftStarts: number;
  nftLeft: number;
  rawElements: number;
  rawSeconds: number;
  rawProcesses: number;
  /** keeldns's log lines about sets and rules (shown when something is amiss). */
  log: string[];
}

/** Inside the namespace: fake upstream, keeldns, queries, and what the sets hold. */
async function inside(): Promise<Findings> {
  const dir = await Deno.makeTempDir({ prefix: "keeldns-nft-" });
  const counter = `${dir}/nft-starts`;
  await Deno.writeTextFile(counter, "");
  await Deno.writeTextFile(`${dir}/nft`, `#!/bin/sh\necho start >> ${counter}\nexec nft "$@"\n`);
  await Deno.chmod(`${dir}/nft`, 0o755);
  Deno.env.set("KEELDNS_NFT", `${dir}/nft`);
  const upstream = await FakeUpstream.start((name, type) => {
    const bulk = /^n(\d+)\.bulk\.test$/.exec(name);
    if (bulk) {
      const i = Number(bulk[1]);
      return { answers: [{ name, type: "A", ttl: 300, data: `10.${i >> 16}.${(i >> 8) & 255}.${i & 255}` }] };
    }
    if (name === "none.test") return { answers: [{ name, type: "A", ttl: 300, data: "198.51.100.1" }] };
    if (type === "A") {
      return {
        answers: [
          { name, type: "CNAME", ttl: 120, data: `edge.${name}` },
          { name: `edge.${name}`, type: "A", ttl: 120, data: "192.0.2.10" },
          { name: `edge.${name}`, type: "A", ttl: 120, data: "192.0.2.11" },
        ],
      };
    }
    if (type === "AAAA") return { answers: [{ name, type: "AAAA", ttl: 90, data: "2001:db8::10" }] };
    return {};
  });
  const conf = `bind 127.0.0.1:{port}\nserver 127.0.0.1:${upstream.port}\n` +
    "nftset /timed.test/#4:inet#kt#t4,#6:inet#kt#t6\n" +
    "nftset /plain.test/#4:inet#kt#p4\n" +
    "ipset /ips.test/#4:gfw\n" +
    "domain-rules /dr.test/ -nftset #4:inet#kt#p4\n" +
    "nftset /bulk.test/#4:inet#kt#bulk4\n" +
    "nftset /missing.test/#4:inet#kt#nosuchset\n" +
    "nftset-timeout yes\ncache-size 20000\nrr-ttl-min 0\nlog-level info\n";
  const k = await KeeldnsProcess.start(conf, { name: "smartdns.conf" });
  const found: Partial<Findings> = {};
  try {
    const port = k.port;
    const data = async (name: string, type = "A") =>
      (await udpQuery(port, name, type)).answers.filter((a) => a.type === type).map((a) => String(a.data));
    assertEquals(await data("timed.test"), ["192.0.2.10", "192.0.2.11"]);
    assertEquals(await data("www.timed.test", "AAAA"), ["2001:db8::10"]);
    await data("plain.test");
    await data("ips.test");
    await data("dr.test");
    assertEquals(await data("none.test"), ["198.51.100.1"]);
    found.missingAnswered = await data("missing.test");
    found.refusedLogged = await k.waitFor(/nft refused adding 2 addresses to set inet kt nosuchset/, 5_000)
      .then(() => true, () => false);
    await new Promise((r) => setTimeout(r, 300));
    found.t4 = await elements("kt", "t4");
    found.t6 = await elements("kt", "t6");
    found.p4 = await elements("kt", "p4");
    found.gfw = await elements("fw4", "gfw");
    // A firewall reload empties the sets; cache hits put the addresses back (after the refresh time).
    await exec(["nft", "flush", "set", "inet", "kt", "t4"]);
    await new Promise((r) => setTimeout(r, 10_500));
    await data("timed.test");
    await new Promise((r) => setTimeout(r, 300));
    found.refilled = (await elements("kt", "t4")).map((e) => e.ip);
    // Bulk: distinct names, 100 in flight at a time.
    const start = performance.now();
    let answers = 0;
    for (let i = 0; i < BULK; i += 100) {
      const wave = [];
      for (let j = i; j < Math.min(i + 100, BULK); j++) wave.push(udpQuery(port, `n${j}.bulk.test`, "A"));
      answers += (await Promise.all(wave)).filter((r) => r.answers.length === 1).length;
    }
    found.bulkSeconds = (performance.now() - start) / 1000;
    found.bulkAnswers = answers;
    let bulk = 0;
    for (let tries = 0; tries < 50 && bulk < BULK; tries++) {
      bulk = (await elements("kt", "bulk4")).length;
      if (bulk < BULK) await new Promise((r) => setTimeout(r, 100));
    }
    found.bulkElements = bulk;
    found.bulkFillSeconds = (performance.now() - start) / 1000;
    // The same names again: cache hits within the refresh time add nothing and start nothing.
    const hits = performance.now();
    for (let i = 0; i < BULK; i += 100) {
      const wave = [];
      for (let j = i; j < Math.min(i + 100, BULK); j++) wave.push(udpQuery(port, `n${j}.bulk.test`, "A"));
      await Promise.all(wave);
    }
    found.hitSeconds = (performance.now() - hits) / 1000;
    found.untouched = 0;
    for (const [table, set] of [["kt", "t4"], ["kt", "p4"], ["kt", "bulk4"], ["fw4", "gfw"]]) {
      found.untouched += (await elements(table, set)).filter((e) => e.ip === "198.51.100.1").length;
    }
    found.nftStarts = (await Deno.readTextFile(counter)).split("\n").filter((l) => l === "start").length;
  } finally {
    found.log = k.lines.filter((l) => /nftset|rules|warn|error/i.test(l)).slice(-40);
    await k.stop();
    await upstream.close();
  }
  // nft reads EOF once keeldns's child is gone, and ends (the guardian may exit a moment sooner).
  let left = "";
  for (let tries = 0; tries < 50; tries++) {
    left = (await exec(["pgrep", "-a", "-x", "nft"])).out.trim();
    if (left === "") break;
    await new Promise((r) => setTimeout(r, 100));
  }
  found.nftLeft = left === "" ? 0 : left.split("\n").length;
  if (left !== "") found.log.push(`nft left: ${left}`);
  // The batcher alone against nft: how many elements a second nft takes in batches.
  const raw = new NftBatcher({ warn: () => {}, info: () => {} } as unknown as NftLog);
  const rawStart = performance.now();
  const rawCount = 100_000;
  for (let i = 0; i < rawCount; i++) {
    raw.add(
      { family: "inet", table: "kt", set: "raw4" },
      `172.${16 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`,
      600,
    );
    if (i % 5_000 === 4_999) await new Promise((r) => setTimeout(r, 0)); // answers arrive over time
  }
  await raw.settled();
  found.rawSeconds = (performance.now() - rawStart) / 1000;
  found.rawProcesses = raw.counters.processes;
  await raw.close();
  found.rawElements = (await elements("kt", "raw4")).length;
  return found as Findings;
}

await runInsideHalf(import.meta.main, INSIDE, inside);

const why = cannotRun();
if (why) console.log(`tests/nftset_test.ts skipped: ${why}`);

Deno.test({
  name: "nftset/ipset end to end in a network namespace: elements, timeouts, refusals, refills, batching",
  ignore: why !== undefined,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const ns = `keeldns-nft-${Deno.pid}`;
    const add = await exec(["ip", "netns", "add", ns]);
    if (add.code !== 0) throw new Error(`ip netns add: ${add.err}`);
    try {
      await exec(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"]);
      const made = await exec(["ip", "netns", "exec", ns, "nft", "-f", "-"], RULESET);
      assertEquals(made.err, "");
      const f = await findingsInside<Findings>(ns, import.meta.url, INSIDE);
      console.log(f.log.join("\n"));
      console.log(
        `nftset figures: ${f.bulkAnswers} answers in ${f.bulkSeconds.toFixed(2)} s ` +
          `(${
            Math.round(f.bulkAnswers / f.bulkSeconds)
          } answers/s), all ${f.bulkElements} in the set after ` +
          `${f.bulkFillSeconds.toFixed(2)} s; ${f.nftStarts} nft process(es) for ` +
          `${f.bulkAnswers + f.bulkAnswers + 8} answers ` +
          `(${(1000 * f.nftStarts / (2 * f.bulkAnswers)).toFixed(3)} per 1,000); cache-hit wave ` +
          `${f.hitSeconds.toFixed(2)} s; batcher alone: ${f.rawElements} elements in ` +
          `${f.rawSeconds.toFixed(2)} s (${Math.round(f.rawElements / f.rawSeconds)}/s, ` +
          `${f.rawProcesses} process)`,
      );
      // Addresses in their sets, with the TTL as the timeout (nft -j gives seconds).
      assertEquals(f.t4.map((e) => e.ip).sort(), ["192.0.2.10", "192.0.2.11"]);
      for (const e of f.t4) assert(e.timeout === 120 && e.expires! > 100, JSON.stringify(e));
      assertEquals(f.t6.map((e) => e.ip), ["2001:db8::10"]);
      assertEquals(f.t6[0].timeout, 90);
      // p4 has no timeout flag: added without one (after one refusal, logged once).
      assertEquals(f.p4.map((e) => e.ip).sort(), ["192.0.2.10", "192.0.2.11"]);
      assertEquals(f.p4[0].timeout, undefined);
      assertEquals(f.gfw.map((e) => e.ip).sort(), ["192.0.2.10", "192.0.2.11"]);
      // A refused set is logged, and its name is answered all the same.
      assert(f.refusedLogged, "the refusal was not logged");
      assertEquals(f.missingAnswered, ["192.0.2.10", "192.0.2.11"]);
      // Flushed by a "firewall reload": a cache hit put them back.
      assertEquals(f.refilled.sort(), ["192.0.2.10", "192.0.2.11"]);
      // Every bulk answer's address is in its set; a handful of nft processes at most.
      assertEquals(f.bulkAnswers, BULK);
      assertEquals(f.bulkElements, BULK);
      assertLess(f.nftStarts, 3);
      assertEquals(f.nftLeft, 0);
      assertEquals(f.rawElements, 100_000);
      assertEquals(f.rawProcesses, 1);
      assertEquals(f.untouched, 0); // a name without a rule adds nothing
    } finally {
      await exec(["ip", "netns", "del", ns]);
    }
  },
});
