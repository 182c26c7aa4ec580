/**
 * `deno task soak`: a long fuzz soak of the real keeldns (guardian + child), run on demand, not in
 * the default test run. Two sides at once, each at a bounded rate:
 *
 * - client side: mutated queries (tests/helpers/mutations.ts, plus random datagrams) sent to
 *   keeldns; every answer must pass the strict check of tests/helpers/answer_check.ts against
 *   the query it answers (a header-only FORMERR/NOTIMP is a valid answer to garbage);
 * - upstream side: intact queries for fresh names, answered by a fake upstream with mutated
 *   versions of valid answers (some over 4096 bytes); every answer must pass the strict check, and
 *   one that keeldns built from damaged upstream answers only must be an error.
 *
 * Prints datagrams sent, answers, invalid answers (must be 0), child restarts (must be 0), child
 * RSS before and after, and the duration; exits 1 if an invalid answer came or the child restarted.
 * Deterministic for a seed in what is sent (timing decides what is in flight together).
 *
 * Options: --count N datagrams per side (default 1000000), --rate N datagrams per second per side
 * (default 1500: above that, on 2 cores, this process lags and answers come late), --seed N (default 20261201), --transport auto|batched|portable (default auto),
 * --max-seconds N (stops by itself after that, default 1500), --skip KINDS (comma-separated mutation
 * kinds sent intact instead, to look past a known defect).
 *
 * @module
 */
import dgram from "node:dgram";
import { Buffer } from "node:buffer";
import { parseArgs } from "node:util";
import { answerProblem, hex } from "../tests/helpers/answer_check.ts";
import { buildQuery } from "../tests/helpers/dns_client.ts";
import { answerShape, type FakeBehaviour, FakeUpstream } from "../tests/helpers/fake_upstream.ts";
import { KeeldnsProcess, runKeeldns } from "../tests/helpers/keeldns_process.ts";
import { itemSeed, mutate, Random } from "../tests/helpers/mutations.ts";
import { messageProblem } from "../dns/message_check.ts";

const { values: opts } = parseArgs({
  args: Deno.args,
  options: {
    count: { type: "string", default: "1000000" },
    rate: { type: "string", default: "1500" },
    seed: { type: "string", default: "20261201" },
    transport: { type: "string", default: "auto" },
    "max-seconds": { type: "string", default: "1500" },
    skip: { type: "string", default: "" },
  },
});
const COUNT = Number(opts.count);
const RATE = Number(opts.rate);
const SEED = Number(opts.seed);
const MAX_MS = Number(opts["max-seconds"]) * 1000;
const TRANSPORT = opts.transport;
const SKIP = new Set(opts.skip.split(",").filter(Boolean));
if (!["auto", "batched", "portable"].includes(TRANSPORT)) throw new Error(`--transport: ${TRANSPORT}?`);
/** A query not answered after this long is counted as unanswered and forgotten. */
const FORGET_MS = 10_000;
/** Sockets per side (each with its own pending IDs). */
const SOCKETS = 4;
const TICK_MS = 10;

/** Reads VmRSS (kB) of a pid. */
async function rssKb(pid: number): Promise<number> {
  try {
    const status = await Deno.readTextFile(`/proc/${pid}/status`);
    return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN);
  } catch {
    return NaN;
  }
}

/**
 * The soak's mix of answer shapes ({@link answerShape}'s numbering): A, AAAA, CNAME, MX, TXT,
 * NXDOMAIN, SRV, PTR, NS, then NODATA and (one name in 20) a TXT set over 4096 bytes.
 */
const SOAK_SHAPES = [0, 1, 2, 3, 4, 5, 7, 9, 8];

/** Base answers for the upstream side: several record shapes, one in 20 over 4096 bytes. */
function upstreamBase(i: number, name: string): { type: string; behaviour: FakeBehaviour } {
  const shape = i % 10 < SOAK_SHAPES.length ? SOAK_SHAPES[i % 10] : i % 20 === 9 ? 10 : 6;
  return answerShape(shape, name, "soak.test");
}

/** What the fake sent for one upstream-side name: whether any answer passed messageProblem. */
const upstreamSent = new Map<string, { valid: boolean; kinds: string[] }>();

function script(name: string, _type: string): FakeBehaviour {
  const m = /^u(\d+)\.u\.soak\.test$/i.exec(name);
  if (!m) return {}; // client side (or a name a mutation made): an intact answer
  const i = Number(m[1]);
  const key = name.toLowerCase();
  const record = upstreamSent.get(key) ?? { valid: false, kinds: [] };
  upstreamSent.set(key, record);
  return {
    ...upstreamBase(i, name).behaviour,
    mutate(wire, { proto }) {
      const rnd = new Random(itemSeed(SEED, i, proto === "tcp" ? 1 : 0));
      let out = rnd.int(10) === 0 ? { kind: "intact", wire } : mutate(wire, rnd);
      if (SKIP.has(out.kind)) out = { kind: "intact", wire };
      record.kinds.push(`${out.kind}/${proto}`);
      if (messageProblem(out.wire) === null) record.valid = true;
      stats.upstream.mutatedAnswers++;
      return out.wire;
    },
  };
}

/** One side's counters. */
interface SideStats {
  sent: number;
  answers: number;
  invalid: number;
  unanswered: number;
  unmatched: number;
  mutatedAnswers: number;
}
const stats = {
  client: { sent: 0, answers: 0, invalid: 0, unanswered: 0, unmatched: 0, mutatedAnswers: 0 } as SideStats,
  upstream: { sent: 0, answers: 0, invalid: 0, unanswered: 0, unmatched: 0, mutatedAnswers: 0 } as SideStats,
};
const samples: string[] = [];
/** Invalid answers by side and problem (numbers elided). */
const invalidByProblem: Record<string, number> = {};
/** Answer latencies (ms), for the slowest answer and the median. */
const latencies: number[] = [];

/** A query waiting for its answer. */
interface Pending {
  query: Uint8Array;
  sentAt: number;
  /** Upstream side: the name, to look up what the fake sent. */
  name?: string;
}

/** One side: sockets, pending queries by ID, and the check of each answer. */
class Side {
  private readonly sockets: dgram.Socket[] = [];
  private readonly pending: Map<number, Pending[]>[] = [];

  constructor(
    private readonly label: "client" | "upstream",
    private readonly port: number,
    private readonly s: SideStats,
  ) {
    for (let i = 0; i < SOCKETS; i++) {
      const socket = dgram.createSocket("udp4");
      const waiting = new Map<number, Pending[]>();
      socket.on("message", (msg: Uint8Array) => this.received(new Uint8Array(msg), waiting));
      socket.on("error", () => {});
      this.sockets.push(socket);
      this.pending.push(waiting);
    }
  }

  /** Sends one datagram on socket `seq % SOCKETS`. */
  send(seq: number, query: Uint8Array, name?: string): void {
    const slot = seq % SOCKETS;
    if (query.length >= 2) {
      const id = (query[0] << 8) | query[1];
      const list = this.pending[slot].get(id) ?? [];
      list.push({ query, sentAt: performance.now(), name });
      this.pending[slot].set(id, list);
    }
    this.s.sent++;
    this.sockets[slot].send(Buffer.from(query), this.port, "127.0.0.1");
  }

  private received(answer: Uint8Array, waiting: Map<number, Pending[]>): void {
    this.s.answers++;
    const id = answer.length >= 2 ? (answer[0] << 8) | answer[1] : -1;
    const list = waiting.get(id);
    if (!list || list.length === 0) {
      this.s.unmatched++;
      const problem = answerProblem(answer);
      if (problem) this.invalid(`unmatched answer: ${problem}`, answer);
      return;
    }
    // Mutated IDs may collide: the answer is valid if it is valid for one of the queries with its ID.
    let problem: string | null = "";
    let at = 0;
    for (; at < list.length; at++) {
      problem = answerProblem(answer, list[at].query);
      if (problem === null) break;
    }
    if (problem !== null) {
      this.invalid(problem, answer, list[0].query);
      list.shift();
    } else {
      const [entry] = list.splice(at, 1);
      if (latencies.length < 2_000_000) latencies.push(performance.now() - entry.sentAt);
      if (entry.name) this.semantic(entry.name, answer);
    }
    if (list.length === 0) waiting.delete(id);
  }

  /** Upstream side: an answer other than an error must come from a well-formed upstream answer. */
  private semantic(name: string, answer: Uint8Array): void {
    const rcode = answer[3] & 0x0f;
    const record = upstreamSent.get(name);
    upstreamSent.delete(name);
    if (rcode !== 2 && record && !record.valid) {
      this.invalid(
        `${Deno.inspect(rcode)} built from damaged answers only (${record.kinds.join(", ")})`,
        answer,
      );
    }
  }

  private invalid(problem: string, answer: Uint8Array, query?: Uint8Array): void {
    this.s.invalid++;
    const kind = `${this.label}: ${problem.replace(/\d+/g, "N").slice(0, 90)}`;
    invalidByProblem[kind] = (invalidByProblem[kind] ?? 0) + 1;
    // Up to three samples of each kind of problem.
    if (invalidByProblem[kind] <= 3 && samples.length < 100) {
      samples.push(
        `${this.label}: ${problem}\n  answer: ${hex(answer)}${query ? `\n  query:  ${hex(query)}` : ""}`,
      );
    }
  }

  /** Forgets queries unanswered for {@link FORGET_MS}; returns how many are still pending. */
  sweep(now: number): number {
    let left = 0;
    for (const waiting of this.pending) {
      for (const [id, list] of waiting) {
        const keep = list.filter((p) => now - p.sentAt < FORGET_MS);
        this.s.unanswered += list.length - keep.length;
        for (const p of list) if (p.name && now - p.sentAt >= FORGET_MS) upstreamSent.delete(p.name);
        if (keep.length === 0) waiting.delete(id);
        else waiting.set(id, keep);
        left += keep.length;
      }
    }
    return left;
  }

  close(): void {
    for (const socket of this.sockets) socket.close();
  }
}

/** Client-side datagram `i`: a mutated query (one in ten random bytes, one in ten intact). */
function clientDatagram(i: number): Uint8Array {
  const rnd = new Random(itemSeed(SEED, i, 2));
  const roll = rnd.int(10);
  let out: Uint8Array;
  if (roll === 0) {
    out = rnd.bytes(rnd.int(300));
    if (out.length > 2) out[2] &= 0x7f;
  } else {
    const types = ["A", "AAAA", "MX", "TXT", "SRV", "PTR", "NS", "SOA", "CNAME", "ANY"];
    out = buildQuery(`c${rnd.int(2000)}.c.soak.test`, rnd.pick(types), {
      id: 0,
      edns: rnd.pick([undefined, 512, 1232, 4096]),
    });
    if (roll !== 1) {
      const damaged = mutate(out, rnd);
      if (!SKIP.has(damaged.kind)) out = damaged.wire;
    }
  }
  // Each in-flight query on a socket gets its own ID: with colliding IDs, a header-only FORMERR
  // for one query could be taken for the answer to another.
  if (out.length >= 2) {
    const id = Math.floor(i / SOCKETS) & 0xffff;
    out[0] = id >> 8;
    out[1] = id & 0xff;
  }
  return out;
}

const fake = await FakeUpstream.start(script);
const k = await KeeldnsProcess.start(`
[server]
bind = ["127.0.0.1:{port}"]
upstream-timeout = 500
udp-transport = "${TRANSPORT}"
[[upstream]]
address = "udp://127.0.0.1:${fake.port}"
[cache]
size = 20000
[log]
level = "info"
`);
const child = k.childPid;
const transport = (await k.waitFor(/UDP transport: (\w+)/, 5000).catch(() => null))?.[1] ?? TRANSPORT;
const rssBefore = await rssKb(child);
console.error(
  `soak: seed ${SEED}, ${COUNT} datagrams per side at ${RATE}/s, ${transport} UDP transport, child ${child} ` +
    `(${rssBefore} kB)`,
);

const clientSide = new Side("client", k.port, stats.client);
const upstreamSide = new Side("upstream", k.port, stats.upstream);
const started = performance.now();
let lastReport = started;
let sweptAt = started;
let stoppedEarly = false;
for (let tick = 0;; tick++) {
  const now = performance.now();
  if (now - started > MAX_MS) {
    stoppedEarly = true;
    break;
  }
  // Catch up to the rate: datagrams due by now, at most COUNT per side.
  const due = Math.min(COUNT, Math.floor(((now - started) / 1000) * RATE));
  while (stats.client.sent < due) clientSide.send(stats.client.sent, clientDatagram(stats.client.sent));
  while (stats.upstream.sent < due) {
    const i = stats.upstream.sent;
    const name = `u${i}.u.soak.test`;
    const rnd = new Random(itemSeed(SEED, i, 3));
    const query = buildQuery(name, upstreamBase(i, name).type, {
      id: i & 0xffff,
      edns: rnd.pick([undefined, 1232, 4096]),
    });
    upstreamSide.send(i, query, name);
  }
  if (now - sweptAt > 1000) {
    fake.log.length = 0; // the fake logs every question; a million of them is memory, not information
    clientSide.sweep(now);
    upstreamSide.sweep(now);
    sweptAt = now;
  }
  if (now - lastReport > 30_000) {
    lastReport = now;
    console.error(
      `  ${((now - started) / 1000).toFixed(0)} s: client ${JSON.stringify(stats.client)}, upstream ${
        JSON.stringify(stats.upstream)
      }, child RSS ${await rssKb(child)} kB`,
    );
  }
  if (stats.client.sent >= COUNT && stats.upstream.sent >= COUNT) break;
  await new Promise((r) => setTimeout(r, TICK_MS));
}
// Let the last answers arrive (3 s at most), then count what is left as unanswered.
for (let waited = 0; waited < 3000; waited += 250) {
  await new Promise((r) => setTimeout(r, 250));
  const now = performance.now();
  if (clientSide.sweep(now) + upstreamSide.sweep(now) === 0) break;
}
const duration = (performance.now() - started) / 1000;
clientSide.sweep(Infinity);
upstreamSide.sweep(Infinity);
const rssAfter = await rssKb(child);
const status = await runKeeldns(["status", "-p", `${k.dir}/keeldns.pid`]);
const restarts = Number(/^restarts: (\d+)$/m.exec(status.stdout)?.[1] ?? NaN);
const died = k.lines.filter((l) => /exited with code|was killed by/.test(l));
const sameChild = k.childPid === child;
clientSide.close();
upstreamSide.close();
await k.stop();
await fake.close();

const figures = {
  date: new Date().toISOString().slice(0, 10),
  seed: SEED,
  transport,
  ratePerSide: RATE,
  durationSeconds: Number(duration.toFixed(1)),
  client: stats.client,
  upstream: stats.upstream,
  invalidAnswers: stats.client.invalid + stats.upstream.invalid,
  invalidByProblem,
  childRestarts: restarts,
  sameChild,
  childRssKbBefore: rssBefore,
  childRssKbAfter: rssAfter,
  latencyMs: (() => {
    latencies.sort((a, b) => a - b);
    const at = (q: number) => Number((latencies[Math.floor(q * (latencies.length - 1))] ?? NaN).toFixed(1));
    return { p50: at(0.5), p99: at(0.99), max: at(1) };
  })(),
  stoppedEarly,
  skipped: [...SKIP],
};
console.log(JSON.stringify(figures, null, 2));
for (const s of samples) console.error(s);
for (const l of died) console.error(l);
const ok = figures.invalidAnswers === 0 && restarts === 0 && sameChild && died.length === 0;
console.error(ok ? "soak: OK" : "soak: FAILED");
Deno.exit(ok ? 0 : 1);
