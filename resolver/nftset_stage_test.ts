import { assert, assertEquals } from "../tests/helpers/assert.ts";
import { buildQuery } from "../tests/helpers/dns_client.ts";
import { parseSmartdnsConf } from "../config/smartdns_conf.ts";
import type { NftSetTarget } from "../config/schema.ts";
import { encodePacket } from "../dns/packet.ts";
import { StoredAnswer } from "../dns/stored_answer.ts";
import { scanResponse } from "../dns/wire.ts";
import type { NftBatcher } from "../ops/nft_batch.ts";
import { addAddresses, ipv6Text, NftsetStage } from "./nftset_stage.ts";
import { parseContext, type QueryContext, Reason } from "./query_context.ts";
import { RuleSet } from "./rule_set.ts";

function ruleSet(text: string): RuleSet {
  const config = parseSmartdnsConf(`server 9.9.9.9\n${text}`, "/etc/smartdns.conf");
  return new RuleSet(config.rules, { groupIndex: () => -1, ttl: config.cache, warn: () => {} });
}

const RULES = "nftset /a.test/#4:inet#t#s4,#6:inet#t#s6\n" +
  "nftset /no6.a.test/#6:-\n" +
  "nftset /off.a.test/-\n" +
  "ipset /b.test/gfw\n" +
  "address /local.test/192.0.2.9\n" +
  "nftset /local.test/#4:inet#t#s4\n";

Deno.test("verdicts carry the set of the question's family; exemptions; one object per set", () => {
  const set = ruleSet(RULES);
  assert(set.hasNftset);
  const s4 = set.judgeName("www.a.test", 1).nftset!;
  assertEquals(s4, { family: "inet", table: "t", set: "s4" });
  assertEquals(set.judgeName("a.test", 28).nftset, { family: "inet", table: "t", set: "s6" });
  assertEquals(set.judgeName("a.test", 15).nftset, undefined);
  assertEquals(set.judgeName("no6.a.test", 28).nftset, undefined);
  assert(set.judgeName("no6.a.test", 1).nftset === s4);
  assertEquals(set.judgeName("x.off.a.test", 1).nftset, undefined);
  assertEquals(set.judgeName("b.test", 28).nftset, { family: "inet", table: "fw4", set: "gfw" });
  assertEquals(set.judgeName("c.test", 1).nftset, undefined);
  assert(set.judgeName("local.test", 1).nftset === s4);
  assert(set.judgeName("local.test", 1).answer !== undefined);
  assertEquals(ruleSet("address /x.test/#").hasNftset, false);
});

Deno.test("addAddresses reads the answer section's records of the question's type; IPv6 text", () => {
  const wire = encodePacket({
    type: "response",
    id: 1,
    flags: 0x8180,
    questions: [{ name: "a.test", type: "A", class: "IN" }],
    answers: [
      { name: "a.test", type: "CNAME", ttl: 50, data: "cdn.test" },
      { name: "cdn.test", type: "A", ttl: 30, data: "192.0.2.1" },
      { name: "cdn.test", type: "A", ttl: 40, data: "192.0.2.2" },
    ],
    additionals: [{ name: "x.test", type: "A", ttl: 9, data: "198.51.100.1" }],
  });
  const got: [string, number][] = [];
  assertEquals(addAddresses(wire, 1, (ip, ttl) => got.push([ip, ttl])), 2);
  assertEquals(got, [["192.0.2.1", 30], ["192.0.2.2", 40]]);
  assertEquals(addAddresses(wire, 28, () => {}), 0);
  const v6 = (s: string) => {
    const b = new Uint8Array(16);
    const groups = s.split(":").map((g) => parseInt(g, 16));
    groups.forEach((g, i) => (b[2 * i] = g >> 8, b[2 * i + 1] = g & 0xff));
    return ipv6Text(b, 0);
  };
  assertEquals(v6("2001:db8:0:0:0:0:0:1"), "2001:db8::1");
  assertEquals(v6("0:0:0:0:0:0:0:0"), "::");
  assertEquals(v6("2001:db8:0:1:0:0:0:1"), "2001:db8:0:1::1");
  assertEquals(v6("2001:db8:1:2:3:4:0:1"), "2001:db8:1:2:3:4:0:1");
  assertEquals(v6("fe80:0:0:0:1:0:0:0"), "fe80::1:0:0:0");
});

/** A batcher that records what it is given. */
function fakeBatcher() {
  const added: [string, string, number][] = [];
  let settles = 0;
  const batcher = {
    add: (set: NftSetTarget, ip: string, timeout: number) => added.push([set.set, ip, timeout]),
    settled: () => (settles++, Promise.resolve()),
  } as unknown as NftBatcher;
  return { batcher, added, settles: () => settles };
}

function upstreamAnswer(
  name: string,
  type: "A" | "AAAA",
  data: string[],
  ttl: number,
  now: number,
): StoredAnswer {
  const wire = encodePacket({
    type: "response",
    id: 1,
    flags: 0x8180,
    questions: [{ name, type, class: "IN" }],
    answers: data.map((d) => ({ name, type, ttl, data: d })),
  });
  return StoredAnswer.fromResponse(wire, scanResponse(wire)!, { rrTtl: 0, rrTtlMin: 0, rrTtlMax: 0 }, now);
}

Deno.test("the stage adds new answers (and waits), re-adds cache hits once per refresh, skips other names", async () => {
  let now = 1_000_000;
  const { batcher, added, settles } = fakeBatcher();
  const stage = new NftsetStage(ruleSet(RULES), batcher, { timeout: true, refresh: 10_000, now: () => now });
  let stored = upstreamAnswer("www.a.test", "A", ["192.0.2.1", "192.0.2.2"], 300, now);
  let hit = false;
  const next = (ctx: QueryContext) => {
    if (hit) ctx.reason = Reason.CACHE;
    return hit ? stored : Promise.resolve(stored);
  };
  const q = (name: string, type = "A") => parseContext(buildQuery(name, type));
  // A miss: added with the TTL as timeout, and the answer waits for the batch.
  assert((await stage.resolve(q("www.a.test"), next)) === stored);
  assertEquals(added, [["s4", "192.0.2.1", 300], ["s4", "192.0.2.2", 300]]);
  assertEquals(settles(), 1);
  // Cache hits within the refresh time add nothing; after it, they re-add (without waiting).
  hit = true;
  now += 5_000;
  assert(stage.resolve(q("www.a.test"), next) === stored);
  assertEquals(added.length, 2);
  now += 6_000;
  assert(stage.resolve(q("www.a.test"), next) === stored);
  assertEquals(added.slice(2), [["s4", "192.0.2.1", 289], ["s4", "192.0.2.2", 289]]);
  assertEquals(settles(), 1);
  assertEquals(stage.counters, { answers: 2, readds: 1, skipped: 1 });
  // A new answer for the name is added at once.
  hit = false;
  stored = upstreamAnswer("www.a.test", "A", ["192.0.2.3"], 0, now);
  await stage.resolve(q("www.a.test"), next);
  assertEquals(added.slice(4), [["s4", "192.0.2.3", 1]]); // TTL 0: the shortest timeout, 1 s
  // Names without a set rule pass straight through, answer untouched and nothing added.
  hit = true;
  assert(stage.resolve(q("c.test"), next) === stored);
  assert(stage.resolve(q("off.a.test"), next) === stored);
  assertEquals(added.length, 5);
});

Deno.test("timeouts off: elements without timeout; local answers of a rule name are added too", () => {
  const { batcher, added } = fakeBatcher();
  const rules = ruleSet(RULES);
  const stage = new NftsetStage(rules, batcher, { timeout: false });
  const ctx = parseContext(buildQuery("local.test", "A"));
  const next = (c: QueryContext) => rules.judge(c.wire, c.qtype).answer!;
  stage.resolve(ctx, next);
  assertEquals(added, [["s4", "192.0.2.9", 0]]);
});
