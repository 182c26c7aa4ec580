/**
 * The guardian: starts the child (this same program with `--child`), restarts it at once when it
 * dies or stops beating, forwards signals, and logs why each child died. It exits only when told
 * to stop, or when the configuration is invalid at start.
 *
 * @module
 */
import { ConfigError } from "./config/errors.ts";
import { loadConfig } from "./config/load.ts";
import { EXIT_BIND, EXIT_CONFIG, parseChildMessage } from "./ops/child_messages.ts";
import { LineRing, readLines } from "./ops/lines.ts";
import { getLogger, setupLogging } from "./ops/log.ts";
import { removePidFile, writePidFile } from "./ops/pid_file.ts";

/** How the guardian was started. */
export interface GuardianOptions {
  readonly configPath?: string;
  readonly pidFile?: string;
  readonly verbose: boolean;
  /** Milliseconds without a heartbeat before the child counts as hung. */
  readonly watchdogMs?: number;
}

/** Restart delays: the first restart is immediate, then doubling from 100 ms up to this cap. */
export const MAX_RESTART_DELAY_MS = 5000;
/**
 * A child that served (was ready) this long before it died was not stuck in a start-up loop: its
 * restart is immediate again. Children dying before or right after ready back off.
 */
export const HEALTHY_AFTER_MS = 1000;
/** How long a stopping child may take before it is killed. */
const STOP_GRACE_MS = 10_000;

/** Delay before restart number `failures` (1 = the first failure in a row). */
export function restartDelay(failures: number): number {
  return failures <= 1 ? 0 : Math.min(100 * 2 ** (failures - 2), MAX_RESTART_DELAY_MS);
}

/** The permissions the child needs when it runs under `deno run`. */
const CHILD_PERMISSIONS = [
  "--allow-net",
  "--allow-read",
  "--allow-write",
  "--allow-env",
  "--allow-sys",
  "--allow-ffi",
];

/** The command line that starts a child of this same program. */
export function childCommand(childArgs: string[]): { command: string; args: string[] } {
  if (Deno.build.standalone) return { command: Deno.execPath(), args: ["--child", ...childArgs] };
  const flags = ["run", "--no-prompt", ...CHILD_PERMISSIONS];
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

const log = getLogger("guardian");
const stderrEncoder = new TextEncoder();

/** Supervises one child at a time. */
class Guardian {
  private child?: Deno.ChildProcess;
  private stopping = false;
  private lastBeat = 0;
  private readyAt = 0;
  private failures = 0;
  private restarts = 0;
  private readonly stderrTail = new LineRing(50);
  private wake?: () => void;

  constructor(private readonly childArgs: string[], private readonly watchdogMs: number) {}

  /** Runs children until `stop()`; resolves with the guardian's exit code. */
  async run(): Promise<number> {
    const watchdog = setInterval(() => this.checkHeartbeat(), 250);
    try {
      while (!this.stopping) {
        const started = Date.now();
        this.readyAt = 0;
        const child = this.spawn();
        const status = await child.status;
        this.child = undefined;
        if (this.stopping) break;
        const upMs = Date.now() - started;
        const served = this.readyAt > 0 && Date.now() - this.readyAt >= HEALTHY_AFTER_MS;
        this.failures = served ? 1 : this.failures + 1;
        this.report(child.pid, status, upMs);
        const delay = restartDelay(this.failures);
        if (delay > 0) {
          log.warn("restarting the child in {delay} ms (failure {n} in a row)", { delay, n: this.failures });
          await new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, delay);
            this.wake = () => {
              clearTimeout(timer);
              resolve();
            };
          });
          this.wake = undefined;
        }
        this.restarts++;
      }
    } finally {
      clearInterval(watchdog);
    }
    return 0;
  }

  private spawn(): Deno.ChildProcess {
    const { command, args } = childCommand(this.childArgs);
    this.stderrTail.clear();
    const child = new Deno.Command(command, {
      args,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      detached: true,
    })
      .spawn();
    this.child = child;
    this.lastBeat = Date.now();
    this.readMessages(child);
    this.mirrorStderr(child);
    return child;
  }

  private async readMessages(child: Deno.ChildProcess): Promise<void> {
    for await (const line of readLines(child.stdout)) {
      const message = parseChildMessage(line);
      if (!message) continue;
      if ("beat" in message) this.lastBeat = Date.now();
      else if ("ready" in message) {
        this.lastBeat = this.readyAt = Date.now();
        log.info("child {pid} ready on {listeners}", {
          pid: message.ready.pid,
          listeners: message.ready.listeners.join(", "),
        });
      }
    }
  }

  private async mirrorStderr(child: Deno.ChildProcess): Promise<void> {
    for await (const line of readLines(child.stderr)) {
      this.stderrTail.push(line);
      try {
        Deno.stderr.writeSync(stderrEncoder.encode(line + "\n"));
      } catch {
        // our own stderr is gone; the tail is still kept for the crash report
      }
    }
  }

  private checkHeartbeat(): void {
    const child = this.child;
    if (!child || this.stopping) return;
    const silent = Date.now() - this.lastBeat;
    if (silent > this.watchdogMs) {
      log.error("child {pid} hung: no heartbeat for {ms} ms; killing it", { pid: child.pid, ms: silent });
      this.lastBeat = Date.now();
      try {
        child.kill("SIGKILL");
      } catch {
        // exited meanwhile
      }
    }
  }

  private report(pid: number, status: Deno.CommandStatus, upMs: number): void {
    const how = status.signal ? `was killed by ${status.signal}` : `exited with code ${status.code}`;
    const why = status.code === EXIT_CONFIG
      ? " (invalid configuration)"
      : status.code === EXIT_BIND
      ? " (could not bind its sockets)"
      : "";
    const tail = this.stderrTail.toArray().slice(-10);
    log.error("child {pid} {how}{why} after {up} s (restart #{n}); its last output:\n{tail}", {
      pid,
      how,
      why,
      up: (upMs / 1000).toFixed(1),
      n: this.restarts + 1,
      tail: tail.length ? tail.map((l) => `  | ${l}`).join("\n") : "  | (nothing)",
    });
  }

  /** Asks the child to stop and stops restarting it. */
  stop(signal: Deno.Signal): void {
    if (this.stopping) return;
    this.stopping = true;
    log.info("{signal} received: stopping", { signal });
    this.wake?.();
    const child = this.child;
    if (!child) return;
    try {
      child.kill("SIGTERM");
    } catch {
      return;
    }
    const timer = setTimeout(() => {
      log.error("child {pid} did not stop in {ms} ms; killing it", { pid: child.pid, ms: STOP_GRACE_MS });
      try {
        child.kill("SIGKILL");
      } catch {
        // exited meanwhile
      }
    }, STOP_GRACE_MS);
    child.status.finally(() => clearTimeout(timer));
  }

  /** Passes a signal on to the child. */
  forward(signal: Deno.Signal): void {
    const child = this.child;
    if (!child) return;
    try {
      child.kill(signal);
      log.info("{signal} forwarded to child {pid}", { signal, pid: child.pid });
    } catch {
      // the child exited meanwhile
    }
  }
}

/**
 * Validates the configuration, writes the pid file, and supervises children until SIGTERM or
 * SIGINT. Returns the exit code: 0 after a requested stop, 1 if the configuration is invalid.
 */
export async function runGuardian(options: GuardianOptions): Promise<number> {
  let level;
  try {
    const config = loadConfig(options.configPath);
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
  if (options.pidFile) {
    try {
      writePidFile(options.pidFile);
    } catch (e) {
      console.error(`keeldns: ${(e as Error).message}`);
      return 1;
    }
  }
  const childArgs = [
    ...(options.configPath ? ["-c", options.configPath] : []),
    ...(options.verbose ? ["-v"] : []),
  ];
  const guardian = new Guardian(childArgs, options.watchdogMs ?? 5000);
  const onTerm = () => guardian.stop("SIGTERM");
  const onInt = () => guardian.stop("SIGINT");
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
    if (options.pidFile) removePidFile(options.pidFile);
    log.info("guardian stopped");
  }
}
