/**
 * End to end: `keeldns convert` on a smartdns.conf, then `keeldns check` on what it wrote.
 */
import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { runKeeldns } from "./helpers/keeldns_process.ts";

const CONF = `# office resolver

bind :5353
bind-tcp 127.0.0.1:5353
# the default group
server 9.9.9.9
server 1.1.1.1 -group cf -exclude-default-group
cache-size 2048
rr-ttl-max 3600
log-level info
domain-set -name ads -file lists/ads.txt
address /domain-set:ads/#
nameserver /cf.example/cf
force-AAAA-SOA yes
conf-file extra.conf
debug-save-fail-packet yes
`;

Deno.test("convert writes TOML that check accepts, with the lines it cannot convert as comments", async () => {
  const dir = await Deno.makeTempDir({ prefix: "keeldns-convert-" });
  try {
    await Deno.mkdir(`${dir}/lists`);
    await Deno.writeTextFile(`${dir}/lists/ads.txt`, "ads.example\ntracker.example\n");
    await Deno.writeTextFile(`${dir}/smartdns.conf`, CONF);
    await Deno.writeTextFile(`${dir}/extra.conf`, "# more\nserver 8.8.8.8 -g cf\n");

    const printed = await runKeeldns(["convert", `${dir}/smartdns.conf`]);
    assertEquals(printed.code, 0, printed.stderr);
    assertMatch(printed.stdout, /^bind-udp = \["\[::\]:5353"\]$/m);
    assertMatch(
      printed.stdout,
      /^# the default group\n\[\[upstream\]\]\naddress = "udp:\/\/9\.9\.9\.9:53"$/m,
    );
    assertMatch(printed.stdout, new RegExp(`^file = "${dir}/lists/ads\\.txt"$`, "m"));
    assertMatch(
      printed.stdout,
      /^# not supported yet: debug-save-fail-packet yes \(not built yet/m,
    );
    // SmartDNS's default, written out: keeldns.toml's own is off.
    assertMatch(printed.stdout, /^serve-expired = true$/m);

    const out = `${dir}/keeldns.toml`;
    const written = await runKeeldns(["convert", "-c", `${dir}/smartdns.conf`, "-o", out]);
    assertEquals(written.code, 0, written.stderr);
    assertEquals(written.stdout, "");
    assertEquals(await Deno.readTextFile(out), printed.stdout);

    const check = await runKeeldns(["check", "-c", out]);
    assertEquals(check.code, 0, check.stderr);
    assertMatch(
      check.stdout,
      /OK \(toml; 2 listeners, 3 upstream servers, cache 2048, 2 domain rules, 2 domains in lists\)/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("convert refuses what keeldns refuses, names the line, and has --help", async () => {
  const dir = await Deno.makeTempDir({ prefix: "keeldns-convert-" });
  try {
    await Deno.writeTextFile(
      `${dir}/smartdns.conf`,
      "server 9.9.9.9\nserver tcp://9.9.9.9 -set-mark 1\n",
    );
    const r = await runKeeldns(["convert", `${dir}/smartdns.conf`]);
    assertEquals(r.code, 1);
    assertMatch(r.stderr, new RegExp(`^${dir}/smartdns.conf:2:1: server -set-mark is not supported yet`));
    assertEquals(r.stdout, "");
    const help = await runKeeldns(["convert", "--help"]);
    assertEquals(help.code, 0);
    assertMatch(help.stdout, /^Usage: keeldns convert \[-c\] FILE \[-o OUT\]/);
    const none = await runKeeldns(["convert"]);
    assertEquals(none.code, 64);
    assert(none.stderr.includes("convert needs one FILE"), none.stderr);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
