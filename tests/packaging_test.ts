/**
 * Packaging: `deno task package` builds a .deb, an .ipk and a tarball (runtime build: bundle +
 * Deno runtime + the glibc it links); their files, modes, control fields and conffiles are
 * inspected; the procd init script runs against a stub procd library; and the .deb is installed
 * on this machine, its program started from the installed path on the packaged config (through
 * the bundled glibc loader), health-checked, and purged. tests/musl_root_test.ts and
 * tests/aarch64_test.ts run the packages on a root without glibc and under emulation.
 */
import { elfLinkage } from "../packaging/elf.ts";
import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { FakeUpstream } from "./helpers/fake_upstream.ts";
import {
  freePort,
  hasProgram,
  PEERS_REQUIRED,
  programPath,
  REPO_ROOT,
  skipWithout,
} from "./helpers/keeldns_process.ts";

const VERSION = JSON.parse(Deno.readTextFileSync(`${REPO_ROOT}deno.json`)).version;
const DEB = `${REPO_ROOT}dist/keeldns_${VERSION}_amd64.deb`;
const IPK = `${REPO_ROOT}dist/keeldns_${VERSION}_x86_64.ipk`;
const TARBALL = `${REPO_ROOT}dist/keeldns-${VERSION}-x86_64.tar.gz`;
const GLIBC = "/usr/lib/keeldns/glibc";
const onX64 = Deno.build.arch === "x86_64";

async function sh(
  command: string,
  args: string[],
  stdin?: Uint8Array,
): Promise<{ code: number; out: string; err: string }> {
  const child = new Deno.Command(command, {
    args,
    stdin: stdin ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
  })
    .spawn();
  if (stdin) {
    const w = child.stdin.getWriter();
    await w.write(stdin);
    await w.close();
  }
  const o = await child.output();
  const d = new TextDecoder();
  return { code: o.code, out: d.decode(o.stdout), err: d.decode(o.stderr) };
}

let built: Promise<void> | undefined;
/** Builds the x86_64 packages once for every test in this file. */
function buildOnce(): Promise<void> {
  built ??= (async () => {
    const r = await sh(Deno.execPath(), [
      "run",
      "-A",
      `${REPO_ROOT}packaging/build.ts`,
      "--target",
      "x86_64",
    ]);
    if (r.code !== 0) throw new Error(`package build failed:\n${r.err}`);
  })();
  return built;
}

/** `ls -l`-style listing lines of a tar, keyed by path. */
function listing(text: string): Map<string, string> {
  const map = new Map<string, string>();
  for (const line of text.trim().split("\n")) {
    const parts = line.split(/\s+/);
    map.set(parts.at(-1)!.replace(/^\.\//, "/").replace(/\/$/, "") || "/", `${parts[0]} ${parts[1]}`);
  }
  return map;
}

Deno.test({
  name: "the .deb has the program, a conffile, the systemd unit and clean maintainer scripts",
  ignore: !onX64 || skipWithout("dpkg-deb", "tar"),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await buildOnce();
    const field = async (name: string) => (await sh("dpkg-deb", ["-f", DEB, name])).out.trim();
    assertEquals(await field("Package"), "keeldns");
    assertEquals(await field("Version"), VERSION);
    assertEquals(await field("Architecture"), "amd64");
    assertMatch(await field("Depends"), /libc6 \(>= 2\.27\)/);
    const files = listing((await sh("dpkg-deb", ["-c", DEB])).out);
    assertEquals(files.get("/"), "drwxr-xr-x root/root");
    assertEquals(files.get("/usr/bin/keeldns"), "-rwxr-xr-x root/root");
    assertEquals(files.get("/usr/lib/keeldns/deno"), "-rwxr-xr-x root/root");
    assertEquals(files.get("/usr/lib/keeldns/keeldns.js"), "-rw-r--r-- root/root");
    assertEquals(files.get("/etc/keeldns/keeldns.toml"), "-rw-r--r-- root/root");
    assertEquals(files.get("/lib/systemd/system/keeldns.service"), "-rw-r--r-- root/root");
    assert(files.has("/usr/share/doc/keeldns/copyright") && files.has("/usr/share/man/man8/keeldns.8.gz"));
    // The bundled glibc: the loader and exactly the libraries the runtime links, with licences.
    const runtime = elfLinkage(await Deno.readFile(Deno.execPath()));
    const loader = runtime.interpreter!.slice(runtime.interpreter!.lastIndexOf("/") + 1);
    const bundled = [...files.keys()].filter((f) => f.startsWith(`${GLIBC}/`)).map((f) =>
      f.slice(GLIBC.length + 1)
    );
    assertEquals(
      bundled.sort(),
      [...new Set([loader, ...runtime.needed, "SOURCES", "copyright.libc6", "copyright.libgcc-s1"])].sort(),
    );
    assertEquals(files.get(`${GLIBC}/${loader}`), "-rwxr-xr-x root/root");
    const launcher = await sh("sh", ["-c", `dpkg-deb --fsys-tarfile '${DEB}' | tar -xO ./usr/bin/keeldns`]);
    assert(
      launcher.out.includes(
        '\n  exec "$KEELDNS_LOADER" --library-path "$KEELDNS_LIBRARY_PATH" "$KEELDNS_DENO"',
      ),
      launcher.out,
    );
    assert(launcher.out.includes(`$LIBDIR/glibc/${loader}`), launcher.out);
    const copyright = await sh("sh", [
      "-c",
      `dpkg-deb --fsys-tarfile '${DEB}' | tar -xO ./usr/share/doc/keeldns/copyright`,
    ]);
    assertMatch(copyright.out, /^Files: \*\nCopyright: .*\nLicense: Apache-2.0$/m);
    const control = await sh("sh", ["-c", `dpkg-deb --ctrl-tarfile '${DEB}' | tar -xO ./conffiles`]);
    assertEquals(control.out, "/etc/keeldns/keeldns.toml\n");
    const unit = await sh("sh", [
      "-c",
      `dpkg-deb --fsys-tarfile '${DEB}' | tar -xO ./lib/systemd/system/keeldns.service`,
    ]);
    assertMatch(unit.out, /^Type=simple$/m);
    assertMatch(unit.out, /^ExecReload=\/usr\/bin\/keeldns reload -p \/run\/keeldns\/keeldns\.pid$/m);
    assertMatch(unit.out, /^AmbientCapabilities=CAP_NET_BIND_SERVICE$/m);
    if (hasProgram("lintian") || PEERS_REQUIRED) {
      const lint = await sh(programPath("lintian"), ["--fail-on", "error,warning", DEB]);
      assertEquals(lint.code, 0, `lintian:\n${lint.out}${lint.err}`);
    }
    if (hasProgram("shellcheck") || PEERS_REQUIRED) {
      const scripts = [
        "deb/postinst",
        "deb/prerm",
        "deb/postrm",
        "openwrt/postinst",
        "openwrt/prerm",
        "openwrt/keeldns.init",
        "common/launcher.sh",
      ];
      const check = await sh(programPath("shellcheck"), [
        "-s",
        "sh",
        ...scripts.map((s) => `${REPO_ROOT}packaging/${s}`),
      ]);
      assertEquals(check.code, 0, check.out);
    }
  },
});

Deno.test({
  name: "the .ipk is OpenWrt's gzip'd tar of debian-binary, data and control, with a procd init script",
  ignore: !onX64 || skipWithout("tar"),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await buildOnce();
    const outer = (await sh("tar", ["-tzf", IPK])).out.trim().split("\n");
    assertEquals(outer, ["./debian-binary", "./data.tar.gz", "./control.tar.gz"]);
    assertEquals((await sh("tar", ["-xzOf", IPK, "./debian-binary"])).out, "2.0\n");
    /** Runs `tar FLAGS` on one member archive of the .ipk. */
    const inner = async (archive: string, flags: string) =>
      (await sh("sh", ["-c", `tar -xzOf '${IPK}' ./${archive} | tar ${flags}`])).out;
    const control = await inner("control.tar.gz", "-xzO ./control");
    assertMatch(control, /^Package: keeldns$/m);
    assertMatch(control, /^Architecture: x86_64$/m);
    assertMatch(control, /^License: Apache-2.0$/m);
    assertMatch(control, new RegExp(`^Version: ${VERSION.replaceAll(".", "\\.")}$`, "m"));
    assertEquals(await inner("control.tar.gz", "-xzO ./conffiles"), "/etc/keeldns/keeldns.toml\n");
    const data = listing(await inner("data.tar.gz", "-tzv"));
    assertEquals(data.get("/etc/init.d/keeldns"), "-rwxr-xr-x 0/0");
    assertEquals(data.get("/usr/bin/keeldns"), "-rwxr-xr-x 0/0");
    assertEquals(data.get("/etc/keeldns/keeldns.toml"), "-rw-r--r-- 0/0");
    assertEquals(data.get(`${GLIBC}/ld-linux-x86-64.so.2`), "-rwxr-xr-x 0/0");
    assertEquals(data.get(`${GLIBC}/copyright.libc6`), "-rw-r--r-- 0/0");
    assertEquals(data.get(`${GLIBC}/copyright.libgcc-s1`), "-rw-r--r-- 0/0");
    assertMatch(
      await inner("data.tar.gz", `-xzO .${GLIBC}/SOURCES`),
      /^libgcc_s\.so\.1: Debian package libgcc-s1 /m,
    );
    // The tarball for copying onto a router by hand holds exactly the .ipk's files.
    const tarball = listing((await sh("tar", ["-tzvf", TARBALL])).out);
    assertEquals([...tarball.entries()].sort(), [...data.entries()].sort());

    // The init script's logic, against a stub of OpenWrt's procd library.
    const dir = await Deno.makeTempDir({ prefix: "keeldns-procd-" });
    try {
      await Deno.writeFile(
        `${dir}/keeldns.init`,
        new TextEncoder().encode(await inner("data.tar.gz", "-xzO ./etc/init.d/keeldns")),
      );
      const stub = `
        procd_open_instance() { echo "open" >> "$REC"; }
        procd_set_param() { echo "param $*" >> "$REC"; }
        procd_close_instance() { echo "close" >> "$REC"; }
        mkdir() { :; }
        . "$DIR/keeldns.init"
        [ "$USE_PROCD" = 1 ] || exit 9
        start_service
        PROG="$DIR/fake-keeldns"
        printf '#!/bin/sh\\necho "keeldns $*" >> "$REC"\\n' > "$PROG"; chmod +x "$PROG"
        reload_service
        restart
      `;
      const run = await new Deno.Command("sh", {
        args: ["-c", stub],
        env: { REC: `${dir}/record`, DIR: dir },
        stdout: "piped",
        stderr: "piped",
      }).output();
      assertEquals(run.code, 0, new TextDecoder().decode(run.stderr));
      const record = (await Deno.readTextFile(`${dir}/record`)).trim().split("\n");
      assertEquals(record, [
        "open",
        "param command /usr/bin/keeldns run -c /etc/keeldns/keeldns.toml -p /var/run/keeldns.pid",
        "param env KEELDNS_DENO_DIR=/var/cache/keeldns/deno",
        "param respawn 3600 5 5",
        "param term_timeout 15",
        "param stdout 1",
        "param stderr 1",
        "close",
        "keeldns reload -p /var/run/keeldns.pid",
        "keeldns restart -p /var/run/keeldns.pid",
      ]);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/** Whether the .deb may be installed here: root, dpkg, and no keeldns package installed already. */
function canInstall(): boolean {
  if (!onX64 || Deno.uid() !== 0 || !hasProgram("dpkg")) return false;
  const status = new Deno.Command("dpkg-query", { args: ["-W", "keeldns"], stdout: "null", stderr: "null" })
    .outputSync();
  return !status.success;
}

Deno.test({
  name: "the installed .deb runs from /usr/bin on the packaged config, answers health, and purges cleanly",
  ignore: !canInstall() && (!PEERS_REQUIRED || !onX64),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await buildOnce();
    const install = await sh("dpkg", ["-i", DEB]);
    assertEquals(install.code, 0, install.err);
    const fake = await FakeUpstream.start();
    const dir = await Deno.makeTempDir({ prefix: "keeldns-installed-" });
    let keeldns: Deno.ChildProcess | undefined;
    try {
      const version = (await sh("/usr/bin/keeldns", ["version"])).out;
      assertMatch(version, /^keeldns .* runtime build\)$/m);
      assertMatch(
        version,
        new RegExp(`^runs on the bundled glibc loader ${GLIBC}/ld-linux-x86-64\\.so\\.2$`, "m"),
      );
      const system = await new Deno.Command("/usr/bin/keeldns", {
        args: ["version"],
        env: { KEELDNS_SYSTEM_GLIBC: "1" },
        stdout: "piped",
      }).output();
      assertMatch(new TextDecoder().decode(system.stdout), /^runs on the system loader$/m);
      if (hasProgram("systemd-analyze")) {
        const verify = await sh("systemd-analyze", ["verify", "/lib/systemd/system/keeldns.service"]);
        assertEquals(verify.code, 0, verify.err);
      }
      // The packaged default config, on a loopback port and a loopback upstream.
      const port = await freePort();
      const packaged = await Deno.readTextFile("/etc/keeldns/keeldns.toml");
      const config = packaged.replace('"[::]:53"', `"127.0.0.1:${port}"`)
        .replace(/udp:\/\/(1\.1\.1\.1|9\.9\.9\.9|8\.8\.8\.8)/g, `udp://127.0.0.1:${fake.port}`)
        .replace("/var/cache/keeldns/keeldns.cache", `${dir}/k.cache`);
      await Deno.writeTextFile(`${dir}/keeldns.toml`, config);
      assertEquals((await sh("/usr/bin/keeldns", ["check", "-c", `${dir}/keeldns.toml`])).code, 0);
      keeldns = new Deno.Command("/usr/bin/keeldns", {
        args: ["run", "-c", `${dir}/keeldns.toml`, "-p", `${dir}/keeldns.pid`],
        env: { KEELDNS_DENO_DIR: `${dir}/deno` },
        stdin: "null",
        stdout: "null",
        stderr: "null",
      }).spawn();
      let health = { code: -1, out: "", err: "" };
      for (let i = 0; i < 100 && health.code !== 0; i++) {
        health = await sh("/usr/bin/keeldns", [
          "health",
          "-q",
          "-c",
          `${dir}/keeldns.toml`,
          "--timeout",
          "300",
        ]);
      }
      assertEquals(health.code, 0, health.err);
      const stop = await sh("/usr/bin/keeldns", ["stop", "-p", `${dir}/keeldns.pid`]);
      assertEquals(stop.code, 0, stop.err);
      assertEquals((await keeldns.status).code, 0);
      keeldns = undefined;
    } finally {
      keeldns?.kill("SIGKILL");
      await fake.close();
      const purge = await sh("dpkg", ["--purge", "keeldns"]);
      await Deno.remove(dir, { recursive: true }).catch(() => {});
      assertEquals(purge.code, 0, purge.err);
    }
    for (
      const path of [
        "/usr/bin/keeldns",
        "/usr/lib/keeldns",
        "/etc/keeldns",
        "/etc/systemd/system/multi-user.target.wants/keeldns.service",
      ]
    ) {
      assert(!(await Deno.lstat(path).then(() => true, () => false)), `${path} left behind`);
    }
  },
});
