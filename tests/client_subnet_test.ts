/**
 * EDNS Client Subnet and `-check-edns` end to end: keeldns on a smartdns.conf with fake upstreams
 * that record the queries they receive. The subnet each server sees, per query type, with the
 * global `edns-client-subnet`, a server's own `-subnet` and `-subnet-all-query-types`; that a
 * client's own subnet is not passed on; that a `-check-edns` server's answers without an OPT record
 * are not used, over UDP even when a forged one comes first; a client group's own subnet, cached
 * apart from the default clients' answer; a server by host name sending it while the bootstrap
 * lookup of its name goes without. The global setting is compared with
 * Debian's SmartDNS on the same file (its release 40 has no `-subnet` nor `-check-edns`).
 */
import dgram from "node:dgram";
import { Buffer } from "node:buffer";
import { assertEquals } from "./helpers/assert.ts";
import { assertValidAnswer } from "./helpers/answer_check.ts";
import { type FakeBehaviour, FakeUpstream } from "./helpers/fake_upstream.ts";
import { buildQuery, decodeReply, type TestReply, udpExchangeRaw, udpQuery } from "./helpers/dns_client.ts";
import { freePort, KeeldnsProcess, programPath, skipWithout } from "./helpers/keeldns_process.ts";
import { stopPeer } from "./helpers/peers.ts";
import { readClientSubnet } from "../dns/client_subnet.ts";
import { encodePacket } from "../dns/packet.ts";

const TYPES = ["A", "AAAA", "MX", "TXT"];

/** What `fake` saw for `name`: `name type proto subnet` (or `-`), in arrival order. */
function seen(fake: FakeUpstream, name: string): string[] {
  return fake.log.flatMap((line, i) => {
    if (line.split(" ")[0] !== name) return [];
    return [`${line} ${readClientSubnet(fake.queries[i])?.subnet ?? "-"}`];
  });
}

/**
 * {@link seen} once `count` queries for `name` arrived (a server that lost the race may still be
 * receiving its copy when the client has its answer), or what came within 3 s.
 */
async function seenAll(fake: FakeUpstream, name: string, count: number): Promise<string[]> {
  for (let i = 0; i < 60 && seen(fake, name).length < count; i++) await new Promise((r) => setTimeout(r, 50));
  return seen(fake, name);
}

/** One UDP query to keeldns from the loopback address `source`, checked and decoded. */
function udpFrom(port: number, name: string, type: string, source: string): Promise<TestReply> {
  const query = buildQuery(name, type);
  return new Promise((resolve, reject) => {
    const socket = dgram.createSocket("udp4");
    const timer = setTimeout(() => {
      socket.close();
      reject(new Error(`no answer for ${name} ${type} from ${source}`));
    }, 3000);
    socket.on("message", (msg: Uint8Array) => {
      clearTimeout(timer);
      socket.close();
      try {
        assertValidAnswer(new Uint8Array(msg), query, `UDP ${name} from ${source}`);
        resolve(decodeReply(new Uint8Array(msg)));
      } catch (e) {
        reject(e);
      }
    });
    socket.bind({ address: source, port: 0 }, () => socket.send(Buffer.from(query), port, "127.0.0.1"));
  });
}

/** Starts keeldns on a smartdns.conf made of `lines` (a bind line is added). */
function keeldns(lines: string[]): Promise<KeeldnsProcess> {
  const conf = ["bind 127.0.0.1:{port}", "speed-check-mode none", "log-level info", ...lines, ""].join("\n");
  return KeeldnsProcess.start(conf, { name: "smartdns.conf" });
}

Deno.test({
  name: "edns-client-subnet: every query type carries it, as SmartDNS 40 sends it",
  ignore: skipWithout("smartdns"),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const ours = await FakeUpstream.start();
    const theirs = await FakeUpstream.start();
    const dir = await Deno.makeTempDir({ prefix: "keeldns-ecs-" });
    const common = ["edns-client-subnet 1.2.3.4/24", "edns-client-subnet 2001:db8:77::/56"];
    const k = await keeldns([...common, `server 127.0.0.1:${ours.port}`]);
    const smartPort = await freePort();
    await Deno.writeTextFile(
      `${dir}/smartdns.conf`,
      [
        `bind 127.0.0.1:${smartPort}`,
        ...common,
        `server 127.0.0.1:${theirs.port}`,
        "speed-check-mode none",
        "dualstack-ip-selection no",
        "cache-persist no",
        "log-level error",
        `log-file ${dir}/smartdns.log`,
        "",
      ].join("\n"),
    );
    const smartdns = new Deno.Command(programPath("smartdns"), {
      args: ["-f", "-c", `${dir}/smartdns.conf`, "-p", "-"],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    try {
      for (const type of TYPES) await udpQuery(k.port, "ecs.test", type);
      // SmartDNS needs a moment to bind; ask until it answers (bounded).
      for (let i = 0; i < 50; i++) {
        const reply = await udpExchangeRaw(
          smartPort,
          encodePacket({
            type: "query",
            id: 1,
            flags: 0x0100,
            questions: [{ name: "ready.test", type: "A", class: "IN" }],
          }),
          200,
        ).catch(() => new Uint8Array(0)); // SmartDNS 40 adds an OPT record to every answer
        if (reply !== null) break;
      }
      for (const type of TYPES) {
        await udpExchangeRaw(
          smartPort,
          encodePacket({
            type: "query",
            id: 2,
            flags: 0x0100,
            questions: [{ name: "ecs.test", type: type as "A", class: "IN" }],
          }),
          2000,
        ).catch(() => {});
      }
      const expected = [
        "ecs.test A udp 1.2.3.0/24",
        "ecs.test AAAA udp 2001:db8:77::/56",
        "ecs.test MX udp 1.2.3.0/24",
        "ecs.test TXT udp 1.2.3.0/24",
      ];
      assertEquals(await seenAll(theirs, "ecs.test", 4), expected, "SmartDNS, the reference");
      assertEquals(await seenAll(ours, "ecs.test", 4), expected);
    } finally {
      await k.stop();
      await stopPeer(smartdns);
      await ours.close();
      await theirs.close();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test({
  name: "server -subnet replaces the global subnet; A and AAAA only unless -subnet-all-query-types",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const script = (name: string): FakeBehaviour => name.startsWith("tc.") ? { truncateUdp: true } : {};
    const global = await FakeUpstream.start(script);
    const own = await FakeUpstream.start(script);
    const all = await FakeUpstream.start(script);
    const k = await keeldns([
      "edns-client-subnet 1.2.3.0/24",
      `server 127.0.0.1:${global.port}`,
      `server 127.0.0.1:${own.port} -subnet 5.6.7.8/20 -group own`,
      "nameserver /tc.sub.test/own",
      `server 127.0.0.1:${all.port} -subnet 2001:db8:5::/48 -subnet-all-query-types`,
    ]);
    try {
      for (const type of ["A", "AAAA", "MX"]) await udpQuery(k.port, "sub.test", type);
      const byType = async (fake: FakeUpstream) => (await seenAll(fake, "sub.test", 3)).sort();
      // Only an IPv4 subnet configured: AAAA questions carry it too (SmartDNS: "use either").
      assertEquals(await byType(global), [
        "sub.test A udp 1.2.3.0/24",
        "sub.test AAAA udp 1.2.3.0/24",
        "sub.test MX udp 1.2.3.0/24",
      ]);
      assertEquals(await byType(own), [
        "sub.test A udp 5.6.0.0/20",
        "sub.test AAAA udp 5.6.0.0/20",
        "sub.test MX udp -",
      ]);
      assertEquals(await byType(all), [
        "sub.test A udp 2001:db8:5::/48",
        "sub.test AAAA udp 2001:db8:5::/48",
        "sub.test MX udp 2001:db8:5::/48",
      ]);

      // A client's own subnet is not passed on: the configured one goes.
      const query = encodePacket({
        type: "query",
        id: 7,
        flags: 0x0100,
        questions: [{ name: "client.sub.test", type: "A", class: "IN" }],
        additionals: [{
          type: "OPT",
          name: ".",
          udpPayloadSize: 1232,
          options: [{ code: 8, family: 1, sourcePrefixLength: 24, scopePrefixLength: 0, ip: "9.9.9.0" }],
        } as never],
      });
      const reply = await udpExchangeRaw(k.port, query, 3000);
      assertEquals(decodeReply(reply!).answers.map((a) => a.data), ["192.0.2.1"]);
      assertEquals(await seenAll(global, "client.sub.test", 1), ["client.sub.test A udp 1.2.3.0/24"]);
      assertEquals(await seenAll(own, "client.sub.test", 1), ["client.sub.test A udp 5.6.0.0/20"]);

      // A truncated answer is asked again over TCP, with the same subnet (of the one server asked).
      await udpQuery(k.port, "tc.sub.test", "A");
      assertEquals(seen(own, "tc.sub.test"), [
        "tc.sub.test A udp 5.6.0.0/20",
        "tc.sub.test A tcp 5.6.0.0/20",
      ]);
    } finally {
      await k.stop();
      for (const f of [global, own, all]) await f.close();
    }
  },
});

Deno.test({
  name: "server -check-edns: answers without an OPT record are not used, and a forged one does not win",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    // A fast server that never sends an OPT record, and a slower one that does.
    const noOpt = await FakeUpstream.start((name) => ({
      noOpt: true,
      answers: [{ name, type: "A", ttl: 60, data: "192.0.2.66" }],
    }));
    const slow = await FakeUpstream.start((name) => ({
      delayMs: 150,
      answers: [{ name, type: "A", ttl: 60, data: "192.0.2.77" }],
    }));
    // A server whose real answer (with OPT) follows a forged one (without) on the same ID.
    const forged = await FakeUpstream.start(() => ({ forgedFirst: true }));
    const instances: KeeldnsProcess[] = [];
    try {
      for (const check of [true, false]) {
        const flag = check ? " -check-edns" : "";
        const k = await keeldns([
          `server 127.0.0.1:${noOpt.port}${flag}`,
          `server 127.0.0.1:${slow.port}`,
          `server 127.0.0.1:${forged.port}${flag} -group f -exclude-default-group`,
          "nameserver /forged.test/f",
        ]);
        instances.push(k);
        const race = await udpQuery(k.port, `race${check}.test`, "A");
        assertEquals(
          race.answers.map((a) => a.data),
          [check ? "192.0.2.77" : "192.0.2.66"],
          `check-edns ${check}`,
        );
        const poisoned = await udpQuery(k.port, `www${check}.forged.test`, "A");
        assertEquals(
          poisoned.answers.map((a) => a.data),
          [check ? "192.0.2.1" : "198.51.100.66"],
          `forged first, check-edns ${check}`,
        );
      }
    } finally {
      for (const k of instances) await k.stop();
      for (const f of [noOpt, slow, forged]) await f.close();
    }
  },
});

Deno.test({
  name: "edns-client-subnet in a client group: its clients' queries carry it, cached apart",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const shared = await FakeUpstream.start();
    const own = await FakeUpstream.start();
    const k = await keeldns([
      "edns-client-subnet 1.2.3.0/24",
      `server 127.0.0.1:${shared.port}`,
      `server 127.0.0.1:${own.port} -subnet 5.6.7.0/24`,
      "client-rules 127.0.0.2/32 -group kids",
      "group-begin kids",
      "edns-client-subnet 9.9.9.0/24",
      "group-end",
    ]);
    try {
      for (const source of ["127.0.0.1", "127.0.0.2", "127.0.0.1", "127.0.0.2"]) {
        const r = await udpFrom(k.port, "grp.test", "A", source);
        assertEquals(r.answers.map((a) => a.data), ["192.0.2.1"], source);
      }
      // One upstream question per client group (the repeats are cache hits), each with its subnet;
      // the server with its own -subnet sends that one to both.
      assertEquals((await seenAll(shared, "grp.test", 2)).sort(), [
        "grp.test A udp 1.2.3.0/24",
        "grp.test A udp 9.9.9.0/24",
      ]);
      assertEquals(await seenAll(own, "grp.test", 2), [
        "grp.test A udp 5.6.7.0/24",
        "grp.test A udp 5.6.7.0/24",
      ]);
    } finally {
      await k.stop();
      await shared.close();
      await own.close();
    }
  },
});

Deno.test({
  name: "edns-client-subnet: a server by host name sends it; the bootstrap lookup of that name does not",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const bootstrap = await FakeUpstream.start((name) =>
      name === "ecs.named.example"
        ? { answers: [{ name, type: "A", ttl: 300, data: "127.0.0.1" }] }
        : { rcode: "REFUSED" }
    );
    const named = await FakeUpstream.start();
    const k = await keeldns([
      "edns-client-subnet 1.2.3.0/24",
      `server 127.0.0.1:${bootstrap.port} -bootstrap-dns`,
      `server udp://ecs.named.example:${named.port}`,
    ]);
    try {
      const r = await udpQuery(k.port, "hn.ecs.test", "A");
      assertEquals(r.answers.map((a) => a.data), ["192.0.2.1"]);
      assertEquals(await seenAll(named, "hn.ecs.test", 1), ["hn.ecs.test A udp 1.2.3.0/24"]);
      // keeldns's own question for the server's address is no client's: no subnet goes with it.
      const lookups = seen(bootstrap, "ecs.named.example");
      assertEquals(lookups.filter((l) => l.startsWith("ecs.named.example A ")), [
        "ecs.named.example A udp -",
      ]);
      assertEquals(lookups.filter((l) => !l.endsWith(" -")), []);
      assertEquals(seen(bootstrap, "hn.ecs.test"), [], "a -bootstrap-dns server is out of the default group");
    } finally {
      await k.stop();
      await bootstrap.close();
      await named.close();
    }
  },
});
