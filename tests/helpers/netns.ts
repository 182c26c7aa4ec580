/**
 * Network namespaces for end-to-end tests (Linux, root, `ip netns`): create one with its loopback
 * up, run programs and dig inside it, start keeldns inside it ({@link NsKeeldns}), and remove it
 * with whatever this test left running there.
 *
 * @module
 */
import { hasProgram, keeldnsCommand, programPath, REPO_ROOT, runKeeldns } from "./keeldns_process.ts";
import { LogLines } from "./log_lines.ts";

const decoder = new TextDecoder();

/** Runs `cmd` (with `stdin` written to it, if given); returns its exit code and output. */
export async function exec(
  cmd: string[],
  stdin?: string,
): Promise<{ code: number; out: string; err: string }> {
  const p = new Deno.Command(cmd[0], {
    args: cmd.slice(1),
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin !== undefined) {
    const w = p.stdin.getWriter();
    await w.write(new TextEncoder().encode(stdin));
    await w.close();
  }
  const o = await p.output();
  return { code: o.code, out: decoder.decode(o.stdout), err: decoder.decode(o.stderr) };
}

/** Runs `cmd` and throws with its stderr when it fails. */
export async function must(cmd: string[]): Promise<string> {
  const r = await exec(cmd);
  if (r.code !== 0) throw new Error(`${cmd.join(" ")}: exit ${r.code}: ${r.err.trim()}`);
  return r.out;
}

/** Waits `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Why network namespaces cannot be used here (not Linux, not root, no `ip`, …), or undefined. */
export function namespacesUnavailable(): string | undefined {
  if (Deno.build.os !== "linux") return "not Linux";
  if (Deno.uid() !== 0) return "not root (network namespaces need it)";
  if (!hasProgram("ip")) return "no ip command (Debian: apt-get install iproute2)";
  const probe = `kd-probe-${Deno.pid % 100_000}`;
  try {
    const add = new Deno.Command(programPath("ip"), { args: ["netns", "add", probe], stderr: "piped" })
      .outputSync();
    if (add.code !== 0) return `ip netns add fails: ${decoder.decode(add.stderr).trim()}`;
    new Deno.Command(programPath("ip"), { args: ["netns", "del", probe], stderr: "null" }).outputSync();
  } catch (e) {
    return `ip netns unusable: ${(e as Error).message}`;
  }
  return undefined;
}

/** Adds namespace `ns` with its loopback up (and nothing else: no route leaves it). */
export async function addNamespace(ns: string): Promise<void> {
  const ip = programPath("ip");
  await must([ip, "netns", "add", ns]);
  await must([ip, "-n", ns, "link", "set", "lo", "up"]);
}

/** Kills whatever still runs in `ns` (only processes the calling test started there) and removes it. */
export async function removeNamespace(ns: string): Promise<void> {
  const ip = programPath("ip");
  const pids = await exec([ip, "netns", "pids", ns]);
  for (const pid of pids.out.split(/\s+/).filter(Boolean)) {
    try {
      Deno.kill(Number(pid), "SIGKILL");
    } catch { /* gone */ }
  }
  await exec([ip, "netns", "del", ns]);
}

/** Whether `ns` is gone or has no process left in it. */
export async function namespaceEmpty(ns: string): Promise<boolean> {
  const left = await exec([programPath("ip"), "netns", "pids", ns]);
  return left.code !== 0 || left.out.trim() === "";
}

/** The command line that runs `program` with `args` inside `ns` (`ip netns exec` execs it). */
export function inNamespace(
  ns: string,
  program: string,
  args: string[],
): { command: string; args: string[] } {
  return { command: programPath("ip"), args: ["netns", "exec", ns, program, ...args] };
}

/**
 * The inside half of a test that runs itself again inside a namespace: when this module is the
 * main one (`isMain`) and `envName` is set, runs `inside`, prints what it found as JSON (the last
 * line of stdout) and exits; otherwise returns at once.
 */
export async function runInsideHalf(isMain: boolean, envName: string, inside: () => Promise<unknown>) {
  if (!isMain || !Deno.env.get(envName)) return;
  const findings = await inside();
  console.log(JSON.stringify(findings));
  Deno.exit(0);
}

/**
 * Runs the test module `moduleUrl` again inside `ns`, with `envName` set so that it runs its
 * inside half ({@link runInsideHalf}), and returns what it found; throws with its stderr when it fails.
 */
export async function findingsInside<T>(ns: string, moduleUrl: string, envName: string): Promise<T> {
  const { command, args } = inNamespace(ns, Deno.execPath(), [
    "run",
    "-A",
    "--config",
    `${REPO_ROOT}deno.json`,
    new URL(moduleUrl).pathname,
  ]);
  const o = await new Deno.Command(command, {
    args,
    env: { [envName]: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const out = decoder.decode(o.stdout).trim().split("\n");
  if (o.code !== 0) throw new Error(`inside the namespace:\n${decoder.decode(o.stderr)}`);
  return JSON.parse(out[out.length - 1]) as T;
}

/** One answer record as dig prints it. */
export interface DigRecord {
  ttl: number;
  type: string;
  data: string;
}

/** What dig saw: the rcode (TIMEOUT when nothing came back), the A addresses and every answer record. */
export interface DigResult {
  status: string;
  addresses: string[];
  records: DigRecord[];
  raw: string;
}

/** Runs dig inside namespace `ns` against `server` (one try, 2 s) for the A records of `name`. */
export async function digIn(
  ns: string,
  server: string,
  port: number,
  name: string,
  ...extra: string[]
): Promise<DigResult> {
  const r = await exec([
    programPath("ip"),
    "netns",
    "exec",
    ns,
    programPath("dig"),
    `@${server}`,
    "-p",
    String(port),
    "+tries=1",
    "+time=2",
    "+norecurse",
    ...extra,
    name,
    "A",
  ]);
  const status = /status: ([A-Z]+)/.exec(r.out)?.[1] ?? "TIMEOUT";
  const answer = /;; ANSWER SECTION:\n([\s\S]*?)(?:\n\n|$)/.exec(r.out)?.[1] ?? "";
  const records = [...answer.matchAll(/^\S+\s+(\d+)\s+IN\s+(\S+)\s+(.*)$/gm)]
    .map((m) => ({ ttl: Number(m[1]), type: m[2], data: m[3].trim() }));
  const addresses = records.filter((x) => x.type === "A").map((x) => x.data);
  return { status, addresses, records, raw: r.out + r.err };
}

/** A keeldns guardian (and its child) running inside a namespace, with its log. */
export class NsKeeldns {
  private readonly log: LogLines;
  private readonly done: Promise<Deno.CommandStatus>;

  private constructor(private readonly process: Deno.ChildProcess, readonly dir: string) {
    this.done = process.status;
    this.log = new LogLines(process.stderr);
  }

  /** Every stderr line so far. */
  get lines(): string[] {
    return this.log.lines;
  }

  /** Writes `config` as `name`, starts keeldns in `ns` on it and waits until its child is ready. */
  static async start(ns: string, name: string, config: string): Promise<NsKeeldns> {
    const dir = await Deno.makeTempDir({ prefix: "keeldns-ns-" });
    await Deno.writeTextFile(`${dir}/${name}`, config);
    const keeldns = keeldnsCommand([
      "run",
      "-c",
      `${dir}/${name}`,
      "-p",
      `${dir}/keeldns.pid`,
      "--control",
      `${dir}/control.sock`,
    ]);
    // `ip netns exec` execs the command: the guardian has this pid, and its child the namespace.
    const { command, args } = inNamespace(ns, keeldns.command, keeldns.args);
    const process = new Deno.Command(command, { args, stdin: "null", stdout: "null", stderr: "piped" })
      .spawn();
    const k = new NsKeeldns(process, dir);
    try {
      await k.waitFor(/child \d+ ready/, 20_000);
    } catch (e) {
      await k.stop();
      throw e;
    }
    return k;
  }

  /** The control socket's path. */
  get control(): string {
    return `${this.dir}/control.sock`;
  }

  /** Waits for a log line matching `pattern` (after line index `from`); gives the line. */
  async waitFor(pattern: RegExp, timeoutMs: number, from = 0): Promise<string> {
    return (await this.log.waitFor(pattern, timeoutMs, from)).input!;
  }

  /** `keeldns status` over the control socket, as key → value. */
  async status(): Promise<Record<string, string>> {
    const r = await runKeeldns(["status", "--control", this.control]);
    if (r.code !== 0) throw new Error(`keeldns status: exit ${r.code}: ${r.stderr}`);
    const out: Record<string, string> = {};
    for (const line of r.stdout.split("\n")) {
      const m = /^(\w+): (.*)$/.exec(line);
      if (m) out[m[1]] = m[2];
    }
    return out;
  }

  /** Rewrites the configuration and `keeldns reload`s it; waits for the child to say so. */
  async reload(name: string, config: string): Promise<void> {
    const mark = this.lines.length;
    await Deno.writeTextFile(`${this.dir}/${name}`, config);
    const r = await runKeeldns(["reload", "--control", this.control]);
    if (r.code !== 0) throw new Error(`keeldns reload: exit ${r.code}: ${r.stderr}`);
    await this.waitFor(/reloaded/, 5000, mark);
  }

  /** SIGTERM (SIGKILL after 10 s); removes the temp dir. */
  async stop(): Promise<Deno.CommandStatus> {
    try {
      this.process.kill("SIGTERM");
    } catch { /* gone */ }
    const timer = setTimeout(() => {
      try {
        this.process.kill("SIGKILL");
      } catch { /* gone */ }
    }, 10_000);
    const status = await this.done;
    clearTimeout(timer);
    await this.log.ended.catch(() => {});
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
    return status;
  }
}
