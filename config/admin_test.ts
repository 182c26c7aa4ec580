import { assert, assertEquals, assertMatch, assertThrows } from "../tests/helpers/assert.ts";
import { hashAdminPassword, parseAdminListen, verifyAdminPassword } from "./admin.ts";
import { convertToToml } from "./convert.ts";
import { parseSmartdnsConf } from "./smartdns_conf.ts";
import { parseTomlConfig } from "./toml.ts";

Deno.test("admin listen addresses: host:port, [v6]:port, a bare host, http:// and https://", () => {
  assertEquals(parseAdminListen("127.0.0.1:6081"), { host: "127.0.0.1", port: 6081, https: false });
  assertEquals(parseAdminListen("http://[::]:6080"), { host: "::", port: 6080, https: false });
  assertEquals(parseAdminListen("https://0.0.0.0:8443"), { host: "0.0.0.0", port: 8443, https: true });
  assertEquals(parseAdminListen("192.168.1.1"), { host: "192.168.1.1", port: 6080, https: false });
  assertEquals(parseAdminListen("::1"), { host: "::1", port: 6080, https: false });
  assertMatch(
    (assertThrows(() => parseAdminListen("ftp://1.2.3.4:1")) as Error).message,
    /not an admin listen/,
  );
  assertMatch((assertThrows(() => parseAdminListen("1.2.3.4:70000")) as Error).message, /out of range/);
});

Deno.test("a password hash verifies its password only", () => {
  const hash = hashAdminPassword("s3cret", 2000);
  assertMatch(hash, /^pbkdf2-sha256\$2000\$/);
  assert(verifyAdminPassword("s3cret", hash));
  assert(!verifyAdminPassword("s3cret ", hash));
  assert(!verifyAdminPassword("s3cret", "plain"));
});

Deno.test("TOML [admin]: defaults, and a bad hash is refused at its key", () => {
  const up = '[[upstream]]\naddress = "udp://127.0.0.1:53"\n';
  const on = parseTomlConfig(`${up}[admin]\n`, "/k.toml").admin!;
  assertEquals([on.host, on.port, on.https, on.user, on.sessionSeconds], [
    "127.0.0.1",
    6080,
    false,
    "admin",
    3600,
  ]);
  assertEquals(parseTomlConfig(up, "/k.toml").admin, undefined);
  const err = assertThrows(() => parseTomlConfig(`${up}[admin]\npassword-hash = "x"\n`, "/k.toml"));
  assertMatch((err as Error).message, /k\.toml:4:.*password-hash/);
});

Deno.test("smartdns-ui lines map onto [admin] and convert writes the password as a hash", () => {
  const conf =
    "server 127.0.0.1\nplugin /usr/lib/smartdns/smartdns_ui.so\nsmartdns-ui.ip https://[::]:6090\n" +
    "smartdns-ui.user root\nsmartdns-ui.password pw\nsmartdns-ui.token-expire 600\n" +
    "smartdns-ui.max-query-log-age 86400\nsmartdns-ui.www-root /usr/share/smartdns/wwwroot\n";
  const c = parseSmartdnsConf(conf, "/etc/smartdns/smartdns.conf", () => "");
  assertEquals(c.admin, {
    host: "::",
    port: 6090,
    https: true,
    user: "root",
    password: "pw",
    sessionSeconds: 600,
    queryLogAge: 86400,
    source: { file: "/etc/smartdns/smartdns.conf", line: 3, col: 1 },
  });
  assertEquals(c.unsupported.map((u) => u.name), ["smartdns-ui.www-root"]);
  assert(!c.unsupported.some((u) => u.name === "plugin"));
  const toml = convertToToml(c, conf);
  const back = parseTomlConfig(toml, "/etc/keeldns/keeldns.toml").admin!;
  assertEquals([back.host, back.port, back.https, back.user, back.sessionSeconds], [
    "::",
    6090,
    true,
    "root",
    600,
  ]);
  assert(back.passwordHash && verifyAdminPassword("pw", back.passwordHash), toml);
  assert(!toml.includes("password pw") || toml.includes("# "), "no clear password outside comments");
});

Deno.test("another plugin is reported, and only the ui plugin turns the dashboard on", () => {
  const c = parseSmartdnsConf("server 127.0.0.1\nplugin /usr/lib/other.so\n", "/s.conf", () => "");
  assertEquals(c.admin, undefined);
  assertEquals(c.unsupported.map((u) => u.name), ["plugin"]);
});
