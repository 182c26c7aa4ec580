/**
 * End to end: garbage never kills the child, and every real query among it is answered.
 */
import { assert, assertEquals } from "./helpers/assert.ts";
import { buildQuery, decodeReply, udpExchangeRaw, udpQuery } from "./helpers/dns_client.ts";
import { FakeUpstream } from "./helpers/fake_upstream.ts";
import { KeeldnsProcess, UDP_TRANSPORTS } from "./helpers/keeldns_process.ts";
import { frame, writeAll } from "../dns/stream_framing.ts";
import { decodePacket } from "../dns/packet.ts";
import dgram from "node:dgram";
import { Buffer } from "node:buffer";

/** Asks like a stub resolver: up to three tries, a second apart. */
async function queryWithRetries(port: number, name: string): Promise<{ rcode: string }> {
  for (let attempt = 1;; attempt++) {
    try {
      return await udpQuery(port, name, "A", { timeoutMs: 1000 });
    } catch (e) {
      if (attempt === 3) throw e;
    }
  }
}

/** Crafted malformed queries: [bytes, expected rcode or null when it must be dropped]. */
function crafted(): [string, Uint8Array, string | null][] {
  const header = (qd: number, flags2 = 0x01) => [0x12, 0x34, flags2, 0x00, 0, qd, 0, 0, 0, 0, 0, 0];
  return [
    ["one byte", new Uint8Array([0x42]), null],
    ["header only, one question promised", new Uint8Array(header(1)), "FORMERR"],
    ["no question", new Uint8Array(header(0)), "FORMERR"],
    ["two questions", new Uint8Array([...header(2), 1, 97, 0, 0, 1, 0, 1, 1, 98, 0, 0, 1, 0, 1]), "FORMERR"],
    ["pointer loop in the question", new Uint8Array([...header(1), 0xc0, 0x0c, 0, 1, 0, 1]), "FORMERR"],
    ["label longer than the packet", new Uint8Array([...header(1), 63, 97, 98, 99]), "FORMERR"],
    [
      "name over 255 bytes",
      new Uint8Array([...header(1), ...Array(5).fill([63, ...Array(63).fill(97)]).flat(), 0, 0, 1, 0, 1]),
      "FORMERR",
    ],
    ["question without type", new Uint8Array([...header(1), 1, 97, 0]), "FORMERR"],
    ["a response (QR set)", new Uint8Array([...header(1, 0x81), 1, 97, 0, 0, 1, 0, 1]), null],
    ["opcode UPDATE", new Uint8Array([...header(1, 0x28), 1, 97, 0, 0, 1, 0, 1]), "NOTIMP"],
    [
      "OPT record cut short",
      new Uint8Array([0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 1, 1, 97, 0, 0, 1, 0, 1, 0, 0, 41]),
      "FORMERR",
    ],
  ];
}

for (const transport of UDP_TRANSPORTS) {
  Deno.test({
    name:
      `garbage datagrams and streams never kill the child; real queries among them are answered (${transport} UDP)`,
    sanitizeOps: false,
    sanitizeResources: false,
    async fn(t) {
      const fake = await FakeUpstream.start();
      const k = await KeeldnsProcess.start(`
[server]
bind = ["127.0.0.1:{port}"]
udp-transport = "${transport}"
[[upstream]]
address = "udp://127.0.0.1:${fake.port}"
`);
      const child = k.childPid;
      try {
        await t.step("crafted malformed queries get FORMERR/NOTIMP or are dropped", async () => {
          for (const [what, bytes, expected] of crafted()) {
            const reply = await udpExchangeRaw(k.port, bytes, expected === null ? 300 : 2000);
            if (expected === null) {
              assertEquals(reply, null, `${what}: must be dropped`);
            } else {
              assert(reply !== null, `${what}: expected ${expected}`);
              assertEquals(reply[0] << 8 | reply[1], 0x1234, `${what}: ID echoed`);
              assertEquals(decodeReply(reply).rcode, expected, what);
            }
          }
        });
        await t.step("10,000 random datagrams interleaved with real queries", async () => {
          const socket = dgram.createSocket("udp4");
          let seed = 12345;
          const random = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
          const answers: Promise<unknown>[] = [];
          for (let i = 0; i < 10_000; i++) {
            const bytes = new Uint8Array(Math.floor(random() * 700));
            for (let j = 0; j < bytes.length; j++) bytes[j] = Math.floor(random() * 256);
            if (bytes.length > 2) bytes[2] &= 0x7f; // mostly "queries", so the parser is exercised
            socket.send(Buffer.from(bytes), k.port, "127.0.0.1");
            if (i % 500 === 0) answers.push(queryWithRetries(k.port, `real${i}.test`));
            // Pace the flood so it tests the parser, not the kernel's socket buffer.
            if (i % 25 === 0) await new Promise((r) => setTimeout(r, 1));
          }
          const replies = await Promise.all(answers) as { rcode: string }[];
          socket.close();
          assertEquals(replies.length, 20);
          assert(replies.every((r) => r.rcode === "NOERROR"), "every real query answered");
        });
        await t.step("garbage over TCP closes that connection only", async () => {
          const conn = await Deno.connect({ hostname: "127.0.0.1", port: k.port });
          await writeAll(conn, frame(new Uint8Array([1, 2, 3])));
          await writeAll(conn, new Uint8Array([0x01, 0xf4, 9, 9, 9])); // promises 500 bytes, sends 3
          conn.close();
          const ok = await (await import("./helpers/dns_client.ts")).tcpQuery(k.port, "after.test", "A");
          assertEquals(ok.rcode, "NOERROR");
        });
        await t.step("the same child is still serving", async () => {
          assertEquals(k.childPid, child);
          assert(!k.lines.some((l) => /exited with code|was killed by/.test(l)), "no child died");
          const r = await udpQuery(k.port, "final.test", "A");
          assertEquals(r.rcode, "NOERROR");
        });
      } finally {
        await k.stop();
        await fake.close();
      }
    },
  });
}

Deno.test("buildQuery helper produces a parseable query (guards the test itself)", () => {
  const q = buildQuery("x.test", "A", { id: 9 });
  assertEquals(decodePacket(q).id, 9);
});
