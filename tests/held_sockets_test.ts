/**
 * End to end: the guardian holds the UDP listener sockets, so a child killed (kill -9) or hung
 * (SIGSTOP, then killed by the watchdog) under load loses no query: what arrives while no child
 * reads queues in the kernel and the next child answers it. Planned restarts that change the UDP
 * listeners move the held sockets with them.
 *
 * The child is killed (or stopped) at a moment when every query sent so far has been answered, and
 * the next query goes out once the signal has taken effect: a datagram the dying child had already
 * taken off the queue dies with it (bench/kill_loss.ts measures that part under real load); what
 * these tests hold is that nothing sent while no child reads is lost.
 */
import dgram from "node:dgram";
import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { udpQuery } from "./helpers/dns_client.ts";
import { freePort, KeeldnsProcess, processExists, runKeeldns } from "./helpers/keeldns_process.ts";
import { assertValidAnswer } from "./helpers/answer_check.ts";
import { encodePacket } from "../dns/packet.ts";
import { readId } from "../dns/wire.ts";
import { NO_HELD_SOCKETS_ENV } from "../ops/inherited_sockets.ts";
import { encodeSockaddr, LinuxUdpSocket, MmsgVector } from "../net/linux_socket.ts";

const CONFIG = `
[server]
bind = ["127.0.0.1:{port}"]
[[upstream]]
address = "udp://127.0.0.1:9"
[[rule]]
domains = ["load.test"]
address = "192.0.2.1"
[guardian]
watchdog-timeout = 1
[log]
level = "info"
`;

/** What a load run saw. */
interface LoadResult {
  readonly sent: number;
  readonly answered: number;
  /** IDs never answered, the first few. */
  readonly missing: number[];
}

/**
 * Sends `count` queries for distinct names under load.test from one socket, `rate` a second in
 * bursts every 10 ms, each with its own ID, and collects the answers (no retries). Before burst
 * `disruptAt` it waits until everything sent so far is answered, then calls `disrupt`. Each query
 * gets `timeoutMs` after the last one is sent.
 */
async function load(
  port: number,
  options: { count: number; rate: number; disruptAt: number; disrupt: () => void; timeoutMs: number },
): Promise<LoadResult> {
  // Batched syscalls and a receive buffer of megabytes (node:dgram has neither here): the answers
  // to the queries queued meanwhile come back in one burst, faster than one read per answer.
  const socket = LinuxUdpSocket.bind("127.0.0.1", 0, { receiveTimeoutMs: 50 });
  const server = encodeSockaddr("127.0.0.1", port);
  const tx = new MmsgVector(64, 512);
  const rx = new MmsgVector(64, 2048);
  const queries: Uint8Array[] = [];
  for (let id = 0; id < options.count; id++) {
    queries.push(encodePacket({
      type: "query",
      id,
      flags: 0x0100,
      questions: [{ name: `n${id}.load.test`, type: "A", class: "IN" }],
    }));
  }
  const answered = new Set<number>();
  let sent = 0;
  let receiving = true;
  const received = (async () => {
    while (receiving) {
      const n = await socket.receive(rx);
      for (let i = 0; i < n; i++) {
        const msg = rx.payload(i).slice();
        const id = readId(msg);
        if (id < options.count) {
          assertValidAnswer(msg, queries[id], `query ${id}`);
          answered.add(id);
        }
        rx.resetForReceive(i);
      }
    }
  })();
  try {
    const perBurst = Math.max(1, Math.round(options.rate / 100));
    const started = performance.now();
    for (let burst = 0; sent < options.count; burst++) {
      const wait = started + burst * 10 - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      if (burst === options.disruptAt) {
        const until = performance.now() + 2000;
        while (answered.size < sent && performance.now() < until) await new Promise((r) => setTimeout(r, 1));
        assertEquals(answered.size, sent, "all answered before the child is disrupted");
        options.disrupt();
      }
      let count = 0;
      while (count < perBurst && sent < options.count) tx.setForSend(count++, queries[sent++], server);
      assertEquals(socket.send(tx, count), count, "the kernel takes every query");
    }
    const until = performance.now() + options.timeoutMs;
    while (answered.size < sent && performance.now() < until) await new Promise((r) => setTimeout(r, 20));
  } finally {
    receiving = false;
    await received;
    socket.close();
  }
  const missing = [];
  for (let id = 0; id < sent && missing.length < 10; id++) if (!answered.has(id)) missing.push(id);
  return { sent, answered: answered.size, missing };
}

/**
 * Signals `pid`, then waits (bounded) until every thread of it is in a state matching `state`, or
 * gone: kill() returns before the signal has taken effect, and a thread blocked in recvmmsg could
 * still take the next queries off the queue meanwhile.
 */
function signalNow(pid: number, signal: Deno.Signal, state: RegExp): void {
  Deno.kill(pid, signal);
  const until = performance.now() + 2000;
  while (performance.now() < until) {
    let done = true;
    try {
      for (const task of Deno.readDirSync(`/proc/${pid}/task`)) {
        const stat = Deno.readTextFileSync(`/proc/${pid}/task/${task.name}/stat`);
        if (!state.test(stat.slice(stat.lastIndexOf(")") + 2))) done = false;
      }
    } catch {
      return; // gone
    }
    if (done) return;
  }
  throw new Error(`process ${pid} did not take ${signal}`);
}

/** kill -9, returning once the process is dead (a zombie or gone). */
const killNow = (pid: number) => signalNow(pid, "SIGKILL", /^[ZX]/);
/** SIGSTOP, returning once every thread is stopped. */
const stopNow = (pid: number) => signalNow(pid, "SIGSTOP", /^[Tt]/);

/** Starts keeldns on CONFIG; `env` is the guardian's environment (children inherit it). */
function start(env: Record<string, string> = {}): Promise<KeeldnsProcess> {
  return KeeldnsProcess.start(CONFIG, { env });
}

Deno.test({
  name:
    "kill -9 of the child under load: the guardian's socket keeps the queries and the next child answers all",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const k = await start();
    try {
      assertMatch(
        k.lines.join("\n"),
        /guardian holds the UDP listeners for its children; receive buffer \d+ KB/,
      );
      // The child's own line comes over its stderr, which the guardian mirrors: it may follow "ready".
      await k.waitFor(new RegExp(`udp://127\\.0\\.0\\.1:${k.port}: the guardian's socket`), 5000);
      const first = k.childPid;
      const mark = k.lines.length;
      const result = await load(k.port, {
        count: 2000,
        rate: 2000,
        disruptAt: 25,
        disrupt: () => killNow(first),
        timeoutMs: 3000,
      });
      await k.waitFor(new RegExp(`child ${first} was killed by SIGKILL`), 3000, mark);
      assert(k.childPid !== first, "a new child serves");
      assertEquals(
        result.answered,
        result.sent,
        `${result.sent - result.answered} of ${result.sent} queries lost (first: ${result.missing})`,
      );
    } finally {
      await k.stop();
    }
  },
});

Deno.test({
  name: "a hung child (SIGSTOP) under load: the watchdog replaces it and the next child answers every query",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const k = await start();
    try {
      const hung = k.childPid;
      const mark = k.lines.length;
      // The queued queries wait through the watchdog's second of silence and the new child's start.
      const result = await load(k.port, {
        count: 2000,
        rate: 2000,
        disruptAt: 25,
        disrupt: () => stopNow(hung),
        timeoutMs: 8000,
      });
      await k.waitFor(new RegExp(`child ${hung} hung: no heartbeat`), 3000, mark);
      assert(k.childPid !== hung, "a new child serves");
      assertEquals(
        result.answered,
        result.sent,
        `${result.sent - result.answered} of ${result.sent} queries lost (first: ${result.missing})`,
      );
    } finally {
      await k.stop();
    }
  },
});

Deno.test({
  name:
    `with ${NO_HELD_SOCKETS_ENV}=1 each child binds its own socket and a kill -9 loses queries (the old way)`,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const k = await start({ [NO_HELD_SOCKETS_ENV]: "1" });
    try {
      assert(!/guardian holds the UDP listeners/.test(k.lines.join("\n")), "nothing held");
      const first = k.childPid;
      const result = await load(k.port, {
        count: 2000,
        rate: 2000,
        disruptAt: 25,
        disrupt: () => killNow(first),
        timeoutMs: 3000,
      });
      assert(result.answered < result.sent, "without held sockets the restart gap loses queries");
    } finally {
      await k.stop();
    }
  },
});

Deno.test({
  name: "a planned restart that moves the UDP listener: the new port is held, the old one released",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const k = await start();
    const pidFile = `${k.dir}/keeldns.pid`;
    try {
      const oldPort = k.port;
      const newPort = await freePort();
      const text = await Deno.readTextFile(k.configPath);
      await Deno.writeTextFile(k.configPath, text.replace(`127.0.0.1:${oldPort}`, `127.0.0.1:${newPort}`));
      const mark = k.lines.length;
      const r = await runKeeldns(["restart", "-p", pidFile]);
      assertEquals(r.code, 0, r.stderr);
      const log = () => k.lines.slice(mark).join("\n");
      await k.waitFor(new RegExp(`guardian no longer holds udp://127\\.0\\.0\\.1:${oldPort}`), 5000, mark);
      assertMatch(log(), new RegExp(`udp://127\\.0\\.0\\.1:${newPort}: the guardian's socket`));
      assertEquals((await udpQuery(newPort, "moved.load.test", "A")).rcode, "NOERROR");
      // The old port is free again: nobody holds it any more.
      const probe = dgram.createSocket("udp4");
      const bound = await new Promise<boolean>((resolve) => {
        probe.once("error", () => resolve(false));
        probe.bind(oldPort, "127.0.0.1", () => resolve(true));
      });
      probe.close();
      assert(bound, `port ${oldPort} must be released`);
      assert(processExists(k.pid));
    } finally {
      await k.stop();
    }
  },
});
