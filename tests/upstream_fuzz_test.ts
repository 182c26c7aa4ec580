/**
 * End to end, upstream side of issue 9: a fault-injecting fake upstream answers the real keeldns
 * (guardian + child, on each UDP transport) with damaged versions of valid answers — bit flips,
 * length lies, pointer games, count lies, EDNS garbage, truncation — and with answers too large for
 * one UDP datagram, while clients ask over UDP and TCP. Every answer keeldns sends must pass the
 * strict check (tests/helpers/answer_check.ts, applied by the dns_client helpers), an answer built
 * only from damaged upstream answers must be an error, and the child must never restart.
 *
 * The run is deterministic for a seed (printed; `KEELDNS_FUZZ_SEED=n` replays one), bounded in
 * count (`KEELDNS_FUZZ_COUNT`, default 3000 names per transport) and in time (20 s per transport).
 */
import { assert, assertEquals, AssertionError, assertMatch } from "./helpers/assert.ts";
import { hex } from "./helpers/answer_check.ts";
import { tcpQuery, type TestReply, udpQuery } from "./helpers/dns_client.ts";
import {
  ANSWER_SHAPES,
  answerShape,
  bigTxt,
  type FakeBehaviour,
  FakeUpstream,
} from "./helpers/fake_upstream.ts";
import { KeeldnsProcess, runKeeldns, UDP_TRANSPORTS } from "./helpers/keeldns_process.ts";
import { itemSeed, mutate, MUTATIONS, Random } from "./helpers/mutations.ts";
import { messageProblem } from "../dns/message_check.ts";

const SEED = Number(Deno.env.get("KEELDNS_FUZZ_SEED") ?? 20261201);
const COUNT = Number(Deno.env.get("KEELDNS_FUZZ_COUNT") ?? 3000);
const TIME_LIMIT_MS = 20_000;
const CONCURRENCY = 24;
/** Mutation kinds to leave out (comma-separated), to look past one known defect. */
const SKIP = new Set((Deno.env.get("KEELDNS_FUZZ_SKIP") ?? "").split(",").filter(Boolean));
console.error(
  `upstream fuzz: seed ${SEED}, ${COUNT} names per transport (KEELDNS_FUZZ_SEED/COUNT to change)`,
);

/** What the damaging upstream sent for one name. */
interface Sent {
  kinds: string[];
  /** Whether each answer sent passed messageProblem. */
  valid: boolean[];
}

/** The fuzzing upstream: answers `q<i>.fuzz.test` with a damaged base answer (one in 10 intact). */
function fuzzScript(sent: Map<string, Sent>) {
  return (name: string, _type: string): FakeBehaviour => {
    const m = /^q(\d+)\.fuzz\.test$/i.exec(name);
    if (name.toLowerCase().endsWith("selfptr.fuzz.test")) return { mutate: (w) => selfPointer(w) };
    if (name.toLowerCase().startsWith("huge")) return { answers: bigTxt(name, 6000) };
    const special = SPECIAL[name.toLowerCase()];
    if (special) return special(name);
    if (!m) return {};
    const i = Number(m[1]);
    const { behaviour } = answerShape(i % ANSWER_SHAPES, name, "fuzz.test");
    const record = sent.get(name) ?? { kinds: [], valid: [] };
    sent.set(name, record);
    return {
      ...behaviour,
      mutate(wire, { proto }) {
        // Same damage for the same name and transport, whatever the arrival order or retransmits.
        const rnd = new Random(itemSeed(SEED, i, proto === "tcp" ? 1 : 0));
        let out = rnd.int(10) === 0 ? { kind: "intact", wire } : mutate(wire, rnd);
        if (SKIP.has(out.kind)) out = { kind: "intact", wire };
        record.kinds.push(`${out.kind}/${proto}`);
        record.valid.push(messageProblem(out.wire) === null);
        return out.wire;
      },
    };
  };
}

/** Offset of the first answer record (after a question without pointers). */
function firstRecord(wire: Uint8Array): number {
  let pos = 12;
  while (wire[pos] !== 0) pos += wire[pos] + 1;
  return pos + 5;
}

/** Single cases, each one class of damage, with the answer it starts from. */
const SPECIAL: Record<string, (name: string) => FakeBehaviour> = {
  // Well-formed: OPT first in the additional section, then records compressed against each
  // other. Cutting the OPT out must not leave their pointers pointing 11 bytes off.
  "optmid.fuzz.test": () => ({
    answers: [{ name: "optmid.fuzz.test", type: "A", ttl: 300, data: "192.0.2.1" }],
    mutate: (w) => MUTATIONS["opt-in-middle"](w, new Random(1))!,
  }),
  // An answer with another opcode (5, UPDATE) than the query's.
  "opcode.fuzz.test": () => ({
    mutate: (w) => {
      w[2] = (w[2] & 0x87) | (5 << 3);
      return w;
    },
  }),
  // A TXT record whose character-string promises 192 bytes in a 4-byte rdata.
  "badtxt.fuzz.test": (name) => ({
    answers: [{ name, type: "TXT", ttl: 300, data: "abc" }],
    mutate: (w) => {
      const at = firstRecord(w) + name.length + 2 + 10; // the rdata: 03 61 62 63
      w[at] = 0xc0;
      return w;
    },
  }),
};

/** The answer's first owner name replaced by a compression pointer to itself. */
function selfPointer(wire: Uint8Array): Uint8Array {
  const pos = firstRecord(wire);
  let end = pos;
  while (wire[end] !== 0) end += wire[end] + 1;
  end += 1;
  return new Uint8Array([...wire.subarray(0, pos), 0xc0 | (pos >> 8), pos & 0xff, ...wire.subarray(end)]);
}

/** The healthy second upstream: SERVFAIL at once for fuzz names, a valid answer for `good-*`. */
function goodScript(name: string): FakeBehaviour {
  if (name.toLowerCase().startsWith("good-")) {
    return { delayMs: 50, answers: [{ name, type: "A", ttl: 300, data: "192.0.2.99" }] };
  }
  return { rcode: "SERVFAIL" };
}

for (const transport of UDP_TRANSPORTS) {
  Deno.test({
    name:
      `upstream fuzz: damaged and oversized upstream answers never reach a client malformed (${transport} UDP)`,
    sanitizeOps: false,
    sanitizeResources: false,
    async fn(t) {
      const sent = new Map<string, Sent>();
      const bad = await FakeUpstream.start(fuzzScript(sent));
      const good = await FakeUpstream.start(goodScript);
      const k = await KeeldnsProcess.start(`
[server]
bind = ["127.0.0.1:{port}"]
upstream-timeout = 400
udp-transport = "${transport}"
[[upstream]]
address = "udp://127.0.0.1:${bad.port}"
[[upstream]]
address = "udp://127.0.0.1:${good.port}"
[cache]
size = 4096
[log]
level = "info"
`);
      const child = k.childPid;
      try {
        await t.step(`the ${transport} UDP transport is the one serving`, async () => {
          await k.waitFor(new RegExp(`UDP transport: ${transport}`), 5000);
        });

        await t.step("an owner name pointing to itself is never passed on", async () => {
          const alone = await udpQuery(k.port, "selfptr.fuzz.test", "A", { edns: 1232 });
          assertEquals(alone.rcode, "SERVFAIL", "only a malformed answer and a SERVFAIL: SERVFAIL");
          const overTcp = await tcpQuery(k.port, "tcp-selfptr.fuzz.test", "A");
          assertEquals(overTcp.rcode, "SERVFAIL");
          const raced = await udpQuery(k.port, "good-selfptr.fuzz.test", "A");
          assertEquals(raced.rcode, "NOERROR");
          assertEquals(raced.answers.map((a) => a.data), ["192.0.2.99"], "the other upstream's valid answer");
          assert(
            bad.count("good-selfptr.fuzz.test") >= 1,
            "the damaging upstream was asked (and answered first)",
          );
        });

        await t.step(
          "an upstream answer over 4096 bytes arrives whole over TCP, as TC=1 over UDP",
          async () => {
            const full = await tcpQuery(k.port, "huge.fuzz.test", "TXT", { timeoutMs: 5000 });
            assertEquals(full.rcode, "NOERROR");
            assert(!full.tc);
            assertEquals(full.answers.length, bigTxt("huge.fuzz.test", 6000).length);
            assert(full.raw.length > 4096, `${full.raw.length} bytes`);
            const udp = await udpQuery(k.port, "huge2.fuzz.test", "TXT", { edns: 4096 });
            assert(udp.tc, "too big for the client's 1232 bytes: TC");
            assertEquals(udp.answers.length, 0);
            const again = await tcpQuery(k.port, "huge2.fuzz.test", "TXT");
            assertEquals(again.answers.length, full.answers.length, "then whole over TCP");
            if (transport === "batched") {
              // The 4096-byte receive slot cuts it: keeldns must have asked again over TCP.
              assert(
                bad.log.includes("huge.fuzz.test TXT tcp"),
                bad.log.filter((l) => l.startsWith("huge")).join(),
              );
            }
          },
        );

        await t.step(
          "single damage classes: OPT amid compressed records, another opcode, a TXT string too long",
          async () => {
            const problems: string[] = [];
            for (
              const [name, type] of [["optmid.fuzz.test", "A"], ["opcode.fuzz.test", "A"], [
                "badtxt.fuzz.test",
                "TXT",
              ]]
            ) {
              for (const edns of [undefined, 1232]) {
                try {
                  const r = await udpQuery(k.port, name, type, { edns });
                  if (name === "optmid.fuzz.test") {
                    assertEquals(
                      r.answers.map((a) => a.data),
                      ["192.0.2.1"],
                      "a well-formed answer is passed on",
                    );
                  }
                } catch (e) {
                  problems.push(`${name} ${edns ? "with" : "without"} EDNS0: ${(e as Error).message}`);
                }
              }
            }
            assertEquals(problems, []);
          },
        );

        await t.step(`${COUNT} names answered with damaged answers (seed ${SEED})`, async () => {
          const deadline = performance.now() + TIME_LIMIT_MS;
          const failures: string[] = [];
          const tally = { asked: 0, answered: 0, servfail: 0, tc: 0, passedOn: 0 };
          let next = 0;
          const worker = async () => {
            while (next < COUNT && performance.now() < deadline && failures.length < 200) {
              const i = next++;
              const name = `q${i}.fuzz.test`;
              const { type } = answerShape(i % ANSWER_SHAPES, name, "fuzz.test");
              const rnd = new Random(itemSeed(SEED, i, 7));
              const overTcp = rnd.int(5) === 0;
              const edns = rnd.pick([undefined, 1232, 4096]);
              tally.asked++;
              let reply: TestReply;
              try {
                reply = overTcp
                  ? await tcpQuery(k.port, name, type, { edns, timeoutMs: 4000 })
                  : await udpQuery(k.port, name, type, { edns, timeoutMs: 4000 });
              } catch (e) {
                const record = sent.get(name);
                failures.push(
                  `${name} ${type} over ${overTcp ? "TCP" : "UDP"} (upstream sent ${
                    record?.kinds.join(", ")
                  }): ${
                    e instanceof AssertionError ? e.message : `no valid answer: ${(e as Error).message}`
                  }`,
                );
                continue;
              }
              tally.answered++;
              if (reply.tc) tally.tc++;
              if (reply.rcode === "SERVFAIL") {
                tally.servfail++;
                continue;
              }
              const record = sent.get(name);
              if (!record?.valid.some((v) => v)) {
                failures.push(
                  `${name}: keeldns answered ${reply.rcode} although every upstream answer was malformed ` +
                    `(${record?.kinds.join(", ")}); answer ${hex(reply.raw)}`,
                );
              } else tally.passedOn++;
            }
          };
          await Promise.all(Array.from({ length: CONCURRENCY }, worker));
          const kinds = new Map<string, number>();
          for (const r of sent.values()) {
            for (const kind of r.kinds) kinds.set(kind, (kinds.get(kind) ?? 0) + 1);
          }
          const damaged = [...sent.values()].reduce(
            (n, r) => n + r.kinds.filter((x) => !x.startsWith("intact")).length,
            0,
          );
          console.error(
            `upstream fuzz (${transport}): seed ${SEED}, ${
              JSON.stringify(tally)
            }, ${damaged} damaged answers sent; ` +
              [...kinds].sort().map(([kind, n]) => `${kind} ${n}`).join(", "),
          );
          // Grouped by mutation kind and problem, one sample each, so one defect does not hide another.
          const groups = new Map<string, { n: number; sample: string }>();
          for (const f of failures) {
            const key = (/sent ([^)]*)\)/.exec(f)?.[1].split(", ").at(-1) ?? "?") + ": " +
              (/: (invalid DNS answer \([^)]*\): )?([^\n]*)/.exec(f.slice(f.indexOf("):") + 2))?.[2] ?? f)
                .replace(/\d+/g, "N").slice(0, 120);
            const g = groups.get(key) ?? { n: 0, sample: f };
            g.n++;
            groups.set(key, g);
          }
          assertEquals(
            [...groups].map(([key, g]) => `${g.n}× ${key}\n    e.g. ${g.sample.slice(0, 1500)}`),
            [],
            `seed ${SEED}: ${failures.length} answers failed`,
          );
          assert(
            tally.answered >= Math.min(COUNT, 300),
            `only ${tally.answered} answered in ${TIME_LIMIT_MS} ms`,
          );
        });

        await t.step("the same child served it all; the guardian restarted nothing", async () => {
          assertEquals(k.childPid, child);
          assert(!k.lines.some((l) => /exited with code|was killed by/.test(l)), "no child died");
          const status = await runKeeldns(["status", "-p", `${k.dir}/keeldns.pid`]);
          assertEquals(status.code, 0, status.stderr);
          assertMatch(status.stdout, /^restarts: 0$/m);
          assertEquals((await udpQuery(k.port, "good-final.fuzz.test", "A")).rcode, "NOERROR");
        });
      } finally {
        await k.stop();
        await bad.close();
        await good.close();
      }
    },
  });
}
