/**
 * End to end: who the real keeldns (guardian + child) answers, and how fast.
 *
 * 1. In network namespaces of its own (root and `ip netns` needed; skipped with the reason
 *    otherwise, required under KEELDNS_REQUIRE_PEERS=1): keeldns runs in "srv", bound to the
 *    wildcard address, with a LAN client on a directly connected subnet and a WAN client that is
 *    only routed to (as an internet host would be). By default the LAN client is answered and the
 *    WAN client gets REFUSED (UDP, TCP, IPv4-mapped and IPv6), counted in `keeldns status`, logged
 *    once however many it sends; a subnet that comes up later is answered after the interfaces are
 *    read again (and refused once it is gone again); `keeldns reload` to `clients = "any"` and back
 *    opens and closes it; the portable UDP transport decides the same; a fresh start on
 *    `clients = "any"` answers the WAN client; a SmartDNS `acl-enable` + `client-rules` answers only
 *    the listed client (and loopback).
 * 2. On loopback: a client on 127.0.0.2 over `rate-limit = 50`, `rate-burst = 0` gets about 50 of
 *    200 queries answered and nothing for the others, while 127.0.0.1, never limited, gets all of
 *    its 500 at the same time.
 *
 * Every address used is a documentation prefix inside namespaces this test creates (nothing is
 * routed out of them), or loopback.
 */
import dgram from "node:dgram";
import { Buffer } from "node:buffer";
import { assert, assertEquals, assertGreater, assertLess } from "./helpers/assert.ts";
import { buildQuery, decodeReply } from "./helpers/dns_client.ts";
import { FakeUpstream } from "./helpers/fake_upstream.ts";
import { hasProgram, KeeldnsProcess, PEERS_REQUIRED, programPath } from "./helpers/keeldns_process.ts";
import {
  addNamespace,
  digIn,
  exec,
  must,
  namespaceEmpty,
  namespacesUnavailable,
  NsKeeldns,
  removeNamespace,
  sleep,
} from "./helpers/netns.ts";

const PORT = 5353;
const PORT6 = 5354;
/** Unique per run: other suites (and other runs) may have namespaces of their own. */
const ID = Deno.pid % 100_000;
const NS = { srv: `kd-srv-${ID}`, lan: `kd-lan-${ID}`, wan: `kd-wan-${ID}` };
/** Interface names (at most 15 characters). */
const LINK = { lanSrv: `kdl${ID}s`, lanCli: `kdl${ID}c`, wanSrv: `kdw${ID}s`, wanCli: `kdw${ID}c` };

/** Why the namespace test cannot run here, or undefined. */
function cannotRunNamespaces(): string | undefined {
  return namespacesUnavailable() ??
    (hasProgram("dig") ? undefined : "no dig (Debian: apt-get install bind9-dnsutils)");
}

const whyNot = cannotRunNamespaces();
if (whyNot) {
  console.error(
    `tests/access_test.ts: namespace test ${
      PEERS_REQUIRED ? "REQUIRED but cannot run" : "skipped"
    }: ${whyNot}`,
  );
}

/** Builds srv, lan and wan (see the module comment). */
async function buildNamespaces(): Promise<void> {
  const ip = programPath("ip");
  for (const ns of Object.values(NS)) await addNamespace(ns);
  const inSrv = (...a: string[]) => must([ip, "-n", NS.srv, ...a]);
  const inLan = (...a: string[]) => must([ip, "-n", NS.lan, ...a]);
  const inWan = (...a: string[]) => must([ip, "-n", NS.wan, ...a]);
  // LAN: one directly connected subnet (and an IPv6 one).
  await inSrv("link", "add", LINK.lanSrv, "type", "veth", "peer", "name", LINK.lanCli, "netns", NS.lan);
  await inSrv("addr", "add", "192.0.2.1/24", "dev", LINK.lanSrv);
  await inSrv("addr", "add", "2001:db8:1::1/64", "dev", LINK.lanSrv, "nodad");
  await inSrv("link", "set", LINK.lanSrv, "up");
  await inLan("addr", "add", "192.0.2.2/24", "dev", LINK.lanCli);
  await inLan("addr", "add", "2001:db8:1::2/64", "dev", LINK.lanCli, "nodad");
  await inLan("link", "set", LINK.lanCli, "up");
  // WAN: the client's address is on no subnet of srv; each side only has a route to the other.
  await inSrv("link", "add", LINK.wanSrv, "type", "veth", "peer", "name", LINK.wanCli, "netns", NS.wan);
  await inSrv("addr", "add", "198.51.100.1/24", "dev", LINK.wanSrv);
  await inSrv("addr", "add", "2001:db8:2::1/64", "dev", LINK.wanSrv, "nodad");
  await inSrv("link", "set", LINK.wanSrv, "up");
  await inSrv("route", "add", "203.0.113.2/32", "dev", LINK.wanSrv);
  await inSrv("-6", "route", "add", "2001:db8:ff::2/128", "dev", LINK.wanSrv);
  await inWan("addr", "add", "203.0.113.2/32", "dev", LINK.wanCli);
  await inWan("addr", "add", "2001:db8:ff::2/128", "dev", LINK.wanCli, "nodad");
  await inWan("link", "set", LINK.wanCli, "up");
  await inWan("route", "add", "198.51.100.1/32", "dev", LINK.wanCli, "src", "203.0.113.2");
  await inWan("-6", "route", "add", "2001:db8:2::1/128", "dev", LINK.wanCli, "src", "2001:db8:ff::2");
}

/** Kills whatever still runs in the namespaces (only processes this test started) and removes them. */
async function removeNamespaces(): Promise<void> {
  for (const ns of Object.values(NS)) await removeNamespace(ns);
}

/** The refused counter of the child's stats in `keeldns status`; the stats come every ~10 s. */
async function refusedCount(k: NsKeeldns, atLeast: number, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let last = -1;
  while (Date.now() < deadline) {
    const s = await k.status();
    last = (JSON.parse(s.childStats ?? "{}") as { refused?: number }).refused ?? -1;
    if (last >= atLeast) return last;
    await sleep(500);
  }
  return last;
}

const LOCAL_RULE = `[[rule]]\ndomains = ["x.test"]\naddress = "192.0.2.99"\n`;
/** keeldns in srv: wildcard IPv4 and IPv6 listeners, a local answer for x.test, no upstream used. */
function tomlConfig(serverExtra: string): string {
  return `[server]\nbind = ["0.0.0.0:${PORT}", "[::]:${PORT6}"]\n${serverExtra}\n` +
    `[[upstream]]\naddress = "udp://127.0.0.1:9"\n${LOCAL_RULE}[log]\nlevel = "info"\n`;
}

const REFUSING = /refusing clients/;

Deno.test({
  name: "not an open resolver: LAN answered, WAN refused (counted, logged once); clients = any; SmartDNS ACL",
  ignore: whyNot !== undefined && !PEERS_REQUIRED,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    if (whyNot) throw new Error(`the namespace test is required (KEELDNS_REQUIRE_PEERS=1) but: ${whyNot}`);
    const ip = programPath("ip");
    const started = performance.now();
    let k: NsKeeldns | undefined;
    try {
      await buildNamespaces();
      await t.step("default: the LAN client is answered, the WAN client gets REFUSED", async () => {
        k = await NsKeeldns.start(NS.srv, "keeldns.toml", tomlConfig(""));
        const lan = await digIn(NS.lan, "192.0.2.1", PORT, "x.test");
        assertEquals([lan.status, lan.addresses], ["NOERROR", ["192.0.2.99"]], lan.raw);
        const lanTcp = await digIn(NS.lan, "192.0.2.1", PORT, "x.test", "+tcp");
        assertEquals([lanTcp.status, lanTcp.addresses], ["NOERROR", ["192.0.2.99"]], lanTcp.raw);
        const wan = await digIn(NS.wan, "198.51.100.1", PORT, "x.test");
        assertEquals([wan.status, wan.addresses], ["REFUSED", []], wan.raw);
        const wanTcp = await digIn(NS.wan, "198.51.100.1", PORT, "x.test", "+tcp");
        assertEquals([wanTcp.status, wanTcp.addresses], ["REFUSED", []], wanTcp.raw);
      });
      await t.step("the same over the [::] listener: IPv4-mapped and IPv6 clients", async () => {
        const lan4 = await digIn(NS.lan, "192.0.2.1", PORT6, "x.test");
        assertEquals([lan4.status, lan4.addresses], ["NOERROR", ["192.0.2.99"]], lan4.raw);
        const lan6 = await digIn(NS.lan, "2001:db8:1::1", PORT6, "x.test");
        assertEquals([lan6.status, lan6.addresses], ["NOERROR", ["192.0.2.99"]], lan6.raw);
        const lan6Tcp = await digIn(NS.lan, "2001:db8:1::1", PORT6, "x.test", "+tcp");
        assertEquals(lan6Tcp.status, "NOERROR", lan6Tcp.raw);
        const wan4 = await digIn(NS.wan, "198.51.100.1", PORT6, "x.test");
        assertEquals(wan4.status, "REFUSED", wan4.raw);
        const wan6 = await digIn(NS.wan, "2001:db8:2::1", PORT6, "x.test");
        assertEquals(wan6.status, "REFUSED", wan6.raw);
        const wan6Tcp = await digIn(NS.wan, "2001:db8:2::1", PORT6, "x.test", "+tcp");
        assertEquals(wan6Tcp.status, "REFUSED", wan6Tcp.raw);
      });
      await t.step("20 more WAN queries: all REFUSED, counted in keeldns status, one log line", async () => {
        const statuses: string[] = [];
        for (let i = 0; i < 20; i += 5) {
          const batch = await Promise.all(
            Array.from({ length: 5 }, (_, j) => digIn(NS.wan, "198.51.100.1", PORT, `q${i + j}.x.test`)),
          );
          statuses.push(...batch.map((r) => r.status));
        }
        assertEquals(statuses, Array(20).fill("REFUSED"));
        // 2 + 3 refused before, 20 now.
        const refused = await refusedCount(k!, 25, 13_000);
        assertEquals(refused, 25, "refused in keeldns status (childStats)");
        const logged = k!.lines.filter((l) => REFUSING.test(l));
        assertEquals(logged.length, 1, `refusals logged once a minute, not per query:\n${logged.join("\n")}`);
        assert(/not on a local subnet/.test(logged[0]), logged[0]);
      });
      await t.step(
        "a subnet that comes up later is answered once the interfaces are read again",
        async () => {
          await must([ip, "-n", NS.srv, "addr", "add", "203.0.113.1/24", "dev", LINK.wanSrv]);
          try {
            // Read again at most once a second, when an unknown client asks: give it more than that.
            await sleep(1200);
            const wan = await digIn(NS.wan, "198.51.100.1", PORT, "x.test");
            assertEquals([wan.status, wan.addresses], ["NOERROR", ["192.0.2.99"]], wan.raw);
          } finally {
            await must([ip, "-n", NS.srv, "addr", "del", "203.0.113.1/24", "dev", LINK.wanSrv]);
            await exec([ip, "-n", NS.srv, "route", "replace", "203.0.113.2/32", "dev", LINK.wanSrv]);
          }
          // Gone again: the prefixes are only read again when a client outside them asks (a subnet
          // that went away stays trusted until then), so one that is in none of them asks first.
          await sleep(1200);
          const unknown = await digIn(NS.wan, "2001:db8:2::1", PORT6, "x.test");
          assertEquals(unknown.status, "REFUSED", unknown.raw);
          const gone = await digIn(NS.wan, "198.51.100.1", PORT, "x.test");
          assertEquals(gone.status, "REFUSED", `the subnet went away: ${gone.raw}`);
        },
      );
      await t.step(
        'reload to clients = "any" answers the WAN client; reloading back refuses it',
        async () => {
          await k!.reload("keeldns.toml", tomlConfig('clients = "any"'));
          const wan = await digIn(NS.wan, "198.51.100.1", PORT, "x.test");
          assertEquals([wan.status, wan.addresses], ["NOERROR", ["192.0.2.99"]], wan.raw);
          const wan6Tcp = await digIn(NS.wan, "2001:db8:2::1", PORT6, "x.test", "+tcp");
          assertEquals(wan6Tcp.status, "NOERROR", wan6Tcp.raw);
          await k!.reload("keeldns.toml", tomlConfig(""));
          const again = await digIn(NS.wan, "198.51.100.1", PORT, "x.test");
          assertEquals(again.status, "REFUSED", again.raw);
          const againTcp = await digIn(NS.wan, "2001:db8:2::1", PORT6, "x.test", "+tcp");
          assertEquals(againTcp.status, "REFUSED", againTcp.raw);
          const lan = await digIn(NS.lan, "192.0.2.1", PORT, "x.test");
          assertEquals(lan.status, "NOERROR", lan.raw);
          assertEquals((await k!.stop()).code, 0);
          k = undefined;
        },
      );
      await t.step("the portable UDP transport tells the clients apart the same way", async () => {
        k = await NsKeeldns.start(NS.srv, "keeldns.toml", tomlConfig('udp-transport = "portable"'));
        await k.waitFor(/UDP transport: portable/, 2000);
        const lanServers = [["192.0.2.1", PORT], ["192.0.2.1", PORT6], ["2001:db8:1::1", PORT6]] as const;
        for (const [server, port] of lanServers) {
          const lan = await digIn(NS.lan, server, port, "x.test");
          assertEquals(
            [lan.status, lan.addresses],
            ["NOERROR", ["192.0.2.99"]],
            `${server} ${port}: ${lan.raw}`,
          );
        }
        const wanServers = [["198.51.100.1", PORT], ["198.51.100.1", PORT6], [
          "2001:db8:2::1",
          PORT6,
        ]] as const;
        for (const [server, port] of wanServers) {
          const wan = await digIn(NS.wan, server, port, "x.test");
          assertEquals(wan.status, "REFUSED", `${server} ${port}: ${wan.raw}`);
        }
        assertEquals((await k.stop()).code, 0);
        k = undefined;
      });
      await t.step('clients = "any": the WAN client is answered', async () => {
        k = await NsKeeldns.start(NS.srv, "keeldns.toml", tomlConfig('clients = "any"'));
        const wan = await digIn(NS.wan, "198.51.100.1", PORT, "x.test");
        assertEquals([wan.status, wan.addresses], ["NOERROR", ["192.0.2.99"]], wan.raw);
        const wan6 = await digIn(NS.wan, "2001:db8:2::1", PORT6, "x.test", "+tcp");
        assertEquals(wan6.status, "NOERROR", wan6.raw);
        const lan = await digIn(NS.lan, "192.0.2.1", PORT, "x.test");
        assertEquals(lan.status, "NOERROR", lan.raw);
        assertEquals(k!.lines.filter((l) => REFUSING.test(l)), []);
        assertEquals((await k!.stop()).code, 0);
        k = undefined;
      });
      await t.step(
        "SmartDNS acl-enable + client-rules: the WAN client answered, the LAN client refused",
        async () => {
          k = await NsKeeldns.start(
            NS.srv,
            "smartdns.conf",
            [
              `bind 0.0.0.0:${PORT}`,
              `bind-tcp 0.0.0.0:${PORT}`,
              `bind [::]:${PORT6}`,
              "server 127.0.0.1:9",
              "address /x.test/192.0.2.99",
              "acl-enable yes",
              "client-rules 203.0.113.2/32",
              "log-level info",
              "",
            ].join("\n"),
          );
          const wan = await digIn(NS.wan, "198.51.100.1", PORT, "x.test");
          assertEquals([wan.status, wan.addresses], ["NOERROR", ["192.0.2.99"]], wan.raw);
          const wanTcp = await digIn(NS.wan, "198.51.100.1", PORT, "x.test", "+tcp");
          assertEquals(wanTcp.status, "NOERROR", wanTcp.raw);
          const lan = await digIn(NS.lan, "192.0.2.1", PORT, "x.test");
          assertEquals([lan.status, lan.addresses], ["REFUSED", []], lan.raw);
          const lanTcp = await digIn(NS.lan, "192.0.2.1", PORT, "x.test", "+tcp");
          assertEquals(lanTcp.status, "REFUSED", lanTcp.raw);
          const wanMapped = await digIn(NS.wan, "198.51.100.1", PORT6, "x.test");
          assertEquals(wanMapped.status, "NOERROR", `IPv4-mapped on [::]: ${wanMapped.raw}`);
          const wan6 = await digIn(NS.wan, "2001:db8:2::1", PORT6, "x.test");
          assertEquals(wan6.status, "REFUSED", `203.0.113.2/32 does not cover its IPv6 address: ${wan6.raw}`);
          const loopback = await digIn(NS.srv, "127.0.0.1", PORT, "x.test");
          assertEquals(loopback.status, "NOERROR", `loopback is always answered: ${loopback.raw}`);
          await k!.waitFor(/refusing clients \(not-in-acl\)/, 2000);
          assertEquals((await k!.stop()).code, 0);
          k = undefined;
        },
      );
    } finally {
      if (k) await k.stop();
      await removeNamespaces();
      console.error(`namespace test: ${((performance.now() - started) / 1000).toFixed(1)} s`);
    }
    for (const ns of Object.values(NS)) {
      assertEquals(await namespaceEmpty(ns), true, `${ns} still exists with processes`);
    }
  },
});

/**
 * Sends `count` queries for `name` from a UDP socket bound to `from`, `chunk` at a time, each chunk
 * as fast as the socket takes it; after each, waits until all sent are answered or `quietMs` pass
 * without an answer (the whole bounded by `maxMs`). Returns how many were answered, by rcode.
 */
async function flood(
  port: number,
  from: string,
  name: string,
  count: number,
  chunk: number,
  quietMs: number,
  maxMs: number,
): Promise<{ answered: number; rcodes: Record<string, number> }> {
  const socket = dgram.createSocket("udp4");
  await new Promise<void>((resolve, reject) => {
    socket.once("error", reject);
    socket.bind(0, from, () => resolve());
  });
  const queries = Array.from({ length: count }, (_, i) => buildQuery(name, "A", { id: i }));
  const answered = new Set<number>();
  const rcodes: Record<string, number> = {};
  let lastAnswer = 0;
  let bad: Error | undefined;
  socket.on("message", (msg: Uint8Array) => {
    try {
      const reply = decodeReply(new Uint8Array(msg));
      if (reply.id >= count || answered.has(reply.id)) throw new Error(`unexpected answer id ${reply.id}`);
      answered.add(reply.id);
      rcodes[reply.rcode] = (rcodes[reply.rcode] ?? 0) + 1;
      lastAnswer = Date.now();
    } catch (e) {
      bad ??= e as Error;
    }
  });
  const started = Date.now();
  try {
    for (let sent = 0; sent < count && Date.now() - started < maxMs;) {
      const end = Math.min(count, sent + chunk);
      const sends: Promise<void>[] = [];
      for (; sent < end; sent++) {
        const bytes = Buffer.from(queries[sent]);
        sends.push(
          new Promise((resolve, reject) =>
            socket.send(bytes, port, "127.0.0.1", (e) => e ? reject(e) : resolve())
          ),
        );
      }
      await Promise.all(sends);
      const sentAt = Date.now();
      while (
        answered.size < sent && Date.now() - Math.max(sentAt, lastAnswer) < quietMs &&
        Date.now() - started < maxMs
      ) {
        await sleep(10);
      }
    }
    if (bad) throw bad;
    return { answered: answered.size, rcodes };
  } finally {
    socket.close();
  }
}

Deno.test({
  name: "rate limit: 127.0.0.2 over 50/s gets about 50 of 200 answered, 127.0.0.1 all of its 500",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const started = performance.now();
    const fake = await FakeUpstream.start();
    const k = await KeeldnsProcess.start(
      `[server]\nbind = ["127.0.0.1:{port}"]\nrate-limit = 50\nrate-burst = 0\n` +
        `[[upstream]]\naddress = "udp://127.0.0.1:${fake.port}"\n[log]\nlevel = "info"\n`,
    );
    try {
      // Warm the cache from 127.0.0.1 (never limited), so both floods are answered from it.
      const warm = await flood(k.port, "127.0.0.1", "r.test", 1, 1, 2000, 3000);
      assertEquals(warm.answered, 1);
      const [limited, host] = await Promise.all([
        flood(k.port, "127.0.0.2", "r.test", 200, 200, 800, 8000),
        flood(k.port, "127.0.0.1", "r.test", 500, 50, 2000, 8000),
      ]);
      console.error(
        `rate limit: 127.0.0.2 ${limited.answered}/200 answered ${JSON.stringify(limited.rcodes)}; ` +
          `127.0.0.1 ${host.answered}/500 ${JSON.stringify(host.rcodes)}`,
      );
      assertEquals(host.answered, 500, "127.0.0.1 is never limited");
      assertEquals(host.rcodes, { NOERROR: 500 });
      assertGreater(limited.answered, 29);
      assertLess(limited.answered, 121);
      assertEquals(
        limited.rcodes,
        { NOERROR: limited.answered },
        "the ones over the limit get nothing at all",
      );
      assertEquals(fake.count("r.test"), 1);
    } finally {
      const status = await k.stop();
      await fake.close();
      console.error(`rate limit test: ${((performance.now() - started) / 1000).toFixed(1)} s`);
      assertEquals(status.code, 0);
    }
    // The child's last counters: the unanswered ones were refused by the limit, not lost.
    const stopped = k.lines.find((l) => /stopped: \{/.test(l));
    assert(stopped, `no stopped line; log:\n${k.lines.join("\n")}`);
    const counters = JSON.parse(stopped.slice(stopped.indexOf("{"), stopped.lastIndexOf("}") + 1)) as {
      refused: number;
    };
    assertGreater(counters.refused, 79);
    assertEquals(k.lines.filter((l) => REFUSING.test(l)).length, 1);
  },
});
