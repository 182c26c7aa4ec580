import { assert, assertEquals } from "../tests/helpers/assert.ts";
import { buildQuery } from "../tests/helpers/dns_client.ts";
import { parseSmartdnsConf } from "../config/smartdns_conf.ts";
import { encodePacket } from "../dns/packet.ts";
import { StoredAnswer } from "../dns/stored_answer.ts";
import { Rcode, scanResponse } from "../dns/wire.ts";
import { AnswerCache } from "./answer_cache.ts";
import { CacheStage } from "./cache_stage.ts";
import { parseContext, type QueryContext } from "./query_context.ts";
import { RuleSet } from "./rule_set.ts";
import { RulesStage } from "./rules_stage.ts";
import { chain } from "./stage.ts";

const policy = { rrTtl: 0, rrTtlMin: 0, rrTtlMax: 0 };

/** An upstream stand-in answering every A question with 192.0.2.1, counting the questions. */
function upstream(asked: string[]) {
  return {
    resolve(ctx: QueryContext) {
      asked.push(ctx.name);
      const wire = encodePacket({
        type: "response",
        id: 0,
        flags: 0x8180,
        questions: [{ name: ctx.name, type: "A", class: "IN" }],
        answers: [{ name: ctx.name, type: "A", ttl: 300, data: "192.0.2.1" }],
      });
      return Promise.resolve(StoredAnswer.fromResponse(wire, scanResponse(wire)!, policy, Date.now()));
    },
  };
}

/** A rules stage from smartdns.conf rule lines, counting its lookups. */
function rulesOf(lines: string, lookups: { n: number }): RulesStage {
  const config = parseSmartdnsConf(`server 9.9.9.9\n${lines}`, "/etc/smartdns.conf");
  const set = new RuleSet(config.rules, { groupIndex: () => -1, ttl: config.cache, warn: () => {} });
  const judge = set.judge.bind(set);
  set.judge = (wire, qtype) => (lookups.n++, judge(wire, qtype));
  return new RulesStage([set], 60);
}

Deno.test("a cache hit needs no rule lookup; after the rules change, the first hit asks them again", async () => {
  const asked: string[] = [];
  const lookups = { n: 0 };
  const cache = new CacheStage(new AnswerCache(100));
  let rules = rulesOf("address /other.example/#", lookups);
  cache.rules = rules;
  let resolve = chain([cache, rules], upstream(asked));
  const q = () => parseContext(buildQuery("x.example", "A"));
  await resolve(q());
  assertEquals(lookups.n, 1, "the miss went through the rules");
  for (let i = 0; i < 5; i++) assert(!((resolve(q())) instanceof Promise), "hits are synchronous");
  assertEquals(lookups.n, 1, "hits did not look the rules up");
  // A reload now blocks the cached name: the cached answer must not be served.
  rules = rulesOf("address /x.example/#", lookups);
  cache.rules = rules;
  resolve = chain([cache, rules], upstream(asked));
  const blocked = await resolve(q());
  assertEquals(blocked.rcode, Rcode.NXDOMAIN);
  // Rules that still send it upstream: the entry is re-tagged once and served again without lookups.
  rules = rulesOf("address /y.example/#", lookups);
  cache.rules = rules;
  resolve = chain([cache, rules], upstream(asked));
  const before = lookups.n;
  const again = resolve(q());
  assert(!(again instanceof Promise), "still a hit");
  assertEquals(again.rcode, Rcode.NOERROR);
  resolve(q());
  assertEquals(lookups.n, before + 1, "asked once after the change, then not again");
  assertEquals(asked, ["x.example"], "the upstream was asked once");
});
