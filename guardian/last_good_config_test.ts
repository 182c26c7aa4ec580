import { assert, assertEquals, assertThrows } from "../tests/helpers/assert.ts";
import { ConfigError } from "../config/errors.ts";
import { LastGoodConfig, readConfig } from "./last_good_config.ts";

const GOOD = '[server]\nbind = ["127.0.0.1:5353"]\n[[upstream]]\naddress = "udp://192.0.2.1"\n';
const BAD = GOOD + "[log]\nlevle = 1\n";

/** Runs `fn` with a temp dir holding `keeldns.toml` (text `GOOD`), then removes the dir. */
async function withFile(fn: (dir: string, path: string) => void | Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "keeldns-lastgood-test-" });
  const path = `${dir}/keeldns.toml`;
  await Deno.writeTextFile(path, GOOD);
  try {
    await fn(dir, path);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("readConfig gives the model and the text; the embedded default has no text", async () => {
  await withFile((_dir, path) => {
    const { config, text } = readConfig(path);
    assertEquals(text, GOOD);
    assertEquals(config.upstreams[0].host, "192.0.2.1");
  });
  assertEquals(readConfig().text, undefined);
  assertThrows(() => readConfig("/nonexistent/keeldns.toml"), /cannot read the configuration file/);
});

Deno.test("a file broken under us: children fall back to a copy of the last good text until it is fixed", async () => {
  await withFile(async (dir, path) => {
    const last = new LastGoodConfig(path, dir, GOOD);
    assertEquals(last.pathForChild(), path);
    assertEquals(last.servingLastGood(), null);
    await Deno.writeTextFile(path, BAD);
    const e = assertThrows(() => last.validate(), /unknown key "levle"/);
    assert(e instanceof ConfigError);
    assert(last.fallBack(), "switched to the copy");
    assert(!last.fallBack(), "already on the copy");
    assertEquals(last.pathForChild(), last.copyPath);
    assert(last.copyPath.endsWith(".toml"), "the copy keeps the extension");
    assertEquals(await Deno.readTextFile(last.copyPath), GOOD);
    assert(/^\d{4}-\d\d-\d\dT/.test(last.servingLastGood() ?? ""), "status shows when it was validated");
    assertThrows(() => last.recover(), /levle/);
    assertEquals(last.pathForChild(), last.copyPath, "still broken: stays on the copy");
    await Deno.writeTextFile(path, GOOD.replace("5353", "5354"));
    assertEquals(last.recover(), true, "fixed: back on the file");
    assertEquals(last.pathForChild(), path);
    assertEquals(last.recover(), false, "nothing to move back from");
    await last.remove();
    assert(!(await Deno.stat(last.copyPath).then(() => true, () => false)), "copy removed");
  });
});

Deno.test("validate takes a newly valid text as the last good version", async () => {
  await withFile(async (dir, path) => {
    const last = new LastGoodConfig(path, dir, GOOD);
    const newer = GOOD.replace("5353", "5399");
    await Deno.writeTextFile(path, newer);
    last.validate();
    await Deno.writeTextFile(path, BAD);
    assert(last.fallBack());
    assertEquals(await Deno.readTextFile(last.copyPath), newer);
    await last.remove();
  });
});

Deno.test("no fallback without a good version, for the embedded default, or with conf-file includes", async () => {
  await withFile((dir, path) => {
    assert(!new LastGoodConfig(path, dir).fallBack(), "never validated");
    const embedded = new LastGoodConfig(undefined, dir);
    assert(!embedded.fallBack());
    assertEquals(embedded.pathForChild(), undefined);
    embedded.validate(); // the embedded default is always valid
    const conf = `${dir}/smartdns.conf`;
    const withInclude = "bind 127.0.0.1:5353\nserver 192.0.2.1\nconf-file extra.conf\n";
    assert(!new LastGoodConfig(conf, dir, withInclude).fallBack(), "a copy would not include the same files");
    assert(new LastGoodConfig(conf, dir, "bind 127.0.0.1:5353\nserver 192.0.2.1\n").fallBack());
  });
});
