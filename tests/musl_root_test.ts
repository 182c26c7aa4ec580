/**
 * Stock OpenWrt is musl; the x86_64 .ipk carries its own glibc loader and libraries. This test
 * makes a musl-like root (static busybox, musl's loader if Debian's musl is installed, no glibc),
 * unpacks the .ipk's data into it, shows that the Deno runtime does not start there on its own
 * but does through the bundled loader, then starts keeldns with `/etc/init.d/keeldns start`
 * (procd stubbed), queries it from outside over loopback (UDP and TCP), kills the child with
 * SIGKILL, sees the guardian replace it, reloads through the init script, and stops it as procd
 * does (SIGTERM). Needs root; skipped otherwise unless KEELDNS_REQUIRE_PEERS=1.
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
  processExists,
  rootConfig,
  RootedService,
  rootTestBlocker,
  shInRoot,
  unpackIpk,
  VERSION,
} from "./platform_root.ts";

const LOADER = "/usr/lib/keeldns/glibc/ld-linux-x86-64.so.2";

Deno.test({
  name: "the x86_64 .ipk runs on a musl root through its bundled glibc: init script, queries, kill -9, stop",
  ignore: ignoreUnless("the musl-root test", rootTestBlocker()),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const out = await buildPackages("x86_64", ["ipk"]);
    const root = await makeRoot();
    const fake = await FakeUpstream.start();
    let service: RootedService | undefined;
    try {
      await unpackIpk(`${out}/keeldns_${VERSION}_x86_64.ipk`, root);
      // The only glibc in the root is the bundled one.
      assertEquals(
        (await glibcFiles(root)).filter((f) => !f.startsWith("/usr/lib/keeldns/glibc/")),
        [],
        "glibc outside the bundle",
      );

      // Run directly, the runtime finds no /lib64/ld-linux-x86-64.so.2; through the loader it runs.
      const direct = await shInRoot(root, ["/usr/lib/keeldns/deno", "--version"]);
      assert(direct.code !== 0, `deno ran without glibc: ${direct.out}`);
      const bundled = await shInRoot(root, [
        LOADER,
        "--library-path",
        "/usr/lib/keeldns/glibc",
        "/usr/lib/keeldns/deno",
        "--version",
      ]);
      assertEquals(bundled.code, 0, bundled.err);
      assertMatch(bundled.out, /^deno 2\.\d+\.\d+ /);
      const version = await shInRoot(root, ["/usr/bin/keeldns", "version"]);
      assertEquals(version.code, 0, version.err);
      assertMatch(version.out, /^keeldns .* runtime build\)$/m);
      assertMatch(version.out, new RegExp(`^runs on the bundled glibc loader ${LOADER}$`, "m"));

      const port = await freePort();
      await Deno.writeTextFile(`${root}/etc/keeldns/keeldns.toml`, rootConfig(port, fake.port));
      service = new RootedService(root, ["/etc/init.d/keeldns", "start"]);
      const first = Number((await service.waitFor(/child (\d+) ready/, 30_000))[1]);
      // FFI's dlopen("libc.so.6") gets the bundled libc: the batched transport is in use, and
      // the only libc mapped into the child is the bundle's.
      await service.waitFor(/UDP transport: batched/, 5_000);
      const maps = await Deno.readTextFile(`/proc/${first}/maps`);
      assert(maps.includes(`${root}/usr/lib/keeldns/glibc/libc.so.6`), "bundled libc not mapped");
      assert(!/\/lib\/x86_64-linux-gnu\/libc\.so\.6/.test(maps), "the host's libc is mapped");
      const params = await Deno.readTextFile(`${root}/tmp/procd-params`);
      assertMatch(
        params,
        /^command \/usr\/bin\/keeldns run -c \/etc\/keeldns\/keeldns\.toml -p \/var\/run\/keeldns\.pid$/m,
      );

      const udp = await udpQuery(port, "musl.example", "A");
      assertEquals(udp.rcode, "NOERROR");
      assertEquals(udp.answers[0]?.data, "192.0.2.1");
      const tcp = await tcpQuery(port, "tcp.musl.example", "A");
      assertEquals(tcp.answers[0]?.data, "192.0.2.1");

      // kill -9 of the child: the guardian starts a new one, again through the loader.
      const mark = service.lines.length;
      Deno.kill(first, "SIGKILL");
      const second = Number((await service.waitFor(/child (\d+) ready/, 30_000, mark))[1]);
      assert(second !== first, "the same child reported ready again");
      assertMatch(await Deno.readTextFile(`/proc/${second}/cmdline`), /glibc\/ld-linux-x86-64\.so\.2/);
      assertEquals((await udpQuery(port, "again.musl.example", "A")).answers[0]?.data, "192.0.2.1");

      // The init script's reload talks to the guardian over its control socket, in the root.
      const reload = await shInRoot(root, ["/etc/init.d/keeldns", "reload"]);
      assertEquals(reload.code, 0, reload.out + reload.err);

      // procd stops an instance with SIGTERM.
      Deno.kill(service.pid, "SIGTERM");
      assertEquals((await service.status).code, 0, service.lines.join("\n"));
      for (let i = 0; i < 50 && processExists(second); i++) await new Promise((r) => setTimeout(r, 100));
      assert(!processExists(second), "the child outlived the guardian");
      service = undefined;
    } finally {
      await service?.kill();
      await fake.close();
      await Deno.remove(root, { recursive: true }).catch(() => {});
      await Deno.remove(out, { recursive: true }).catch(() => {});
    }
  },
});
