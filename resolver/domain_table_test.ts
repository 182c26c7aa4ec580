import { assertEquals, assertThrows } from "../tests/helpers/assert.ts";
import { buildQuery } from "../tests/helpers/dns_client.ts";
import { DomainTable, NO_RULE } from "./domain_table.ts";

/** The inner value wins when there is one (one kind of rule). */
const innerWins = (outer: number, inner: number) => inner === NO_RULE ? outer : inner;

function table(rules: [string, number][]): DomainTable {
  const t = new DomainTable(innerWins);
  for (const [domain, value] of rules) t.add(domain, value);
  t.finish();
  return t;
}

Deno.test("/a.com/ covers a.com and below, not aa.com (SmartDNS Rule.Match)", () => {
  const t = table([["a.com", 1]]);
  assertEquals(t.matchName("a.com"), 1);
  assertEquals(t.matchName("a.a.com"), 1);
  assertEquals(t.matchName("x.y.A.COM"), 1);
  assertEquals(t.matchName("aa.com"), NO_RULE);
  assertEquals(t.matchName("com"), NO_RULE);
  assertEquals(t.matchName("a.com.evil"), NO_RULE);
});

Deno.test("*a.com is a string suffix on the label before com (Rule.PrefixWildcardMatch)", () => {
  const t = table([["*a.com", 1]]);
  assertEquals(t.matchName("a.com"), 1);
  assertEquals(t.matchName("a.a.com"), 1);
  assertEquals(t.matchName("aa.com"), 1);
  assertEquals(t.matchName("ab.com"), NO_RULE);
  assertEquals(t.matchName("com"), NO_RULE);
  // A more specific rule under the wildcard still wins; a less specific one does not.
  const u = table([["com", 9], ["*a.com", 1], ["x.aa.com", 2]]);
  assertEquals(u.matchName("x.aa.com"), 2);
  assertEquals(u.matchName("y.aa.com"), 1);
  assertEquals(u.matchName("ab.com"), 9);
});

Deno.test("*. covers below only, -. the name only (Rule.SubDomainMatchOnly, RootDomainMatchOnly)", () => {
  const sub = table([["*.a.com", 1]]);
  assertEquals(sub.matchName("a.com"), NO_RULE);
  assertEquals(sub.matchName("a.a.com"), 1);
  assertEquals(sub.matchName("aa.com"), NO_RULE);
  const root = table([["-.a.com", 1], ["b.com", 2]]);
  assertEquals(root.matchName("a.com"), 1);
  assertEquals(root.matchName("a.a.com"), NO_RULE);
  assertEquals(root.matchName("b.a.com"), NO_RULE);
  assertEquals(root.matchName("ba.com"), NO_RULE);
  assertEquals(root.matchName("b.com"), 2);
});

Deno.test("exact, -. and *. rules on one zone coexist; the most specific wins (Rule.root_and_sub)", () => {
  const t = table([["q.a.com", 1], ["-.a.com", 2], ["*.a.com", 3]]);
  assertEquals(t.matchName("q.a.com"), 1);
  assertEquals(t.matchName("x.q.a.com"), 1);
  assertEquals(t.matchName("a.com"), 2);
  assertEquals(t.matchName("other.a.com"), 3);
});

Deno.test('a rule for every name ("" or ".") is the outermost; leading dots are dropped', () => {
  const t = table([[".", 1], ["..a.com", 2]]);
  assertEquals(t.matchName("x.test"), 1);
  assertEquals(t.matchName("a.com"), 2);
  assertEquals(t.matchName(""), 1);
});

Deno.test("merging is per kind: a deeper rule of one kind keeps the outer rule of another", () => {
  // Values as bit fields: low byte = kind A's rule, high byte = kind B's; 0 in a byte = none.
  const merge = (outer: number, inner: number) => {
    if (outer === NO_RULE) return inner;
    if (inner === NO_RULE) return outer;
    const a = inner & 0xff || outer & 0xff;
    const b = inner & 0xff00 || outer & 0xff00;
    return a | b;
  };
  const t = new DomainTable(merge);
  t.add("a.com", 0x0001); // kind A: rule 1 for a.com and below
  t.add("www.a.com", 0x0200); // kind B: rule 2 for www.a.com
  t.add("-.a.com", 0x0003); // kind A: rule 3 for a.com only
  t.finish();
  assertEquals(t.matchName("www.a.com"), 0x0201);
  assertEquals(t.matchName("x.www.a.com"), 0x0201);
  assertEquals(t.matchName("a.com"), 0x0003);
  assertEquals(t.matchName("mail.a.com"), 0x0001);
});

Deno.test("match reads the question's wire bytes in any case, and misses cost a probe or two", () => {
  const t = table([["ads.example", 7]]);
  const q = buildQuery("Tracker.ADS.Example", "A");
  assertEquals(t.match(q, 12), 7);
  assertEquals(t.match(buildQuery("example", "A"), 12), NO_RULE);
  assertEquals(t.match(buildQuery("other.test", "A"), 12), NO_RULE);
});

Deno.test("a table of 200,000 names matches each, and grows without losing one", () => {
  const t = new DomainTable(innerWins);
  for (let i = 0; i < 200_000; i++) t.add(`host${i}.zone${i % 97}.test`, i);
  t.finish();
  for (let i = 0; i < 200_000; i += 997) assertEquals(t.matchName(`x.host${i}.zone${i % 97}.test`), i);
  assertEquals(t.matchName("host5.zone6.test"), NO_RULE);
  assertEquals(t.nodes, 1 + 1 + 97 + 200_000);
});

Deno.test("labels alike but for their tail, their length or their parent stay apart, across growth", () => {
  const t = new DomainTable(innerWins);
  const names: string[] = [];
  for (let i = 0; i < 30_000; i++) {
    const long = `googlesyndication-${i}`; // same 18-byte head for all
    names.push(`${long}.com`, `${long}x.com`, `${long}.net`, `ab.${long}.com`);
  }
  names.forEach((n, i) => t.add(i % 3 === 0 ? n.toUpperCase() : n, i));
  t.finish();
  names.forEach((n, i) => {
    if (i % 1009 === 0) assertEquals(t.matchName(i % 2 ? n : n.toUpperCase()), i, n);
  });
  assertEquals(t.matchName("googlesyndication-1.org"), NO_RULE);
  assertEquals(t.matchName("googlesyndication-1x1.com"), NO_RULE);
  // Adding after finish grows and rehashes the finished table; every name stays.
  for (let i = 0; i < 20_000; i++) t.add(`late-${i}.example`, -2 - i);
  assertEquals(t.matchName("late-19999.example"), -2 - 19_999);
  assertEquals(t.matchName("ab.googlesyndication-29999.com"), names.length - 1);
});

Deno.test("bad names are refused with a reason", () => {
  const t = new DomainTable(innerWins);
  assertThrows(() => t.add("a..b", 1), /empty label/);
  assertThrows(() => t.add(`${"x".repeat(64)}.test`, 1), /longer than 63 bytes/);
});
