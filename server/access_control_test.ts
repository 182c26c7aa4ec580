import { assertEquals } from "../tests/helpers/assert.ts";
import { encodeSockaddr } from "../net/linux_socket.ts";
import { AccessControl, type AccessSettings } from "./access_control.ts";

const base: AccessSettings = { policy: "local", allowed: [], rateLimit: 0, burst: 0 };

/** Checks `ip` against `access` as a client on port 40000. */
const check = (access: AccessControl, ip: string) => access.check(encodeSockaddr(ip, 40000), 0);

Deno.test("local: loopback and the interfaces' subnets are answered, others refused", () => {
  const access = new AccessControl(base, () => [{ cidr: "192.168.1.1/24" }, { cidr: "fd00::1/64" }]);
  assertEquals(check(access, "127.0.0.1"), null);
  assertEquals(check(access, "127.0.0.2"), null);
  assertEquals(check(access, "::1"), null);
  assertEquals(check(access, "192.168.1.77"), null);
  assertEquals(check(access, "::ffff:192.168.1.77"), null, "a v4 client on a dual-stack socket");
  assertEquals(check(access, "fd00::99"), null);
  assertEquals(check(access, "203.0.113.5"), "not-local");
  assertEquals(check(access, "2001:db8::5"), "not-local");
  assertEquals(access.refused["not-local"], 2);
});

Deno.test("local: an interface that comes up later is noticed (re-read at most once a second)", () => {
  let now = 0;
  let cidrs = [{ cidr: "192.168.1.1/24" }];
  const access = new AccessControl(base, () => cidrs, () => now);
  assertEquals(check(access, "10.0.0.5"), "not-local");
  cidrs = [...cidrs, { cidr: "10.0.0.1/24" }];
  now = 500;
  assertEquals(check(access, "10.0.0.5"), "not-local", "within a second: not read again");
  now = 2000;
  assertEquals(check(access, "10.0.0.5"), null);
});

Deno.test("acl: only the listed clients (and loopback); any: everyone", () => {
  const acl = new AccessControl(
    { ...base, policy: "acl", allowed: ["198.51.100.0/24", "2001:db8::/32"] },
    () => [],
  );
  assertEquals(check(acl, "198.51.100.9"), null);
  assertEquals(check(acl, "2001:db8::9"), null);
  assertEquals(check(acl, "127.0.0.1"), null);
  assertEquals(check(acl, "192.168.1.5"), "not-in-acl");
  const any = new AccessControl({ ...base, policy: "any" }, () => []);
  assertEquals(check(any, "203.0.113.5"), null);
  assertEquals(AccessControl.needed({ ...base, policy: "any" }), false);
});

Deno.test("the rate limit lets a burst through, then the average; 127.0.0.1 is never limited", () => {
  let now = 1000;
  const access = new AccessControl({ ...base, policy: "any", rateLimit: 10, burst: 5 }, () => [], () => now);
  let refused = 0;
  for (let i = 0; i < 30; i++) if (check(access, "192.0.2.1")) refused++;
  assertEquals(refused, 15, "10 + 5 at once, then none left");
  now += 1000;
  refused = 0;
  for (let i = 0; i < 12; i++) if (check(access, "192.0.2.1")) refused++;
  assertEquals(refused, 2, "a second later: 10 more");
  for (let i = 0; i < 1000; i++) assertEquals(check(access, "127.0.0.1"), null);
  assertEquals(check(access, "192.0.2.2"), null, "another client has its own bucket");
});
