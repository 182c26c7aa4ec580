import { assertEquals, assertMatch, assertThrows } from "../tests/helpers/assert.ts";
import { convertToToml } from "../config/convert.ts";
import { parseSmartdnsConf } from "../config/smartdns_conf.ts";
import { parseTomlConfig } from "../config/toml.ts";
import { capabilitiesFor, childPlan, guardianPlan, prepareFiles, writableBy } from "./run_as_user.ts";
import type { UserAccount } from "./user_database.ts";

const TOML = `[[upstream]]\naddress = "udp://127.0.0.1"\n`;

Deno.test("user: smartdns.conf `user NAME` and TOML `[guardian] user` set guardian.user", () => {
  const conf = parseSmartdnsConf("server 127.0.0.1\nuser nobody\n", "s.conf");
  assertEquals(conf.guardian.user, "nobody");
  assertEquals(conf.unsupported.filter((u) => u.name === "user"), []);
  assertEquals(parseSmartdnsConf("server 127.0.0.1\n", "s.conf").guardian.user, undefined);
  assertEquals(parseTomlConfig(`${TOML}[guardian]\nuser = "dnsmasq"\n`, "k.toml").guardian.user, "dnsmasq");
  assertEquals(parseTomlConfig(TOML, "k.toml").guardian.user, undefined);
  assertMatch(convertToToml(conf), /\[guardian\]\nuser = "nobody"/);
});

Deno.test("user: a TOML user that is no name is refused at its position", () => {
  const e = assertThrows(() => parseTomlConfig(`${TOML}[guardian]\nuser = 65534\n`, "k.toml"));
  assertMatch(e.message, /^k\.toml:4:\d+: user must be a string/);
  assertMatch(
    assertThrows(() => parseTomlConfig(`${TOML}[guardian]\nuser = "a b"\n`, "k.toml")).message,
    /^k\.toml:4:\d+: user must be a user name/,
  );
});

Deno.test("user: capabilities kept: none, or CAP_NET_ADMIN with an nftset rule; the guardian adds bind", () => {
  const plain = parseSmartdnsConf("server 127.0.0.1\nuser nobody\nspeed-check-mode tcp:80\n", "s.conf");
  // SmartDNS's default speed check pings: a raw ICMP socket needs CAP_NET_RAW.
  const pings = parseSmartdnsConf("server 127.0.0.1\nuser nobody\n", "s.conf");
  assertEquals(capabilitiesFor(pings), ["CAP_NET_RAW"]);
  assertEquals(capabilitiesFor(plain), []);
  assertEquals(guardianPlan(plain), { keep: ["CAP_NET_BIND_SERVICE"], effective: [], passOn: true });
  assertEquals(childPlan(plain), { keep: [], effective: [], passOn: false });
  const withSet = {
    ...plain,
    rules: {
      ...plain.rules,
      domainRules: [{
        domains: ["a.test"],
        source: { file: "s.conf", line: 3, col: 1 },
        text: "nftset /a.test/#4:inet#t#s",
        nftset: { v4: { family: "inet", table: "t", set: "s" } },
      }],
    },
  };
  assertEquals(capabilitiesFor(withSet), ["CAP_NET_ADMIN"]);
  assertEquals(guardianPlan(withSet).keep, ["CAP_NET_BIND_SERVICE", "CAP_NET_ADMIN"]);
  assertEquals(childPlan(withSet), { keep: ["CAP_NET_ADMIN"], effective: ["CAP_NET_ADMIN"], passOn: false });
  const exemptOnly = {
    ...withSet,
    rules: {
      ...withSet.rules,
      domainRules: [{ ...withSet.rules.domainRules[0], nftset: { v4: "-" as const } }],
    },
  };
  assertEquals(capabilitiesFor(exemptOnly), []);
});

Deno.test("user: writableBy reads owner, group and other bits", () => {
  const account: UserAccount = { name: "k", uid: 990, gid: 990, groups: [990, 108] };
  const dir = (uid: number, gid: number, mode: number) =>
    ({ uid, gid, mode: 0o40000 | mode }) as Deno.FileInfo;
  assertEquals(writableBy(dir(990, 0, 0o700), account), true);
  assertEquals(writableBy(dir(990, 0, 0o500), account), false);
  assertEquals(writableBy(dir(0, 108, 0o770), account), true);
  assertEquals(writableBy(dir(0, 108, 0o750), account), false);
  assertEquals(writableBy(dir(0, 0, 0o755), account), false);
  assertEquals(writableBy(dir(0, 0, 0o1777), account), true);
});

Deno.test({
  name: "user: the data directory is made for the user when the child makes the listeners' certificate",
  ignore: Deno.uid() !== 0,
  async fn() {
    const tmp = await Deno.makeTempDir({ prefix: "keeldns-prepare-" });
    const account: UserAccount = { name: "k", uid: 4242, gid: 4242, groups: [4242] };
    try {
      const conf = (extra: string) =>
        parseSmartdnsConf(
          `bind-tls 127.0.0.1:853\ncache-persist no\ncache-file ${tmp}/${extra}/keeldns.cache\n${
            extra === "b" ? "bind-cert-file /c.pem\nbind-cert-key-file /k.pem\n" : ""
          }`,
          "/x.conf",
        );
      assertEquals(prepareFiles(account, conf("a"), {}).warnings, []);
      assertEquals((await Deno.stat(`${tmp}/a`)).uid, 4242, "made for the user");
      prepareFiles(account, conf("b"), {});
      // A configured certificate: nothing made.
      assertThrows(() => Deno.statSync(`${tmp}/b`), /No such file/);
    } finally {
      await Deno.remove(tmp, { recursive: true });
    }
  },
});
