/**
 * End to end: `server … -set-mark N -interface IF` in the real keeldns, inside a network namespace
 * of its own (root only; skipped with the reason otherwise, unless KEELDNS_REQUIRE_PEERS=1). An
 * nftables counter on the namespace's output hook counts the queries to the fake upstream that
 * carry the mark and those that do not: every query must carry it. A server bound to an interface
 * that does not exist is refused with a log line naming the reason, answers SERVFAIL, and its
 * upstream is never asked; without CAP_NET_ADMIN and CAP_NET_RAW (setpriv drops them) SO_MARK is refused (EPERM),
 * never silently left off.
 */
import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { udpQuery } from "./helpers/dns_client.ts";
import { exec, findingsInside, runInsideHalf } from "./helpers/netns.ts";
import { FakeUpstream } from "./helpers/fake_upstream.ts";
import { KeeldnsProcess, PEERS_REQUIRED, REPO_ROOT } from "./helpers/keeldns_process.ts";

const INSIDE = "KEELDNS_MARK_INSIDE";
const MARK = 0x2a;

/** Why the test cannot run here, or undefined. */
function cannotRun(): string | undefined {
  if (Deno.build.os !== "linux") return "not Linux";
  if (Deno.uid() !== 0) return "not root (network namespaces, nftables and SO_MARK need it)";
  for (const tool of ["nft", "ip", "setpriv"]) {
    try {
      new Deno.Command(tool, { args: ["--version"], stdout: "null", stderr: "null" }).outputSync();
    } catch {
      return `no ${tool} command (Debian: apt-get install nftables iproute2 util-linux)`;
    }
  }
  return undefined;
}

interface Findings {
  answered: string[];
  marked: number;
  unmarked: number;
  refusedLog: string;
  refusedRcode: string;
  refusedAsked: number;
  noCapRefusal: string;
}

/** Packets counted by the named counter of table inet keeldns_mark. */
async function counter(name: string): Promise<number> {
  const r = await exec(["nft", "-j", "list", "counter", "inet", "keeldns_mark", name]);
  const json = JSON.parse(r.out) as { nftables: { counter?: { packets: number } }[] };
  return json.nftables.find((e) => e.counter)!.counter!.packets;
}

/** Runs in the namespace: the fake upstreams, the nft counters, keeldns twice, the setpriv probe. */
async function inside(): Promise<Findings> {
  const fake = await FakeUpstream.start();
  const refusedFake = await FakeUpstream.start();
  const made = await exec(
    ["nft", "-f", "-"],
    `table inet keeldns_mark {
  counter marked {}
  counter unmarked {}
  chain out {
    type filter hook output priority 0; policy accept;
    udp dport ${fake.port} meta mark ${MARK} counter name "marked"
    udp dport ${fake.port} meta mark != ${MARK} counter name "unmarked"
  }
}
`,
  );
  if (made.code !== 0) throw new Error(`nft: ${made.err}`);
  const found: Partial<Findings> = {};
  const k = await KeeldnsProcess.start(
    `bind 127.0.0.1:{port}\nserver 127.0.0.1:${fake.port} -set-mark ${MARK} -interface lo\n` +
      `cache-size 0\nlog-level info\n`,
    { name: "smartdns.conf" },
  );
  try {
    found.answered = [];
    for (let i = 0; i < 5; i++) {
      const r = await udpQuery(k.port, `m${i}.test`, "A");
      found.answered.push(String(r.answers[0]?.data));
    }
    found.marked = await counter("marked");
    found.unmarked = await counter("unmarked");
  } finally {
    await k.stop();
  }
  const r = await KeeldnsProcess.start(
    `bind 127.0.0.1:{port}\nserver 127.0.0.1:${refusedFake.port} -interface nosuch0\ncache-size 0\nlog-level info\n`,
    { name: "smartdns.conf" },
  );
  try {
    found.refusedLog = (await r.waitFor(/.*is refused: .*nosuch0.*/, 10_000))[0];
    found.refusedRcode = (await udpQuery(r.port, "r.test", "A", { timeoutMs: 8000 })).rcode;
    found.refusedAsked = refusedFake.log.length;
  } finally {
    await r.stop();
  }
  // Without CAP_NET_ADMIN (and CAP_NET_RAW, which Linux 5.17+ also accepts) the mark cannot be set: the server must be refused, saying so.
  const probe = `
    import { createUpstream } from "${REPO_ROOT}upstream/create.ts";
    import { OutgoingSocketPool } from "${REPO_ROOT}upstream/udp_batched.ts";
    const up = createUpstream({ transport: "udp", host: "127.0.0.1", port: ${fake.port}, groups: [],
      excludeDefault: false, setMark: ${MARK} }, new OutgoingSocketPool());
    console.log(up.refusal ?? "not refused");
    Deno.exit(0);`;
  const p = await exec([
    "setpriv",
    "--bounding-set=-net_admin,-net_raw",
    "--inh-caps=-net_admin,-net_raw",
    "--",
    Deno.execPath(),
    "eval",
    "--config",
    `${REPO_ROOT}deno.json`,
    probe,
  ]);
  found.noCapRefusal = (p.out + p.err).trim();
  await fake.close();
  await refusedFake.close();
  return found as Findings;
}

await runInsideHalf(import.meta.main, INSIDE, inside);

const why = cannotRun();
if (why && !PEERS_REQUIRED) console.log(`tests/socket_mark_test.ts skipped: ${why}`);

Deno.test({
  name: "-set-mark and -interface on a UDP server: every query marked, a refused option refuses the server",
  ignore: why !== undefined && !PEERS_REQUIRED,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    if (why) throw new Error(`cannot run (KEELDNS_REQUIRE_PEERS=1): ${why}`);
    const ns = `keeldns-mark-${Deno.pid}`;
    const add = await exec(["ip", "netns", "add", ns]);
    if (add.code !== 0) throw new Error(`ip netns add: ${add.err}`);
    try {
      await exec(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"]);
      const f = await findingsInside<Findings>(ns, import.meta.url, INSIDE);
      console.log(
        `marked queries: ${f.marked}, unmarked: ${f.unmarked}; refused: ${f.refusedLog}; ` +
          `without CAP_NET_ADMIN: ${f.noCapRefusal}`,
      );
      assertEquals(f.answered, Array(5).fill("192.0.2.1"));
      assert(f.marked >= 5, `marked queries counted: ${f.marked}`);
      assertEquals(f.unmarked, 0, "a query left without the mark");
      assertMatch(f.refusedLog, /udp:\/\/127\.0\.0\.1:\d+ is refused: -interface nosuch0: .*No such device/);
      assertEquals(f.refusedRcode, "SERVFAIL");
      assertEquals(f.refusedAsked, 0, "the refused server was asked");
      assertMatch(f.noCapRefusal, /-set-mark 42: setsockopt\(SO_MARK\): Operation not permitted/);
    } finally {
      await exec(["ip", "netns", "del", ns]);
    }
  },
});
