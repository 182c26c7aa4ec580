import { assertEquals, assertThrows } from "../tests/helpers/assert.ts";
import { ipBytes } from "./address.ts";
import { CidrSet } from "./cidr_set.ts";

function values(set: CidrSet, ip: string): number[] {
  const bytes = ipBytes(ip);
  const out: number[] = [];
  set.match(bytes, 0, bytes.length, (v) => out.push(v));
  return out;
}

Deno.test("CidrSet: prefixes of both families, every match shortest first, longest wins", () => {
  const set = new CidrSet();
  set.add("0.0.0.0/0", 1);
  set.add("192.0.2.0/24", 2);
  set.add("192.0.2.128/25", 3);
  set.add("192.0.2.200", 4);
  set.add("2001:db8::/32", 5);
  set.add("::1", 6);
  assertEquals(values(set, "192.0.2.200"), [1, 2, 3, 4]);
  assertEquals(values(set, "192.0.2.7"), [1, 2]);
  assertEquals(values(set, "198.51.100.1"), [1]);
  assertEquals(values(set, "2001:db8:1::5"), [5]);
  assertEquals(values(set, "2001:db9::5"), []);
  assertEquals(values(set, "::1"), [6]);
  assertEquals(set.longest(ipBytes("192.0.2.130"), 0, 4), 3);
  assertEquals(set.longest(ipBytes("::2"), 0, 16), -1);
  assertThrows(() => set.add("192.0.2.0/33", 1), /prefix length must be 0..32/);
  assertThrows(() => set.add("not-an-ip/8", 1), /not an IPv4 address/);
});

Deno.test("CidrSet: 10,000 random prefixes agree with a linear scan", () => {
  const set = new CidrSet();
  const prefixes: [number, number, number][] = [];
  let seed = 12345;
  const random = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0);
  for (let i = 0; i < 10_000; i++) {
    const addr = random();
    const bits = 8 + (random() % 25);
    const base = bits === 0 ? 0 : (addr >>> (32 - bits)) << (32 - bits) >>> 0;
    prefixes.push([base, bits, i]);
    set.add(`${base >>> 24}.${(base >>> 16) & 255}.${(base >>> 8) & 255}.${base & 255}/${bits}`, i);
  }
  for (let n = 0; n < 2000; n++) {
    const addr = n % 2 ? prefixes[n % prefixes.length][0] + (random() & 0xff) >>> 0 : random();
    const bytes = new Uint8Array([addr >>> 24, (addr >>> 16) & 255, (addr >>> 8) & 255, addr & 255]);
    let expected = -1;
    let best = -1;
    for (const [base, bits, v] of prefixes) {
      const mask = bits === 0 ? 0 : (~0 << (32 - bits)) >>> 0;
      if (((addr & mask) >>> 0) === base && bits >= best) {
        [best, expected] = [bits, bits === best ? Math.max(expected, v) : v];
      }
    }
    const got = set.longest(bytes, 0, 4);
    if (expected !== -1) assertEquals(prefixes[got][1], best, `address ${bytes.join(".")}`);
    else assertEquals(got, -1);
  }
});
