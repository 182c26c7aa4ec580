import { assert, assertEquals } from "../tests/helpers/assert.ts";
import { buildQuery, decodeReply } from "../tests/helpers/dns_client.ts";
import { parseSmartdnsConf } from "../config/smartdns_conf.ts";
import { encodePacket } from "../dns/packet.ts";
import { Rcode } from "../dns/wire.ts";
import type { Question } from "../dns/wire.ts";
import type { Upstream } from "../upstream/upstream.ts";
import { AnswerFilter } from "./answer_filter.ts";
import { parseContext } from "./query_context.ts";
import { NEGATIVE_WAIT_MS, UpstreamRace } from "./upstream_race.ts";

const policy = { rrTtl: 0, rrTtlMin: 0, rrTtlMax: 0 };

/** An answer for `q` with these addresses (or NXDOMAIN when `ips` is "nx"). */
function reply(q: Question, ips: string[] | "nx"): Uint8Array {
  return encodePacket({
    type: "response",
    id: 0,
    flags: 0x8180 | (ips === "nx" ? 3 : 0),
    questions: [{ name: q.name, type: "A", class: "IN" }],
    answers: ips === "nx" ? [] : ips.map((ip) => ({ name: q.name, type: "A" as const, ttl: 60, data: ip })),
  });
}

/** An upstream answering `ips` after `delay` ms. */
function server(name: string, delay: number, ips: string[] | "nx"): Upstream {
  return {
    address: name,
    close() {},
    exchange: (q, cancel) =>
      new Promise((resolve, reject) => {
        const t = setTimeout(() => resolve(reply(q, ips)), delay);
        cancel.listen(() => (clearTimeout(t), reject(new Error("aborted"))));
      }),
  };
}

function filterOf(text: string, files: Record<string, string> = {}) {
  const config = parseSmartdnsConf(`server 9.9.9.9\n${text}`, "/etc/smartdns.conf");
  const warnings: string[] = [];
  const filter = new AnswerFilter(config.rules.ipRules, config.rules.ipSets, (m) => warnings.push(m), (p) => {
    if (!(p in files)) throw new Deno.errors.NotFound(p);
    return files[p];
  });
  return { filter, warnings };
}

async function race(
  filter: AnswerFilter,
  servers: [Upstream, { blacklistIp?: boolean; whitelistIp?: boolean }][],
) {
  const r = new UpstreamRace(servers.map(([u]) => u), policy, 2000, () => {}, 0, {
    filter,
    flagsOf: (u) => servers.find(([s]) => s === u)![1],
  });
  const q = parseContext(buildQuery("x.test", "A"));
  const answer = await r.resolve(q);
  return { reply: decodeReply(answer.render(q, Date.now(), 65535)), counters: r.counters };
}

Deno.test("ignore-ip refuses an answer and the race takes another server's", async () => {
  const { filter } = filterOf("ignore-ip 203.0.113.0/24");
  const { reply, counters } = await race(filter, [
    [server("hijacked", 1, ["203.0.113.9"]), {}],
    [server("honest", 30, ["192.0.2.1"]), {}],
  ]);
  assertEquals(reply.answers.map((a) => a.data), ["192.0.2.1"]);
  assertEquals(counters.filteredAnswers, 1);
});

Deno.test("bogus-nxdomain turns an answer holding the address into NXDOMAIN with an SOA", async () => {
  const { filter } = filterOf("bogus-nxdomain 198.51.100.1");
  const { reply, counters } = await race(filter, [[server("isp", 1, ["198.51.100.1"]), {}]]);
  assertEquals([reply.rcode, reply.answers.length, reply.authorities[0].type], ["NXDOMAIN", 0, "SOA"]);
  assertEquals(counters.bogusAnswers, 1);
});

Deno.test("blacklist-ip and whitelist-ip apply only to servers marked with them", async () => {
  const { filter } = filterOf("blacklist-ip 203.0.113.0/24\nwhitelist-ip 192.0.2.0/24");
  const black = await race(filter, [
    [server("marked", 1, ["203.0.113.5"]), { blacklistIp: true }],
    [server("other", 30, ["203.0.113.6"]), {}],
  ]);
  assertEquals(
    black.reply.answers.map((a) => a.data),
    ["203.0.113.6"],
    "the unmarked server's answer is kept",
  );
  const white = await race(filter, [
    [server("marked", 1, ["198.51.100.7"]), { whitelistIp: true }],
    [server("marked-ok", 30, ["192.0.2.8"]), { whitelistIp: true }],
  ]);
  assertEquals(white.reply.answers.map((a) => a.data), ["192.0.2.8"]);
});

Deno.test("ip-alias replaces the matching addresses; ip-rules and ip-set lists combine", async () => {
  const { filter, warnings } = filterOf(
    "ip-set -name cdn -file /etc/cdn.txt\nip-rules ip-set:cdn -ip-alias 192.0.2.100,192.0.2.101\nip-set -name gone -file /etc/gone.txt\nip-rules ip-set:gone -ignore-ip",
    { "/etc/cdn.txt": "# CDN\n203.0.113.0/24\nnot-a-cidr\n" },
  );
  const { reply } = await race(filter, [[
    server("cdn", 1, ["203.0.113.1", "203.0.113.2", "192.0.2.50"]),
    {},
  ]]);
  assertEquals(reply.answers.map((a) => a.data), ["192.0.2.100", "192.0.2.101", "192.0.2.50"]);
  assertEquals(warnings.length, 2);
  assert(warnings[0].includes("/etc/cdn.txt:3:1"), warnings[0]);
});

Deno.test("a fast NXDOMAIN loses to a positive answer arriving within the wait, not after it", async () => {
  const empty = new AnswerFilter([], [], () => {});
  const soon = await race(empty, [[server("nx", 1, "nx"), {}], [server("slower", 40, ["192.0.2.1"]), {}]]);
  assertEquals(soon.reply.answers.map((a) => a.data), ["192.0.2.1"]);
  assertEquals(soon.counters.negativeOvertaken, 1);
  const late = await race(empty, [
    [server("nx", 1, "nx"), {}],
    [server("too-slow", NEGATIVE_WAIT_MS + 200, ["192.0.2.1"]), {}],
  ]);
  assertEquals(late.reply.rcode, "NXDOMAIN");
  assertEquals(Rcode.NXDOMAIN, 3);
});
