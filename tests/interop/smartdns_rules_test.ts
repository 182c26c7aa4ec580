/**
 * SmartDNS as the reference for domain rules: the same smartdns.conf runs under Debian's SmartDNS
 * (release 40) and under keeldns, each with its own pair of fake upstreams (the default group and
 * "office"), and every answer is compared: rcode, answer records (type and data, sorted), whether
 * the authority holds an SOA, and which upstream group was asked.
 *
 * Compared: single-IP `address` per family, `#4`, `#6`, `-`, `nameserver` groups with
 * `-exclude-default-group` and `-`, `domain-rules -a/-n`, plain `domain-set` lists,
 * `force-qtype-SOA 65`, `force-AAAA-SOA`.
 *
 * Not compared, because release 40 has no such feature (found by running it, and in SmartDNS's
 * history: `cname` came 2023-02-11, after release 40; `hosts-file` is accepted but does nothing
 * there, hosts-file support came 2024-01-03): `cname`, `srv-record`, `txt-record`,
 * `expand-ptr-from-address`, `hosts-file`, domain-set files in hosts or adblock format (a keeldns
 * extension). tests/rules_test.ts covers those against SmartDNS HEAD's semantics.
 *
 * Where release 40 differs from SmartDNS HEAD, keeldns follows HEAD: the test asserts keeldns's
 * HEAD answer and the comparison step is reported as ignored, with the difference in its name.
 */
import dgram from "node:dgram";
import { Buffer } from "node:buffer";
import { assert, assertEquals } from "../helpers/assert.ts";
import { buildQuery, tcpQuery, type TestReply, udpExchangeRaw, udpQuery } from "../helpers/dns_client.ts";
import { decodeReply } from "../helpers/dns_client.ts";
import { type FakeScript, FakeUpstream } from "../helpers/fake_upstream.ts";
import { freePort, KeeldnsProcess, programPath, skipWithout } from "../helpers/keeldns_process.ts";
import { stopPeer, waitForAnswer } from "../helpers/peers.ts";
import { decodePacket, type Packet } from "../../dns/packet.ts";
import { frame, FramedReader, writeAll } from "../../dns/stream_framing.ts";

function upstreamScript(last: number): FakeScript {
  return (name, type) => {
    if (type === "A") return { answers: [{ name, type: "A", ttl: 300, data: `192.0.2.${last}` }] };
    if (type === "AAAA") return { answers: [{ name, type: "AAAA", ttl: 300, data: `2001:db8::${last}` }] };
    return {};
  };
}

/** The rules both servers get (after the bind/server lines). */
const RULES = (dir: string) =>
  `address /v4.test/192.0.2.20
address /both.test/192.0.2.30
address /both.test/2001:db8::30
address /multi.test/192.0.2.10,192.0.2.11
address /block.test/#
address /ok.block.test/-
address /ok6.block.test/-6
address /b4.test/#4
address /b6.test/#6
nameserver /office.test/office
nameserver /public.office.test/-
domain-rules /dr.test/ -a 192.0.2.40
domain-rules /drn.test/ -n office
domain-set -name plain -file ${dir}/plain.list
address /domain-set:plain/#6
nameserver /domain-set:plain/office
force-qtype-SOA 65
address /*wild.test/192.0.2.50
address /*.sub.test/192.0.2.51
address /-.root.test/192.0.2.52
address /中国.test/192.0.2.53
`;

function conf(port: string, def: number, office: number, dir: string, extra: string): string {
  return `bind 127.0.0.1:${port}
bind-tcp 127.0.0.1:${port}
server 127.0.0.1:${def}
server 127.0.0.1:${office} -group office -exclude-default-group
speed-check-mode none
response-mode fastest-response
dualstack-ip-selection no
serve-expired no
cache-persist no
prefetch-domain no
log-level error
log-file ${dir}/smartdns.log
${extra}`;
}

/** One server under test with its own upstreams. */
interface Side {
  port: number;
  def: FakeUpstream;
  office: FakeUpstream;
  checked: boolean;
}

/** A type-65 (HTTPS) query, built by hand: dns-packet does not know the type. */
function rawQuery(name: string, type: string): Uint8Array {
  if (type !== "HTTPS") return buildQuery(name, type);
  const wire = buildQuery(name, "A");
  wire[wire.length - 4] = 0;
  wire[wire.length - 3] = 65;
  return wire;
}

/** One UDP exchange without the strict check (for SmartDNS's answers). */
function udpLoose(port: number, query: Uint8Array): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const socket = dgram.createSocket("udp4");
    const timer = setTimeout(() => {
      socket.close();
      reject(new Error(`no answer from port ${port}`));
    }, 3000);
    socket.on("message", (msg: Uint8Array) => {
      clearTimeout(timer);
      socket.close();
      resolve(new Uint8Array(msg));
    });
    socket.send(Buffer.from(query), port, "127.0.0.1");
  });
}

async function tcpLoose(port: number, query: Uint8Array): Promise<Uint8Array> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const timer = setTimeout(() => conn.close(), 3000);
  try {
    await writeAll(conn, frame(query));
    const raw = await new FramedReader(conn).next();
    if (!raw) throw new Error(`TCP from port ${port} closed without an answer`);
    return raw;
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch { /* closed by the timer */ }
  }
}

function shapeOf(
  r: { rcode: string; answers: { type: string; data?: unknown }[]; authorities: { type: string }[] },
) {
  return {
    rcode: r.rcode,
    answers: r.answers.map((a) => `${a.type} ${typeof a.data === "object" ? JSON.stringify(a.data) : a.data}`)
      .sort(),
    soa: r.authorities.some((a) => a.type === "SOA"),
  };
}

/** What one server answers for `name type`, and which of its upstream groups were asked. */
async function observe(side: Side, name: string, type: string, tcp = false) {
  const before = [side.def.count(name), side.office.count(name)];
  let reply;
  if (side.checked) {
    // keeldns: every answer goes through the strict checker.
    let checked: TestReply;
    if (type === "HTTPS") {
      const raw = await udpExchangeRaw(side.port, rawQuery(name, type), 3000);
      if (!raw) throw new Error(`no answer for ${name} ${type}`);
      checked = decodeReply(raw);
    } else checked = await (tcp ? tcpQuery : udpQuery)(side.port, name, type);
    reply = shapeOf(checked);
  } else {
    const query = rawQuery(name, type);
    const raw = await (tcp ? tcpLoose : udpLoose)(side.port, query);
    const p = decodePacket(raw) as Packet & { rcode: string };
    reply = shapeOf({
      rcode: p.rcode,
      answers: (p.answers ?? []) as { type: string; data?: unknown }[],
      authorities: (p.authorities ?? []) as { type: string }[],
    });
  }
  const asked = [
    side.def.count(name) > before[0] ? "default" : "",
    side.office.count(name) > before[1] ? "office" : "",
  ].filter((g) => g !== "");
  return { ...reply, asked };
}

/** A pair: SmartDNS and keeldns on the same rules, each with its own upstreams. */
async function startPair(dir: string, extra: string) {
  const sides: Side[] = [];
  const fakes: FakeUpstream[] = [];
  for (let i = 0; i < 2; i++) {
    const def = await FakeUpstream.start(upstreamScript(1));
    const office = await FakeUpstream.start(upstreamScript(2));
    fakes.push(def, office);
    sides.push({ port: 0, def, office, checked: i === 1 });
  }
  const smartPort = await freePort();
  const smartDir = await Deno.makeTempDir({ dir, prefix: "smartdns-" });
  await Deno.writeTextFile(
    `${smartDir}/smartdns.conf`,
    conf(String(smartPort), sides[0].def.port, sides[0].office.port, smartDir, extra),
  );
  const smartdns = new Deno.Command(programPath("smartdns"), {
    args: ["-f", "-x", "-c", `${smartDir}/smartdns.conf`, "-p", "-"],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  sides[0].port = smartPort;
  let keeldns: KeeldnsProcess | undefined;
  try {
    keeldns = await KeeldnsProcess.start(
      conf("{port}", sides[1].def.port, sides[1].office.port, `${dir}/keeldns`, extra),
      { name: "smartdns.conf" },
    );
    sides[1].port = keeldns.port;
    await waitForAnswer(smartPort, "ready.probe", "192.0.2.1");
  } catch (e) {
    await stopPeer(smartdns);
    await keeldns?.stop();
    for (const f of fakes) await f.close();
    throw e;
  }
  return {
    smart: sides[0],
    keel: sides[1],
    async stop() {
      await keeldns!.stop();
      await stopPeer(smartdns);
      for (const f of fakes) await f.close();
    },
  };
}

type Query = [name: string, type: string, tcp?: "tcp"];

/** Queries both servers agree on. */
const SAME: Query[] = [
  ["v4.test", "A"],
  ["v4.test", "A", "tcp"],
  ["www.v4.test", "A"],
  ["both.test", "A"],
  ["both.test", "AAAA"],
  ["both.test", "AAAA", "tcp"],
  ["ok.block.test", "A"],
  ["ok6.block.test", "AAAA"],
  ["b4.test", "A"],
  ["b4.test", "AAAA"],
  ["b6.test", "A"],
  ["b6.test", "AAAA"],
  ["x.b6.test", "AAAA", "tcp"],
  ["office.test", "A"],
  ["www.office.test", "AAAA"],
  ["public.office.test", "A"],
  ["elsewhere.test", "A"],
  ["elsewhere.test", "MX"],
  ["dr.test", "A"],
  ["drn.test", "A"],
  ["drn.test", "A", "tcp"],
  ["www.plain.test", "A"],
  ["www.plain.test", "AAAA"],
  ["x.plain2.test", "A"],
  ["x.plain2.test", "AAAA", "tcp"],
  ["plain.test", "A"],
  ["fine.test", "HTTPS"],
  ["b4.test", "HTTPS"],
];

Deno.test({
  name: "domain rules: keeldns answers like SmartDNS 40 for the same smartdns.conf (HEAD where they differ)",
  ignore: skipWithout("smartdns", "dig"),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const dir = await Deno.makeTempDir({ prefix: "keeldns-smartdns-rules-" });
    await Deno.mkdir(`${dir}/keeldns`);
    await Deno.writeTextFile(`${dir}/plain.list`, "www.plain.test\nplain2.test\n");
    const pair = await startPair(dir, RULES(dir));
    const { smart, keel } = pair;
    try {
      for (const [name, type, tcp] of SAME) {
        await t.step(`${name} ${type}${tcp ? " over TCP" : ""}: same answer`, async () => {
          const reference = await observe(smart, name, type, tcp === "tcp");
          assertEquals(
            await observe(keel, name, type, tcp === "tcp"),
            reference,
            `SmartDNS 40 said ${JSON.stringify(reference)}`,
          );
        });
      }
      await t.step(
        "the comparison is not vacuous: blocks, local answers and routing all occurred",
        async () => {
          const seen = await Promise.all([
            observe(smart, "more.b4.test", "A"),
            observe(smart, "x.v4.test", "A"),
            observe(smart, "y.office.test", "A"),
            observe(smart, "z.www.plain.test", "A"),
          ]);
          assertEquals(seen.map((s) => [s.soa, s.answers, s.asked]), [
            [true, [], []],
            [false, ["A 192.0.2.20"], []],
            [false, ["A 192.0.2.2"], ["office"]],
            [false, ["A 192.0.2.2"], ["office"]],
          ]);
        },
      );

      // Release 40 differs from HEAD here; keeldns follows HEAD.
      const head = async (
        name: string,
        type: string,
        expected: ReturnType<typeof shapeOf> & { asked: string[] },
      ) => {
        assertEquals(
          await observe(keel, name, type),
          expected,
          `keeldns (HEAD semantics) for ${name} ${type}`,
        );
      };
      const nx = { rcode: "NXDOMAIN", answers: [], soa: true, asked: [] };
      const empty = { rcode: "NOERROR", answers: [], soa: true, asked: [] };
      await t.step("address #: keeldns answers NXDOMAIN + SOA (HEAD test-address.cc soa)", async () => {
        await head("block.test", "A", nx);
        await head("x.block.test", "AAAA", nx);
        await head("block.test", "HTTPS", nx);
        // release 40 answers NOERROR + SOA: shown here so the skip below stays honest
        const v40 = await observe(smart, "block.test", "A");
        assertEquals(v40, { ...nx, rcode: "NOERROR" });
      });
      await t.step({
        name: "compare address # rcode: SKIPPED, v40 answers NOERROR where HEAD answers NXDOMAIN",
        ignore: true,
        fn: () => {},
      });
      await t.step("an IPv4-only address: keeldns answers AAAA empty + SOA (HEAD)", async () => {
        await head("v4.test", "AAAA", empty);
        await head("dr.test", "AAAA", empty);
        assert((await observe(smart, "v4.test", "AAAA")).asked.includes("default"), "v40 forwards it");
      });
      await t.step({
        name: "compare AAAA of an IPv4-only address: SKIPPED, v40 forwards it, HEAD answers it empty",
        ignore: true,
        fn: () => {},
      });
      await t.step("several IPs on one address line: keeldns answers them all (HEAD)", async () => {
        await head("multi.test", "A", {
          rcode: "NOERROR",
          answers: ["A 192.0.2.10", "A 192.0.2.11"],
          soa: false,
          asked: [],
        });
        // release 40 logs "add address multi.test, 192.0.2.10,192.0.2.11 failed" and forwards
        assertEquals((await observe(smart, "multi.test", "A")).asked, ["default"]);
      });
      await t.step({
        name: "compare several IPs per address line: SKIPPED, v40 rejects the line and forwards the name",
        ignore: true,
        fn: () => {},
      });
      await t.step("wildcards *x, *. and -. and a unicode rule: keeldns matches them (HEAD)", async () => {
        const local = (ip: string) => ({ rcode: "NOERROR", answers: [`A ${ip}`], soa: false, asked: [] });
        await head("awild.test", "A", local("192.0.2.50"));
        await head("a.sub.test", "A", local("192.0.2.51"));
        await head("root.test", "A", local("192.0.2.52"));
        await head("xn--fiqs8s.test", "A", local("192.0.2.53"));
        for (const name of ["awild.test", "a.sub.test", "root.test", "xn--fiqs8s.test"]) {
          assertEquals((await observe(smart, name, "A")).asked, ["default"], `v40 forwards ${name}`);
        }
      });
      await t.step({
        name: "compare *x.test, *.x.test, -.x.test and IDN rules: SKIPPED, v40 matches none of them",
        ignore: true,
        fn: () => {},
      });
      await t.step("-6 under a # parent: keeldns blocks A (only AAAA is exempted)", async () => {
        await head("ok6.block.test", "A", nx);
        // release 40 forwards A too, as if the line said "-"
        assertEquals((await observe(smart, "ok6.block.test", "A")).asked, ["default"]);
      });
      await t.step({
        name: "compare A of a -6 name under a # parent: SKIPPED, v40 exempts A too",
        ignore: true,
        fn: () => {},
      });
      await t.step("force-qtype-SOA 65 on an exempted name: keeldns forwards HTTPS (HEAD)", async () => {
        // HEAD: `address /d/-` sets skip_qtype_soa before _dns_server_qtype_soa (test-qtype-soa.cc AAAA_Except).
        assertEquals((await observe(keel, "ok.block.test", "HTTPS")).asked, ["default"]);
        assertEquals(await observe(smart, "ok.block.test", "HTTPS"), { ...empty });
      });
      await t.step({
        name: "compare HTTPS of an address - name under force-qtype-SOA 65: SKIPPED, v40 answers SOA",
        ignore: true,
        fn: () => {},
      });
    } finally {
      await pair.stop();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test({
  name: "force-AAAA-SOA: keeldns answers like SmartDNS 40",
  ignore: skipWithout("smartdns", "dig"),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const dir = await Deno.makeTempDir({ prefix: "keeldns-smartdns-aaaa-" });
    await Deno.mkdir(`${dir}/keeldns`);
    const pair = await startPair(
      dir,
      "force-AAAA-SOA yes\naddress /v4.test/192.0.2.20\naddress /b4.test/#4\n",
    );
    try {
      const queries: Query[] = [
        ["any.test", "AAAA"],
        ["any.test", "AAAA", "tcp"],
        ["any.test", "A"],
        ["v4.test", "A"],
        ["v4.test", "AAAA"],
        ["b4.test", "A"],
        ["b4.test", "MX"],
      ];
      for (const [name, type, tcp] of queries) {
        await t.step(`${name} ${type}${tcp ? " over TCP" : ""}: same answer`, async () => {
          const reference = await observe(pair.smart, name, type, tcp === "tcp");
          assertEquals(await observe(pair.keel, name, type, tcp === "tcp"), reference);
        });
      }
    } finally {
      await pair.stop();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
