/**
 * The aarch64 runtime build, run for real under QEMU user emulation (Debian's qemu-user-static,
 * registered with binfmt_misc here if it is not yet): the arm64 .deb and the aarch64 .ipk are
 * built, unpacked into router-like roots without any glibc but the bundled one, and
 * - from the .ipk, `/etc/init.d/keeldns start` (procd stubbed) starts guardian and child, which
 *   answer over UDP and TCP, survive a SIGKILL of the child, and stop on SIGTERM as under procd;
 * - from the .deb, `keeldns run` does the same (as systemd's ExecStart would), after
 *   `keeldns version` has named the bundled loader.
 * Emulation is slow (`keeldns version` takes seconds), so the configs give the child a 60 s
 * watchdog. Needs root; skipped otherwise unless KEELDNS_REQUIRE_PEERS=1.
 */
import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { tcpQuery, udpQuery } from "./helpers/dns_client.ts";
import {
  buildPackages,
  FakeUpstream,
  freePort,
  glibcFiles,
  ignoreUnless,
  makeRoot,
  must,
  processExists,
  rootConfig,
  RootedService,
  rootTestBlocker,
  shInRoot,
  unpackIpk,
  VERSION,
} from "./platform_root.ts";

const BINFMT = "/proc/sys/fs/binfmt_misc";
const QEMU_CONF = "/usr/lib/binfmt.d/qemu-aarch64.conf";
const LOADER = "/usr/lib/keeldns/glibc/ld-linux-aarch64.so.1";
const LOADER_SOURCE = "/usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1";
/** Under emulation the child takes well over the default 5 s to its first heartbeat. */
const GUARDIAN = "watchdog-timeout = 60";
const SLOW = 180_000;

/** Why aarch64 executables cannot run here, after registering QEMU if needed (undefined: they can). */
async function aarch64Blocker(): Promise<string | undefined> {
  const blocker = rootTestBlocker("dpkg-deb");
  if (blocker) return blocker;
  for (const [path, pkg] of [[QEMU_CONF, "qemu-user-static"], [LOADER_SOURCE, "libc6-arm64-cross"]]) {
    if (!await Deno.stat(path).then(() => true, () => false)) return `${pkg} not installed`;
  }
  try {
    const entry = await Deno.readTextFile(`${BINFMT}/qemu-aarch64`).catch(() => undefined);
    if (entry?.startsWith("enabled")) return undefined;
    if (!await Deno.stat(`${BINFMT}/register`).then(() => true, () => false)) {
      await must("mount", ["-t", "binfmt_misc", "binfmt_misc", BINFMT]);
    }
    if (await Deno.stat(`${BINFMT}/qemu-aarch64`).then(() => false, () => true)) {
      await Deno.writeTextFile(`${BINFMT}/register`, (await Deno.readTextFile(QEMU_CONF)).trim());
    } else {
      await Deno.writeTextFile(`${BINFMT}/qemu-aarch64`, "1");
    }
    return undefined;
  } catch (e) {
    return `cannot register qemu-aarch64 with binfmt_misc: ${(e as Error).message}`;
  }
}
const blocker = await aarch64Blocker();

/**
 * Starts the service in `root` with `argv`, queries it over UDP and TCP, SIGKILLs the child and
 * waits for its replacement, queries again, and stops it with SIGTERM (exit 0, child gone).
 */
async function exercise(root: string, argv: string[], fake: FakeUpstream, label: string): Promise<void> {
  const port = await freePort();
  await Deno.writeTextFile(`${root}/etc/keeldns/keeldns.toml`, rootConfig(port, fake.port, GUARDIAN));
  const service = new RootedService(root, argv);
  try {
    const started = Date.now();
    const first = Number((await service.waitFor(/child (\d+) ready/, SLOW))[1]);
    console.error(
      `aarch64 (${label}): first child ready after ${((Date.now() - started) / 1000).toFixed(1)} s`,
    );
    await service.waitFor(/UDP transport: batched/, 5_000);
    const udp = await udpQuery(port, `${label}.aarch64.example`, "A", { timeoutMs: 10_000 });
    assertEquals(udp.rcode, "NOERROR");
    assertEquals(udp.answers[0]?.data, "192.0.2.1");
    const tcp = await tcpQuery(port, `tcp.${label}.aarch64.example`, "A", { timeoutMs: 10_000 });
    assertEquals(tcp.answers[0]?.data, "192.0.2.1");

    const mark = service.lines.length;
    const killed = Date.now();
    Deno.kill(first, "SIGKILL");
    const second = Number((await service.waitFor(/child (\d+) ready/, SLOW, mark))[1]);
    console.error(
      `aarch64 (${label}): replacement ready ${((Date.now() - killed) / 1000).toFixed(1)} s after kill -9`,
    );
    assert(second !== first, "the same child reported ready again");
    assertMatch(await Deno.readTextFile(`/proc/${second}/cmdline`), /ld-linux-aarch64\.so\.1/);
    const again = await udpQuery(port, `again.${label}.aarch64.example`, "A", { timeoutMs: 10_000 });
    assertEquals(again.answers[0]?.data, "192.0.2.1");

    Deno.kill(service.pid, "SIGTERM");
    assertEquals((await service.status).code, 0, service.lines.join("\n"));
    for (let i = 0; i < 100 && processExists(second); i++) await new Promise((r) => setTimeout(r, 100));
    assert(!processExists(second), "the child outlived the guardian");
  } finally {
    await service.kill();
  }
}

Deno.test({
  name: "aarch64 .deb and .ipk under QEMU: guardian and child answer UDP and TCP, survive kill -9, stop",
  ignore: ignoreUnless("the aarch64 test", blocker),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    if (blocker) throw new Error(blocker);
    const out = await buildPackages("aarch64", ["deb", "ipk"]);
    const ipkRoot = await makeRoot();
    const debRoot = await makeRoot();
    const fake = await FakeUpstream.start();
    try {
      await unpackIpk(`${out}/keeldns_${VERSION}_aarch64_cortex-a53.ipk`, ipkRoot);
      await must("dpkg-deb", ["-x", `${out}/keeldns_${VERSION}_arm64.deb`, debRoot]);
      for (const root of [ipkRoot, debRoot]) {
        assertEquals(
          (await glibcFiles(root)).filter((f) => !f.startsWith("/usr/lib/keeldns/glibc/")),
          [],
          "glibc outside the bundle",
        );
      }
      const direct = await shInRoot(debRoot, ["/usr/lib/keeldns/deno", "--version"]);
      assert(direct.code !== 0, `deno ran without glibc: ${direct.out}`);
      const started = Date.now();
      const version = await shInRoot(debRoot, ["/usr/bin/keeldns", "version"]);
      console.error(`aarch64: keeldns version took ${((Date.now() - started) / 1000).toFixed(1)} s`);
      assertEquals(version.code, 0, version.err);
      assertMatch(version.out, /^keeldns .*aarch64-unknown-linux-gnu, runtime build\)$/m);
      assertMatch(version.out, new RegExp(`^runs on the bundled glibc loader ${LOADER}$`, "m"));

      await exercise(ipkRoot, ["/etc/init.d/keeldns", "start"], fake, "ipk");
      await exercise(
        debRoot,
        ["/usr/bin/keeldns", "run", "-c", "/etc/keeldns/keeldns.toml", "-p", "/var/run/keeldns.pid"],
        fake,
        "deb",
      );
    } finally {
      await fake.close();
      for (const dir of [ipkRoot, debRoot, out]) await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
