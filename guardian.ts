/**
 * The guardian: holds the UDP listener sockets (guardian/held_sockets.ts, so no datagram is lost
 * while a child is replaced), starts the child (this same program with `--child`), replaces it at once when it
 * dies, is not ready by the start-up deadline or, once ready, stops beating (the policies are in
 * `guardian/`), restarts it on purpose without dropping queries (the new child binds the
 * same ports beside the old one, takes over its cache, then the old one drains), forwards signals,
 * answers `keeldns status|reload|stop|restart` on its control socket (and forwards `keeldns cache`
 * to the child on its stdin), and writes a crash report
 * for every child that died. It exits only when told to stop, or when the configuration is invalid
 * at start.
 *
 * @module
 */
import { EMBEDDED_CONFIG_NAME } from "./config/defaults.ts";
import { ConfigError } from "./config/errors.ts";
import type { Config, GuardianConfig } from "./config/schema.ts";
import { HeldUdpSockets } from "./guardian/held_sockets.ts";
import { LastGoodConfig, readConfig } from "./guardian/last_good_config.ts";
import { RestartBackoff } from "./guardian/restart_backoff.ts";
import { describeStage, Watchdog, type WatchedChild } from "./guardian/watchdog.ts";
import { type CarryTarget, StatsCarry } from "./guardian/stats_carry.ts";
import {
  BESIDE_PREDECESSOR_ENV,
  CACHE_ACTIONS,
  type CacheAction,
  type CacheReplyMessage,
  type CarriedStats,
  EXIT_BIND,
  EXIT_CONFIG,
  EXIT_PRIVILEGES,
  HANDOVER_FILE_ENV,
  HANDOVER_LOAD_ENV,
  parseChildMessage,
  type ProgressMessage,
} from "./ops/child_messages.ts";
import type { QueryStatsState } from "./ops/query_stats.ts";
import {
  type ControlCommand,
  type ControlReply,
  ControlServer,
  ControlSocketInUse,
} from "./ops/control_channel.ts";
import { resolveControlPath } from "./ops/control_path.ts";
import { writeCrashReport } from "./ops/crash_report.ts";
import { LineRing, readLines } from "./ops/lines.ts";
import { INHERITED_UDP_FDS_ENV } from "./ops/inherited_sockets.ts";
import { getLogger, setupLogging } from "./ops/log.ts";
import { removePidFile, writePidFile } from "./ops/pid_file.ts";
import { dropPrivileges, runningAsRoot } from "./ops/privileges.ts";
import { guardianPlan, handOverControlSocket, prepareFiles } from "./ops/run_as_user.ts";
import { lookupUser, type UserAccount } from "./ops/user_database.ts";
import { loaderCommand } from "./ops/runtime_loader.ts";

export { HEALTHY_AFTER_MS, MAX_RESTART_DELAY_MS, restartDelay } from "./guardian/restart_backoff.ts";

/** How the guardian was started. */
export interface GuardianOptions {
  readonly configPath?: string;
  readonly pidFile?: string;
  /** Control socket path; default: beside the pid file, else /run/keeldns.sock when /run is writable. */
  readonly controlPath?: string;
  readonly verbose: boolean;
}

/** How long a stopping child may take before it is killed. */
const STOP_GRACE_MS = 10_000;

/** The permissions the child needs when it runs under `deno run`. */
const CHILD_FLAGS = [
  "--allow-net",
  "--allow-read",
  "--allow-write",
  "--allow-env",
  "--allow-sys",
  "--allow-ffi",
  "--unstable-net", // TCP reusePort, so a planned restart can bind beside the old child
];

/**
 * `--allow-run` for nft alone, when this machine has one: nftset/ipset rules run it
 * (ops/nft_batch.ts); `KEELDNS_NFT` names another.
 */
function nftFlags(): string[] {
  try {
    const named = Deno.env.get("KEELDNS_NFT");
    if (named) return [`--allow-run=${named}`];
    const dirs = [...(Deno.env.get("PATH") ?? "").split(":"), "/usr/sbin", "/sbin"];
    for (const dir of dirs.filter((d) => d.startsWith("/"))) {
      try {
        if (Deno.statSync(`${dir}/nft`).isFile) return [`--allow-run=${dir}/nft`];
      } catch {
        // not in this directory
      }
    }
  } catch {
    // no env or read access: no nft
  }
  return [];
}

/** The command line that starts a child of this same program. */
export function childCommand(childArgs: string[]): { command: string; args: string[] } {
  if (Deno.build.standalone) return { command: Deno.execPath(), args: ["--child", ...childArgs] };
  const flags = ["run", "--no-prompt", ...CHILD_FLAGS, ...nftFlags()];
  const main = new URL(Deno.mainModule);
  if (main.protocol === "file:") {
    const config = new URL("deno.json", main);
    try {
      Deno.statSync(config);
      flags.push("--config", config.pathname);
    } catch {
      // a bundle runs without a config file
    }
  }
  return { command: Deno.execPath(), args: [...flags, Deno.mainModule, "--child", ...childArgs] };
}

/** Says how a process ended. */
function describeExit(status: Deno.CommandStatus): string {
  if (status.signal) return `was killed by ${status.signal}`;
  const why = status.code === EXIT_CONFIG
    ? " (invalid configuration)"
    : status.code === EXIT_BIND
    ? " (could not bind its sockets)"
    : status.code === EXIT_PRIVILEGES
    ? " (could not switch to the configured user)"
    : "";
  return `exited with code ${status.code}${why}`;
}

/** Resident memory of a process in bytes, or 0 if unknown. */
function residentBytes(pid: number): number {
  try {
    const status = Deno.readTextFileSync(`/proc/${pid}/status`);
    return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) * 1024;
  } catch {
    return 0;
  }
}

const log = getLogger("guardian");
const stderrEncoder = new TextEncoder();
const lineEncoder = new TextEncoder();

/** A progress message as one phrase: "loading rules (1200/50000)". */
function stageOf(progress: ProgressMessage["progress"]): string {
  const count = progress.done === undefined
    ? ""
    : progress.total === undefined
    ? ` (${progress.done})`
    : ` (${progress.done}/${progress.total})`;
  return `${progress.stage}${count}`;
}

/** One child process and what the guardian knows of it. */
class ChildHandle implements WatchedChild, CarryTarget {
  readonly startedAt = Date.now();
  readyAt = 0;
  /** When it last beat or reported progress; 0 until it first does. */
  lastHeard = 0;
  /** The start-up stage it last reported. */
  stage?: string;
  /** Why the guardian killed it, if it did. */
  killedFor?: string;
  listeners: readonly string[] = [];
  /** The child's latest counters (queries, cache, memory), sent every few seconds. */
  stats: Record<string, number> = {};
  /** The child's latest upstream health list (state, RTT, failures per server). */
  upstreams: readonly unknown[] = [];
  /** Everything its query statistics counted, as last reported (for its successor). */
  queryStats?: CarriedStats;
  /** The reason the child gave before exiting on purpose (bind failure, bad config). */
  fatal?: string;
  /** Stopped on purpose (planned restart): its exit is not a failure. */
  planned = false;
  readonly output = new LineRing(50);
  /** True once ready; false if it exited first. */
  readonly ready: Promise<boolean>;
  /** Resolves once everything the child wrote on stdout and stderr has been read. */
  readonly drained: Promise<void>;
  private markReady!: (ready: boolean) => void;
  private checkpointWaiter?: (entries: number) => void;
  /** Cache requests sent on the child's stdin, by id, waiting for its reply. */
  private readonly asked = new Map<number, (reply: CacheReplyMessage["reply"]) => void>();
  private lastRequest = 0;
  private readonly requests: WritableStreamDefaultWriter<Uint8Array>;

  constructor(readonly process: Deno.ChildProcess) {
    this.ready = new Promise((resolve) => this.markReady = resolve);
    this.requests = process.stdin.getWriter();
    this.requests.closed.catch(() => {}); // a dead child's pipe: its requests fail below
    process.status.then(() => {
      this.markReady(false);
      for (const answer of this.asked.values()) answer({ id: 0, ok: false, error: "the child exited" });
    });
    this.drained = Promise.all([this.readMessages(), this.mirrorOutput()]).then(() => {});
  }

  /** The child's process id. */
  get pid(): number {
    return this.process.pid;
  }

  /** Kills the child at once (SIGKILL), remembering why for the log and the crash report. */
  kill(reason: string): void {
    this.killedFor = reason;
    this.signal("SIGKILL");
  }

  /**
   * Resolves with the entries written after SIGUSR2, or -1 after `timeoutMs`. (Not SIGUSR1: on
   * that signal V8 opens an inspector port, as Node does.)
   */
  waitCheckpoint(timeoutMs: number): Promise<number> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(-1), timeoutMs);
      this.checkpointWaiter = (n) => {
        clearTimeout(timer);
        resolve(n);
      };
    });
  }

  /** Asks the child's cache (`keeldns cache`); fails after `timeoutMs` or when the child exits. */
  askCache(
    cache: CacheAction,
    pattern: string | undefined,
    timeoutMs: number,
  ): Promise<CacheReplyMessage["reply"]> {
    return this.ask(pattern === undefined ? { cache } : { cache, pattern }, timeoutMs);
  }

  /** Sends the child predecessors' statistics (see guardian/stats_carry.ts). */
  sendCarry(states: readonly QueryStatsState[]): { id: number; confirmed: Promise<boolean> } {
    const { id, reply } = this.request({ carry: states }, 10_000);
    return { id, confirmed: reply.then((r) => r.ok) };
  }

  /**
   * Writes a request (`body` and an id) on the child's stdin; its reply fails after `timeoutMs`
   * or when the child exits.
   */
  request(
    body: Record<string, unknown>,
    timeoutMs: number,
  ): { id: number; reply: Promise<CacheReplyMessage["reply"]> } {
    const id = ++this.lastRequest;
    const reply = new Promise<CacheReplyMessage["reply"]>((resolve) => {
      const timer = setTimeout(
        () => answer({ id, ok: false, error: `the child did not answer in ${timeoutMs} ms` }),
        timeoutMs,
      );
      const answer = (reply: CacheReplyMessage["reply"]) => {
        clearTimeout(timer);
        this.asked.delete(id);
        resolve(reply);
      };
      this.asked.set(id, answer);
      const line = JSON.stringify({ id, ...body }) + "\n";
      this.requests.write(lineEncoder.encode(line)).catch((e) =>
        answer({ id, ok: false, error: `cannot reach the child: ${(e as Error).message}` })
      );
    });
    return { id, reply };
  }

  /**
   * Sends the child one request line `{id, ...body}` on its stdin (e.g. `{explain: …}`) and
   * resolves with its reply; fails after `timeoutMs` or when the child exits.
   */
  ask(body: Record<string, unknown>, timeoutMs: number): Promise<CacheReplyMessage["reply"]> {
    return this.request(body, timeoutMs).reply;
  }

  /** Sends a signal; false if the process is gone. */
  signal(signal: Deno.Signal): boolean {
    try {
      this.process.kill(signal);
      return true;
    } catch {
      return false;
    }
  }

  /** SIGTERM, then SIGKILL if it has not exited after `graceMs`; resolves when it has exited. */
  async terminate(graceMs = STOP_GRACE_MS): Promise<void> {
    this.signal("SIGTERM");
    const timer = setTimeout(() => {
      log.error("child {pid} did not stop in {ms} ms; killing it", { pid: this.pid, ms: graceMs });
      this.signal("SIGKILL");
    }, graceMs);
    await this.process.status;
    clearTimeout(timer);
  }

  private async readMessages(): Promise<void> {
    for await (const line of readLines(this.process.stdout)) {
      const message = parseChildMessage(line);
      if (!message) continue;
      if ("beat" in message) {
        this.lastHeard = Date.now();
      } else if ("progress" in message) {
        this.lastHeard = Date.now();
        this.stage = stageOf(message.progress);
        log.debug("child {pid} starting: {stage}", { pid: this.pid, stage: this.stage });
      } else if ("ready" in message) {
        this.lastHeard = this.readyAt = Date.now();
        this.listeners = message.ready.listeners;
        log.info("child {pid} ready on {listeners}", { pid: this.pid, listeners: this.listeners.join(", ") });
        this.markReady(true);
      } else if ("stats" in message) {
        this.stats = message.stats;
        this.upstreams = message.upstreams ?? this.upstreams;
        this.queryStats = message.queryStats ?? this.queryStats;
      } else if ("reply" in message) {
        this.asked.get(message.reply.id)?.(message.reply);
      } else if ("checkpointed" in message) {
        this.checkpointWaiter?.(message.checkpointed);
      } else if ("fatal" in message) {
        this.fatal = message.fatal;
      }
    }
  }

  private async mirrorOutput(): Promise<void> {
    for await (const line of readLines(this.process.stderr)) {
      this.output.push(line);
      try {
        Deno.stderr.writeSync(stderrEncoder.encode(line + "\n"));
      } catch {
        // our own stderr is gone; the tail is still kept for the crash report
      }
    }
  }
}

/** The last child death, for `status` and `health`. */
interface LastCrash {
  readonly time: string;
  readonly pid: number;
  readonly reason: string;
}

/**
 * The child's V8 flags: a small young generation and a bounded old space, since the child's live
 * heap is small (the answer cache lives in buffers outside it) and V8's defaults let 100k cached
 * names grow the child to ~150 MB of uncollected garbage; `memory` also trades speed for size.
 * Flags the guardian inherited in DENO_V8_FLAGS come last, so they win.
 */
export function childV8Flags(optimizeFor: "speed" | "memory", inherited?: string): string {
  const ours = optimizeFor === "memory"
    ? ["--optimize-for-size", "--max-semi-space-size=1", "--max-old-space-size=64"]
    : ["--max-semi-space-size=2", "--max-old-space-size=128"];
  return [...ours, ...(inherited ? [inherited] : [])].join(",");
}

/**
 * Keeps one child serving: starts it, replaces it when it dies or the watchdog condemns it,
 * replaces it on purpose without dropping queries, and answers the control commands. The
 * policies it applies are its parts: {@link RestartBackoff} (how soon), {@link LastGoodConfig}
 * (on which configuration), {@link Watchdog} (when a child counts as stuck).
 */
class Guardian {
  private current?: ChildHandle;
  private readonly live = new Set<ChildHandle>();
  private stopping = false;
  private restarting?: Promise<ControlReply>;
  private restarts = 0;
  private lastCrash?: LastCrash;
  private readonly backoff = new RestartBackoff();
  private readonly config: GuardianConfig;
  private readonly lastGood: LastGoodConfig;
  private readonly watchdog: Watchdog;
  private readonly handoverFile: string;
  /** The configuration the serving child was started on: the listeners the held sockets are for. */
  private served: Config;
  /** Counts planned restarts, so a failed one's late clean-up cannot undo a later one's binds. */
  private replacements = 0;
  /** Statistics of children gone, for the serving one. */
  private readonly statsCarry = new StatsCarry();

  /**
   * @param configText the configuration file's text as validated at start (the first last good one)
   * @param scratchDir where the hand-over file and the last good copy go, when not `crashDir`
   *   (a `user` that cannot write the pid file's directory)
   * @param held the UDP listener sockets every child inherits (bound for `fullConfig`)
   */
  constructor(
    private readonly configPath: string | undefined,
    private readonly verbose: boolean,
    fullConfig: Config,
    private readonly crashDir: string | undefined,
    private readonly held: HeldUdpSockets,
    configText?: string,
    scratchDir?: string,
  ) {
    this.config = fullConfig.guardian;
    this.served = fullConfig;
    const dir = scratchDir ?? crashDir ?? Deno.env.get("TMPDIR") ?? "/tmp";
    this.handoverFile = `${dir}/keeldns-handover-${Deno.pid}.cache`;
    this.lastGood = new LastGoodConfig(configPath, dir, configText, fullConfig);
    this.watchdog = new Watchdog(this.config);
  }

  /** The arguments for a child: the configuration file (or its last good copy) and -v. */
  private childArgs(): string[] {
    const path = this.lastGood.pathForChild();
    return [...(path ? ["-c", path] : []), ...(this.verbose ? ["-v"] : [])];
  }

  /** Runs children until `stop()`; resolves with the guardian's exit code. */
  async run(): Promise<number> {
    const watch = setInterval(() => this.watch(), 250);
    try {
      while (!this.stopping) {
        this.current ??= this.spawn(false);
        const child = this.current;
        const status = await child.process.status;
        // The child's last words (its fatal reason, its last lines) may still be in the pipes.
        await Promise.race([child.drained, new Promise((r) => setTimeout(r, 1000))]);
        if (this.stopping) break;
        if (child.planned || child !== this.current) continue; // replaced on purpose
        this.current = undefined;
        await this.recordFailure(child, status);
        if (this.restarting) await this.restarting;
      }
      await Promise.all([...this.live].map((c) => c.terminate()));
    } finally {
      clearInterval(watch);
      this.held.closeAll();
      await Deno.remove(this.handoverFile).catch(() => {});
      await this.lastGood.remove();
    }
    return 0;
  }

  /**
   * Starts a child (the one place children are started); `takeOverCache` has it load the hand-over
   * file, `beside` tells it its predecessor still serves (planned restart).
   */
  private spawn(takeOverCache: boolean, beside = false): ChildHandle {
    if (this.lastGood.servingLastGood()) {
      try {
        if (this.lastGood.recover()) {
          log.info("{path} is valid again; children use it", { path: this.configPath });
        }
      } catch {
        // still broken: stay on the last good version
      }
    }
    const child = childCommand(this.childArgs());
    const { command, args } = loaderCommand(child.command, child.args);
    const env: Record<string, string> = { [HANDOVER_FILE_ENV]: this.handoverFile };
    if (takeOverCache) env[HANDOVER_LOAD_ENV] = "1";
    if (beside) env[BESIDE_PREDECESSOR_ENV] = "1";
    const fds = this.held.environment();
    if (fds) env[INHERITED_UDP_FDS_ENV] = fds;
    env.DENO_V8_FLAGS = childV8Flags(this.config.optimizeFor, Deno.env.get("DENO_V8_FLAGS"));
    const process = new Deno.Command(command, {
      args,
      env,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
      detached: true,
    }).spawn();
    const handle = new ChildHandle(process);
    this.live.add(handle);
    process.status.then(() => this.live.delete(handle));
    this.carryStats(handle);
    return handle;
  }

  /**
   * Once `child` is ready, hands it the statistics of children gone; once it has exited (and its
   * last report is read), keeps its statistics for the serving child.
   */
  private carryStats(child: ChildHandle): void {
    const handOver = (): void => {
      const serving = this.current;
      if (!serving?.readyAt || !this.live.has(serving) || this.stopping) return;
      // Not taken (it died meanwhile): try its successor, if there is one by now.
      this.statsCarry.handTo(serving).then((taken) => taken || this.current === serving || handOver());
    };
    child.ready.then((ready) => ready && handOver());
    child.process.status
      .then(() => Promise.race([child.drained, new Promise((r) => setTimeout(r, 1000))]))
      .then(() => {
        this.statsCarry.exited(child.queryStats);
        handOver();
      });
  }

  /** Forwards `keeldns metrics [--json]` to the serving child. */
  async metrics(args: readonly string[]): Promise<ControlReply> {
    const kind = args[0] === "json" ? "json" : "text";
    if (args.length > 1 || (args.length === 1 && args[0] !== "json" && args[0] !== "text")) {
      return { ok: false, error: `unexpected arguments for metrics: ${args.join(" ")}` };
    }
    const child = this.current;
    if (!child?.readyAt) return { ok: false, error: "no child is serving right now" };
    const reply = await child.ask({ metrics: kind }, 10_000);
    return reply.ok ? { ok: true, metrics: reply.result ?? {} } : { ok: false, error: reply.error };
  }

  /** Logs and reports a child that died on its own, then waits out the backoff. */
  private async recordFailure(child: ChildHandle, status: Deno.CommandStatus): Promise<void> {
    const now = Date.now();
    this.backoff.failed(child.readyAt > 0 ? now - child.readyAt : 0);
    const how = describeExit(status) + (child.killedFor ? `: ${child.killedFor}` : "") +
      (child.fatal ? `: ${child.fatal}` : "");
    this.lastCrash = { time: new Date(now).toISOString(), pid: child.pid, reason: how };
    const tail = child.output.toArray();
    log.error("child {pid} {how} after {up} s (restart #{n}); its last output:\n{tail}", {
      pid: child.pid,
      how,
      up: ((now - child.startedAt) / 1000).toFixed(1),
      n: this.restarts + 1,
      tail: tail.length ? tail.slice(-10).map((l) => `  | ${l}`).join("\n") : "  | (nothing)",
    });
    if (this.crashDir && this.config.crashFiles > 0) {
      const report = {
        time: new Date(now),
        pid: child.pid,
        how,
        uptimeMs: now - child.startedAt,
        readyAfterMs: child.readyAt > 0 ? child.readyAt - child.startedAt : undefined,
        lastStage: child.stage,
        restarts: this.restarts,
        config: this.configPath ?? EMBEDDED_CONFIG_NAME,
        output: tail,
      };
      await writeCrashReport(this.crashDir, report, this.config.crashFiles).then(
        (path) => log.info("crash report written to {path}", { path }),
        (e) => log.warn("could not write a crash report in {dir}: {error}", { dir: this.crashDir, error: e }),
      );
    }
    this.restarts++;
    if (status.code === EXIT_CONFIG && this.lastGood.fallBack()) {
      log.error("{path} is invalid now; serving its last good version (validated {time}) until it is fixed", {
        path: this.configPath,
        time: this.lastGood.servingLastGood(),
      });
      this.backoff.forgive();
    }
    const delay = this.restarting ? 0 : this.backoff.delayMs;
    if (delay > 0 && !this.stopping) {
      log.warn("restarting the child in {delay} ms (failure {n} in a row)", {
        delay,
        n: this.backoff.failures,
      });
      await this.backoff.wait(delay);
    }
  }

  /** Every 250 ms: the watchdog (start-up deadline, heartbeat) and the memory ceiling. */
  private watch(): void {
    const child = this.current;
    if (!child || this.stopping || child.planned) return;
    const now = Date.now();
    const verdict = this.watchdog.check(child, now);
    if (verdict?.action === "kill") {
      log.error("child {pid} {reason}; killing it", { pid: child.pid, reason: verdict.reason });
      child.kill(verdict.reason);
      return;
    }
    if (verdict) log.warn("child {pid} {reason}", { pid: child.pid, reason: verdict.reason });
    if (this.watchdog.limitsMemory && child.readyAt > 0 && !this.restarting) {
      const reason = this.watchdog.checkMemory(residentBytes(child.pid), now);
      if (reason) this.restart(reason);
    }
  }

  /**
   * Replaces the child without dropping a query: the old child writes its cache to the hand-over
   * file, a new one starts beside it on the same ports and loads that cache, and only once the new
   * one is ready is the old one told to drain and stop. If the new one fails, the old one stays.
   * The held UDP sockets both read meanwhile; listeners the new configuration adds are bound
   * before it starts, those it drops are closed once the old child has stopped.
   */
  restart(reason: string): Promise<ControlReply> {
    this.restarting ??= this.replaceChild(reason).finally(() => this.restarting = undefined);
    return this.restarting;
  }

  private async replaceChild(reason: string): Promise<ControlReply> {
    try {
      this.lastGood.recover();
    } catch (e) {
      return { ok: false, error: `the configuration is invalid, nothing changed: ${(e as Error).message}` };
    }
    const config = this.lastGood.config ?? this.served;
    const replacement = ++this.replacements;
    this.held.bindFor(config);
    const old = this.current;
    let handover = false;
    if (old && old.readyAt > 0 && old.signal("SIGUSR2")) handover = (await old.waitCheckpoint(3000)) >= 0;
    log.info("planned restart ({reason}): starting a new child beside {pid}", {
      reason,
      pid: old?.pid ?? "none",
    });
    const next = this.spawn(handover, old !== undefined);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const ready = await Promise.race([
      next.ready,
      new Promise<boolean>((r) => timer = setTimeout(() => r(false), this.watchdog.startupMs)),
    ]);
    clearTimeout(timer);
    if (!ready || this.stopping) {
      next.planned = true;
      next.terminate().then(() => {
        if (replacement === this.replacements) this.held.keepOnly(this.served);
      });
      const stage = next.readyAt ? "" : ` (last start-up stage: ${describeStage(next)})`;
      return { ok: false, error: `the new child did not become ready${stage}; the old one keeps serving` };
    }
    this.current = next;
    this.restarts++;
    this.backoff.reset();
    if (old) {
      old.planned = true;
      await old.terminate();
      log.info("child {pid} drained and stopped; {next} serves", { pid: old.pid, next: next.pid });
    }
    this.served = config;
    this.held.keepOnly(config);
    return { ok: true, status: this.status() };
  }

  /** Validates the configuration, then has the child reload it (SIGHUP). */
  async reload(): Promise<ControlReply> {
    try {
      this.lastGood.validate();
    } catch (e) {
      const message = e instanceof ConfigError ? e.message : String(e);
      return { ok: false, error: `the configuration is invalid, the running one stays: ${message}` };
    }
    // A child on the last good copy would re-read the copy: give it a successor on the real file.
    if (this.lastGood.servingLastGood()) return await this.restart("configuration fixed");
    if (!this.current?.signal("SIGHUP")) return { ok: false, error: "no child is running right now" };
    log.info("SIGHUP forwarded to child {pid}", { pid: this.current.pid });
    return { ok: true };
  }

  /** The guardian's state, for `keeldns status` and `health`. */
  status(): Record<string, unknown> {
    const child = this.current;
    const state = this.stopping
      ? "stopping"
      : this.restarting
      ? "restarting"
      : child?.readyAt
      ? "running"
      : child
      ? "starting"
      : "waiting to restart";
    return {
      state,
      guardianPid: Deno.pid,
      childPid: child?.pid ?? null,
      childUptimeSeconds: child ? Math.round((Date.now() - child.startedAt) / 1000) : null,
      listeners: child?.listeners ?? [],
      startupStage: child && !child.readyAt ? describeStage(child) : null,
      restarts: this.restarts,
      failuresInARow: this.backoff.failures,
      nextStartInMs: this.backoff.remainingMs(),
      lastCrash: this.lastCrash ?? null,
      config: this.configPath ?? EMBEDDED_CONFIG_NAME,
      servingLastGoodConfig: this.lastGood.servingLastGood(),
      childStats: child?.stats ?? {},
      upstreams: child?.upstreams ?? [],
    };
  }

  /** Forwards `keeldns cache ACTION [PATTERN]` to the serving child. */
  async cache(args: readonly string[]): Promise<ControlReply> {
    const [action, pattern, ...extra] = args;
    if (!CACHE_ACTIONS.includes(action as CacheAction)) {
      return { ok: false, error: `unknown cache action ${JSON.stringify(action)} (list, flush or stats)` };
    }
    if (extra.length > 0 || (action === "stats" && pattern !== undefined)) {
      return { ok: false, error: `too many arguments for cache ${action}` };
    }
    const child = this.current;
    if (!child?.readyAt) return { ok: false, error: "no child is serving right now" };
    const reply = await child.askCache(action as CacheAction, pattern, 10_000);
    return reply.ok ? { ok: true, cache: reply.result ?? {} } : { ok: false, error: reply.error };
  }

  /** Forwards `keeldns explain NAME [TYPE] [CLIENT]` to the serving child (resolver/explain.ts). */
  async explain(args: readonly string[]): Promise<ControlReply> {
    const [name, type, client, ...extra] = args;
    if (!name || extra.length > 0) return { ok: false, error: "explain: expected NAME [TYPE] [CLIENT]" };
    const child = this.current;
    if (!child?.readyAt) return { ok: false, error: "no child is serving right now" };
    const question = { name, ...(type ? { type } : {}), ...(client ? { client } : {}) };
    const reply = await child.ask({ explain: question }, 20_000);
    return reply.ok ? { ok: true, explain: reply.result ?? {} } : { ok: false, error: reply.error };
  }

  /** Answers a control command. */
  async control(command: ControlCommand, args: readonly string[] = []): Promise<ControlReply> {
    switch (command) {
      case "cache":
        return await this.cache(args);
      case "explain":
        return await this.explain(args);
      case "metrics":
        return await this.metrics(args);
      case "status":
        return { ok: true, status: this.status() };
      case "reload":
        return await this.reload();
      case "restart":
        return await this.restart("keeldns restart");
      case "stop":
        setTimeout(() => this.stop("keeldns stop"), 0);
        return { ok: true };
    }
  }

  /** Stops restarting and asks every child to stop. */
  stop(why: string): void {
    if (this.stopping) return;
    this.stopping = true;
    log.info("{why}: stopping", { why });
    this.backoff.wake();
    for (const child of this.live) child.terminate();
  }

  /** Passes a signal on to the child. */
  forward(signal: Deno.Signal): void {
    const child = this.current;
    if (child?.signal(signal)) log.info("{signal} forwarded to child {pid}", { signal, pid: child.pid });
  }
}

/**
 * Drops the guardian to `account` before any child starts (see ops/run_as_user.ts for who drops
 * when): the control socket is handed to the user, the guardian keeps only what its children need
 * to bind and serve, and the configuration must still be readable afterwards (children read it
 * as the user). Started as that user already, nothing changes. Throws with a clear message.
 */
function dropGuardianPrivileges(
  account: UserAccount,
  config: Config,
  controlPath: string | undefined,
  configPath: string | undefined,
): void {
  const who = `user ${account.name} (uid ${account.uid}, gid ${account.gid})`;
  if (runningAsRoot()) {
    if (controlPath) handOverControlSocket(controlPath, account);
    const plan = guardianPlan(config);
    try {
      dropPrivileges(account, plan);
    } catch (e) {
      throw new Error(`cannot switch to ${who}, refusing to run as root: ${(e as Error).message}`);
    }
    log.info("guardian runs as {who}, passing {caps} on to its children", {
      who,
      caps: plan.keep.join(", "),
    });
  }
  try {
    readConfig(configPath);
  } catch (e) {
    throw new Error(`as ${who}: ${e instanceof ConfigError ? e.message : String(e)}`);
  }
}

/**
 * Validates the configuration, writes the pid file, opens the control socket and supervises
 * children until told to stop. Returns the exit code: 0 after a requested stop, 1 if the
 * configuration is invalid or another instance is running.
 */
export async function runGuardian(options: GuardianOptions): Promise<number> {
  let guardianConfig: GuardianConfig;
  let fullConfig: Config;
  let configText: string | undefined;
  let level;
  try {
    const { config, text } = readConfig(options.configPath);
    configText = text;
    fullConfig = config;
    guardianConfig = config.guardian;
    level = options.verbose
      ? "debug" as const
      : config.log.level === "off"
      ? "off" as const
      : "info" as const;
  } catch (e) {
    console.error(`keeldns: ${e instanceof ConfigError ? e.message : String(e)}`);
    return 1;
  }
  setupLogging({ level, size: 0, num: 0 }, false);
  const crashDir = options.pidFile
    ? options.pidFile.slice(0, options.pidFile.lastIndexOf("/")) || "."
    : undefined;
  const controlPath = resolveControlPath(options.controlPath, options.pidFile);
  let account: UserAccount | undefined;
  let scratchDir: string | undefined;
  if (guardianConfig.user !== undefined) {
    // `user`: resolve it and prepare its files as root; the drop itself follows the pid file.
    try {
      account = lookupUser(guardianConfig.user);
      if (runningAsRoot()) {
        const prepared = prepareFiles(account, fullConfig, { pidFile: options.pidFile });
        for (const warning of prepared.warnings) log.warn("{warning}", { warning });
        if (!prepared.workDirWritable) scratchDir = Deno.env.get("TMPDIR") ?? "/tmp";
      } else if (Deno.uid() !== account.uid) {
        throw new Error(
          `cannot run as user "${account.name}": keeldns was started as uid ${Deno.uid()}, not as root or ${account.name}`,
        );
      }
    } catch (e) {
      console.error(`keeldns: ${(e as Error).message}`);
      return 1;
    }
  }
  const held = new HeldUdpSockets(log);
  const guardian = new Guardian(
    options.configPath,
    options.verbose,
    fullConfig,
    crashDir,
    held,
    configText,
    scratchDir,
  );

  let control: ControlServer | undefined;
  if (controlPath) {
    try {
      control = await ControlServer.listen(controlPath, (command, args) => guardian.control(command, args));
    } catch (e) {
      if (e instanceof ControlSocketInUse) {
        console.error(`keeldns: ${e.message}`);
        return 1;
      }
      log.warn("no control socket at {path}: {error}", { path: controlPath, error: (e as Error).message });
    }
  }
  if (options.pidFile) {
    try {
      writePidFile(options.pidFile);
    } catch (e) {
      console.error(`keeldns: ${(e as Error).message}`);
      await control?.close();
      return 1;
    }
  }
  held.bindFor(fullConfig); // as root still, when the guardian drops to `user`: port 53 is bound here
  if (account) {
    try {
      dropGuardianPrivileges(account, fullConfig, control?.path, options.configPath);
    } catch (e) {
      console.error(`keeldns: ${(e as Error).message}`);
      held.closeAll();
      await control?.close();
      if (options.pidFile) removePidFile(options.pidFile);
      return 1;
    }
  }
  const onTerm = () => guardian.stop("SIGTERM received");
  const onInt = () => guardian.stop("SIGINT received");
  const onHup = () => guardian.forward("SIGHUP");
  Deno.addSignalListener("SIGTERM", onTerm);
  Deno.addSignalListener("SIGINT", onInt);
  Deno.addSignalListener("SIGHUP", onHup);
  try {
    return await guardian.run();
  } finally {
    Deno.removeSignalListener("SIGTERM", onTerm);
    Deno.removeSignalListener("SIGINT", onInt);
    Deno.removeSignalListener("SIGHUP", onHup);
    await control?.close();
    if (options.pidFile) removePidFile(options.pidFile);
    log.info("guardian stopped");
  }
}
