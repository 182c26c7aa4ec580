import { assertEquals } from "../tests/helpers/assert.ts";
import { FileWatcher } from "./file_watch.ts";

Deno.test("a watched file that changes, appears or disappears is reported once per look", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const a = `${dir}/a.txt`;
    const b = `${dir}/b.txt`;
    await Deno.writeTextFile(a, "one\n");
    const seen: string[][] = [];
    const watcher = new FileWatcher([a, b], (changed) => seen.push(changed));
    assertEquals(watcher.poll(), []);
    await Deno.writeTextFile(a, "one\ntwo\n");
    await Deno.writeTextFile(b, "new\n");
    assertEquals(watcher.poll().sort(), [a, b].sort());
    assertEquals(watcher.poll(), []);
    await Deno.remove(a);
    assertEquals(watcher.poll(), [a]);
    assertEquals(seen.length, 2);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
