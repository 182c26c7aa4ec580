import { assertEquals, assertMatch, assertThrows } from "../../tests/helpers/assert.ts";
import { convertToToml } from "../convert.ts";
import type { ConfigError } from "../errors.ts";
import { parseSmartdnsConf } from "../smartdns_conf.ts";
import { parseTomlConfig } from "../toml.ts";
import { nftsetText, parseIpsetSpec, parseNftsetSpec } from "./nftset.ts";

const conf = (text: string) => parseSmartdnsConf(`server 9.9.9.9\n${text}`, "/etc/smartdns.conf");
const t4 = { family: "inet", table: "t", set: "s4" };
const t6 = { family: "ip6", table: "t6", set: "s6" };

Deno.test("nftset values: #4/#6 targets, per-family and total exemptions, mistakes refused", () => {
  assertEquals(parseNftsetSpec("#4:inet#t#s4,#6:ip6#t6#s6"), { v4: t4, v6: t6 });
  assertEquals(parseNftsetSpec("#6:ip6#t6#s6"), { v6: t6 });
  assertEquals(parseNftsetSpec("-"), { v4: "-", v6: "-" });
  assertEquals(parseNftsetSpec("#4:-,#6:ip6#t6#s6"), { v4: "-", v6: t6 });
  assertThrows(() => parseNftsetSpec("inet#t#s"), /must start with #4: or #6:/);
  assertThrows(() => parseNftsetSpec("#4:inet#t"), /is not family#table#set/);
  assertThrows(() => parseNftsetSpec("#4:arp#t#s"), /not an nftables family/);
  assertThrows(() => parseNftsetSpec("#4:ip6#t#s"), /ip6 table holds no IPv4/);
  assertThrows(() => parseNftsetSpec("#6:ip#t#s"), /ip table holds no IPv6/);
  assertThrows(() => parseNftsetSpec("#4:inet#t#s{1}"), /not an nftables name/);
  assertThrows(() => parseNftsetSpec(""), /missing/);
  assertEquals(nftsetText({ v4: t4, v6: "-" }), "#4:inet#t#s4,#6:-");
  assertEquals(nftsetText({ v4: "-", v6: "-" }), "-");
});

Deno.test("ipset maps onto nftables: NAME is set NAME in table inet fw4, for both families", () => {
  const fw4 = (set: string) => ({ family: "inet", table: "fw4", set });
  assertEquals(parseIpsetSpec("gfw"), { v4: fw4("gfw"), v6: fw4("gfw") });
  assertEquals(parseIpsetSpec("#4:a4,#6:a6"), { v4: fw4("a4"), v6: fw4("a6") });
  assertEquals(parseIpsetSpec("#6:-"), { v6: "-" });
  assertEquals(parseIpsetSpec("-"), { v4: "-", v6: "-" });
});

Deno.test("nftset, ipset, domain-rules -nftset/-ipset, the switches and -no-speed in smartdns.conf", () => {
  const c = conf(
    "nftset /a.test/b.test/#4:inet#t#s4,#6:ip6#t6#s6\n" +
      "ipset /c.test/gfw\n" +
      "nftset /x.a.test/-\n" +
      "domain-rules /d.test/ -nftset #4:inet#t#s4 -ipset #6:six -address -\n" +
      "domain-rules /e.test/ -t #6:ip6#t6#s6 -p #4:four\n" +
      "nftset-timeout yes\n" +
      "nftset-debug yes\n" +
      "nftset-no-speed #4:inet#t#slow\n",
  );
  const sets = c.rules.domainRules.map((r) => [r.domains, r.nftset]);
  assertEquals(sets, [
    [["a.test", "b.test"], { v4: t4, v6: t6 }],
    [["c.test"], {
      v4: { family: "inet", table: "fw4", set: "gfw" },
      v6: { family: "inet", table: "fw4", set: "gfw" },
    }],
    [["x.a.test"], { v4: "-", v6: "-" }],
    [["d.test"], { v4: t4, v6: { family: "inet", table: "fw4", set: "six" } }],
    [["e.test"], { v6: t6, v4: { family: "inet", table: "fw4", set: "four" } }],
  ]);
  assertEquals(c.rules.nftsetTimeout, true);
  assertEquals(c.rules.nftsetDebug, true);
  assertEquals(c.rules.nftsetNoSpeed, { v4: { family: "inet", table: "t", set: "slow" } });
  assertEquals(c.unsupported.map((u) => u.name), ["nftset-no-speed"]);
  assertEquals(conf("ipset-timeout yes").rules.nftsetTimeout, true);
  assertEquals(conf("ipset-no-speed slow").rules.nftsetNoSpeed?.v4, {
    family: "inet",
    table: "fw4",
    set: "slow",
  });
});

Deno.test("bad nftset lines are refused with their position; bind -nftset stays refused", () => {
  const e = assertThrows(() => conf("nftset /a.test/#4:inet#t"), /is not family#table#set/) as ConfigError;
  assertMatch(e.message, /\/etc\/smartdns\.conf:2:8/);
  assertThrows(() => conf("domain-rules /a.test/ -nftset inet#t#s"), /must start with #4: or #6:/);
  assertThrows(() => conf("bind :53 -nftset #4:inet#t#s"), /bind -nftset/);
  assertThrows(() => conf("bind :53 -ipset x"), /bind -ipset/);
});

Deno.test("TOML: nftset as SmartDNS text or as { v4, v6 }; the switches in [rules]", () => {
  const c = parseTomlConfig(
    `[[upstream]]\naddress = "9.9.9.9"\n[rules]\nnftset-timeout = true\nnftset-debug = true\n` +
      `[[rule]]\ndomains = ["a.test"]\nnftset = "#4:inet#t#s4,#6:-"\n` +
      `[[rule]]\ndomains = ["b.test"]\nnftset = { v4 = "inet#t#s4", v6 = "ip6#t6#s6" }\n`,
    "/etc/keeldns.toml",
  );
  assertEquals(c.rules.domainRules.map((r) => r.nftset), [{ v4: t4, v6: "-" }, { v4: t4, v6: t6 }]);
  assertEquals([c.rules.nftsetTimeout, c.rules.nftsetDebug], [true, true]);
  const bad = (rule: string) => () =>
    parseTomlConfig(`[[upstream]]\naddress = "9.9.9.9"\n[[rule]]\ndomains = ["a"]\n${rule}\n`, "k.toml");
  assertThrows(bad(`nftset = { v5 = "inet#t#s" }`), /unknown key "v5" in nftset/);
  assertThrows(bad(`nftset = { v6 = "ip#t#s" }`), /ip table holds no IPv6/);
  assertThrows(bad(`nftset = 3`), /nftset must be a string/);
});

Deno.test("convert keeps nftset rules and the timeout switch, and TOML reads them back the same", () => {
  const text =
    "server 9.9.9.9\nnftset /a.test/#4:inet#t#s4,#6:ip6#t6#s6\nipset /b.test/-\nnftset-timeout yes\n";
  const toml = convertToToml(parseSmartdnsConf(text, "/etc/smartdns.conf"), text);
  assertMatch(toml, /nftset = "#4:inet#t#s4,#6:ip6#t6#s6"/);
  assertMatch(toml, /nftset-timeout = true/);
  const back = parseTomlConfig(toml, "/etc/keeldns.toml");
  assertEquals(back.rules.domainRules.map((r) => r.nftset), [{ v4: t4, v6: t6 }, { v4: "-", v6: "-" }]);
  assertEquals(back.rules.nftsetTimeout, true);
});
