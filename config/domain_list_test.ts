import { assert, assertEquals } from "../tests/helpers/assert.ts";
import { detectListFormat, type ListScan, scanDomainList } from "./domain_list.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Scans `text` (or bytes), returning the scan and each name the sink got as `kind scope name`. */
function scan(input: string | Uint8Array, maxProblems?: number): { result: ListScan; names: string[] } {
  const names: string[] = [];
  const bytes = typeof input === "string" ? encoder.encode(input) : input;
  const result = scanDomainList(bytes, "list.txt", (src, start, end, kind, scope) => {
    names.push(`${kind} ${scope} ${decoder.decode(src.subarray(start, end))}`);
  }, { maxProblems });
  return { result, names };
}

/** The problems of a scan as `line:col: reason`. */
function problems(result: ListScan): string[] {
  return result.problems.map((p) => `${p.line}:${p.col}: ${p.reason}`);
}

Deno.test("plain: names, comments, blank lines, spaces, CRLF", () => {
  const { result, names } = scan(
    "# a list\r\n\r\nexample.com\r\n   spaced.example   \r\nafter.example # why\r\nhash.example#tight\r\n" +
      "\t tabbed.example\t\r\n  # indented comment\r\nlast.example",
  );
  assertEquals(result.format, "plain");
  assertEquals(names, [
    "block both example.com",
    "block both spaced.example",
    "block both after.example",
    "block both hash.example",
    "block both tabbed.example",
    "block both last.example",
  ]);
  assertEquals(result.lines, 9);
  assertEquals(result.domains, 6);
  assertEquals([result.exceptions, result.skipped, result.problemCount], [0, 0, 0]);
});

Deno.test("plain: SmartDNS prefixes set the scope, a trailing dot is dropped", () => {
  const { result, names } = scan("*.sub.example\n-.self.example\n.both.example\nroot.example.\n");
  assertEquals(names, [
    "block sub sub.example",
    "block self self.example",
    "block both both.example",
    "block both root.example",
  ]);
  assertEquals(result.problemCount, 0);
});

Deno.test("plain: v2ray-style domain:/full: lines; keyword:/regexp:/include: skipped", () => {
  const { result, names } = scan(
    "domain:v.example\nfull:exact.example\nFULL:Caps.Example\nkeyword:ads\nregexp:^ad.*\\.com$\ninclude:other\n",
  );
  assertEquals(names, ["block both v.example", "block self exact.example", "block self caps.example"]);
  assertEquals(result.skipped, 3);
  assertEquals(result.problemCount, 0);
});

Deno.test("plain: capitals are lower-cased for the sink", () => {
  const { names } = scan("Ads.Tracker.EXAMPLE.com\n*.WWW.Example\n");
  assertEquals(names, ["block both ads.tracker.example.com", "block sub www.example"]);
});

Deno.test("plain: names are checked; a problem has line:col and the scan goes on", () => {
  const long = "a".repeat(64);
  const tooLong = Array.from({ length: 5 }, () => "b".repeat(60)).join(".");
  const { result, names } = scan(
    [
      "good.example", // 1
      "exa mple.com", // 2
      "a..b.example", // 3
      `${long}.example`, // 4
      tooLong, // 5
      "  bad!.example", // 6
      "*ad.example", // 7
      "*.", // 8
      ".", // 9
      "0.0.0.0 ads.example", // 10
      "unknown:x.example", // 11
      "fine.example", // 12
    ].join("\n"),
  );
  assertEquals(names, ["block both good.example", "block both fine.example"]);
  assertEquals(problems(result), [
    '2:5: "exa mple.com" is not a domain name (one name a line)',
    '3:3: "a..b.example" is not a domain name (an empty label)',
    `4:1: "${long}.example" is not a domain name (a label longer than 63 bytes)`,
    `5:1: "${tooLong.slice(0, 77)}…" is not a domain name (longer than 253 bytes)`,
    '6:6: "bad!.example" is not a domain name ("!" cannot be in a name)',
    '7:1: "*ad.example" is not a domain name ("*" may only open a name, as "*.")',
    '8:3: "*." is not a domain name (no name)',
    '9:2: "." is not a domain name (no name)',
    '10:9: "0.0.0.0 ads.example" is not a domain name (one name a line)',
    '11:8: "unknown:x.example" is not a domain name (":" cannot be in a name)',
  ]);
  assertEquals(result.problems[0].file, "list.txt");
  assertEquals(result.domains, 2);
});

Deno.test("plain: the problems list is capped, the count is not", () => {
  const text = Array.from({ length: 50 }, (_, i) => `bad${i}!name`).join("\n") + "\nok.example\n";
  const capped = scan(text);
  assertEquals(capped.result.problems.length, 20);
  assertEquals(capped.result.problemCount, 50);
  assertEquals(capped.result.problems[19].line, 20);
  assertEquals(capped.names, ["block both ok.example"]);
  assertEquals(scan(text, 3).result.problems.length, 3);
  assertEquals(scan(text, 0).result.problems.length, 0);
});

Deno.test("IDN names become punycode, also in hosts and adblock files", () => {
  assertEquals(scan("bücher.example\n*.BÜCHER.example\n例え.テスト\n").names, [
    "block both xn--bcher-kva.example",
    "block sub xn--bcher-kva.example",
    "block both xn--r8jz45g.xn--zckzah",
  ]);
  assertEquals(scan("0.0.0.0 bücher.example plain.example\n").names, [
    "block both xn--bcher-kva.example",
    "block both plain.example",
  ]);
  assertEquals(scan("||bücher.example^\n@@||straße.example^\n").names, [
    "block both xn--bcher-kva.example",
    "exception both xn--strae-oqa.example",
  ]);
});

Deno.test("IDN: a bad international name or a non-UTF-8 line is a problem with its column", () => {
  const bytes = new Uint8Array([
    ...encoder.encode("ok.example\n  bad"),
    0xff,
    ...encoder.encode(".example\nü..example\nafter.example\n"),
  ]);
  const { result, names } = scan(bytes);
  assertEquals(names, ["block both ok.example", "block both after.example"]);
  assertEquals(problems(result), [
    "2:3: the line is not UTF-8 text",
    '3:1: "ü..example" is not a domain name (an empty label)',
  ]);
});

Deno.test("column counts characters, not bytes", () => {
  const { result } = scan("# ü\nbü cher.example\n");
  assertEquals(problems(result), ['2:4: "bü cher.example" is not a domain name (one name a line)']);
});

Deno.test("hosts: addresses, several names a line, comments, loopback names skipped", () => {
  const { result, names } = scan(
    [
      "# hosts",
      "127.0.0.1 localhost",
      "127.0.0.1 localhost.localdomain",
      "127.0.0.1 local",
      "255.255.255.255 broadcasthost",
      "::1 localhost ip6-localhost ip6-loopback",
      "fe00::0 ip6-localnet",
      "ff02::1 ip6-allnodes",
      "0.0.0.0 0.0.0.0",
      "",
      "0.0.0.0 ads.example",
      "127.0.0.1 a.example b.example # two names",
      "0.0.0.0\tTabbed.Example\r",
      "::1 v6.example",
      "fe80::1%lo0 zoned.example",
      "0.0.0.0 hash.example#tight",
      "bare.example",
    ].join("\n"),
  );
  assertEquals(result.format, "hosts");
  assertEquals(names, [
    "block both ads.example",
    "block both a.example",
    "block both b.example",
    "block both tabbed.example",
    "block both v6.example",
    "block both zoned.example",
    "block both hash.example",
    "block both bare.example",
  ]);
  assertEquals(result.skipped, 10);
  assertEquals(result.problemCount, 0);
});

Deno.test("hosts: bad names and an address alone are problems", () => {
  const { result, names } = scan(
    "0.0.0.0 a.example\n0.0.0.0 good.example bad$.example next.example\n0.0.0.0\n0.0.0.0 b.example\n",
  );
  assertEquals(names, [
    "block both a.example",
    "block both good.example",
    "block both next.example",
    "block both b.example",
  ]);
  assertEquals(problems(result), [
    '2:25: "bad$.example" is not a domain name ("$" cannot be in a name)',
    '3:1: "0.0.0.0" is an address with no name after it',
  ]);
});

Deno.test("adblock: block and exception rules, comments, header, $important", () => {
  const { result, names } = scan(
    [
      "[Adblock Plus 2.0]",
      "! Title: a list",
      "||ads.example^",
      "@@||good.example^",
      "||important.example^$important",
      "@@||allowed.example^$important",
      "||Caps.Example^",
      "||anchored.example^|",
      "||noend.example",
      "||*.sub.example^",
      "|exact.example^",
      "bare.example",
      "bare-caret.example^",
      "0.0.0.0 hosts-style.example",
      "# a hash comment",
    ].join("\r\n"),
  );
  assertEquals(result.format, "adblock");
  assertEquals(names, [
    "block both ads.example",
    "exception both good.example",
    "block both important.example",
    "exception both allowed.example",
    "block both caps.example",
    "block both anchored.example",
    "block both noend.example",
    "block sub sub.example",
    "block self exact.example",
    "block both bare.example",
    "block both bare-caret.example",
    "block both hosts-style.example",
  ]);
  assertEquals([result.domains, result.exceptions, result.skipped, result.problemCount], [10, 2, 0, 0]);
});

Deno.test("adblock: rules this reader cannot use are skipped and counted, not problems", () => {
  const { result, names } = scan(
    [
      "! skipped rules",
      "||third.example^$third-party",
      "||rewrite.example^$dnsrewrite=1.2.3.4",
      "||client.example^$client=192.168.1.2",
      "||both.example^$important,third-party",
      "example.com##.banner",
      "##.ad",
      "example.com#@#.ad",
      "example.com#?#div:has(.ad)",
      "/^ad[0-9]+\\.example$/",
      "|http://url.example/path",
      "||path.example/ads/",
      "||ad*.example^",
      "_adserver.",
      "-banner-",
      "||kept.example^",
    ].join("\n"),
  );
  assertEquals(names, ["block both kept.example"]);
  assertEquals(result.skipped, 14);
  assertEquals(result.problemCount, 0);
});

Deno.test("adblock: malformed names are problems", () => {
  const { result, names } = scan("! list\n||exa..mple.example^\n||exa mple.example^\n@@||-ok.example^\n");
  assertEquals(names, ["exception both -ok.example"]);
  assertEquals(problems(result), [
    '2:7: "exa..mple.example" is not a domain name (an empty label)',
    '3:6: "||exa mple.example^" is not a domain rule (a space inside)',
  ]);
});

Deno.test("format detection", () => {
  const detect = (text: string) => detectListFormat(encoder.encode(text));
  assertEquals(detect(""), "plain");
  assertEquals(detect("# only comments\n\n"), "plain");
  assertEquals(detect("example.com\n*.x.example\n"), "plain");
  assertEquals(detect("domain:x.example\nfull:y.example\n"), "plain");
  assertEquals(detect("# hosts\n0.0.0.0 a.example\n0.0.0.0 b.example\n"), "hosts");
  assertEquals(detect("::1 localhost\n"), "hosts");
  assertEquals(detect("a.example\nb.example\n0.0.0.0 c.example\n"), "plain");
  assertEquals(detect("[Adblock Plus 2.0]\nexample.com\n"), "adblock");
  assertEquals(detect("! comment\n"), "adblock");
  assertEquals(detect("a.example\nb.example\n||c.example^\n"), "adblock");
  assertEquals(detect("@@||c.example^\n"), "adblock");
  assertEquals(detect("c.example^\n"), "adblock");
  assertEquals(detect("##.banner\n"), "adblock");
  assertEquals(detect("x.example#@#.ad\n"), "adblock");
  assertEquals(detect("0.0.0.0 a.example\n||b.example^\n"), "adblock");
  // Only the first 100 meaningful lines count.
  const late = Array.from({ length: 100 }, (_, i) => `n${i}.example`).join("\n") + "\n||late.example^\n";
  assertEquals(detect(late), "plain");
  assertEquals(detect("\uFEFF0.0.0.0 bom.example\n"), "hosts");
});

Deno.test("a UTF-8 byte-order mark is ignored", () => {
  assertEquals(scan("\uFEFFfirst.example\n").names, ["block both first.example"]);
});

Deno.test("a file that is not text is one problem and no names", () => {
  const withNul = scan(new Uint8Array([...encoder.encode("a.example\nb.example\n"), 0, 1, 2]));
  assertEquals(withNul.names, []);
  assertEquals(withNul.result.problemCount, 1);
  assertEquals(withNul.result.problems, [
    { file: "list.txt", line: 0, col: 0, reason: "not a text file (it holds NUL bytes)" },
  ]);
  const gzipLike = new Uint8Array(4096);
  for (let i = 0; i < gzipLike.length; i++) gzipLike[i] = 0x80 + ((i * 37) % 0x7f) + 1;
  const binary = scan(gzipLike);
  assertEquals(binary.names, []);
  assertEquals(problems(binary.result), ["0:0: not a text file (mostly not UTF-8 text)"]);
  assertEquals(binary.result.lines, 0);
});

Deno.test("an empty file has no names and no problems", () => {
  for (const text of ["", "\n", "\r\n\r\n", "   \n# nothing\n"]) {
    const { result, names } = scan(text);
    assertEquals(names, []);
    assertEquals([result.format, result.domains, result.skipped, result.problemCount], ["plain", 0, 0, 0]);
  }
});

Deno.test("200,000 lines round trip: every name reaches the sink once", () => {
  const count = 200_000;
  const expected = Array.from({ length: count }, (_, i) => `ads${i}.tracker${i % 13}.example.com`);
  for (
    const [format, line] of [
      ["plain", (n: string) => n],
      ["hosts", (n: string) => `0.0.0.0 ${n}`],
      ["adblock", (n: string) => `||${n}^`],
    ] as const
  ) {
    const bytes = encoder.encode(expected.map(line).join("\r\n"));
    const seen = new Map<string, number>();
    const result = scanDomainList(bytes, "big.txt", (src, start, end) => {
      const name = decoder.decode(src.subarray(start, end));
      seen.set(name, (seen.get(name) ?? 0) + 1);
    });
    assertEquals(result.format, format);
    assertEquals([result.lines, result.domains, result.problemCount], [count, count, 0]);
    assertEquals(seen.size, count);
    for (const name of expected) {
      assert(seen.get(name) === 1, `${format}: ${name} seen ${seen.get(name)} times`);
    }
  }
});
