/**
 * End to end: domain rules in the real keeldns (guardian + child) — address, nameserver groups,
 * cname, srv-record, txt-record, domain-rules, domain-set (plain, hosts, adblock), hosts-file,
 * expand-ptr-from-address, force-AAAA-SOA, force-qtype-SOA, wildcards and IDN — with two fake
 * upstreams (the default group and "office") that record what they are asked, so a blocked or
 * local name is shown never to leave keeldns and a routed name to reach its group's server. Also
 * list problems in the log and in `keeldns check`, an unknown domain-set refused, reloads, and the
 * same rules written in TOML answering the same.
 */
import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { buildQuery, tcpQuery, type TestReply, udpExchangeRaw, udpQuery } from "./helpers/dns_client.ts";
import { decodeReply } from "./helpers/dns_client.ts";
import { type FakeScript, FakeUpstream } from "./helpers/fake_upstream.ts";
import { KeeldnsProcess, runKeeldns } from "./helpers/keeldns_process.ts";

const SOA_RDATA = {
  mname: "a.gtld-servers.net",
  rname: "nstld.verisign-grs.com",
  serial: 1800,
  refresh: 1800,
  retry: 900,
  expire: 604800,
  minimum: 86400,
};

/** The default group answers 192.0.2.1 / 2001:db8::1, the office group 192.0.2.2 / 2001:db8::2. */
function upstreamScript(last: number): FakeScript {
  return (name, type) => {
    if (type === "A") return { answers: [{ name, type: "A", ttl: 300, data: `192.0.2.${last}` }] };
    if (type === "AAAA") return { answers: [{ name, type: "AAAA", ttl: 300, data: `2001:db8::${last}` }] };
    return {};
  };
}

/** The list files the rules use, written into `dir`. */
async function writeLists(dir: string): Promise<void> {
  await Deno.writeTextFile(`${dir}/plain.list`, "# plain list\nwww.plain.test\nplain2.test\n");
  await Deno.writeTextFile(`${dir}/hosts.list`, "0.0.0.0 hosts1.test\n127.0.0.1 hosts2.test hosts2b.test\n");
  await Deno.writeTextFile(
    `${dir}/ad.list`,
    "[Adblock Plus 2.0]\n! title: test\n||ad1.test^\n||ad2.test^\n@@||ok.ad2.test^\n",
  );
  await Deno.writeTextFile(
    `${dir}/hosts`,
    "# hosts\n192.0.2.60 h.test hh.test\n2001:db8::60 h.test\n127.0.0.1 localhost\n",
  );
}

/** The smartdns.conf under test; `{port}` is filled in by KeeldnsProcess. */
function smartdnsConf(dir: string, def: number, office: number): string {
  return `bind 127.0.0.1:{port}
bind-tcp 127.0.0.1:{port}
server 127.0.0.1:${def}
server 127.0.0.1:${office} -group office -exclude-default-group
log-level info
address /multi.test/192.0.2.10,192.0.2.11
address /multi.test/2001:db8::10
address /v4.test/192.0.2.20
address /block.test/#
address /ok.block.test/-
address /ok6.block.test/-6
address /b4.test/#4
address /b6.test/#6
nameserver /office.test/office
nameserver /public.office.test/-
cname /alias.test/target.test
cname /alias-blocked.test/block.test
cname /alias-local.test/v4.test
srv-record /_sip._tcp.srv.test/sip.srv.test,5060,10,20
srv-record /_sip._tcp.srv.test/sip2.srv.test,5061,30,40
srv-record /_x._tcp.srv.test/x.srv.test,5062
txt-record /txt.test/v=spf1
txt-record /txt.test/second-line
domain-rules /dr.test/ -a 192.0.2.40 -n office
domain-rules /drb.test/ -a #
domain-set -name plain -file ${dir}/plain.list
domain-set -name hostsfmt -file ${dir}/hosts.list
domain-set -name ad -file ${dir}/ad.list
address /domain-set:plain/#
nameserver /domain-set:hostsfmt/office
address /domain-set:ad/#
hosts-file ${dir}/hosts
expand-ptr-from-address yes
address /ptr.test/192.0.2.70
force-qtype-SOA 65
address /*wild.test/192.0.2.50
address /*.sub.test/192.0.2.51
address /-.root.test/192.0.2.52
address /中国.test/192.0.2.53
`;
}

/** The same rules in keeldns's TOML. */
function tomlConf(dir: string, def: number, office: number): string {
  return `[server]
bind = ["127.0.0.1:{port}"]
[[upstream]]
address = "udp://127.0.0.1:${def}"
[[upstream]]
address = "udp://127.0.0.1:${office}"
groups = ["office"]
exclude-default-group = true
[log]
level = "info"
[rules]
force-qtype-soa = [65]
hosts-files = ["${dir}/hosts"]
expand-ptr-from-address = true
[[domain-set]]
name = "plain"
file = "${dir}/plain.list"
[[domain-set]]
name = "hostsfmt"
file = "${dir}/hosts.list"
[[domain-set]]
name = "ad"
file = "${dir}/ad.list"
[[rule]]
domains = ["multi.test"]
address = ["192.0.2.10", "192.0.2.11"]
[[rule]]
domains = ["multi.test"]
address = ["2001:db8::10"]
[[rule]]
domains = ["v4.test"]
address = "192.0.2.20"
[[rule]]
domains = ["block.test", "domain-set:plain", "domain-set:ad"]
address = "#"
[[rule]]
domains = ["ok.block.test"]
address = "-"
[[rule]]
domains = ["ok6.block.test"]
address = "-6"
[[rule]]
domains = ["b4.test"]
address = "#4"
[[rule]]
domains = ["b6.test"]
address = "#6"
[[rule]]
domains = ["office.test", "domain-set:hostsfmt"]
nameserver = "office"
[[rule]]
domains = ["public.office.test"]
nameserver = "-"
[[rule]]
domains = ["alias.test"]
cname = "target.test"
[[rule]]
domains = ["alias-blocked.test"]
cname = "block.test"
[[rule]]
domains = ["alias-local.test"]
cname = "v4.test"
[[rule]]
domains = ["_sip._tcp.srv.test"]
srv = ["sip.srv.test,5060,10,20", "sip2.srv.test,5061,30,40"]
[[rule]]
domains = ["_x._tcp.srv.test"]
srv = ["x.srv.test,5062"]
[[rule]]
domains = ["txt.test"]
txt = ["v=spf1", "second-line"]
[[rule]]
domains = ["dr.test"]
address = "192.0.2.40"
nameserver = "office"
[[rule]]
domains = ["drb.test"]
address = "#"
[[rule]]
domains = ["ptr.test"]
address = "192.0.2.70"
[[rule]]
domains = ["*wild.test"]
address = "192.0.2.50"
[[rule]]
domains = ["*.sub.test"]
address = "192.0.2.51"
[[rule]]
domains = ["-.root.test"]
address = "192.0.2.52"
[[rule]]
domains = ["中国.test"]
address = "192.0.2.53"
`;
}

/** A type-65 (HTTPS) query: dns-packet does not know the type, so the bytes are patched. */
function httpsQuery(name: string): Uint8Array {
  const wire = buildQuery(name, "A");
  wire[wire.length - 4] = 0;
  wire[wire.length - 3] = 65;
  return wire;
}

async function httpsUdp(port: number, name: string): Promise<TestReply> {
  const raw = await udpExchangeRaw(port, httpsQuery(name), 3000);
  if (!raw) throw new Error(`no answer for ${name} HTTPS`);
  return decodeReply(raw);
}

/** rcode, answer records (type and data, sorted) and whether the authority holds an SOA. */
function shape(r: TestReply): string {
  const data = (d: unknown): string => {
    if (d instanceof Uint8Array) return new TextDecoder().decode(d);
    if (Array.isArray(d)) return d.map(data).join("|");
    if (typeof d === "object" && d !== null) return JSON.stringify(d);
    return String(d);
  };
  const answers = r.answers.map((a) => `${a.name} ${a.type} ${data(a.data)}`).sort();
  const soa = r.authorities.some((a) => a.type === "SOA") ? "SOA" : "no SOA";
  return [r.rcode, soa, ...answers].join("\n");
}

/** Asserts `r` is the local SOA answer (given rcode, no answers, SOA TTL 30 with SmartDNS's rdata). */
function assertSoa(r: TestReply, rcode: string, name: string): void {
  assertEquals(r.rcode, rcode, `${name}: rcode`);
  assertEquals(r.answers.length, 0, `${name}: no answer records`);
  assertEquals(r.authorities.length, 1, `${name}: one authority record`);
  assertEquals(r.authorities[0].type, "SOA");
  assertEquals(r.authorities[0].ttl, 30);
  assertEquals(r.authorities[0].data, SOA_RDATA);
}

function addresses(r: TestReply): string[] {
  return r.answers.map((a) => `${a.type} ${a.data}`).sort();
}

Deno.test({
  name: "domain rules end to end: address, nameserver, cname, srv, txt, sets, hosts, ptr, forced SOA",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const dir = await Deno.makeTempDir({ prefix: "keeldns-rules-" });
    await writeLists(dir);
    const def = await FakeUpstream.start(upstreamScript(1));
    const office = await FakeUpstream.start(upstreamScript(2));
    const k = await KeeldnsProcess.start(smartdnsConf(dir, def.port, office.port), { name: "smartdns.conf" });
    /** Questions for `name` that reached either upstream. */
    const asked = (name: string) => def.count(name) + office.count(name);
    try {
      await t.step("address: several IPs per family, over UDP and TCP; never upstream", async () => {
        for (const query of [udpQuery, tcpQuery]) {
          const a = await query(k.port, "multi.test", "A");
          assertEquals([a.rcode, addresses(a)], ["NOERROR", ["A 192.0.2.10", "A 192.0.2.11"]]);
          const aaaa = await query(k.port, "www.multi.test", "AAAA");
          assertEquals([aaaa.rcode, addresses(aaaa)], ["NOERROR", ["AAAA 2001:db8::10"]]);
        }
        assertEquals(asked("multi.test") + asked("www.multi.test"), 0);
      });
      await t.step("address: an IPv4-only rule answers AAAA empty with an SOA (HEAD)", async () => {
        assertEquals(addresses(await udpQuery(k.port, "v4.test", "A")), ["A 192.0.2.20"]);
        assertSoa(await udpQuery(k.port, "v4.test", "AAAA"), "NOERROR", "v4.test AAAA");
        assertSoa(await tcpQuery(k.port, "v4.test", "AAAA"), "NOERROR", "v4.test AAAA over TCP");
        assertEquals(asked("v4.test"), 0);
      });
      await t.step("address #: NXDOMAIN + SOA for A, AAAA, MX, HTTPS, the name and below", async () => {
        for (const name of ["block.test", "deep.x.block.test"]) {
          assertSoa(await udpQuery(k.port, name, "A"), "NXDOMAIN", `${name} A`);
          assertSoa(await tcpQuery(k.port, name, "AAAA"), "NXDOMAIN", `${name} AAAA`);
          assertSoa(await udpQuery(k.port, name, "MX"), "NXDOMAIN", `${name} MX`);
          assertSoa(await httpsUdp(k.port, name), "NXDOMAIN", `${name} HTTPS`);
          assertEquals(asked(name), 0, `${name} never reaches an upstream`);
        }
      });
      await t.step("address -: a sub-domain exempted from its parent's #; -6 exempts AAAA only", async () => {
        assertEquals(addresses(await udpQuery(k.port, "ok.block.test", "A")), ["A 192.0.2.1"]);
        assertEquals(def.count("ok.block.test"), 1);
        assertEquals(addresses(await udpQuery(k.port, "ok6.block.test", "AAAA")), ["AAAA 2001:db8::1"]);
        assertSoa(await udpQuery(k.port, "ok6.block.test", "A"), "NXDOMAIN", "ok6.block.test A");
        assertEquals(def.log.filter((l) => l.startsWith("ok6.block.test ")).map((l) => l.split(" ")[1]), [
          "AAAA",
        ]);
      });
      await t.step("address #4 / #6: NOERROR + SOA for that family, the other forwarded", async () => {
        assertSoa(await udpQuery(k.port, "b4.test", "A"), "NOERROR", "b4.test A");
        assertEquals(addresses(await udpQuery(k.port, "b4.test", "AAAA")), ["AAAA 2001:db8::1"]);
        assertSoa(await udpQuery(k.port, "b6.test", "AAAA"), "NOERROR", "b6.test AAAA");
        assertEquals(addresses(await udpQuery(k.port, "b6.test", "A")), ["A 192.0.2.1"]);
        assertEquals(
          def.log.filter((l) => /^b[46]\.test /.test(l)).map((l) => l.split(" ").slice(0, 2).join(" ")),
          [
            "b4.test AAAA",
            "b6.test A",
          ],
        );
      });
      await t.step(
        "nameserver: a group's names reach only its server; exclude-default-group; -",
        async () => {
          for (const query of [udpQuery, tcpQuery]) {
            const name = query === udpQuery ? "office.test" : "www.office.test";
            assertEquals(addresses(await query(k.port, name, "A")), ["A 192.0.2.2"]);
            assertEquals([office.count(name), def.count(name)], [1, 0], name);
          }
          assertEquals(addresses(await udpQuery(k.port, "public.office.test", "A")), ["A 192.0.2.1"]);
          assertEquals([def.count("public.office.test"), office.count("public.office.test")], [1, 0]);
          assertEquals(addresses(await udpQuery(k.port, "elsewhere.test", "A")), ["A 192.0.2.1"]);
          assertEquals(
            [def.count("elsewhere.test"), office.count("elsewhere.test")],
            [1, 0],
            "the office server is kept out of the default group",
          );
        },
      );
      await t.step("cname: the CNAME and the target's records; the target is what is asked", async () => {
        const a = await udpQuery(k.port, "alias.test", "A");
        assertEquals(a.rcode, "NOERROR");
        assertEquals(a.answers.map((r) => `${r.name} ${r.type} ${r.data}`), [
          "alias.test CNAME target.test",
          "target.test A 192.0.2.1",
        ]);
        const aaaa = await tcpQuery(k.port, "alias.test", "AAAA");
        assertEquals(aaaa.answers.map((r) => `${r.type} ${r.data}`), [
          "CNAME target.test",
          "AAAA 2001:db8::1",
        ]);
        assertEquals(asked("alias.test"), 0);
        assertEquals(def.count("target.test"), 2);
      });
      await t.step(
        "cname to a blocked target: its NXDOMAIN and SOA; to a local one: its address",
        async () => {
          const blocked = await udpQuery(k.port, "alias-blocked.test", "A");
          assertEquals(blocked.rcode, "NXDOMAIN");
          assertEquals(blocked.answers.map((r) => `${r.type} ${r.data}`), ["CNAME block.test"]);
          assertEquals(blocked.authorities.map((r) => r.type), ["SOA"]);
          const local = await udpQuery(k.port, "alias-local.test", "A");
          assertEquals(local.answers.map((r) => `${r.name} ${r.type} ${r.data}`), [
            "alias-local.test CNAME v4.test",
            "v4.test A 192.0.2.20",
          ]);
          const localAaaa = await udpQuery(k.port, "alias-local.test", "AAAA");
          assertEquals([localAaaa.rcode, localAaaa.answers.map((r) => r.type)], ["NOERROR", ["CNAME"]]);
          assertEquals(localAaaa.authorities.map((r) => r.type), ["SOA"]);
          for (const name of ["alias-blocked.test", "block.test", "alias-local.test", "v4.test"]) {
            assertEquals(asked(name), 0, `${name} never reaches an upstream`);
          }
        },
      );
      await t.step("srv-record: every line's SRV (priority, weight, port, target; defaults 0)", async () => {
        const srv = await udpQuery(k.port, "_sip._tcp.srv.test", "SRV");
        assertEquals(srv.rcode, "NOERROR");
        assertEquals(srv.answers.map((r) => r.data), [
          { priority: 10, weight: 20, port: 5060, target: "sip.srv.test" },
          { priority: 30, weight: 40, port: 5061, target: "sip2.srv.test" },
        ]);
        const defaults = await tcpQuery(k.port, "_x._tcp.srv.test", "SRV");
        assertEquals(defaults.answers.map((r) => r.data), [
          { priority: 0, weight: 0, port: 5062, target: "x.srv.test" },
        ]);
        assertEquals(asked("_sip._tcp.srv.test") + asked("_x._tcp.srv.test"), 0);
      });
      await t.step("txt-record: every line's TXT, answered locally", async () => {
        const txt = await udpQuery(k.port, "txt.test", "TXT");
        assertEquals(txt.answers.map((r) => new TextDecoder().decode((r.data as Uint8Array[])[0])), [
          "v=spf1",
          "second-line",
        ]);
        assertEquals(asked("txt.test"), 0);
      });
      await t.step("domain-rules -a -n: the address answered, the other family routed", async () => {
        assertEquals(addresses(await udpQuery(k.port, "dr.test", "A")), ["A 192.0.2.40"]);
        // Only an IPv4 address: AAAA is answered empty (HEAD), not routed.
        assertSoa(await udpQuery(k.port, "dr.test", "AAAA"), "NOERROR", "dr.test AAAA");
        assertEquals(addresses(await udpQuery(k.port, "dr.test", "MX")), []);
        assertEquals([office.count("dr.test"), def.count("dr.test")], [1, 0], "MX goes to the office group");
        assertSoa(await udpQuery(k.port, "drb.test", "A"), "NXDOMAIN", "drb.test A");
        assertEquals(asked("drb.test"), 0);
      });
      await t.step("domain-set plain: listed names and below blocked, the parent not", async () => {
        assertSoa(await udpQuery(k.port, "www.plain.test", "A"), "NXDOMAIN", "www.plain.test");
        assertSoa(await udpQuery(k.port, "x.plain2.test", "A"), "NXDOMAIN", "x.plain2.test");
        assertEquals(addresses(await udpQuery(k.port, "plain.test", "A")), ["A 192.0.2.1"]);
        assertEquals(asked("www.plain.test") + asked("x.plain2.test"), 0);
      });
      await t.step("domain-set in hosts format, used by a nameserver rule", async () => {
        for (const name of ["hosts1.test", "hosts2.test", "hosts2b.test"]) {
          assertEquals(addresses(await udpQuery(k.port, name, "A")), ["A 192.0.2.2"], name);
          assertEquals([office.count(name), def.count(name)], [1, 0], name);
        }
      });
      await t.step("domain-set in adblock format: ||name^ blocked, @@ exception served", async () => {
        assertSoa(await udpQuery(k.port, "ad1.test", "A"), "NXDOMAIN", "ad1.test");
        assertSoa(await udpQuery(k.port, "x.ad1.test", "AAAA"), "NXDOMAIN", "x.ad1.test");
        assertSoa(await udpQuery(k.port, "ad2.test", "A"), "NXDOMAIN", "ad2.test");
        assertEquals(addresses(await udpQuery(k.port, "ok.ad2.test", "A")), ["A 192.0.2.1"]);
        assertEquals(asked("ad1.test") + asked("x.ad1.test") + asked("ad2.test"), 0);
        assertEquals(def.count("ok.ad2.test"), 1);
      });
      await t.step("hosts-file: names answered with their addresses, PTR with the first name", async () => {
        assertEquals(addresses(await udpQuery(k.port, "h.test", "A")), ["A 192.0.2.60"]);
        assertEquals(addresses(await tcpQuery(k.port, "h.test", "AAAA")), ["AAAA 2001:db8::60"]);
        assertEquals(addresses(await udpQuery(k.port, "hh.test", "A")), ["A 192.0.2.60"]);
        assertSoa(await udpQuery(k.port, "hh.test", "AAAA"), "NOERROR", "hh.test AAAA");
        const ptr = await udpQuery(k.port, "60.2.0.192.in-addr.arpa", "PTR");
        assertEquals(ptr.answers.map((r) => r.data), ["h.test"]);
        const ptr6 = await udpQuery(
          k.port,
          "0.6.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa",
          "PTR",
        );
        assertEquals(ptr6.answers.map((r) => r.data), ["h.test"]);
        assertEquals(asked("h.test") + asked("hh.test") + asked("60.2.0.192.in-addr.arpa"), 0);
        // Only the name itself: a sub-domain of a hosts name is forwarded.
        assertEquals(addresses(await udpQuery(k.port, "x.h.test", "A")), ["A 192.0.2.1"]);
      });
      await t.step("expand-ptr-from-address: PTR of an address rule's IP; other PTRs forwarded", async () => {
        const ptr = await udpQuery(k.port, "70.2.0.192.in-addr.arpa", "PTR");
        assertEquals([ptr.rcode, ptr.answers.map((r) => r.data)], ["NOERROR", ["ptr.test"]]);
        assertEquals(asked("70.2.0.192.in-addr.arpa"), 0);
        await udpQuery(k.port, "71.2.0.192.in-addr.arpa", "PTR");
        assertEquals(def.count("71.2.0.192.in-addr.arpa"), 1);
      });
      await t.step(
        "force-qtype-SOA 65: HTTPS answered NOERROR + SOA locally; A still forwarded",
        async () => {
          assertSoa(await httpsUdp(k.port, "plain-name.test"), "NOERROR", "plain-name.test HTTPS");
          assertEquals(asked("plain-name.test"), 0);
          assertEquals(addresses(await udpQuery(k.port, "plain-name.test", "A")), ["A 192.0.2.1"]);
        },
      );
      await t.step("wildcards: *x.test suffix, *.x.test below only, -.x.test the name only", async () => {
        for (const name of ["wild.test", "awild.test", "x.wild.test"]) {
          assertEquals(addresses(await udpQuery(k.port, name, "A")), ["A 192.0.2.50"], name);
        }
        assertEquals(addresses(await udpQuery(k.port, "a.sub.test", "A")), ["A 192.0.2.51"]);
        assertEquals(addresses(await udpQuery(k.port, "sub.test", "A")), ["A 192.0.2.1"]);
        assertEquals(addresses(await udpQuery(k.port, "root.test", "A")), ["A 192.0.2.52"]);
        assertEquals(addresses(await udpQuery(k.port, "a.root.test", "A")), ["A 192.0.2.1"]);
        assertEquals([def.count("sub.test"), def.count("a.root.test"), asked("awild.test")], [1, 1, 0]);
      });
      await t.step("IDN: a unicode rule matches the punycode query", async () => {
        assertEquals(addresses(await udpQuery(k.port, "xn--fiqs8s.test", "A")), ["A 192.0.2.53"]);
        assertEquals(addresses(await tcpQuery(k.port, "WWW.XN--FIQS8S.test", "A")), ["A 192.0.2.53"]);
        assertEquals(asked("xn--fiqs8s.test"), 0);
      });
      await t.step("the same rules in TOML give the same answers", async () => {
        const toml = await KeeldnsProcess.start(tomlConf(dir, def.port, office.port));
        try {
          const queries: [string, string][] = [
            ["multi.test", "A"],
            ["multi.test", "AAAA"],
            ["v4.test", "AAAA"],
            ["block.test", "MX"],
            ["ok.block.test", "A"],
            ["ok6.block.test", "A"],
            ["b4.test", "A"],
            ["b6.test", "A"],
            ["office.test", "A"],
            ["public.office.test", "A"],
            ["alias.test", "A"],
            ["alias-blocked.test", "A"],
            ["alias-local.test", "A"],
            ["_sip._tcp.srv.test", "SRV"],
            ["_x._tcp.srv.test", "SRV"],
            ["txt.test", "TXT"],
            ["dr.test", "A"],
            ["dr.test", "AAAA"],
            ["drb.test", "A"],
            ["www.plain.test", "A"],
            ["hosts2b.test", "A"],
            ["ad1.test", "A"],
            ["ok.ad2.test", "A"],
            ["h.test", "AAAA"],
            ["60.2.0.192.in-addr.arpa", "PTR"],
            ["70.2.0.192.in-addr.arpa", "PTR"],
            ["awild.test", "A"],
            ["sub.test", "A"],
            ["a.sub.test", "A"],
            ["root.test", "A"],
            ["a.root.test", "A"],
            ["xn--fiqs8s.test", "A"],
          ];
          for (const [name, type] of queries) {
            assertEquals(
              shape(await udpQuery(toml.port, name, type)),
              shape(await udpQuery(k.port, name, type)),
              `${name} ${type}`,
            );
          }
          assertEquals(shape(await httpsUdp(toml.port, "x.test")), shape(await httpsUdp(k.port, "x.test")));
        } finally {
          await toml.stop();
        }
      });
    } finally {
      await k.stop();
      await def.close();
      await office.close();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test({
  name: "force-AAAA-SOA with rr-ttl-min: AAAA answered SOA locally unless a rule gives an IPv6 address",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const def = await FakeUpstream.start(upstreamScript(1));
    const k = await KeeldnsProcess.start(
      `bind 127.0.0.1:{port}
bind-tcp 127.0.0.1:{port}
server 127.0.0.1:${def.port}
rr-ttl-min 600
force-AAAA-SOA yes
address /a.test/192.0.2.9
address /six.test/2001:db8::6
address /free.test/-
`,
      { name: "smartdns.conf" },
    );
    try {
      const a = await udpQuery(k.port, "a.test", "A");
      assertEquals(
        a.answers.map((r) => [r.data, r.ttl]),
        [["192.0.2.9", 600]],
        "local TTL 60 clamped to 600",
      );
      assertSoa(await udpQuery(k.port, "a.test", "AAAA"), "NOERROR", "a.test AAAA");
      assertSoa(await tcpQuery(k.port, "other.test", "AAAA"), "NOERROR", "other.test AAAA");
      assertEquals(def.count("other.test") + def.count("a.test"), 0);
      assertEquals(addresses(await udpQuery(k.port, "other.test", "A")), ["A 192.0.2.1"]);
      // SmartDNS HEAD (src/dns_server/rules.c, _dns_server_pre_process_rule_flags): a rule's own
      // IPv6 address is answered before force-AAAA-SOA, and `address /d/-` exempts the name
      // (test-qtype-soa.cc force_AAAA_SOA_Except).
      assertEquals(addresses(await udpQuery(k.port, "six.test", "AAAA")), ["AAAA 2001:db8::6"]);
      assertEquals(addresses(await udpQuery(k.port, "free.test", "AAAA")), ["AAAA 2001:db8::1"]);
      assertEquals(def.count("free.test"), 1);
    } finally {
      await k.stop();
      await def.close();
    }
  },
});

Deno.test({
  name:
    "list problems: warnings with file:line in the log, check lists them and exits 0; unknown set exits 1",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const dir = await Deno.makeTempDir({ prefix: "keeldns-rules-bad-" });
    const def = await FakeUpstream.start(upstreamScript(1));
    const list = `${dir}/bad.list`;
    await Deno.writeTextFile(list, "good.test\nexa mple.test\nbad!.test\nfine.test\n");
    const conf = `bind 127.0.0.1:{port}
server 127.0.0.1:${def.port}
log-level warn
domain-set -name bad -file ${list}
address /domain-set:bad/#
`;
    try {
      await t.step("the service runs, warns with file:line:col, and the good lines apply", async () => {
        const k = await KeeldnsProcess.start(conf, { name: "smartdns.conf" });
        try {
          await k.waitFor(new RegExp(`${list}:2:5: "exa mple.test" is not a domain name`), 5000);
          await k.waitFor(new RegExp(`${list}:3:4: "bad!.test" is not a domain name`), 5000);
          assertSoa(await udpQuery(k.port, "good.test", "A"), "NXDOMAIN", "good.test");
          assertSoa(await udpQuery(k.port, "fine.test", "A"), "NXDOMAIN", "fine.test");
          assertEquals(addresses(await udpQuery(k.port, "other.test", "A")), ["A 192.0.2.1"]);
        } finally {
          await k.stop();
        }
      });
      await t.step("keeldns check prints each problem with file:line:col and exits 0", async () => {
        await Deno.writeTextFile(`${dir}/smartdns.conf`, conf.replace("{port}", "5399"));
        const r = await runKeeldns(["check", "-c", `${dir}/smartdns.conf`]);
        assertEquals(r.code, 0, r.stdout + r.stderr);
        assertMatch(r.stdout, new RegExp(`${list}:2:5: warning: "exa mple.test" is not a domain name`));
        assertMatch(r.stdout, new RegExp(`${list}:3:4: warning: "bad!.test" is not a domain name`));
        assertMatch(r.stdout, /OK \(smartdns;.* 2 domains in lists\)/);
      });
      await t.step("an unknown domain-set name: check and run exit 1 with file:line:col", async () => {
        const path = `${dir}/unknown.conf`;
        await Deno.writeTextFile(
          path,
          `bind 127.0.0.1:5399\nserver 127.0.0.1:${def.port}\naddress /domain-set:nope/#\n`,
        );
        const check = await runKeeldns(["check", "-c", path]);
        assertEquals(check.code, 1);
        assertMatch(check.stderr, new RegExp(`${path}:3:\\d+: no domain-set named "nope"`));
        const run = await runKeeldns(["run", "-c", path, "-p", `${dir}/k.pid`]);
        assertEquals(run.code, 1);
        assertMatch(run.stderr, new RegExp(`${path}:3:\\d+: no domain-set named "nope"`));
      });
    } finally {
      await def.close();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test({
  name: "reload: a changed list applies (SIGHUP); a bad file is refused (keeldns reload) and the rules stay",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const dir = await Deno.makeTempDir({ prefix: "keeldns-rules-reload-" });
    const def = await FakeUpstream.start(upstreamScript(1));
    const list = `${dir}/block.list`;
    await Deno.writeTextFile(list, "first.test\n");
    const conf = (extra = "") =>
      `bind 127.0.0.1:{port}
server 127.0.0.1:${def.port}
log-level info
local-ttl 77
domain-set -name block -file ${list}
address /domain-set:block/#
address /local.test/192.0.2.77
${extra}`;
    const k = await KeeldnsProcess.start(conf(), { name: "smartdns.conf" });
    const child = k.childPid;
    try {
      await t.step("before: first.test blocked, local-ttl on the local answer", async () => {
        assertSoa(await udpQuery(k.port, "first.test", "A"), "NXDOMAIN", "first.test");
        assertEquals(addresses(await udpQuery(k.port, "second.test", "A")), ["A 192.0.2.1"]);
        const local = await udpQuery(k.port, "local.test", "A");
        assertEquals(local.answers.map((r) => r.ttl), [77]);
      });
      await t.step("SIGHUP with a changed list: the new list applies, no restart", async () => {
        await Deno.writeTextFile(list, "second.test\n");
        const mark = k.lines.length;
        k.signal("SIGHUP");
        await k.waitFor(/reloaded .*smartdns\.conf/, 5000, mark);
        assertSoa(await udpQuery(k.port, "second.test", "A"), "NXDOMAIN", "second.test");
        assertEquals(addresses(await udpQuery(k.port, "first.test", "A")), ["A 192.0.2.1"]);
        assertEquals(k.childPid, child);
      });
      await t.step(
        "keeldns reload with a bad file: exit 1 with file:line:col, the old rules serve",
        async () => {
          await Deno.writeTextFile(
            k.configPath,
            conf("address /domain-set:missing/#\n").replace("{port}", String(k.port)),
          );
          const r = await runKeeldns(["reload", "-p", `${k.dir}/keeldns.pid`]);
          assertEquals(r.code, 1, r.stdout + r.stderr);
          assertMatch(
            r.stdout + r.stderr,
            new RegExp(`${k.configPath}:8:\\d+: no domain-set named "missing"`),
          );
          assertSoa(await udpQuery(k.port, "second.test", "A"), "NXDOMAIN", "second.test still blocked");
          assertEquals(addresses(await udpQuery(k.port, "local.test", "A")), ["A 192.0.2.77"]);
          assertEquals(k.childPid, child);
        },
      );
    } finally {
      await k.stop();
      await def.close();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
    assert(true);
  },
});
