/**
 * End to end: the command line — check, version, help, and a bad config at start.
 */
import { assert, assertEquals, assertLess, assertMatch } from "./helpers/assert.ts";
import { runKeeldns } from "./helpers/keeldns_process.ts";

async function withFile(name: string, text: string, fn: (path: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "keeldns-cli-" });
  try {
    await Deno.writeTextFile(`${dir}/${name}`, text);
    await fn(`${dir}/${name}`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("check accepts a smartdns.conf as-is and lists what is not supported yet", async () => {
  await withFile(
    "smartdns.conf",
    "# a SmartDNS config\nbind :5353\nserver 9.9.9.9\nserver-tls dns.example\nlog-color yes\n",
    async (path) => {
      const r = await runKeeldns(["check", "-c", path]);
      assertEquals(r.code, 0, r.stderr);
      // A server by host name is used (resolved through 9.9.9.9), not reported.
      assertEquals(/server-tls/.test(r.stdout), false, r.stdout);
      assertMatch(r.stdout, new RegExp(`${path}:5:1: not supported yet: log-color \\(`));
      assertMatch(r.stdout, /OK \(smartdns; 1 listeners, 2 upstream servers/);
    },
  );
});

Deno.test("check warns at file:line:col with a suggestion for an unknown directive, as SmartDNS carries on", async () => {
  await withFile("smartdns.conf", "bind :5353\nserver 9.9.9.9\n  sever 9.9.9.9\n", async (path) => {
    const r = await runKeeldns(["check", "-c", path]);
    assertEquals(r.code, 0, r.stderr);
    assertMatch(
      r.stdout,
      new RegExp(`^${path}:3:3: warning: unknown directive "sever" ignored \\(did you mean "server"\\?\\)`),
    );
  });
  // With no other server line, ignoring the typo would send queries to resolv.conf's servers: refused.
  await withFile("smartdns.conf", "bind :5353\n\n  sever 9.9.9.9\n", async (path) => {
    const r = await runKeeldns(["check", "-c", path]);
    assertEquals(r.code, 1);
    assertMatch(
      r.stderr,
      new RegExp(`^${path}:3:3: unknown directive "sever" ignored .*fall back to resolv.conf`),
    );
  });
});

Deno.test("check detects TOML by content and points at a bad value", async () => {
  await withFile("config", '[server]\nbind = ["127.0.0.1:99999"]\n', async (path) => {
    const r = await runKeeldns(["check", "-c", path]);
    assertEquals(r.code, 1);
    assertMatch(r.stderr, new RegExp(`^${path}:2:1: bind: "99999" is not a port number`));
  });
});

Deno.test("a config file that cannot be read is named once, with the reason in plain words", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const r = await runKeeldns(["check", "-c", `${dir}/missing.conf`]);
    assertEquals(r.code, 1);
    assertEquals(r.stderr.trim(), `${dir}/missing.conf: cannot read the configuration file: no such file`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("run with a bad config exits non-zero at once with the reason", async () => {
  await withFile(
    "bad.toml",
    '[server]\nbind = ["127.0.0.1:5353"]\n[[upstream]]\nadress = "1.1.1.1"\n',
    async (path) => {
      const started = performance.now();
      const r = await runKeeldns(["run", "-c", path]);
      assertEquals(r.code, 1);
      assertMatch(
        r.stderr,
        new RegExp(`${path}:4:1: unknown key "adress" in \\[upstream\\] \\(did you mean "address"\\?\\)`),
      );
      assertLess(performance.now() - started, 10_000);
    },
  );
});

Deno.test("version names the build; help works for every command", async () => {
  const v = await runKeeldns(["version"]);
  assertEquals(v.code, 0);
  assertMatch(v.stdout, /^keeldns \d+\.\d+\.\d+ \(deno 2\.\d+\.\d+, \w+-[\w-]+, source build\)/);
  for (const command of ["run", "check", "health", "version"]) {
    const h = await runKeeldns([command, "--help"]);
    assertEquals(h.code, 0, command);
    assert(h.stdout.includes("Usage: keeldns"), command);
  }
  const bad = await runKeeldns(["frobnicate"]);
  assertEquals(bad.code, 64);
  const badOption = await runKeeldns(["run", "--bogus"]);
  assertEquals(badOption.code, 64);
  assertMatch(badOption.stderr, /bogus/);
});
