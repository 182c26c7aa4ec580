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

/** Kills the guardian and its child at once, as a power cut would: nobody saves anything. */
async function powerCut(k: KeeldnsProcess): Promise<void> {
  const child = k.childPid;
  Deno.kill(k.pid, "SIGKILL");
  Deno.kill(child, "SIGKILL");
  await k.status();
  // The child is gone once its lock is free; wait until /proc says so.
  for (let i = 0; i < 100 && (await Deno.stat(`/proc/${child}`).then(() => true, () => false)); i++) {
    await new Promise((r) => setTimeout(r, 20));
  }
}

Deno.test({
  name:
    "a power cut that tears the journal anywhere: the next start uses every whole record and appends after them",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const fake = await FakeUpstream.start();
    const dir = await Deno.makeTempDir({ prefix: "keeldns-persist-" });
    const file = `${dir}/k.cache`;
    const names = Array.from({ length: 12 }, (_, i) => `n${i}.torn.test`);
    try {
      const first = await KeeldnsProcess.start(config(fake.port, file));
      for (const name of names) await udpQuery(first.port, name, "A");
      await new Promise((r) => setTimeout(r, 1000));
      await powerCut(first);
      const journal = await Deno.readFile(`${file}.journal`);
      // Cut inside the 8th record: the first 7 come back, the rest are asked again.
      const { ends } = recordEnds(journal);
      assertEquals(ends.length, names.length);
      const cut = ends[6] + Math.floor((ends[7] - ends[6]) / 2);
      await Deno.writeFile(`${file}.journal`, journal.subarray(0, cut));

      const second = await KeeldnsProcess.start(config(fake.port, file), { port: first.port });
      await second.waitFor(/cache journal .*: a torn record at the end; \d+ bytes after \d+ set aside/);
      await second.waitFor(/cache: 0 entries loaded from .*, 7 from its journal/);
      const asked = fake.log.length;
      for (const name of names) assertEquals((await udpQuery(second.port, name, "A")).rcode, "NOERROR");
      assertEquals(fake.log.length - asked, names.length - 7, "only the torn-off names went upstream");
      await new Promise((r) => setTimeout(r, 1000));
      await powerCut(second);

      // The torn tail was cut off before appending: all twelve are whole records now.
      const third = await KeeldnsProcess.start(config(fake.port, file), { port: first.port });
      try {
        await third.waitFor(/cache: 0 entries loaded from .*, 12 from its journal/);
        assert(!third.lines.some((l) => /set aside/.test(l)), "no torn record this time");
        const before = fake.log.length;
        for (const name of names) await udpQuery(third.port, name, "A");
        assertEquals(fake.log.length, before, "all answered from the restored cache");
      } finally {
        await third.stop();
      }
    } finally {
      await fake.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/** Where each record of a journal ends (header: 24 bytes; record: u32 length, u32 checksum, payload). */
function recordEnds(journal: Uint8Array): { ends: number[] } {
  const view = new DataView(journal.buffer, journal.byteOffset, journal.byteLength);
  const ends: number[] = [];
  for (let pos = 24; pos + 8 <= journal.length;) {
    pos += 8 + view.getUint32(pos, true);
    if (pos <= journal.length) ends.push(pos);
  }
  return { ends };
}

/** Mounts a tmpfs of `kib` KiB at a new directory, or returns undefined when it cannot (not root). */
async function smallDisk(kib: number): Promise<string | undefined> {
  const dir = await Deno.makeTempDir({ prefix: "keeldns-full-" });
  const mount = await new Deno.Command("mount", {
    args: ["-t", "tmpfs", "-o", `size=${kib}k`, "tmpfs", dir],
    stderr: "null",
    stdout: "null",
  }).output().catch(() => undefined);
  if (mount?.success) return dir;
  await Deno.remove(dir);
  if (Deno.env.get("CI")) throw new Error("CI must be able to mount a tmpfs for the full-disk test");
  return undefined;
}

Deno.test({
  name: "a full disk under the cache file never stops the service; the journal resumes when there is room",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const disk = await smallDisk(64);
    if (!disk) {
      t.step({ name: "skipped: cannot mount a tmpfs here", ignore: true, fn() {} });
      return;
    }
    const fake = await FakeUpstream.start();
    const k = await KeeldnsProcess.start(config(fake.port, `${disk}/k.cache`));
    try {
      await new Promise((r) => setTimeout(r, 600)); // the journal is in place
      // Fill the disk to the last byte.
      const filler = await Deno.open(`${disk}/filler`, { write: true, create: true });
      const block = new Uint8Array(4096);
      try {
        for (;;) await filler.write(block);
      } catch { /* ENOSPC */ }
      filler.close();
      for (let i = 0; i < 60; i++) {
        assertEquals((await udpQuery(k.port, `full${i}.test`, "A")).rcode, "NOERROR");
      }
      await k.waitFor(/cache journal: writing .* failed, \d+ entries are not saved/, 5000);
      assertEquals((await udpQuery(k.port, "full0.test", "A")).answers[0].data, "192.0.2.1");
      // Room again: a new answer is journaled, whole (the failed appends were cut back).
      await Deno.remove(`${disk}/filler`);
      await udpQuery(k.port, "after.test", "A");
      await new Promise((r) => setTimeout(r, 1000));
      const journal = await Deno.readFile(`${disk}/k.cache.journal`);
      const { ends } = recordEnds(journal);
      assertEquals(ends.at(-1), journal.length, "the journal ends on a whole record");
      assert(new TextDecoder().decode(journal).includes("after"), "the new answer is in it");
      assertEquals((await k.stop()).code, 0, "a graceful stop on a disk that was full");
    } finally {
      await k.stop();
      await fake.close();
      await new Deno.Command("umount", { args: [disk] }).output();
      await Deno.remove(disk, { recursive: true });
    }
  },
});
