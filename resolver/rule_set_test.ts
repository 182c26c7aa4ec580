import { assert, assertEquals } from "../tests/helpers/assert.ts";
import { decodeReply } from "../tests/helpers/dns_client.ts";
import { buildQuery } from "../tests/helpers/dns_client.ts";
import { parseSmartdnsConf } from "../config/smartdns_conf.ts";
import { messageProblem } from "../dns/message_check.ts";
import { Rcode } from "../dns/wire.ts";
import { parseContext, Reason } from "./query_context.ts";
import { localAnswerTtl, RuleFileError, RuleSet } from "./rule_set.ts";

const files: Record<string, string> = {};

/** A rule set from smartdns.conf lines (group "office" exists), with list files from `files`. */
function rules(text: string): { set: RuleSet; warnings: string[] } {
  const config = parseSmartdnsConf(
    `server 9.9.9.9\nserver 10.0.0.1 -group office\n${text}`,
    "/etc/smartdns.conf",
  );
  const warnings: string[] = [];
  const set = new RuleSet(config.rules, {
    groupIndex: (name) => name === "office" ? 1 : -1,
    ttl: config.cache,
    warn: (m) => warnings.push(m),
    readFile: (path) => {
      if (!(path in files)) throw new Deno.errors.NotFound(path);
      return new TextEncoder().encode(files[path]);
    },
  });
  return { set, warnings };
}

/** Renders the verdict's answer for `name type` and decodes it. */
function answer(set: RuleSet, name: string, type: string) {
  // dns-packet has no HTTPS type: patch the type number in.
  const wire = buildQuery(name, type === "HTTPS" ? "A" : type, { id: 77 });
  if (type === "HTTPS") wire[wire.length - 3] = 65;
  const q = parseContext(wire);
  const v = set.judge(q.wire, q.qtype);
  return { v, reply: v.answer ? decodeReply(v.answer.render(q, Date.now(), 65535)) : undefined };
}

Deno.test("address IPs answer their family; the other family gets an empty answer; other types go on", () => {
  const { set } = rules("address /a.example/192.0.2.1,192.0.2.2\naddress /six.example/2001:db8::1");
  const a = answer(set, "www.A.example", "A");
  assertEquals(a.reply!.id, 77);
  assertEquals(a.reply!.questions[0].name, "www.A.example");
  assertEquals(a.reply!.answers.map((r) => r.data), ["192.0.2.1", "192.0.2.2"]);
  assertEquals(a.reply!.answers[0].ttl, 600); // SmartDNS: 60 s raised to its default rr-ttl-min
  assertEquals(a.v.reason, Reason.RULE);
  const aaaa = answer(set, "a.example", "AAAA");
  assertEquals([aaaa.reply!.rcode, aaaa.reply!.answers.length, aaaa.reply!.authorities[0].type], [
    "NOERROR",
    0,
    "SOA",
  ]);
  assertEquals(answer(set, "a.example", "MX").v.answer, undefined);
  assertEquals(answer(set, "six.example", "AAAA").reply!.answers[0].data, "2001:db8::1");
  assertEquals(answer(set, "aa.example", "A").v.answer, undefined);
});

Deno.test("# is NXDOMAIN for every type; #4/#6 an empty answer for one family; - exempts", () => {
  const { set } = rules(
    "address /ads.example/#\naddress /ok.ads.example/-\naddress /v4.example/#4\naddress #6\naddress /-.keep6.example/-6",
  );
  for (const type of ["A", "AAAA", "MX", "HTTPS"]) {
    const r = answer(set, "x.ads.example", type).v.answer!.rcode;
    assertEquals(r, Rcode.NXDOMAIN, type);
    if (type !== "HTTPS") {
      const reply = answer(set, "x.ads.example", type).reply!;
      assertEquals([reply.rcode, reply.authorities[0]?.type, reply.authorities[0]?.ttl], [
        "NXDOMAIN",
        "SOA",
        30,
      ], type);
    }
  }
  assertEquals(answer(set, "ok.ads.example", "A").v.answer, undefined);
  assertEquals(answer(set, "v4.example", "A").reply!.rcode, "NOERROR");
  assertEquals(answer(set, "v4.example", "A").reply!.authorities[0].type, "SOA");
  // address #6 applies everywhere; -.keep6.example/-6 exempts that name only (SmartDNS Rule.root).
  assertEquals(answer(set, "other.test", "AAAA").reply!.answers.length, 0);
  assertEquals(answer(set, "keep6.example", "AAAA").v.answer, undefined);
  assertEquals(answer(set, "a.keep6.example", "AAAA").reply!.authorities[0].type, "SOA");
  assertEquals(answer(set, "other.test", "A").v.answer, undefined);
});

Deno.test("nameserver routes to a group, - sends back to the default; kinds merge by specificity", () => {
  const { set } = rules(
    "nameserver /corp.example/office\nnameserver /public.corp.example/-\naddress /db.corp.example/192.0.2.5",
  );
  assertEquals(answer(set, "x.corp.example", "A").v.group, 1);
  assertEquals(answer(set, "x.public.corp.example", "A").v.group, 0);
  const db = answer(set, "db.corp.example", "A");
  assertEquals(db.reply!.answers[0].data, "192.0.2.5");
  assertEquals(answer(set, "db.corp.example", "MX").v.group, 1, "the outer nameserver rule still routes MX");
});

Deno.test("domain sets: plain, hosts and adblock lists, exceptions, a missing file warns and is empty", () => {
  files["/etc/ads.txt"] = "# ads\nads.example\n||tracker.example^\n@@||ok.tracker.example^\n";
  const { set, warnings } = rules(
    "domain-set -name ads -file /etc/ads.txt\naddress /domain-set:ads/#\ndomain-set -name gone -file /etc/gone.txt\nnameserver /domain-set:gone/office",
  );
  assertEquals(answer(set, "x.ads.example", "A").reply!.rcode, "NXDOMAIN");
  assertEquals(answer(set, "tracker.example", "AAAA").reply!.rcode, "NXDOMAIN");
  assertEquals(answer(set, "ok.tracker.example", "A").v.answer, undefined);
  assertEquals(set.listDomains, 3);
  assertEquals(warnings.length, 1);
  assert(warnings[0].includes('domain-set "gone"'), warnings[0]);
});

Deno.test("forced SOA types, local SRV/TXT, hosts files and PTRs", () => {
  files["/etc/hosts.lan"] = "192.0.2.10 nas nas.lan\n2001:db8::10 nas\n";
  const { set } = rules(
    "force-qtype-SOA 65\nforce-AAAA-SOA yes\nsrv-record /_ldap._tcp.example/ldap.example,389\ntxt-record /t.example/hello\nhosts-file /etc/hosts.lan\nexpand-ptr-from-address yes\naddress /printer.lan/192.0.2.20",
  );
  assertEquals(answer(set, "any.example", "HTTPS").v.reason, Reason.SOA);
  assertEquals(answer(set, "any.example", "AAAA").v.reason, Reason.SOA);
  const srv = answer(set, "_ldap._tcp.example", "SRV").reply!;
  assertEquals(srv.answers[0].data, { priority: 0, weight: 0, port: 389, target: "ldap.example" });
  assertEquals(answer(set, "t.example", "TXT").reply!.answers[0].data.map(String), ["hello"]);
  assertEquals(answer(set, "nas", "A").reply!.answers[0].data, "192.0.2.10");
  assertEquals(answer(set, "nas.lan", "A").reply!.answers[0].data, "192.0.2.10");
  assertEquals(answer(set, "sub.nas", "A").v.answer, undefined, "a hosts name is that name only");
  assertEquals(answer(set, "10.2.0.192.in-addr.arpa", "PTR").reply!.answers[0].data, "nas");
  assertEquals(answer(set, "20.2.0.192.in-addr.arpa", "PTR").reply!.answers[0].data, "printer.lan");
});

Deno.test("a rule set with nothing in it says so (the stage is left out of the chain)", () => {
  assert(rules("").set.empty);
  assert(!rules("force-qtype-SOA 65").set.empty);
  assertEquals(answer(rules("").set, "x.test", "A").v.rule, -1);
  assertEquals(Rcode.NXDOMAIN, 3);
});

Deno.test("rebuilding (strict): an unreadable or binary list fails the build, so the running rules stay", () => {
  const config = parseSmartdnsConf(
    "server 9.9.9.9\ndomain-set -name ads -file /etc/strict.txt\naddress /domain-set:ads/#\n",
    "/etc/smartdns.conf",
  );
  const options = (strict: boolean, content?: Uint8Array) => ({
    groupIndex: () => -1,
    ttl: config.cache,
    warn: () => {},
    strict,
    readFile: () => {
      if (!content) throw new Deno.errors.NotFound("gone");
      return content;
    },
  });
  let thrown = 0;
  for (const content of [undefined, new Uint8Array([0x61, 0, 0x62])]) {
    try {
      new RuleSet(config.rules, options(true, content));
    } catch (e) {
      assert(e instanceof RuleFileError, String(e));
      thrown++;
    }
    // At start (not strict) the same file only warns, and the set is empty.
    assertEquals(new RuleSet(config.rules, options(false, content)).listDomains, 0);
  }
  assertEquals(thrown, 2);
});

Deno.test("https-record answers HTTPS questions with a local record (RFC 9460 wire form)", () => {
  const { set } = rules("https-record /svc.example/alpn=h2,alpn=h3,port=8443,ipv4hint=192.0.2.1");
  const wire = buildQuery("svc.example", "A", { id: 5 });
  wire[wire.length - 3] = 65;
  const q = parseContext(wire);
  const v = set.judge(q.wire, q.qtype);
  const out = v.answer!.render(q, Date.now(), 65535);
  assertEquals(messageProblem(out), null);
  // priority 1, target root, alpn "h2","h3", port 8443, ipv4hint 192.0.2.1
  assertEquals(Array.from(out.subarray(out.length - 27)), [
    0,
    1,
    0,
    0,
    1,
    0,
    6,
    2,
    104,
    50,
    2,
    104,
    51,
    0,
    3,
    0,
    2,
    0x20,
    0xfb,
    0,
    4,
    0,
    4,
    192,
    0,
    2,
    1,
  ]);
  assertEquals(set.judge(buildQuery("svc.example", "A"), 1).answer, undefined);
});

Deno.test("local answers take local-ttl, else rr-ttl, else rr-ttl-min, else 60 s, at most rr-ttl-reply-max", () => {
  const none = { rrTtl: 0, rrTtlMin: 0 };
  assertEquals(localAnswerTtl(0, none), 60);
  assertEquals(localAnswerTtl(77, { rrTtl: 5, rrTtlMin: 600 }), 77);
  assertEquals(localAnswerTtl(0, { rrTtl: 5, rrTtlMin: 600 }), 5);
  assertEquals(localAnswerTtl(0, { rrTtl: 0, rrTtlMin: 600 }), 600);
  assertEquals(localAnswerTtl(0, { rrTtl: 0, rrTtlMin: 0, rrTtlMax: 30 } as typeof none), 60);
  // rr-ttl-reply-max caps whichever it is.
  assertEquals(localAnswerTtl(77, { rrTtl: 0, rrTtlMin: 0, rrTtlReplyMax: 10 }), 10);
  assertEquals(localAnswerTtl(0, { rrTtl: 0, rrTtlMin: 600, rrTtlReplyMax: 10 }), 10);
  assertEquals(localAnswerTtl(5, { rrTtl: 0, rrTtlMin: 0, rrTtlReplyMax: 10 }), 5);
});

Deno.test("matches: every rule on the name's path with its line, what it sets and what it decides (explain)", () => {
  files["/lists/ads.txt"] = "# ads\nfoo.example\n@@ok.ads.example\nads.example\n";
  const { set } = rules(
    "address /example/192.0.2.1\n" +
      "nameserver /ads.example/office\n" +
      "domain-set -name ads -file /lists/ads.txt\n" +
      "address /domain-set:ads/#\n" +
      "domain-rules /*ads.example/ -speed-check-mode none\n",
  );
  const wire = (name: string) => parseContext(buildQuery(name, "A")).wire;
  const m = set.matches(wire("x.ads.example"));
  assertEquals(m.map((r) => [r.text, r.source.line]), [
    ["address /example/192.0.2.1", 3],
    ["nameserver /ads.example/office", 4],
    ["address /domain-set:ads/#", 6],
    ["domain-rules /*ads.example/ -speed-check-mode none", 7],
  ]);
  assertEquals(m[0].decides, [], "overridden by the block list on a deeper name");
  assertEquals(m[0].kinds, ["address (A)"]);
  assertEquals(m[1].decides, ["nameserver"]);
  assertEquals(m[2].decides.slice(0, 2), ["address (A)", "address (AAAA)"]);
  assertEquals(m[2].listLine, { file: "/lists/ads.txt", line: 4, domain: "ads.example", kind: "block" });
  assertEquals(m[3].decides, ["speed-check-mode"]);
  assertEquals(set.judge(wire("x.ads.example"), 1).rule, m[2].rule, "the verdict's rule is the block list's");
  // An adblock exception: the list line that exempts it, and the block no longer decides the address.
  const ok = set.matches(wire("ok.ads.example")).find((r) => r.listLine);
  assertEquals(ok?.listLine, {
    file: "/lists/ads.txt",
    line: 3,
    domain: "ok.ads.example",
    kind: "exception",
  });
  assertEquals(set.matches(wire("other.test")), []);
});
