/**
 * `deno task bench --only kill-loss`: what a kill -9 of the serving process costs under load.
 * dnsperf sends local names (an `address` rule: a fresh child answers them without a cache or an
 * upstream) at a fixed rate with room for many queries outstanding; at a random moment the child
 * is killed. Reported per kill: dnsperf's "Queries lost" (unanswered within its 5 s timeout), and
 * the time from the kill to the first answer to a probe sent after it. Servers: keeldns with the
 * guardian holding the UDP sockets (guardian/held_sockets.ts), keeldns with each child binding its
 * own (`KEELDNS_NO_HELD_SOCKETS=1`, the behaviour before), and SmartDNS started as `smartdns -f -R`
 * (its own restart-on-crash option, where the version installed has one; the process is killed).
 * One round per server without a kill first, as the control.
 *
 * @module
 */
import { encodePacket } from "../dns/packet.ts";
import { readId } from "../dns/wire.ts";
import { encodeSockaddr, LinuxUdpSocket, MmsgVector } from "../net/linux_socket.ts";
import { NO_HELD_SOCKETS_ENV } from "../ops/inherited_sockets.ts";
import { freePort, KeeldnsProcess, programPath } from "../tests/helpers/keeldns_process.ts";
import { waitForAnswer } from "../tests/helpers/peers.ts";
import { childrenOf } from "./process_cpu.ts";
import { dnsperf } from "./dnsperf.ts";

/** What the kill-loss bench is asked for. */
export interface KillLossOptions {
  /** Kills per server. */
  readonly rounds: number;
  /** Seconds of dnsperf per round; the kill falls in its middle third. */
  readonly seconds: number;
  /** dnsperf's fixed QPS. */
  readonly rate: number;
  /** A scratch directory. */
  readonly work: string;
}

/** One server under test: where it listens, which pid to kill now, and how to get it back. */
interface Target {
  readonly name: string;
  readonly port: number;
  /** The pid a kill -9 should hit (the child, for keeldns). */
  victim(): Promise<number>;
  /** Ready for the next round (a new child serving past the guardian's healthy mark, or a new process). */
  recover(): Promise<void>;
  stop(): Promise<void>;
}

/** One round's figures. */
interface Round {
  readonly lost: number;
  readonly sent: number;
  /** Milliseconds from the kill to the first answer; undefined when none came. */
  readonly backMs?: number;
}

const KEELDNS_CONFIG =
  `[server]\nbind = ["127.0.0.1:{port}"]\n[[upstream]]\naddress = "udp://127.0.0.1:9"\n` +
  `[[rule]]\ndomains = ["kill.test"]\naddress = "192.0.2.1"\n[log]\nlevel = "info"\n`;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** kill -9 of `pid`; returns once it is dead (a zombie or gone), bounded. */
async function killNow(pid: number): Promise<void> {
  Deno.kill(pid, "SIGKILL");
  for (let i = 0; i < 2000; i++) {
    try {
      const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
      if (/^[ZX]/.test(stat.slice(stat.lastIndexOf(")") + 2))) return;
    } catch {
      return;
    }
    await sleep(1);
  }
}

/**
 * Probes `port` every 2 ms from `from` on, for up to `limitMs`: milliseconds from `from` to the
 * first answer to a probe sent after it, or undefined.
 */
async function firstAnswer(port: number, from: number, limitMs: number): Promise<number | undefined> {
  const socket = LinuxUdpSocket.bind("127.0.0.1", 0, { receiveTimeoutMs: 2 });
  const server = encodeSockaddr("127.0.0.1", port);
  const tx = new MmsgVector(1, 512);
  const rx = new MmsgVector(64, 2048);
  try {
    for (let id = 1; performance.now() - from < limitMs; id = (id % 65535) + 1) {
      tx.setForSend(
        0,
        encodePacket({ type: "query", id, questions: [{ name: `p${id}.kill.test`, type: "A" }] }),
        server,
      );
      socket.send(tx, 1);
      const n = await socket.receive(rx);
      for (let i = 0; i < n; i++) {
        if (readId(rx.payload(i)) > 0) return performance.now() - from;
        rx.resetForReceive(i);
      }
    }
    return undefined;
  } finally {
    socket.close();
  }
}

/** One dnsperf run, killing the victim at a random moment in its middle third (none with `kill` false). */
async function round(target: Target, o: KillLossOptions, file: string, kill: boolean): Promise<Round> {
  const run = dnsperf({
    port: target.port,
    file,
    seconds: o.seconds,
    clients: 4,
    outstanding: 20000,
    bufferKb: 4096, // the answers to what queued meanwhile come back in one burst
    rate: o.rate,
    report: `${o.work}/kill-dnsperf.out`,
  });
  let backMs: number | undefined;
  if (kill) {
    await sleep((o.seconds * 1000 / 3) * (1 + Math.random()));
    const victim = await target.victim();
    const killed = performance.now();
    await killNow(victim);
    backMs = await firstAnswer(target.port, killed, o.seconds * 1000);
  }
  const result = await run;
  return { lost: result.lost, sent: result.sent, backMs };
}

/** keeldns under its guardian, with or without held sockets. */
async function keeldnsTarget(held: boolean): Promise<Target> {
  const k = await KeeldnsProcess.start(KEELDNS_CONFIG, { env: held ? {} : { [NO_HELD_SOCKETS_ENV]: "1" } });
  let served = k.childPid;
  return {
    name: held
      ? "keeldns (guardian holds the UDP socket)"
      : `keeldns, ${NO_HELD_SOCKETS_ENV}=1 (child binds)`,
    port: k.port,
    victim: () => Promise.resolve(k.childPid),
    recover: async () => {
      const until = performance.now() + 20_000;
      while (k.childPid === served && performance.now() < until) await sleep(50);
      served = k.childPid;
      await sleep(1500); // past the guardian's healthy mark: every kill is a first failure
    },
    stop: async () => void await k.stop(),
  };
}

/** SmartDNS as `smartdns -f -R`, started again for every round if the kill ended it. */
async function smartdnsTarget(o: KillLossOptions): Promise<Target> {
  const port = await freePort();
  const config = `${o.work}/smartdns-kill.conf`;
  await Deno.writeTextFile(
    config,
    [
      `bind 127.0.0.1:${port}`,
      "server 127.0.0.1:9",
      "address /kill.test/192.0.2.1",
      "speed-check-mode none",
      "log-level error",
      `log-file ${o.work}/smartdns-kill.log`,
      "",
    ].join("\n"),
  );
  let process: Deno.ChildProcess | undefined;
  const start = async () => {
    process = new Deno.Command(programPath("smartdns"), {
      args: ["-f", "-R", "-c", config, "-p", "-"],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    await waitForAnswer(port, "ready.kill.test", "192.0.2.");
  };
  await start();
  const alive = () => {
    try {
      Deno.statSync(`/proc/${process!.pid}`);
      return !/^\d+ \(.*\) Z/.test(Deno.readTextFileSync(`/proc/${process!.pid}/stat`));
    } catch {
      return false;
    }
  };
  return {
    name: "SmartDNS (`smartdns -f -R`)",
    port,
    // With -R the supervisor forks the server; without, the one process serves.
    victim: async () => (await childrenOf(process!.pid))[0] ?? process!.pid,
    recover: async () => {
      await sleep(1500);
      if (!alive()) {
        await process!.status;
        await start();
      }
    },
    stop: async () => {
      if (alive()) process!.kill("SIGKILL");
      await process?.status;
    },
  };
}

/** Runs the bench; returns its section for docs/benchmarks.md. */
export async function killLossBench(o: KillLossOptions): Promise<string> {
  const file = `${o.work}/kill-queries.txt`;
  await Deno.writeTextFile(
    file,
    Array.from({ length: 5000 }, (_, i) => `k${i}.kill.test A`).join("\n") + "\n",
  );
  const rows: string[] = [];
  const makers = [() => keeldnsTarget(true), () => keeldnsTarget(false), () => smartdnsTarget(o)];
  for (const make of makers) {
    const target = await make();
    try {
      const control = await round(target, o, file, false);
      const rounds: Round[] = [];
      for (let i = 0; i < o.rounds; i++) {
        rounds.push(await round(target, o, file, true));
        console.error(`kill-loss: ${target.name} round ${i + 1}: ${JSON.stringify(rounds.at(-1))}`);
        await target.recover();
      }
      rows.push(row(target.name, control, rounds));
    } finally {
      await target.stop();
    }
  }
  return `**kill-loss: kill -9 of the serving process under load** (bench/kill_loss.ts; dnsperf ` +
    `-Q ${o.rate} -c 4 -q 20000 -b 4096 for ${o.seconds} s of local names, the kill at a random moment in its ` +
    `middle third, ${o.rounds} kills per server)\n\n` +
    `| server | lost without a kill | queries lost per kill: median (min–max) | kill → first answer: median (min–max) |\n` +
    `|---|---|---|---|\n${rows.join("\n")}`;
}

/** A table row: the control's loss, then the kills' losses and times back. */
function row(name: string, control: Round, rounds: Round[]): string {
  const spread = (values: number[], unit: string) => {
    if (values.length === 0) return "none";
    const sorted = [...values].sort((a, b) => a - b);
    const median = sorted[Math.floor(sorted.length / 2)];
    return `${median.toFixed(0)}${unit} (${sorted[0].toFixed(0)}–${sorted.at(-1)!.toFixed(0)}${unit})`;
  };
  const back = rounds.flatMap((r) => r.backMs === undefined ? [] : [r.backMs]);
  const never = rounds.length - back.length;
  const backText = spread(back, " ms") +
    (never ? `; no answer in the run after ${never} of ${rounds.length}` : "");
  const sent = rounds.reduce((s, r) => s + r.sent, 0) / Math.max(1, rounds.length);
  return `| ${name} | ${control.lost} of ${control.sent} | ${spread(rounds.map((r) => r.lost), "")} ` +
    `of ~${sent.toFixed(0)} sent | ${backText} |`;
}
