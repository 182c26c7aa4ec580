import { assertEquals, assertMatch, assertThrows } from "../tests/helpers/assert.ts";
import { findUser, lookupUser, UnknownUser } from "./user_database.ts";

const PASSWD = `root:x:0:0:root:/root:/bin/bash
# a comment
+nisuser::::::
broken:x:notanumber:1::/:/bin/false
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
dnsmasq:x:453:65534:dnsmasq:/var/lib/misc:/usr/sbin/nologin
keeldns:x:990:990::/nonexistent:/usr/sbin/nologin
`;
const GROUP = `root:x:0:
nogroup:x:65534:
keeldns:x:990:
netdev:x:108:keeldns, other
adm:x:4:syslog,keeldns
+:::
`;

Deno.test("findUser: uid, primary gid first, then the groups that list the user (initgroups order)", () => {
  assertEquals(findUser("keeldns", PASSWD, GROUP), {
    name: "keeldns",
    uid: 990,
    gid: 990,
    groups: [990, 108, 4],
    groupName: "keeldns",
  });
  assertEquals(findUser("nobody", PASSWD, GROUP)?.groups, [65534]);
  assertEquals(findUser("dnsmasq", PASSWD, GROUP)?.groupName, "nogroup");
});

Deno.test("findUser: unknown, malformed and NIS lines are no user", () => {
  assertEquals(findUser("ghost", PASSWD, GROUP), undefined);
  assertEquals(findUser("broken", PASSWD, GROUP), undefined);
  assertEquals(findUser("+nisuser", PASSWD, GROUP), undefined);
  assertEquals(findUser("nobody", PASSWD, "")?.groups, [65534]);
});

Deno.test("lookupUser: a missing user or database says so", () => {
  const dir = Deno.makeTempDirSync();
  try {
    Deno.writeTextFileSync(`${dir}/passwd`, PASSWD);
    const files = { passwd: `${dir}/passwd`, group: `${dir}/group` };
    assertEquals(lookupUser("keeldns", files).groups, [990]); // no group file: the primary group alone
    const e = assertThrows(() => lookupUser("ghost", files));
    assertEquals(e instanceof UnknownUser, true);
    assertMatch(e.message, /cannot run as user "ghost": there is no such user in .*passwd/);
    assertMatch(
      assertThrows(() => lookupUser("x", { passwd: `${dir}/none`, group: "" })).message,
      /cannot run as user "x": .*none cannot be read/,
    );
    assertMatch(assertThrows(() => lookupUser("a:b", files)).message, /not a user name/);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
