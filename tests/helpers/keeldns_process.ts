/**
 * Starts the real keeldns (guardian and child) as a subprocess for end-to-end tests, with a
 * temporary config on free loopback ports, and watches its log.
 *
 * @module
 */
import dgram from "node:dgram";
import { type FakeScript, FakeUpstream } from "./fake_upstream.ts";
import { LogLines } from "./log_lines.ts";

/** The repository root (where main.ts and deno.json live). */
export const REPO_ROOT = new URL("../../", import.meta.url).pathname;

/** Returns a port that is free for both UDP and TCP on 127.0.0.1 right now. */
export async function freePort(): Promise<number> {
  for (;;) {
    const tcp = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = tcp.addr.port;
    const udp = dgram.createSocket("udp4");
    const ok = await new Promise<boolean>((resolve) => {
      udp.once("error", () => resolve(false));
      udp.bind(port, "127.0.0.1", () => resolve(true));
    });
    tcp.close();
    await new Promise<void>((resolve) => {
      try {
        udp.close(() => resolve());
      } catch {
        resolve();
      }
    });
    if (ok) return port;
  }
}

/** The command that runs keeldns from source, as the README's `deno task start` does. */
export function keeldnsCommand(args: string[]): { command: string; args: string[] } {
  return {
    command: Deno.execPath(),
    args: ["run", "-A", "--config", `${REPO_ROOT}deno.json`, `${REPO_ROOT}main.ts`, ...args],
  };
}

/** Runs a keeldns command to completion and returns its exit code and output. */
export async function runKeeldns(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const { command, args: full } = keeldnsCommand(args);
  const out = await new Deno.Command(command, { args: full, stdin: "null" }).output();
  const decoder = new TextDecoder();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

/** A running keeldns guardian with its child. */
export class KeeldnsProcess {
  private readonly log: LogLines;
  private readonly done: Promise<Deno.CommandStatus>;

  private constructor(
    private readonly process: Deno.ChildProcess,
    readonly port: number,
    readonly dir: string,
    readonly configPath: string,
  ) {
    this.done = process.status;
    this.log = new LogLines(process.stderr);
  }

  /** Every stderr line so far (guardian and mirrored child lines). */
  get lines(): string[] {
    return this.log.lines;
  }

  /**
   * Writes `config` (with `{port}` replaced by a free port) to a temp file named `name`, starts
   * keeldns on it, and waits until a child reports ready.
   *
   * A smartdns.conf (`name` ending in `.conf`) without a `speed-check-mode` line gets
   * `speed-check-mode none` appended: SmartDNS's default speed check would probe the fake
   * upstreams' addresses (192.0.2.x, off loopback here). The speed check's own tests set the mode.
   */
  static async start(
    config: string,
    options: {
      name?: string;
      args?: string[];
      port?: number;
      waitReady?: boolean;
      /** More environment for the guardian (its children inherit it). */
      env?: Record<string, string>;
    } = {},
  ): Promise<KeeldnsProcess> {
    const port = options.port ?? await freePort();
    const dir = await Deno.makeTempDir({ prefix: "keeldns-test-" });
    const configPath = `${dir}/${options.name ?? "keeldns.toml"}`;
    const text = options.name?.endsWith(".conf") && !/^\s*speed-check-mode\s/m.test(config)
      ? `${config}${config.endsWith("\n") ? "" : "\n"}speed-check-mode none\n`
      : config;
    await Deno.writeTextFile(configPath, text.replaceAll("{port}", String(port)));
    const { command, args } = keeldnsCommand([
      "run",
      "-c",
      configPath,
      "-p",
      `${dir}/keeldns.pid`,
      ...(options.args ?? []),
    ]);
    const process = new Deno.Command(command, {
      args,
      env: options.env,
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const k = new KeeldnsProcess(process, port, dir, configPath);
    if (options.waitReady !== false) await k.waitFor(/child (\d+) ready/, 20_000);
    return k;
  }

  /** The guardian's pid. */
  get pid(): number {
    return this.process.pid;
  }

  /** The pid of the newest child that reported ready. */
  get childPid(): number {
    const ready = this.lines.filter((l) => /child \d+ ready/.test(l)).at(-1);
    if (!ready) throw new Error("no child has reported ready");
    return Number(/child (\d+) ready/.exec(ready)![1]);
  }

  /**
   * Waits for a log line matching `pattern` at or after line index `from` (default: any line).
   * Rejects after `timeoutMs`, quoting the log.
   */
  waitFor(pattern: RegExp, timeoutMs = 10_000, from = 0): Promise<RegExpMatchArray> {
    return this.log.waitFor(pattern, timeoutMs, from);
  }

  /** Sends a signal to the guardian. */
  signal(signal: Deno.Signal): void {
    this.process.kill(signal);
  }

  /** Resolves with the guardian's exit status. */
  status(): Promise<Deno.CommandStatus> {
    return this.done;
  }

  /** Stops keeldns with SIGTERM (SIGKILL after 10 s) and removes the temp dir; returns the status. */
  async stop(): Promise<Deno.CommandStatus> {
    try {
      this.process.kill("SIGTERM");
    } catch { /* already gone */ }
    const timer = setTimeout(() => {
      try {
        this.process.kill("SIGKILL");
      } catch { /* gone */ }
    }, 10_000);
    const status = await this.done;
    clearTimeout(timer);
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
    return status;
  }
}

/**
 * A TOML config for tests: `bind` on 127.0.0.1:{port}, one UDP upstream on 127.0.0.1, log level
 * info, then `extra` (more tables).
 */
export function testConfig(upstreamPort: number, extra = ""): string {
  return `[server]\nbind = ["127.0.0.1:{port}"]\n[[upstream]]\naddress = "udp://127.0.0.1:${upstreamPort}"\n` +
    `[log]\nlevel = "info"\n${extra}`;
}

/**
 * Runs `fn` against a guarded keeldns on `config(fake.port)` with a fake upstream that follows
 * `script`; stops both afterwards, whatever `fn` did.
 */
export async function withKeeldns(
  config: (upstreamPort: number) => string,
  fn: (k: KeeldnsProcess, fake: FakeUpstream) => Promise<void>,
  script?: FakeScript,
): Promise<void> {
  const fake = await FakeUpstream.start(script);
  const k = await KeeldnsProcess.start(config(fake.port));
  try {
    await fn(k, fake);
  } finally {
    await k.stop();
    await fake.close();
  }
}

/** Whether a process with this pid exists. */
export function processExists(pid: number): boolean {
  try {
    Deno.statSync(`/proc/${pid}`);
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return !/^\d+ \(.*\) Z/.test(stat);
  } catch {
    return false;
  }
}

/** Both UDP transports; the end-to-end suites run against each. */
export const UDP_TRANSPORTS = ["batched", "portable"] as const;

/** Whether peers must be present (CI sets KEELDNS_REQUIRE_PEERS=1). */
export const PEERS_REQUIRED = Deno.env.get("KEELDNS_REQUIRE_PEERS") === "1";

/** Whether `program` is on PATH (or in /usr/sbin). */
export function hasProgram(program: string): boolean {
  for (const dir of [...(Deno.env.get("PATH") ?? "").split(":"), "/usr/sbin", "/sbin"]) {
    try {
      if (Deno.statSync(`${dir}/${program}`).isFile) return true;
    } catch { /* not here */ }
  }
  return false;
}

/**
 * Returns `ignore` for a test that needs `programs`: false when all are present. When one is
 * missing, CI (KEELDNS_REQUIRE_PEERS=1) does not ignore, so the test runs and fails; elsewhere the
 * test is ignored and the reason printed.
 */
export function skipWithout(...programs: string[]): boolean {
  const missing = programs.filter((p) => !hasProgram(p));
  if (missing.length === 0 || PEERS_REQUIRED) return false;
  console.error(`skipping a test: ${missing.join(", ")} not installed (CI requires it)`);
  return true;
}

/** Absolute path of a program for spawning (PATH, then /usr/sbin). */
export function programPath(program: string): string {
  for (const dir of [...(Deno.env.get("PATH") ?? "").split(":"), "/usr/sbin", "/sbin"]) {
    try {
      if (Deno.statSync(`${dir}/${program}`).isFile) return `${dir}/${program}`;
    } catch { /* not here */ }
  }
  throw new Error(`${program} is not installed (apt-get install the peer; .ci/run does)`);
}
