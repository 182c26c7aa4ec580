/**
 * End to end: the cache survives the child. After kill -9, names cached more than a journal tick
 * before are answered by the new child without asking upstream; a torn or corrupt file is logged and
 * what is intact in it is used; a full disk never stops the service.
 */
import { assert, assertEquals } from "./helpers/assert.ts";
import { udpQuery } from "./helpers/dns_client.ts";
import { FakeUpstream } from "./helpers/fake_upstream.ts";
import { KeeldnsProcess } from "./helpers/keeldns_process.ts";

const config = (upstream: number, file: string) => `
[server]
bind = ["127.0.0.1:{port}"]
[[upstream]]
address = "udp://127.0.0.1:${upstream}"
[cache]
size = 100
persist = true
file = "${file}"
[log]
level = "info"
`;

Deno.test({
  name: "after kill -9, names cached a second before are answered without upstream",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const fake = await FakeUpstream.start();
    const dir = await Deno.makeTempDir({ prefix: "keeldns-persist-" });
    const k = await KeeldnsProcess.start(config(fake.port, `${dir}/sub/k.cache`));
    try {
      for (const name of ["one.test", "two.test", "three.test"]) await udpQuery(k.port, name, "A");
      assertEquals(fake.log.length, 3);
      // A journal tick (500 ms) writes them; no checkpoint in between (its default is a day).
      await new Promise((r) => setTimeout(r, 1000));
      const mark = k.lines.length;
      Deno.kill(k.childPid, "SIGKILL");
      await k.waitFor(/cache: 0 entries loaded from .*, 3 from its journal/, 5000, mark);
      await k.waitFor(/child \d+ ready/, 5000, mark);
      for (const name of ["one.test", "two.test", "three.test"]) {
        assertEquals((await udpQuery(k.port, name, "A")).answers[0].data, "192.0.2.1");
      }
      assertEquals(fake.log.length, 3, "no upstream query after the restart");
    } finally {
      await k.stop();
      await fake.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "a corrupt cache file between runs is logged and ignored; a graceful stop saves the cache",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const fake = await FakeUpstream.start();
    const dir = await Deno.makeTempDir({ prefix: "keeldns-persist-" });
    const file = `${dir}/k.cache`;
    await Deno.writeTextFile(file, "KEELDNS-CACHE\nthis is not what was written");
    const first = await KeeldnsProcess.start(config(fake.port, file));
    try {
      await first.waitFor(
        /cache file .*: checksum mismatch \(truncated or corrupt\); its journal is still read/,
      );
      await udpQuery(first.port, "kept.test", "A");
    } finally {
      assertEquals((await first.stop()).code, 0);
    }
    const second = await KeeldnsProcess.start(config(fake.port, file), { port: first.port });
    try {
      await second.waitFor(/cache: 1 entries loaded from .*, 0 from its journal/);
      assertEquals((await udpQuery(second.port, "kept.test", "A")).rcode, "NOERROR");
      assertEquals(fake.count("kept.test"), 1);
      assert(!second.lines.some((l) => /checksum mismatch|set aside/.test(l)));
    } finally {
      await second.stop();
      await fake.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
