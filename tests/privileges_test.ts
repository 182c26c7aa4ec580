/**
 * End to end, as root: `[guardian] user` on a privileged port. keeldns (the bundled program, as the
 * runtime packages run it) starts as root, binds 127.0.0.1 on a port below 1024, and then guardian
 * and child both run as an unprivileged user (`/proc/PID/status`: Uid, Gid, Groups, Cap*), answer
 * over UDP and TCP, replace a SIGKILLed child (again as that user, again on the privileged port),
 * do a planned restart beside the old child, and at stop leave the cache file, log and crash report
 * written by the user. And: a user that does not exist, or a switch that is impossible (started as
 * another unprivileged user), exits non-zero with a clear message.
 *
 * Skipped with the reason when not root. Uses a system user `keeldns-test` made for the test
 * (removed afterwards), or `nobody` without useradd.
 */
import dgram from "node:dgram";
import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { tcpQuery, udpQuery } from "./helpers/dns_client.ts";
import { FakeUpstream } from "./helpers/fake_upstream.ts";
import { processExists, REPO_ROOT, runKeeldns } from "./helpers/keeldns_process.ts";
import { parseProcStatus } from "../ops/privileges.ts";
import { lookupUser, type UserAccount } from "../ops/user_database.ts";

const TEST_USER = "keeldns-test";
const NET_BIND_SERVICE = 1n << 10n;

const isRoot = Deno.build.os === "linux" && Deno.uid() === 0;
const skipReason = isRoot ? undefined : "needs root (it binds a port below 1024 and switches users)";
if (skipReason) console.log(`tests/privileges_test.ts: skipped: ${skipReason}`);

async function sh(command: string, args: string[]): Promise<{ code: number; out: string }> {
  const r = await new Deno.Command(command, { args, stdin: "null", stdout: "piped", stderr: "piped" })
    .output();
  const d = new TextDecoder();
  return { code: r.code, out: d.decode(r.stdout) + d.decode(r.stderr) };
}

/** The test user: `keeldns-test` (created now unless it exists), or `nobody`. */
async function testUser(): Promise<{ account: UserAccount; created: boolean }> {
  try {
    return { account: lookupUser(TEST_USER), created: false };
  } catch {
    // make it
  }
  const made = await sh("useradd", [
    "-r",
    "-M",
    "-U",
    "-d",
    "/nonexistent",
    "-s",
    "/usr/sbin/nologin",
    TEST_USER,
  ])
    .catch(() => ({ code: -1, out: "" }));
  if (made.code === 0) return { account: lookupUser(TEST_USER), created: true };
  return { account: lookupUser("nobody"), created: false };
}

/** A port below 1024 free for UDP and TCP on 127.0.0.1 right now. */
async function freePrivilegedPort(): Promise<number> {
  const start = Math.floor(Math.random() * 424);
  for (let i = 0; i < 424; i++) {
    const port = 600 + (start + i) % 424;
    let tcp: Deno.TcpListener;
    try {
      tcp = Deno.listen({ hostname: "127.0.0.1", port });
    } catch {
      continue; // TCP taken
    }
    const udp = dgram.createSocket("udp4");
    const free = await new Promise<boolean>((resolve) => {
      udp.once("error", () => resolve(false));
      udp.bind(port, "127.0.0.1", () => resolve(true));
    });
    tcp.close();
    await new Promise<void>((resolve) => udp.close(() => resolve()));
    if (free) return port;
  }
  throw new Error("no free port below 1024 on 127.0.0.1");
}

/** A directory holding the bundled program and a runtime every user can run (the runtime build's shape). */
async function installBundle(account: UserAccount): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "keeldns-priv-" });
  await Deno.chmod(dir, 0o755);
  try {
    await Deno.link(Deno.execPath(), `${dir}/deno`); // under /root: not reachable for the user
  } catch {
    await Deno.copyFile(Deno.execPath(), `${dir}/deno`);
  }
  await Deno.chmod(`${dir}/deno`, 0o755);
  const bundled = await sh(`${dir}/deno`, [
    "bundle",
    "--platform",
    "deno",
    "--quiet",
    "-o",
    `${dir}/keeldns.js`,
    `${REPO_ROOT}main.ts`,
  ]);
  if (bundled.code !== 0) throw new Error(`deno bundle failed: ${bundled.out}`);
  await Deno.mkdir(`${dir}/deno-dir`);
  await Deno.chown(`${dir}/deno-dir`, account.uid, account.gid);
  return dir;
}

/** A keeldns guardian run from the bundle, with its stderr lines. */
class Service {
  readonly lines: string[] = [];
  readonly done: Promise<Deno.CommandStatus>;
  private constructor(readonly process: Deno.ChildProcess) {
    this.done = process.status;
    this.pump();
  }

  static start(dir: string, args: string[], user?: UserAccount): Service {
    const argv = ["run", "-A", `${dir}/keeldns.js`, ...args];
    const command = user ? "setpriv" : `${dir}/deno`;
    const full = user
      ? [`--reuid=${user.uid}`, `--regid=${user.gid}`, "--init-groups", `${dir}/deno`, ...argv]
      : argv;
    return new Service(
      new Deno.Command(command, {
        args: full,
        env: { DENO_DIR: `${dir}/deno-dir` },
        stdin: "null",
        stdout: "null",
        stderr: "piped",
      }).spawn(),
    );
  }

  private async pump(): Promise<void> {
    let rest = "";
    for await (const chunk of this.process.stderr.pipeThrough(new TextDecoderStream())) {
      rest += chunk;
      const parts = rest.split("\n");
      rest = parts.pop()!;
      this.lines.push(...parts);
    }
    if (rest) this.lines.push(rest);
  }

  async waitFor(pattern: RegExp, from = 0, timeoutMs = 20_000): Promise<RegExpMatchArray> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      for (let i = from; i < this.lines.length; i++) {
        const m = this.lines[i].match(pattern);
        if (m) return m;
      }
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new Error(`no line matched ${pattern} in ${timeoutMs} ms; log:\n${this.lines.join("\n")}`);
  }

  /** The pid of the newest child that reported ready at or after line `from`. */
  async readyChild(from = 0): Promise<number> {
    return Number((await this.waitFor(/child (\d+) ready/, from))[1]);
  }
}

/** Asserts that every thread of `pid` runs as `account`; returns the main thread's status. */
function assertRunsAs(pid: number, account: UserAccount, who: string): ReturnType<typeof parseProcStatus> {
  const main = parseProcStatus(Deno.readTextFileSync(`/proc/${pid}/status`));
  assertEquals(main.uids, [account.uid, account.uid, account.uid, account.uid], `${who}: Uid`);
  assertEquals(main.gids, [account.gid, account.gid, account.gid, account.gid], `${who}: Gid`);
  assertEquals([...main.groups].sort(), [...account.groups].sort(), `${who}: Groups`);
  for (const task of Deno.readDirSync(`/proc/${pid}/task`)) {
    let text: string;
    try {
      text = Deno.readTextFileSync(`/proc/${pid}/task/${task.name}/status`);
    } catch {
      continue; // the thread ended
    }
    const t = parseProcStatus(text);
    assertEquals(t.uids, main.uids, `${who}: thread ${task.name} Uid`);
    assertEquals(
      t.caps.effective & ~NET_BIND_SERVICE,
      0n,
      `${who}: thread ${task.name} holds no other capability`,
    );
  }
  return main;
}

/** The socket inodes among a process's descriptors. */
function socketInodes(pid: number): Set<string> {
  const inodes = new Set<string>();
  for (const fd of Deno.readDirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(Deno.readLinkSync(`/proc/${pid}/fd/${fd.name}`));
      if (m) inodes.add(m[1]);
    } catch { /* closed meanwhile */ }
  }
  return inodes;
}

/** Asserts that the child serves a socket the guardian holds (bound as root, before the drop). */
function assertServesHeldSocket(guardian: number, child: number, who: string): void {
  const held = socketInodes(guardian);
  assert([...socketInodes(child)].some((i) => held.has(i)), `${who}: serves the guardian's UDP socket`);
}

/** Answers over UDP and TCP on `port`, and returns the names asked so far. */
async function assertAnswers(port: number, name: string): Promise<void> {
  assertEquals((await udpQuery(port, `${name}.test`, "A")).rcode, "NOERROR", `UDP ${name}`);
  assertEquals((await tcpQuery(port, `${name}-tcp.test`, "A")).rcode, "NOERROR", `TCP ${name}`);
}

Deno.test({
  name: "user: guardian and child run as the user on a port below 1024; crash and planned restarts keep it",
  ignore: !isRoot,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const { account, created } = await testUser();
    try {
      await runAsUser(account);
    } finally {
      if (created) await sh("userdel", [TEST_USER]);
    }
  },
});

/** The first test's body, as `account`. */
async function runAsUser(account: UserAccount): Promise<void> {
  const fake = await FakeUpstream.start();
  const dir = await installBundle(account);
  const port = await freePrivilegedPort().catch(async (e) => {
    await fake.close();
    await Deno.remove(dir, { recursive: true });
    throw e;
  });
  const cacheFile = `${dir}/cache/keeldns.cache`;
  const logFile = `${dir}/log/keeldns.log`;
  const pidFile = `${dir}/run/keeldns.pid`;
  await Deno.writeTextFile(
    `${dir}/keeldns.toml`,
    `[server]\nbind = ["127.0.0.1:${port}"]\n[[upstream]]\naddress = "udp://127.0.0.1:${fake.port}"\n` +
      `[cache]\npersist = true\nfile = "${cacheFile}"\ncheckpoint-time = 0\n` +
      `[log]\nlevel = "info"\nfile = "${logFile}"\n[guardian]\nuser = "${account.name}"\n`,
  );
  const k = Service.start(dir, ["run", "-c", `${dir}/keeldns.toml`, "-p", pidFile]);
  try {
    const first = await k.readyChild();
    await k.waitFor(/guardian runs as user/);
    const guardian = assertRunsAs(k.process.pid, account, "guardian");
    assertEquals(guardian.caps.effective, 0n, "guardian: CapEff");
    assertEquals(guardian.caps.permitted, NET_BIND_SERVICE, "guardian: CapPrm");
    assertEquals(guardian.caps.ambient, NET_BIND_SERVICE, "guardian: CapAmb (handed to children)");
    const child = assertRunsAs(first, account, "child");
    assertEquals(child.caps, { effective: 0n, permitted: 0n, inheritable: 0n, ambient: 0n }, "child: Cap*");
    await assertAnswers(port, "first");
    assertServesHeldSocket(k.process.pid, first, "child");

    // kill -9: the new child binds the privileged port again, as the user.
    let mark = k.lines.length;
    Deno.kill(first, "SIGKILL");
    const second = await k.readyChild(mark);
    assert(second !== first, "a new child serves");
    assertEquals(assertRunsAs(second, account, "child after kill -9").caps.effective, 0n);
    await assertAnswers(port, "second");
    assertServesHeldSocket(k.process.pid, second, "child after kill -9");
    await k.waitFor(/crash report written to/, mark);

    // Planned restart: a third child binds beside the second, then the second drains.
    mark = k.lines.length;
    const restart = await sh(`${dir}/deno`, ["run", "-A", `${dir}/keeldns.js`, "restart", "-p", pidFile]);
    assertEquals(restart.code, 0, `keeldns restart: ${restart.out}`);
    const third = await k.readyChild(mark);
    assert(third !== second, "the planned restart started a new child");
    await k.waitFor(new RegExp(`child ${second} drained and stopped`), mark);
    assertEquals(assertRunsAs(third, account, "child after restart").caps.effective, 0n);
    await assertAnswers(port, "third");
    assertServesHeldSocket(k.process.pid, third, "child after restart");

    // The service's user can use the control socket too.
    const status = await sh("setpriv", [
      `--reuid=${account.uid}`,
      `--regid=${account.gid}`,
      "--init-groups",
      `${dir}/deno`,
      "run",
      "-A",
      `${dir}/keeldns.js`,
      "status",
      "-p",
      pidFile,
    ]);
    assertEquals(status.code, 0, `keeldns status as ${account.name}: ${status.out}`);

    mark = k.lines.length;
    k.process.kill("SIGTERM");
    assertEquals((await k.done).code, 0, "a clean stop");
    await k.waitFor(/guardian stopped/, mark, 5000); // the last lines may still be in the pipe
    const owner = (path: string) => Deno.statSync(path).uid;
    assertEquals(owner(cacheFile), account.uid, "the cache file is written by the user at stop");
    assert(Deno.statSync(cacheFile).size > 0, "the cache file holds the cache");
    assertEquals(owner(logFile), account.uid, "the log is the user's");
    const reports = [...Deno.readDirSync(`${dir}/run`)].filter((e) => e.name.startsWith("keeldns-crash-"));
    assertEquals(reports.length, 1, "one crash report (the kill -9)");
    assertEquals(owner(`${dir}/run/${reports[0].name}`), account.uid, "the crash report is the user's");
    assert(!processExists(third), "the child is gone");
    assertEquals(
      [...Deno.readDirSync(`${dir}/run`)].filter((e) => !e.name.startsWith("keeldns-crash-")),
      [],
      "pid file and socket removed",
    );
  } finally {
    try {
      k.process.kill("SIGKILL");
    } catch { /* stopped */ }
    await k.done;
    await fake.close();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

Deno.test({
  name: "user: a switch that cannot happen (started as another unprivileged user) exits 1 with the reason",
  ignore: !isRoot,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const nobody = lookupUser("nobody");
    const dir = await installBundle(nobody);
    try {
      await Deno.writeTextFile(
        `${dir}/keeldns.toml`,
        `[server]\nbind = ["127.0.0.1:5999"]\n[[upstream]]\naddress = "udp://127.0.0.1:9"\n[guardian]\nuser = "daemon"\n`,
      );
      const k = Service.start(dir, ["run", "-c", `${dir}/keeldns.toml`], nobody);
      const status = await k.done;
      assertEquals(status.code, 1, k.lines.join("\n"));
      await k.waitFor(
        /cannot run as user "daemon": keeldns was started as uid 65534, not as root or daemon/,
        0,
        5000,
      );
      assert(!k.lines.some((l) => /child \d+ ready/.test(l)), "no child was started");
    } finally {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test("user: an unknown user makes run exit 1 with a clear message, and check warn", async () => {
  const dir = await Deno.makeTempDir({ prefix: "keeldns-nouser-" });
  try {
    const file = `${dir}/smartdns.conf`;
    await Deno.writeTextFile(file, "bind 127.0.0.1:5999\nserver 127.0.0.1\nuser no-such-user-kd\n");
    const run = await runKeeldns(["run", "-c", file]);
    assertEquals(run.code, 1, run.stderr);
    assertMatch(
      run.stderr,
      /keeldns: cannot run as user "no-such-user-kd": there is no such user in \/etc\/passwd/,
    );
    const check = await runKeeldns(["check", "-c", file]);
    assertEquals(check.code, 0, check.stderr);
    assertMatch(check.stdout, /warning: cannot run as user "no-such-user-kd": .*start-up will refuse it/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
