/**
 * Minimal router-like roots for the platform tests (tests/musl_root_test.ts, tests/aarch64_test.ts):
 * a static busybox and nothing else — no glibc anywhere — into which a keeldns package's files
 * are unpacked, with a stub of OpenWrt's `/etc/rc.common` + procd so `/etc/init.d/keeldns start`
 * runs the instance the real procd would run. Processes run in the root through chroot in a
 * private mount namespace (unshare) with /proc and /dev mounted; the network is the host's, so
 * the tests query it over loopback.
 *
 * @module
 */
import { FakeUpstream } from "./helpers/fake_upstream.ts";
import { freePort, hasProgram, PEERS_REQUIRED, processExists } from "./helpers/keeldns_process.ts";

/** The repository root. */
export const ROOT = new URL("../", import.meta.url).pathname;
/** This project's version (package file names). */
export const VERSION: string = JSON.parse(Deno.readTextFileSync(`${ROOT}deno.json`)).version;

/** Runs a command to completion; stdout and stderr as text. */
export async function sh(
  command: string,
  args: string[],
): Promise<{ code: number; out: string; err: string }> {
  const o = await new Deno.Command(command, { args, stdin: "null", stdout: "piped", stderr: "piped" })
    .output();
  const d = new TextDecoder();
  return { code: o.code, out: d.decode(o.stdout), err: d.decode(o.stderr) };
}

/** Runs a command; throws with its output when it fails. */
export async function must(command: string, args: string[]): Promise<string> {
  const r = await sh(command, args);
  if (r.code !== 0) throw new Error(`${command} ${args.join(" ")} failed (${r.code}):\n${r.out}${r.err}`);
  return r.out;
}

/** The static busybox (Debian's busybox-static), or undefined. */
export function staticBusybox(): string | undefined {
  for (const path of ["/bin/busybox", "/usr/bin/busybox"]) {
    try {
      const head = Deno.readFileSync(path);
      // A static executable has no PT_INTERP: no "/lib…ld-" path in its first pages.
      if (!new TextDecoder("latin1").decode(head.subarray(0, 4096)).includes("ld-linux")) return path;
    } catch { /* not here */ }
  }
  return undefined;
}

/**
 * Why the root-based tests cannot run here (undefined: they can). Without KEELDNS_REQUIRE_PEERS
 * a reason means "skip and say so"; with it the test runs and fails on what is missing.
 */
export function rootTestBlocker(...programs: string[]): string | undefined {
  if (Deno.build.os !== "linux" || Deno.build.arch !== "x86_64") return "needs Linux on x86_64";
  if (Deno.uid() !== 0) return "needs root (chroot, mount namespaces)";
  const missing = ["unshare", "chroot", "tar", ...programs].filter((p) => !hasProgram(p));
  if (!staticBusybox()) missing.push("busybox (static: busybox-static)");
  return missing.length ? `${missing.join(", ")} not installed` : undefined;
}

/** `ignore` for a root-based test: skips (printing why) unless CI requires it. */
export function ignoreUnless(name: string, blocker: string | undefined): boolean {
  if (!blocker) return false;
  if (PEERS_REQUIRED) return false;
  console.error(`skipping ${name}: ${blocker} (CI requires it)`);
  return true;
}

/** Builds `formats` of the runtime packages for `target` into a fresh temporary directory. */
export async function buildPackages(target: string, formats: string[]): Promise<string> {
  const out = await Deno.makeTempDir({ prefix: `keeldns-pkg-${target}-` });
  await must(Deno.execPath(), [
    "run",
    "-A",
    `${ROOT}packaging/build.ts`,
    "--target",
    target,
    "--kind",
    "runtime",
    "--out",
    out,
    ...formats.flatMap((f) => ["--format", f]),
  ]);
  return out;
}

/** The stub of OpenWrt's rc.common with procd's instance calls: `start` execs the instance. */
const RC_COMMON = `#!/bin/sh
# Test stub of OpenWrt's /etc/rc.common and procd: "start" runs, in the foreground, the instance
# procd would run (its command with its env params); reload and restart call the script's own.
initscript=$1
action=$2
procd_open_instance() { PROCD_CMD=""; PROCD_ENV=""; }
procd_set_param() {
  name=$1
  shift
  echo "$name $*" >> /tmp/procd-params
  case $name in
    command) PROCD_CMD="$*" ;;
    env) PROCD_ENV="$PROCD_ENV $*" ;;
  esac
}
procd_close_instance() {
  # shellcheck disable=SC2086 # word splitting is what procd's list params amount to here
  exec env $PROCD_ENV $PROCD_CMD
}
# shellcheck source=/dev/null
. "$initscript"
case $action in
  start) start_service ;;
  reload) reload_service ;;
  restart) restart ;;
  *) echo "rc.common stub: $action not supported" >&2; exit 1 ;;
esac
`;

/**
 * Makes a router-like root in a new temporary directory: static busybox with its applets in /bin,
 * musl's loader in /lib when Debian's musl is installed (as on OpenWrt), the stub rc.common, and
 * the usual empty directories. No glibc.
 */
export async function makeRoot(): Promise<string> {
  const root = await Deno.makeTempDir({ prefix: "keeldns-root-" });
  for (
    const dir of ["bin", "lib", "proc", "dev", "tmp", "var/run", "var/cache", "etc/init.d", "etc/keeldns"]
  ) {
    await Deno.mkdir(`${root}/${dir}`, { recursive: true });
  }
  await Deno.chmod(`${root}/tmp`, 0o1777);
  const busybox = staticBusybox()!;
  await Deno.copyFile(busybox, `${root}/bin/busybox`);
  await Deno.chmod(`${root}/bin/busybox`, 0o755);
  const applets = (await must(busybox, ["--list"])).trim().split("\n");
  for (const applet of applets) {
    if (applet !== "busybox") await Deno.symlink("busybox", `${root}/bin/${applet}`).catch(() => {});
  }
  const musl = "/lib/x86_64-linux-musl/libc.so";
  if (await Deno.stat(musl).then(() => true, () => false)) {
    await Deno.copyFile(musl, `${root}/lib/libc.so`);
    await Deno.symlink("libc.so", `${root}/lib/ld-musl-x86_64.so.1`);
  }
  await Deno.writeTextFile(`${root}/etc/rc.common`, RC_COMMON);
  await Deno.chmod(`${root}/etc/rc.common`, 0o755);
  return root;
}

/** Unpacks an .ipk's data archive into `root` (as opkg would, at /). */
export async function unpackIpk(ipk: string, root: string): Promise<void> {
  await must("sh", ["-c", `tar -xzOf '${ipk}' ./data.tar.gz | tar -xzf - -C '${root}'`]);
}

/** Every file under `root` whose name is a glibc loader or libc, relative to `root`. */
export async function glibcFiles(root: string): Promise<string[]> {
  const found: string[] = [];
  const walk = async (dir: string) => {
    for await (const e of Deno.readDir(dir)) {
      const path = `${dir}/${e.name}`;
      if (e.isDirectory) await walk(path);
      else if (/^(ld-linux.*\.so\.\d|libc\.so\.6)$/.test(e.name)) found.push(path.slice(root.length));
    }
  };
  await walk(root);
  return found.sort();
}

/** The argv that runs `argv` inside `root` (chroot in a private mount namespace with /proc, /dev). */
export function inRoot(root: string, argv: string[]): { command: string; args: string[] } {
  return {
    command: "unshare",
    args: [
      "--mount",
      "sh",
      "-c",
      'mount -t proc proc "$0/proc" && mount --bind /dev "$0/dev" && exec chroot "$0" "$@"',
      root,
      ...argv,
    ],
  };
}

/** Runs `argv` inside `root` to completion. */
export function shInRoot(root: string, argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const { command, args } = inRoot(root, argv);
  return sh(command, args);
}

/** The service (guardian) started in a root, with its log lines. */
export class RootedService {
  readonly lines: string[] = [];
  readonly childPids = new Set<number>();
  readonly status: Promise<Deno.CommandStatus>;
  private readonly process: Deno.ChildProcess;
  private readonly pumped: Promise<void>;

  constructor(root: string, argv: string[]) {
    const { command, args } = inRoot(root, argv);
    this.process = new Deno.Command(command, { args, stdin: "null", stdout: "piped", stderr: "piped" })
      .spawn();
    this.status = this.process.status;
    this.pumped = Promise.all([this.pump(this.process.stdout), this.pump(this.process.stderr)]).then(
      () => {},
    );
  }

  /** The guardian's pid (every step from unshare to the loader is an exec). */
  get pid(): number {
    return this.process.pid;
  }

  private async pump(stream: ReadableStream<Uint8Array>): Promise<void> {
    let rest = "";
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      rest += chunk;
      let nl: number;
      while ((nl = rest.indexOf("\n")) >= 0) {
        const line = rest.slice(0, nl);
        rest = rest.slice(nl + 1);
        this.lines.push(line);
        const ready = /child (\d+) ready/.exec(line);
        if (ready) this.childPids.add(Number(ready[1]));
      }
    }
    if (rest) this.lines.push(rest);
  }

  /** Waits for a line matching `pattern` from line `from` on; throws after `timeoutMs` with the log. */
  async waitFor(pattern: RegExp, timeoutMs: number, from = 0): Promise<RegExpMatchArray> {
    const deadline = Date.now() + timeoutMs;
    let exited = false;
    this.status.then(() => exited = true);
    for (;;) {
      for (let i = from; i < this.lines.length; i++) {
        const m = this.lines[i].match(pattern);
        if (m) return m;
      }
      if (exited || Date.now() > deadline) {
        await Promise.race([this.pumped, new Promise((r) => setTimeout(r, 500))]);
        throw new Error(
          `no line matched ${pattern} in ${timeoutMs} ms${exited ? " (the service exited)" : ""}; log:\n` +
            this.lines.join("\n"),
        );
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** SIGKILLs the guardian and every child it reported, if still there; waits for the guardian. */
  async kill(): Promise<void> {
    for (const pid of [this.pid, ...this.childPids]) {
      if (processExists(pid)) {
        try {
          Deno.kill(pid, "SIGKILL");
        } catch { /* gone */ }
      }
    }
    await this.status;
    await this.pumped;
  }

  /** Waits for the streams to end (after the guardian exited). */
  async drained(): Promise<void> {
    await this.pumped;
  }
}

/** A TOML config for a root: loopback port, one loopback upstream, cache persisted in the root. */
export function rootConfig(port: number, upstreamPort: number, guardian = ""): string {
  return `[server]\nbind = ["127.0.0.1:${port}"]\n[[upstream]]\naddress = "udp://127.0.0.1:${upstreamPort}"\n` +
    `[cache]\npersist = true\nfile = "/var/cache/keeldns/keeldns.cache"\n` +
    `[guardian]\n${guardian}\n[log]\nlevel = "info"\n`;
}

export { FakeUpstream, freePort, processExists };
