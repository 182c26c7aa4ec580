import { assert, assertEquals } from "../tests/helpers/assert.ts";
import { capabilityMask, capabilityNames, parseProcStatus, threadCapabilities } from "./privileges.ts";

Deno.test("capability masks and names", () => {
  assertEquals(capabilityMask([]), 0n);
  assertEquals(capabilityMask(["CAP_NET_BIND_SERVICE"]), 0x400n);
  assertEquals(capabilityMask(["CAP_NET_ADMIN", "CAP_NET_RAW"]), 0x3000n);
  assertEquals(capabilityNames(0x3400n), ["CAP_NET_BIND_SERVICE", "CAP_NET_ADMIN", "CAP_NET_RAW"]);
  assertEquals(capabilityNames(1n << 21n), ["cap 21"]);
});

Deno.test("parseProcStatus reads ids, groups and capability sets", () => {
  const s = parseProcStatus(
    "Name:\tdeno\nUid:\t65534\t65534\t65534\t65534\nGid:\t995\t995\t995\t995\nGroups:\t995 108 \n" +
      "CapInh:\t0000000000000400\nCapPrm:\t0000000000000400\nCapEff:\t0000000000000000\n" +
      "CapBnd:\t0000000000000400\nCapAmb:\t0000000000000400\n",
  );
  assertEquals(s.uids, [65534, 65534, 65534, 65534]);
  assertEquals(s.gids, [995, 995, 995, 995]);
  assertEquals(s.groups, [995, 108]);
  assertEquals(s.caps, { effective: 0n, permitted: 0x400n, inheritable: 0x400n, ambient: 0x400n });
});

Deno.test({
  name: "threadCapabilities agrees with /proc/thread-self/status",
  ignore: Deno.build.os !== "linux",
  fn() {
    const mine = threadCapabilities();
    const proc = parseProcStatus(Deno.readTextFileSync("/proc/thread-self/status")).caps;
    assertEquals(mine, proc);
    assert(Deno.uid() !== 0 || mine.effective !== 0n, "root has capabilities");
  },
});
