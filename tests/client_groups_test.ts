/**
 * End to end: SmartDNS client groups and bind options in the real keeldns (guardian + child).
 * Clients are told apart on loopback by their source address: the UDP (and TCP) client here binds
 * 127.0.0.2 or 127.0.0.3 (members of group "kids", by `client-rules … -group` and by
 * `group-match -client-ip`) or 127.0.0.1 (the default policy). Three fake upstreams (the default
 * group, "office", "lab") log what they are asked, so a blocked or local name is shown never to
 * leave keeldns and a routed one to reach its group's server.
 *
 * Covered: a group's own rules apply to its clients only; the default rules still apply inside a
 * group; a group rule wins over a default one on the same domain; a group's force-AAAA-SOA and
 * force-qtype-SOA; the cache keeps a group's upstream answer from the default clients; `bind -group`
 * (with a nameserver rule still winning); `-no-rule-addr`, `-no-rule-soa`, `-no-rules`,
 * `-no-rule-nameserver`, `-no-cache`, `-force-aaaa-soa`, each on its own listener; the same in TOML;
 * refused configurations (exit 1 with file:line:col).
 *
 * Every answer passes `assertValidAnswer` (tests/helpers/answer_check.ts).
 */
import dgram from "node:dgram";
import net from "node:net";
import { Buffer } from "node:buffer";
import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { assertValidAnswer } from "./helpers/answer_check.ts";
import { buildQuery, decodeReply, type TestReply } from "./helpers/dns_client.ts";
import { type FakeScript, FakeUpstream } from "./helpers/fake_upstream.ts";
import { freePort, KeeldnsProcess, runKeeldns } from "./helpers/keeldns_process.ts";

/** The default group answers 192.0.2.1 / 2001:db8::1, office .2, lab .3. */
function upstreamScript(last: number): FakeScript {
  return (name, type) => {
    if (type === "A") return { answers: [{ name, type: "A", ttl: 300, data: `192.0.2.${last}` }] };
    if (type === "AAAA") return { answers: [{ name, type: "AAAA", ttl: 300, data: `2001:db8::${last}` }] };
    return {};
  };
}

const DEFAULT_CLIENT = "127.0.0.1";
/** In group kids by `client-rules 127.0.0.2/32 -group kids` (outside the group block). */
const KID = "127.0.0.2";
/** In group kids by `group-match -client-ip 127.0.0.3/32` (inside it). */
const KID_MATCHED = "127.0.0.3";

/** One UDP query from `source`, checked strictly against the query and decoded. */
function udpFrom(port: number, name: string, type: string, source = DEFAULT_CLIENT): Promise<TestReply> {
  const query = buildQuery(name, type);
  return new Promise((resolve, reject) => {
    const socket = dgram.createSocket("udp4");
    const fail = (e: unknown) => {
      clearTimeout(timer);
      try {
        socket.close();
      } catch { /* closed */ }
      reject(e);
    };
    const timer = setTimeout(
      () => fail(new Error(`no UDP answer for ${name} ${type} from port ${port} (client ${source})`)),
      3000,
    );
    socket.once("error", fail);
    socket.on("message", (msg: Uint8Array) => {
      clearTimeout(timer);
      socket.close();
      const raw = new Uint8Array(msg);
      try {
        assertValidAnswer(raw, query, `UDP ${name} ${type} from ${source} to port ${port}`);
        resolve(decodeReply(raw));
      } catch (e) {
        reject(e);
      }
    });
    socket.bind({ address: source, port: 0 }, () => socket.send(Buffer.from(query), port, "127.0.0.1"));
  });
}

/** One TCP query from `source`, checked strictly and decoded. */
function tcpFrom(port: number, name: string, type: string, source = DEFAULT_CLIENT): Promise<TestReply> {
  const query = buildQuery(name, type);
  return new Promise((resolve, reject) => {
    const socket = net.createConnection({ host: "127.0.0.1", port, localAddress: source });
    let buf = new Uint8Array(0);
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no TCP answer for ${name} ${type} from port ${port} (client ${source})`));
    }, 3000);
    socket.once("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    socket.on("connect", () => {
      const framed = new Uint8Array(query.length + 2);
      framed[0] = query.length >> 8;
      framed[1] = query.length & 0xff;
      framed.set(query, 2);
      socket.write(Buffer.from(framed));
    });
    socket.on("data", (chunk: Uint8Array) => {
      const next = new Uint8Array(buf.length + chunk.length);
      next.set(buf);
      next.set(chunk, buf.length);
      buf = next;
      if (buf.length < 2) return;
      const length = (buf[0] << 8) | buf[1];
      if (buf.length < length + 2) return;
      clearTimeout(timer);
      socket.destroy();
      const raw = buf.slice(2, 2 + length);
      try {
        assertValidAnswer(raw, query, `TCP ${name} ${type} from ${source} to port ${port}`);
        resolve(decodeReply(raw));
      } catch (e) {
        reject(e);
      }
    });
  });
}

/** rcode and sorted answer records, e.g. `["NOERROR", "A 192.0.2.1"]`. */
function shape(r: TestReply): string[] {
  return [r.rcode, ...r.answers.map((a) => `${a.type} ${a.data}`).sort()];
}

/** Asserts `r` is a local SOA answer: `rcode`, no records, one SOA in the authority. */
function assertSoa(r: TestReply, rcode: string, what: string): void {
  assertEquals(
    [r.rcode, r.answers.length, r.authorities.map((a) => a.type)],
    [rcode, 0, ["SOA"]],
    `${what}: a local ${rcode} + SOA`,
  );
}

/** The listeners besides the main one ({port}, UDP and TCP), each with one bind option. */
interface Ports {
  main: number;
  group: number;
  noAddr: number;
  noSoa: number;
  noRules: number;
  noNameserver: number;
  noCache: number;
  forceAaaa: number;
}

async function listenerPorts(): Promise<Omit<Ports, "main">> {
  const ports: number[] = [];
  while (ports.length < 7) {
    const p = await freePort();
    if (!ports.includes(p)) ports.push(p);
  }
  const [group, noAddr, noSoa, noRules, noNameserver, noCache, forceAaaa] = ports;
  return { group, noAddr, noSoa, noRules, noNameserver, noCache, forceAaaa };
}

interface Fakes {
  def: FakeUpstream;
  office: FakeUpstream;
  lab: FakeUpstream;
}

/** The smartdns.conf under test; `{port}` is filled in by KeeldnsProcess. */
function smartdnsConf(p: Omit<Ports, "main">, f: Fakes): string {
  return `bind 127.0.0.1:{port}
bind-tcp 127.0.0.1:{port}
bind 127.0.0.1:${p.group} -group office
bind 127.0.0.1:${p.noAddr} -no-rule-addr
bind 127.0.0.1:${p.noSoa} -no-rule-soa
bind 127.0.0.1:${p.noRules} -no-rules
bind 127.0.0.1:${p.noNameserver} -no-rule-nameserver
bind 127.0.0.1:${p.noCache} -no-cache
bind 127.0.0.1:${p.forceAaaa} -force-aaaa-soa -no-speed-check -no-dualstack-selection -no-serve-expired
server 127.0.0.1:${f.def.port}
server 127.0.0.1:${f.office.port} -group office -exclude-default-group
server 127.0.0.1:${f.lab.port} -group lab -exclude-default-group
log-level info
address /blocked.test/#
address /both.test/192.0.2.50
address /local.test/192.0.2.70
nameserver /office.test/office
nameserver /lab.test/lab
client-rules ${KID}/32 -group kids
group-begin kids
group-match -client-ip ${KID_MATCHED}/32
address /kid.test/#
address /both.test/192.0.2.60
nameserver /x.test/office
force-AAAA-SOA yes
force-qtype-SOA 15
group-end
`;
}

/** The same configuration in keeldns's TOML. */
function tomlConf(p: Omit<Ports, "main">, f: Fakes): string {
  const listen = (port: number, extra: string) =>
    `[[server.listen]]\naddress = "udp://127.0.0.1:${port}"\n${extra}\n`;
  return `[server]
bind = ["127.0.0.1:{port}"]
${listen(p.group, 'group = "office"')}${listen(p.noAddr, 'flags = ["no-rule-addr"]')}${
    listen(p.noSoa, 'flags = ["no-rule-soa"]')
  }${listen(p.noRules, 'flags = ["no-rules"]')}${listen(p.noNameserver, 'flags = ["no-rule-nameserver"]')}${
    listen(p.noCache, 'flags = ["no-cache"]')
  }${listen(p.forceAaaa, 'flags = ["force-aaaa-soa"]')}
[[upstream]]
address = "udp://127.0.0.1:${f.def.port}"
[[upstream]]
address = "udp://127.0.0.1:${f.office.port}"
groups = ["office"]
exclude-default-group = true
[[upstream]]
address = "udp://127.0.0.1:${f.lab.port}"
groups = ["lab"]
exclude-default-group = true
[log]
level = "info"
[[rule]]
domains = ["blocked.test"]
address = "#"
[[rule]]
domains = ["both.test"]
address = "192.0.2.50"
[[rule]]
domains = ["local.test"]
address = "192.0.2.70"
[[rule]]
domains = ["office.test"]
nameserver = "office"
[[rule]]
domains = ["lab.test"]
nameserver = "lab"
[[group]]
name = "kids"
clients = ["${KID}/32", "${KID_MATCHED}/32"]
force-aaaa-soa = true
force-qtype-soa = [15]
[[group.rule]]
domains = ["kid.test"]
address = "#"
[[group.rule]]
domains = ["both.test"]
address = "192.0.2.60"
[[group.rule]]
domains = ["x.test"]
nameserver = "office"
`;
}

/** Starts the three fake upstreams. */
async function startFakes(): Promise<Fakes> {
  return {
    def: await FakeUpstream.start(upstreamScript(1)),
    office: await FakeUpstream.start(upstreamScript(2)),
    lab: await FakeUpstream.start(upstreamScript(3)),
  };
}

async function closeFakes(f: Fakes): Promise<void> {
  for (const fake of [f.def, f.office, f.lab]) await fake.close();
}

/** Which upstreams were asked about `name` (any type): `[default, office, lab]`. */
function askedOf(f: Fakes, name: string): number[] {
  return [f.def.count(name), f.office.count(name), f.lab.count(name)];
}

/**
 * Every check, against one running keeldns. Each step uses its own names (sub-domains of the rule
 * domains), so no step's cached answer feeds another.
 */
async function checkAll(t: Deno.TestContext, p: Ports, f: Fakes): Promise<void> {
  await t.step("a group's own address # blocks its clients only (UDP and TCP)", async () => {
    for (const client of [KID, KID_MATCHED]) {
      assertSoa(await udpFrom(p.main, "kid.test", "A", client), "NXDOMAIN", `kid.test from ${client}`);
    }
    assertSoa(await tcpFrom(p.main, "www.kid.test", "A", KID), "NXDOMAIN", "www.kid.test over TCP from kid");
    assertEquals(askedOf(f, "kid.test"), [0, 0, 0], "a group's blocked name never leaves keeldns");
    assertEquals(shape(await udpFrom(p.main, "kid.test", "A")), ["NOERROR", "A 192.0.2.1"]);
    assertEquals(shape(await tcpFrom(p.main, "www.kid.test", "A")), ["NOERROR", "A 192.0.2.1"]);
    assertEquals(askedOf(f, "kid.test"), [1, 0, 0], "the default client's kid.test is forwarded");
    // The default client's cached answer is not served to the group (the group is in the key).
    assertEquals(shape(await udpFrom(p.main, "late.kid.test", "A")), ["NOERROR", "A 192.0.2.1"]);
    assertSoa(await udpFrom(p.main, "late.kid.test", "A", KID), "NXDOMAIN", "late.kid.test from kid, after");
    assertEquals(askedOf(f, "late.kid.test"), [1, 0, 0]);
  });

  await t.step("the default policy's rules still apply inside the group", async () => {
    for (const client of [KID, KID_MATCHED]) {
      const sub = client === KID ? "a" : "b";
      assertSoa(
        await udpFrom(p.main, `${sub}.blocked.test`, "A", client),
        "NXDOMAIN",
        `blocked from ${client}`,
      );
      assertEquals(shape(await udpFrom(p.main, `${sub}.local.test`, "A", client)), [
        "NOERROR",
        "A 192.0.2.70",
      ]);
      assertEquals(shape(await udpFrom(p.main, `${sub}.office.test`, "A", client)), [
        "NOERROR",
        "A 192.0.2.2",
      ]);
      assertEquals(askedOf(f, `${sub}.office.test`), [0, 1, 0], "the default nameserver rule routes it");
      assertEquals(askedOf(f, `${sub}.blocked.test`), [0, 0, 0]);
      assertEquals(askedOf(f, `${sub}.local.test`), [0, 0, 0]);
    }
  });

  await t.step("a group rule wins over the default one on the same domain", async () => {
    assertEquals(shape(await udpFrom(p.main, "both.test", "A", KID)), ["NOERROR", "A 192.0.2.60"]);
    assertEquals(shape(await udpFrom(p.main, "www.both.test", "A", KID_MATCHED)), [
      "NOERROR",
      "A 192.0.2.60",
    ]);
    assertEquals(shape(await tcpFrom(p.main, "both.test", "A", KID)), ["NOERROR", "A 192.0.2.60"]);
    assertEquals(shape(await udpFrom(p.main, "both.test", "A")), ["NOERROR", "A 192.0.2.50"]);
    assertEquals(shape(await tcpFrom(p.main, "www.both.test", "A")), ["NOERROR", "A 192.0.2.50"]);
    assertEquals(askedOf(f, "both.test"), [0, 0, 0]);
    assertEquals(askedOf(f, "www.both.test"), [0, 0, 0]);
  });

  await t.step("the group's force-AAAA-SOA and force-qtype-SOA 15 apply to its clients only", async () => {
    assertSoa(await udpFrom(p.main, "six.test", "AAAA", KID), "NOERROR", "six.test AAAA from kid");
    assertSoa(await udpFrom(p.main, "six.test", "AAAA", KID_MATCHED), "NOERROR", "six.test AAAA from kid 3");
    assertSoa(await udpFrom(p.main, "mx.test", "MX", KID), "NOERROR", "mx.test MX from kid");
    assertEquals(askedOf(f, "six.test"), [0, 0, 0]);
    assertEquals(askedOf(f, "mx.test"), [0, 0, 0]);
    assertEquals(shape(await udpFrom(p.main, "six.test", "AAAA")), ["NOERROR", "AAAA 2001:db8::1"]);
    assertEquals((await udpFrom(p.main, "mx.test", "MX")).rcode, "NOERROR");
    assertEquals(askedOf(f, "six.test"), [1, 0, 0], "the default client's AAAA is forwarded");
    assertEquals(askedOf(f, "mx.test"), [1, 0, 0], "the default client's MX is forwarded");
    // A is untouched by force-AAAA-SOA inside the group.
    assertEquals(shape(await udpFrom(p.main, "six.test", "A", KID)), ["NOERROR", "A 192.0.2.1"]);
  });

  await t.step(
    "the cache keeps the group's upstream answer from the default clients (asked twice)",
    async () => {
      const order = [KID, DEFAULT_CLIENT, KID, DEFAULT_CLIENT, KID_MATCHED];
      const got: string[] = [];
      for (const client of order) got.push(shape(await udpFrom(p.main, "x.test", "A", client))[1]);
      assertEquals(got, ["A 192.0.2.2", "A 192.0.2.1", "A 192.0.2.2", "A 192.0.2.1", "A 192.0.2.2"]);
      assertEquals(
        askedOf(f, "x.test"),
        [1, 1, 0],
        "each upstream asked once: the repeats were cache hits, each in its own group",
      );
    },
  );

  await t.step(
    "bind -group office: that listener's queries go to office; a nameserver rule still wins",
    async () => {
      assertEquals(shape(await udpFrom(p.group, "g.elsewhere.test", "A")), ["NOERROR", "A 192.0.2.2"]);
      assertEquals(askedOf(f, "g.elsewhere.test"), [0, 1, 0]);
      assertEquals(shape(await udpFrom(p.main, "m.elsewhere.test", "A")), ["NOERROR", "A 192.0.2.1"]);
      assertEquals(askedOf(f, "m.elsewhere.test"), [1, 0, 0], "the main listener uses the default group");
      assertEquals(shape(await udpFrom(p.group, "g.lab.test", "A")), ["NOERROR", "A 192.0.2.3"]);
      assertEquals(askedOf(f, "g.lab.test"), [0, 0, 1], "nameserver /lab.test/lab beats bind -group");
      assertEquals(shape(await udpFrom(p.group, "g.local.test", "A")), ["NOERROR", "A 192.0.2.70"]);
      assertSoa(
        await udpFrom(p.group, "g.blocked.test", "A"),
        "NXDOMAIN",
        "g.blocked.test on the -group listener",
      );
    },
  );

  await t.step("-no-rule-addr: address IPs are skipped, # blocks still apply", async () => {
    assertEquals(shape(await udpFrom(p.noAddr, "na.local.test", "A")), ["NOERROR", "A 192.0.2.1"]);
    assertEquals(askedOf(f, "na.local.test"), [1, 0, 0]);
    assertSoa(await udpFrom(p.noAddr, "na.blocked.test", "A"), "NXDOMAIN", "na.blocked.test");
    assertEquals(shape(await udpFrom(p.noAddr, "na.office.test", "A")), ["NOERROR", "A 192.0.2.2"]);
    assertEquals(askedOf(f, "na.blocked.test"), [0, 0, 0]);
  });

  await t.step("-no-rule-soa: # blocks are skipped, address IPs still apply", async () => {
    assertEquals(shape(await udpFrom(p.noSoa, "ns.blocked.test", "A")), ["NOERROR", "A 192.0.2.1"]);
    assertEquals(askedOf(f, "ns.blocked.test"), [1, 0, 0]);
    assertEquals(shape(await udpFrom(p.noSoa, "ns.local.test", "A")), ["NOERROR", "A 192.0.2.70"]);
    assertEquals(askedOf(f, "ns.local.test"), [0, 0, 0]);
  });

  await t.step("-no-rules: no domain rule applies (address, #, nameserver, the group's own)", async () => {
    assertEquals(shape(await udpFrom(p.noRules, "nr.local.test", "A")), ["NOERROR", "A 192.0.2.1"]);
    assertEquals(shape(await udpFrom(p.noRules, "nr.blocked.test", "A")), ["NOERROR", "A 192.0.2.1"]);
    assertEquals(shape(await udpFrom(p.noRules, "nr.office.test", "A")), ["NOERROR", "A 192.0.2.1"]);
    assertEquals(shape(await udpFrom(p.noRules, "nr.kid.test", "A", KID)), ["NOERROR", "A 192.0.2.1"]);
    for (const name of ["nr.local.test", "nr.blocked.test", "nr.office.test", "nr.kid.test"]) {
      assertEquals(askedOf(f, name), [1, 0, 0], `${name} forwarded to the default group`);
    }
  });

  await t.step("-no-rule-nameserver: routed names go to the default group, other rules apply", async () => {
    assertEquals(shape(await udpFrom(p.noNameserver, "nn.office.test", "A")), ["NOERROR", "A 192.0.2.1"]);
    assertEquals(askedOf(f, "nn.office.test"), [1, 0, 0]);
    assertEquals(shape(await udpFrom(p.noNameserver, "nn.x.test", "A", KID)), ["NOERROR", "A 192.0.2.1"]);
    assertEquals(askedOf(f, "nn.x.test"), [1, 0, 0], "the group's own nameserver rule is skipped too");
    assertEquals(shape(await udpFrom(p.noNameserver, "nn.local.test", "A")), ["NOERROR", "A 192.0.2.70"]);
    assertSoa(await udpFrom(p.noNameserver, "nn.blocked.test", "A"), "NXDOMAIN", "nn.blocked.test");
  });

  await t.step("-no-cache: the upstream is asked again on a repeat; the main listener caches", async () => {
    for (let i = 0; i < 2; i++) {
      assertEquals(shape(await udpFrom(p.noCache, "nc.test", "A")), ["NOERROR", "A 192.0.2.1"]);
      assertEquals(shape(await udpFrom(p.main, "c.test", "A")), ["NOERROR", "A 192.0.2.1"]);
    }
    assertEquals(askedOf(f, "nc.test"), [2, 0, 0], "-no-cache: asked twice");
    assertEquals(askedOf(f, "c.test"), [1, 0, 0], "cached: asked once");
  });

  await t.step("-force-aaaa-soa: every AAAA answered empty with an SOA; A forwarded", async () => {
    assertSoa(await udpFrom(p.forceAaaa, "fa.test", "AAAA"), "NOERROR", "fa.test AAAA");
    assertEquals(askedOf(f, "fa.test"), [0, 0, 0]);
    assertEquals(shape(await udpFrom(p.forceAaaa, "fa.test", "A")), ["NOERROR", "A 192.0.2.1"]);
    assertEquals(shape(await udpFrom(p.main, "fa.test", "AAAA")), ["NOERROR", "AAAA 2001:db8::1"]);
    assertEquals(askedOf(f, "fa.test"), [2, 0, 0], "A on the flagged listener and AAAA on the main one");
  });
}

/** Starts fakes and keeldns on `conf`, runs `fn`, stops both. */
async function withServer(
  conf: (p: Omit<Ports, "main">, f: Fakes) => string,
  name: string,
  fn: (p: Ports, f: Fakes, k: KeeldnsProcess) => Promise<void>,
): Promise<void> {
  const fakes = await startFakes();
  try {
    const extra = await listenerPorts();
    const k = await KeeldnsProcess.start(conf(extra, fakes), { name });
    try {
      await fn({ main: k.port, ...extra }, fakes, k);
    } finally {
      await k.stop();
    }
  } finally {
    await closeFakes(fakes);
  }
}

Deno.test({
  name: "client groups and bind options end to end (smartdns.conf)",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    await withServer(smartdnsConf, "smartdns.conf", async (p, f, k) => {
      await k.waitFor(/1 client groups/, 5000);
      await checkAll(t, p, f);
    });
  },
});

Deno.test({
  name: "client groups and bind options end to end (the same in TOML answers the same)",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    await withServer(tomlConf, "keeldns.toml", async (p, f) => {
      await checkAll(t, p, f);
    });
  },
});

/**
 * SmartDNS (HEAD, and release 40: tests/interop/smartdns_groups_test.ts) keys its cache by domain,
 * qtype, the request's server group (`bind -group`) and the listener's bind flags
 * (`cache_key.dns_group_name`, `cache_key.query_flag = server_flags` in src/dns_server), so an
 * answer fetched for one listener is never served on a listener that asks another group or applies
 * other rules. keeldns's cache stage runs before the rules stage, so an entry served across
 * listeners also skips the other listener's address rules and blocks.
 */
Deno.test({
  name: "the cache keeps listeners apart: an answer fetched under one listener's group or flags stays there",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    await withServer(smartdnsConf, "smartdns.conf", async (p, f) => {
      await t.step("a default-group answer is not served on the -group office listener", async () => {
        assertEquals(shape(await udpFrom(p.main, "leak1.test", "A")), ["NOERROR", "A 192.0.2.1"]);
        assertEquals(shape(await udpFrom(p.group, "leak1.test", "A")), ["NOERROR", "A 192.0.2.2"]);
        assertEquals(askedOf(f, "leak1.test"), [1, 1, 0]);
      });
      await t.step("an office answer is not served on the main listener", async () => {
        assertEquals(shape(await udpFrom(p.group, "leak2.test", "A")), ["NOERROR", "A 192.0.2.2"]);
        assertEquals(shape(await udpFrom(p.main, "leak2.test", "A")), ["NOERROR", "A 192.0.2.1"]);
        assertEquals(askedOf(f, "leak2.test"), [1, 1, 0]);
      });
      await t.step("a routed answer is not served on the -no-rule-nameserver listener", async () => {
        assertEquals(shape(await udpFrom(p.main, "leak3.office.test", "A")), ["NOERROR", "A 192.0.2.2"]);
        assertEquals(shape(await udpFrom(p.noNameserver, "leak3.office.test", "A")), [
          "NOERROR",
          "A 192.0.2.1",
        ]);
        assertEquals(askedOf(f, "leak3.office.test"), [1, 1, 0]);
      });
      await t.step("a -no-rules answer is not served to a listener whose rules route the name", async () => {
        assertEquals(shape(await udpFrom(p.noRules, "leak4.office.test", "A")), ["NOERROR", "A 192.0.2.1"]);
        assertEquals(shape(await udpFrom(p.main, "leak4.office.test", "A")), ["NOERROR", "A 192.0.2.2"]);
        assertEquals(askedOf(f, "leak4.office.test"), [1, 1, 0]);
      });
      await t.step(
        "a -no-rule-addr answer does not replace the address rule on the main listener",
        async () => {
          assertEquals(shape(await udpFrom(p.noAddr, "leak5.local.test", "A")), ["NOERROR", "A 192.0.2.1"]);
          assertEquals(shape(await udpFrom(p.main, "leak5.local.test", "A")), ["NOERROR", "A 192.0.2.70"]);
        },
      );
      await t.step("a -no-rule-soa answer does not unblock the name on the main listener", async () => {
        assertEquals(shape(await udpFrom(p.noSoa, "leak6.blocked.test", "A")), ["NOERROR", "A 192.0.2.1"]);
        assertSoa(await udpFrom(p.main, "leak6.blocked.test", "A"), "NXDOMAIN", "leak6.blocked.test on main");
      });
      await t.step("a -no-rules answer does not unblock the name on the main listener", async () => {
        assertEquals(shape(await udpFrom(p.noRules, "leak7.blocked.test", "A")), ["NOERROR", "A 192.0.2.1"]);
        assertSoa(await udpFrom(p.main, "leak7.blocked.test", "A"), "NXDOMAIN", "leak7.blocked.test on main");
      });
    });
  },
});

Deno.test({
  name: "refused configurations exit 1 with file:line:col (check and run)",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const dir = await Deno.makeTempDir({ prefix: "keeldns-groups-bad-" });
    const cases: { name: string; text: string; error: RegExp }[] = [
      {
        name: "cache-size inside a group",
        text: "bind 127.0.0.1:5399\nserver 127.0.0.1:53\ngroup-begin kids\naddress /a.test/#\n" +
          "cache-size 100\ngroup-end\n",
        error: /:5:1: cache-size cannot be inside group-begin kids … group-end/,
      },
      {
        name: "client-rules -group for an undefined group",
        text: "bind 127.0.0.1:5399\nserver 127.0.0.1:53\nclient-rules 127.0.0.2/32 -group nope\n",
        error: /:3:\d+: client-rules: no group-begin nope … group-end in the file/,
      },
      {
        name: "bind -group for a group no server is in",
        text: "bind 127.0.0.1:5399 -group nope\nserver 127.0.0.1:53\n",
        error: /:1:\d+: bind -group: no usable server is in group "nope"/,
      },
    ];
    try {
      for (const [i, c] of cases.entries()) {
        await t.step(c.name, async () => {
          const path = `${dir}/bad${i}.conf`;
          await Deno.writeTextFile(path, c.text);
          const escaped = path.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
          for (const command of ["check", "run"]) {
            const r = await runKeeldns(
              command === "run" ? ["run", "-c", path, "-p", `${dir}/k${i}.pid`] : ["check", "-c", path],
            );
            assertEquals(r.code, 1, `${command}: ${r.stdout}${r.stderr}`);
            assertMatch(r.stderr, new RegExp(escaped + c.error.source), `${command} names file:line:col`);
          }
        });
      }
      await t.step("the TOML equivalent: a listener group no upstream is in", async () => {
        const path = `${dir}/bad.toml`;
        await Deno.writeTextFile(
          path,
          `[server]\n[[server.listen]]\naddress = "udp://127.0.0.1:5399"\ngroup = "nope"\n` +
            `[[upstream]]\naddress = "udp://127.0.0.1:53"\n`,
        );
        const r = await runKeeldns(["check", "-c", path]);
        assertEquals(r.code, 1, r.stdout + r.stderr);
        assert(
          r.stderr.includes(`${path}:4:1: no usable server is in group "nope"`),
          `file:line:col in ${r.stderr}`,
        );
      });
    } finally {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
