import { assert, assertEquals } from "../tests/helpers/assert.ts";
import { buildQuery } from "../tests/helpers/dns_client.ts";
import { convertToToml } from "../config/convert.ts";
import { parseSmartdnsConf } from "../config/smartdns_conf.ts";
import { parseTomlConfig } from "../config/toml.ts";
import { messageProblem } from "../dns/message_check.ts";
import { svcbRdata } from "../dns/svcb.ts";
import { scanResponse } from "../dns/wire.ts";
import { designatedResolvers } from "./designated_resolvers.ts";
import { parseContext } from "./query_context.ts";
import { RuleSet } from "./rule_set.ts";

const CONF = `server 9.9.9.9
bind :53 -ddr
bind-tls 192.0.2.53:853 -ddr
bind-https [::]:443 -ddr
bind-tls [2001:db8::53]:8853 -ddr
bind-tls 127.0.0.1:854
`;

Deno.test("DDR: the encrypted listeners marked -ddr, in order, with their port, ALPN, hint and DoH path", () => {
  const config = parseSmartdnsConf(CONF, "/etc/smartdns.conf");
  assertEquals(designatedResolvers(config.server.binds), [
    { priority: 1, target: ".", alpn: ["dot"], port: 853, ipv4hint: ["192.0.2.53"], ipv6hint: [] },
    {
      priority: 2,
      target: ".",
      alpn: ["h2", "http/1.1"],
      port: 443,
      ipv4hint: [],
      ipv6hint: [],
      dohpath: "/dns-query{?dns}",
    },
    { priority: 3, target: ".", alpn: ["dot"], port: 8853, ipv4hint: [], ipv6hint: ["2001:db8::53"] },
  ]);
  assertEquals(designatedResolvers(parseSmartdnsConf("bind-tls :853\n", "/x.conf").server.binds), []);
});

Deno.test('DDR: keeldns.toml flags = ["ddr"], and convert keeps -ddr', () => {
  const config = parseSmartdnsConf(CONF, "/etc/smartdns.conf");
  const toml = convertToToml(config);
  assert(/flags = \["ddr"\]/.test(toml), toml);
  const back = parseTomlConfig(toml, "/etc/keeldns.toml");
  assertEquals(designatedResolvers(back.server.binds), designatedResolvers(config.server.binds));
});

Deno.test('DDR: a keeldns.toml DoQ listener with flags = ["ddr"] is advertised with alpn "doq"', () => {
  const config = parseTomlConfig(
    `[[server.listen]]
address = "quic://192.0.2.53"
flags = ["ddr"]

[[server.listen]]
address = "quic://[::]:8853"

[[upstream]]
address = "udp://9.9.9.9"
`,
    "/etc/keeldns.toml",
  );
  assertEquals(designatedResolvers(config.server.binds), [
    { priority: 1, target: ".", alpn: ["doq"], port: 853, ipv4hint: ["192.0.2.53"], ipv6hint: [] },
  ]);
});

Deno.test("DDR: SVCB rdata in RFC 9460 wire form, keys in order, dohpath last", () => {
  const dot = svcbRdata({
    priority: 1,
    target: ".",
    alpn: ["dot"],
    port: 853,
    ipv4hint: ["192.0.2.53"],
    ipv6hint: [],
  });
  assertEquals([...dot], [
    0,
    1,
    0,
    0,
    1,
    0,
    4,
    3,
    100,
    111,
    116,
    0,
    3,
    0,
    2,
    3,
    85,
    0,
    4,
    0,
    4,
    192,
    0,
    2,
    53,
  ]);
  const doh = svcbRdata({
    priority: 2,
    target: ".",
    alpn: ["h2"],
    port: 443,
    ipv4hint: [],
    ipv6hint: ["::1"],
    dohpath: "/q{?dns}",
  });
  assertEquals([...doh.subarray(0, 14)], [0, 2, 0, 0, 1, 0, 3, 2, 104, 50, 0, 3, 0, 2]);
  assertEquals([...doh.subarray(16, 20)], [0, 6, 0, 16], "ipv6hint");
  assertEquals([...doh.subarray(36, 40)], [0, 7, 0, 8], "dohpath");
  assertEquals(new TextDecoder().decode(doh.subarray(40)), "/q{?dns}");
});

function ask(set: RuleSet, name: string, qtype: number) {
  const wire = buildQuery(name, "A", { id: 9 });
  wire[wire.length - 3] = qtype;
  const q = parseContext(wire);
  return { q, v: set.judge(q.wire, q.qtype) };
}

Deno.test("DDR: the rules answer _dns.resolver.arpa SVCB with one record each; nothing else, nothing without", () => {
  const config = parseSmartdnsConf(CONF, "/etc/smartdns.conf");
  const options = { groupIndex: () => -1, ttl: config.cache, warn: () => {} };
  const set = new RuleSet(config.rules, {
    ...options,
    designatedResolvers: designatedResolvers(config.server.binds),
  });
  const { q, v } = ask(set, "_dns.Resolver.arpa", 64);
  assert(v.answer, "answered locally");
  const out = v.answer.render(q, Date.now(), 65535);
  assertEquals(messageProblem(out), null);
  assertEquals(scanResponse(out)?.answerCount, 3);
  assertEquals(out[3] & 0x0f, 0, "NOERROR");
  assert(!ask(set, "_dns.resolver.arpa", 1).v.answer, "A goes on");
  assert(!ask(set, "x._dns.resolver.arpa", 64).v.answer, "a name below goes on");
  assert(!ask(set, "resolver.arpa", 64).v.answer, "the name above goes on");
  const none = new RuleSet(config.rules, { ...options, designatedResolvers: [] });
  assert(none.empty, "no DDR listener: no rule at all");
});
