import { assert, assertEquals, assertMatch, assertThrows } from "../tests/helpers/assert.ts";
import { ConfigError } from "./errors.ts";
import { detectFormat, parseConfig } from "./load.ts";
import { parseSmartdnsConf } from "./smartdns_conf.ts";

const files: Record<string, string> = {};
const read = (path: string) => {
  if (!(path in files)) throw new Error("No such file");
  return files[path];
};
const parse = (text: string) => parseSmartdnsConf(text, "/etc/smartdns/smartdns.conf", read);

Deno.test("smartdns.conf: listeners, servers, options and TTLs", () => {
  const c = parse(`
# comment
bind [::]:53
bind-tcp 127.0.0.1:5353
server 9.9.9.9
server 1.1.1.1:5353 -group cf -exclude-default-group
server-tcp [2606:4700::1111]
server tcp://8.8.8.8
cache-size 2048
rr-ttl-min 60
rr-ttl-max 30
log-level warning
log-size 1m
log-num 3
tcp-idle-time 30
`);
  assertEquals(c.server.binds.map((b) => `${b.transport} ${b.host} ${b.port}`), [
    "udp :: 53",
    "tcp 127.0.0.1 5353",
  ]);
  assertEquals(c.upstreams.map((u) => `${u.transport} ${u.host} ${u.port} ${u.groups} ${u.excludeDefault}`), [
    "udp 9.9.9.9 53  false",
    "udp 1.1.1.1 5353 cf true",
    "tcp 2606:4700::1111 53  false",
    "tcp 8.8.8.8 53  false",
  ]);
  assertEquals(c.cache, {
    size: 2048,
    rrTtl: 0,
    rrTtlMin: 30, // min above max becomes max
    rrTtlMax: 30,
    persist: false,
    file: "/var/cache/keeldns/keeldns.cache",
    rrTtlReplyMax: 0,
    memSize: 0,
    serveExpired: true, // SmartDNS's default, unlike keeldns.toml's
    serveExpiredTtl: 86400,
    serveExpiredReplyTtl: 3,
    prefetch: false,
    serveExpiredPrefetchTime: 0,
    checkpointTime: 86400, // SmartDNS's default
    writeBudget: 16 << 20,
  });
  assertEquals(c.log.level, "warn");
  assertEquals(c.log.size, 1024 * 1024);
  assertEquals(c.log.num, 3);
  assertEquals(c.server.tcpIdleTime, 30);
  assertEquals(c.unsupported, []);
});

Deno.test("smartdns.conf: every not-yet-supported directive is reported once, with its first line", () => {
  const c = parse(
    "server 9.9.9.9\nlog-color yes\ndebug-save-fail-packet yes\nlog-color no\nserver-tls 1.1.1.1\nsmartdns-ui.ip http://0.0.0.0:6080\nserver https://dns.example/dns-query\nbind :53 -no-ip-alias\n",
  );
  assertEquals(
    c.unsupported.map((u) => `${u.name}@${u.source.line}`),
    [
      "log-color@2",
      "debug-save-fail-packet@3",
      "smartdns-ui.ip@6",
      "bind -no-ip-alias@8",
    ],
  );
  assertEquals(c.upstreams.map((u) => u.transport), ["udp", "tls", "https"]);
});

Deno.test("smartdns.conf: errors carry file:line:col and a suggestion", () => {
  const cases: [string, RegExp][] = [
    [
      "sever 1.1.1.1",
      /:1:1: unknown directive "sever" ignored \(did you mean "server"\?\); with no server line/,
    ],
    ["server 1.1.1.1\nbind 127.0.0.1:http", /:2:6: bind: "http" is not a port number/],
    ["server dns..google", /:1:8: server: "dns..google" is not an IP address or a host name/],
    ["server dns.google", /:1:8: dns.google: nothing can resolve this host name: .*\/etc\/resolv.conf/],
    ["server 1.1.1.1\ncache-size lots", /:2:12: cache-size: "lots" is not a size/],
    ["server 1.1.1.1\nlog-level loud", /:2:11: log-level: "loud" is not a level/],
    [
      "server 1.1.1.1\nconf-file missing.conf",
      /:2:11: conf-file: cannot read "\/etc\/smartdns\/missing.conf"/,
    ],
  ];
  for (const [text, pattern] of cases) {
    const e = assertThrows(() => parse(text), pattern);
    assert(e instanceof ConfigError);
    assertEquals(e.position.file, "/etc/smartdns/smartdns.conf");
  }
});

Deno.test("smartdns.conf: each message says its position once, and a whole-file problem has none", () => {
  const e = assertThrows(
    () => parse("bind :53\nserver"),
    /^\/etc\/smartdns\/smartdns.conf:2:1: server: missing value$/,
  );
  assertEquals(e.message.match(/smartdns\.conf/g)?.length, 1, e.message);
  assertThrows(
    () => parse("bind :53\nresolv-file /nowhere/resolv.conf"),
    /^\/etc\/smartdns\/smartdns.conf: no server lines, and resolv-file "\/nowhere\/resolv.conf" cannot be read: No such file$/,
  );
});

Deno.test("smartdns.conf: conf-file includes relative to the including file, and loops are caught", () => {
  files["/etc/smartdns/extra.conf"] = "server 8.8.4.4\n";
  const c = parse("server 9.9.9.9\nconf-file extra.conf\n");
  assertEquals(c.upstreams.map((u) => u.host), ["9.9.9.9", "8.8.4.4"]);
  files["/etc/smartdns/loop.conf"] = "conf-file loop.conf\n";
  assertThrows(() => parse("conf-file loop.conf"), /includes itself/);
});

Deno.test("smartdns.conf: quotes, line continuation and SmartDNS's defaults", () => {
  files["/etc/resolv.conf"] = "# resolv\nnameserver 192.0.2.53\nnameserver fe80::1%eth0\n";
  const c = parse('log-file "/var/log/smart dns.log"\nlog-level \\\n  info\n');
  assertEquals(c.log.file, "/var/log/smart dns.log");
  assertEquals(c.log.level, "info");
  assertEquals(
    c.server.binds.map((b) => `${b.transport} ${b.host} ${b.port}`),
    ["udp :: 53"],
    "SmartDNS's default bind",
  );
  assertEquals(c.upstreams.map((u) => u.host), ["192.0.2.53"], "no server lines: resolv-file");
});

Deno.test("format detection is by content", () => {
  assertEquals(detectFormat("# x\n[server]\n", "a.conf"), "toml");
  assertEquals(detectFormat("cache-size = 5\n", "a.conf"), "toml");
  assertEquals(detectFormat("server 1.1.1.1\n", "a.toml"), "smartdns");
  assertEquals(detectFormat("\n# only comments\n", "a.toml"), "toml");
  assertEquals(parseConfig("server 1.1.1.1\n", "x").format, "smartdns");
});

Deno.test("smartdns.conf: cache-persist is auto (on when a cache-file is named) unless said", () => {
  const named = parse(
    "server 9.9.9.9\ncache-file /var/cache/smartdns/smartdns.cache\ncache-checkpoint-time 60\n",
  );
  assertEquals([named.cache.persist, named.cache.file, named.cache.checkpointTime], [
    true,
    "/var/cache/smartdns/smartdns.cache",
    60,
  ]);
  assertEquals(parse("server 9.9.9.9\ncache-persist yes\n").cache.persist, true);
  assertEquals(parse("server 9.9.9.9\ncache-file /x.cache\ncache-persist no\n").cache.persist, false);
  assertThrows(
    () => parse("server 9.9.9.9\ncache-persist maybe\n"),
    /:2:15: cache-persist: "maybe" is not yes or no/,
  );
});

Deno.test("smartdns.conf: restart-on-crash yes and no-daemon are what keeldns does anyway", () => {
  assertEquals(parse("server 9.9.9.9\nrestart-on-crash yes\nno-daemon yes\n").unsupported, []);
  assertEquals(parse("server 9.9.9.9\nrestart-on-crash no\n").unsupported.map((u) => u.name), [
    "restart-on-crash no",
  ]);
});

Deno.test("smartdns.conf: values read as SmartDNS reads them, with a warning where they change", () => {
  const c = parse(`server 9.9.9.9 -grop x
cache-size 128k
tcp-idle-time 10ms
rr-ttl-max 99999999999
log-size 8M
`);
  assertEquals(c.cache.size, 128 * 1024);
  assertEquals(c.server.tcpIdleTime, 10);
  assertEquals(c.cache.rrTtlMax, 2 ** 31 - 1);
  assertEquals(c.log.size, 8 * 1024 * 1024);
  assertEquals(c.warnings.map((w) => `${w.source.line}:${w.source.col} ${w.message}`), [
    '1:16 server: unknown option "-grop" ignored (did you mean "group"?)',
    '3:15 tcp-idle-time: "10ms" read as 10',
    "4:12 rr-ttl-max: 99999999999 is out of range (0..2147483647), using 2147483647",
  ]);
  assertEquals(parse("server 9.9.9.9\ncache-size 8M\n").cache.size, 8 * 1024 * 1024);
});

Deno.test("smartdns.conf: never a silent change of where queries go", () => {
  // Only servers keeldns cannot use yet: no fall-back to resolv.conf.
  assertThrows(
    () => parse("server-h3 dns.google\nserver h3://dns.example\n"),
    /:1:11: every server line is of a kind keeldns cannot use yet \(.*:1:11, .*:2:8\); it will not fall back/,
  );
  // A directive that would route or filter differently without it refuses the file, naming the line.
  assertThrows(
    () => parse("server 9.9.9.9\ngroup-begin kids\ngroup-match -domain x.test\ngroup-end\n"),
    /:3:1: group-match -domain is not supported yet, and without it the group's rules would not be limited/,
  );
  // A server naming a proxy no proxy-server defines would be asked directly.
  assertThrows(
    () => parse("server 9.9.9.9 -proxy socks\nproxy-server socks5://127.0.0.1:1080 -name other\n"),
    /:1:23: -proxy socks: no proxy-server is named "socks" \(defined: other\)/,
  );
  assertThrows(
    () => parse("server tcp://9.9.9.9 -set-mark 5\n"),
    /:1:1: server -set-mark is not supported yet, and without it only plain UDP servers/,
  );
  assertThrows(
    () => parse("proxy-server socks5://127.0.0.1 -name p\nserver 9.9.9.9 -interface lo -proxy p\n"),
    /:2:1: server -interface with -proxy is not supported yet/,
  );
  // A nameserver rule to a group without a usable server would send its domains to the default group.
  assertThrows(
    () =>
      parse("server 9.9.9.9\nserver-h3 dns.bank.example -group secure\nnameserver /bank.example/secure\n"),
    /:3:12: nameserver: no usable server is in group "secure"/,
  );
  assertThrows(() => parse("server 9.9.9.9\naddress /domain-set:ads/#\n"), /no domain-set named "ads"/);
});

Deno.test("smartdns.conf: address, nameserver, cname, domain-rules and domain-set become rules", () => {
  const c = parse(`server 9.9.9.9
server 10.0.0.1 -group office -exclude-default-group
address /ads.example/tracker.example/#
address /v6.example/#6
address /mixed.example/192.0.2.1,2001:db8::1
address #6
address /-.bücher.example/-
nameserver /corp.example/office
cname /alias.example/target.example
domain-rules /multi.example/ -a 192.0.2.9 -n office -speed-check-mode none
domain-set -name ads -type list -file lists/ads.txt
address /domain-set:ads/#
srv-record /_sip._tcp.example/sip.example,5060,1,2
force-qtype-SOA 65 28,64-66 -,64
force-AAAA-SOA yes
local-ttl 300
`);
  const rules = c.rules.domainRules;
  assertEquals(rules.map((r) => r.domains), [
    ["ads.example", "tracker.example"],
    ["v6.example"],
    ["mixed.example"],
    [""],
    ["-.xn--bcher-kva.example"],
    ["corp.example"],
    ["alias.example"],
    ["multi.example"],
    ["domain-set:ads"],
    ["_sip._tcp.example"],
  ]);
  assertEquals(rules[0].address, { kind: "block", families: "both" });
  assertEquals(rules[1].address, { kind: "block", families: "v6" });
  assertEquals(rules[2].address, { kind: "ips", v4: ["192.0.2.1"], v6: ["2001:db8::1"] });
  assertEquals(rules[4].address, { kind: "exempt", families: "both" });
  assertEquals(rules[5].nameserver, "office");
  assertEquals(rules[6].cname, "target.example");
  assertEquals(rules[7].address, { kind: "ips", v4: ["192.0.2.9"], v6: [] });
  assertEquals(rules[7].nameserver, "office");
  assertEquals([rules[7].deferred, rules[7].speedCheck], [[], []]);
  assertEquals(rules[9].srv, [{ target: "sip.example", port: 5060, priority: 1, weight: 2 }]);
  assertEquals(c.rules.domainSets, [{
    name: "ads",
    file: "/etc/smartdns/lists/ads.txt",
    source: { file: "/etc/smartdns/smartdns.conf", line: 11, col: 1 },
  }]);
  assertEquals(c.rules.forceQtypeSoa, [28, 65, 66]);
  assert(c.rules.forceAAAASOA);
  assertEquals(c.rules.localTtl, 300);
  assertEquals(rules[0].source.line, 3);
  assertThrows(
    () => parse("server 9.9.9.9\naddress /x.example/not-an-ip\n"),
    /:2:9: address: "not-an-ip" is not an IP/,
  );
});

Deno.test("smartdns.conf: dns64 takes a /96 prefix or -, and max-reply-ip-num defaults to SmartDNS's 8", () => {
  assertEquals(parse("server 9.9.9.9\ndns64 64:ff9b::/96\n").rules.dns64Prefix, "64:ff9b::");
  assertEquals(parse("server 9.9.9.9\ndns64 64:ff9b::/96\ndns64 -\n").rules.dns64Prefix, undefined);
  assertThrows(() => parse("server 9.9.9.9\ndns64 64:ff9b::/64\n"), /:2:7: dns64: .*only \/96 prefixes/);
  assertEquals(parse("server 9.9.9.9\n").rules.maxReplyIpNum, 8);
  assertEquals(parse("server 9.9.9.9\nmax-reply-ip-num 2\n").rules.maxReplyIpNum, 2);
});

Deno.test("smartdns.conf: client groups are whole policies; bind flags and -group are read", () => {
  const c = parse(`server 9.9.9.9
server 10.0.0.1 -group office -exclude-default-group
bind :53 -group office -no-cache -no-rule-soa
address /ads.example/#
client-rules 192.168.1.50/32 -group kids
group-begin kids
address /games.example/#
force-AAAA-SOA yes
group-end
group-begin guests
group-match -client-ip 192.168.2.0/24
group-end
`);
  assertEquals(c.server.binds[0].group, "office");
  assertEquals(c.server.binds[0].flags, ["no-cache", "no-rule-soa"]);
  assertEquals(c.rules.domainRules.map((r) => r.domains[0]), ["ads.example"]);
  assertEquals(c.rules.forceAAAASOA, false);
  assertEquals(c.groups.map((g) => [g.name, g.clients]), [["kids", ["192.168.1.50/32"]], ["guests", [
    "192.168.2.0/24",
  ]]]);
  assertEquals(c.groups[0].rules.domainRules.map((r) => r.domains[0]), ["ads.example", "games.example"]);
  assert(c.groups[0].rules.forceAAAASOA);
  assertEquals(c.groups[1].rules.domainRules.length, 1);
  assertThrows(
    () => parse("server 9.9.9.9\ngroup-begin kids\ncache-size 10\n"),
    /:3:1: cache-size cannot be inside group-begin kids/,
  );
  assertThrows(
    () => parse("server 9.9.9.9\nclient-rules 10.0.0.0/8 -group nowhere\n"),
    /:2:14: client-rules: no group-begin nowhere/,
  );
  assertThrows(
    () => parse("server 9.9.9.9\nbind :53 -group nope\n"),
    /bind -group: no usable server is in group "nope"/,
  );
});

Deno.test("smartdns.conf: server-quic is DNS over QUIC (port 853); server-h3 is reported as not built", () => {
  const c = parse(
    "server-quic 192.0.2.1 -host-name doq.test -k\nserver-h3 192.0.2.2\nserver h3://192.0.2.3\n",
  );
  assertEquals(c.upstreams.length, 1);
  const [u] = c.upstreams;
  assertEquals([u.transport, u.host, u.port], ["quic", "192.0.2.1", 853]);
  assertEquals(u.tls, { verifyCertificate: false, spkiPins: [], hostName: "doq.test" });
  assertEquals(c.unsupported.map((x) => `${x.name}@${x.source.line}`), ["server-h3@2", "server h3://@3"]);
  assertMatch(c.unsupported[0].reason ?? "", /DNS over HTTP\/3 is not built: Deno's fetch has no HTTP\/3/);
  // By host name, resolved through the bootstrap servers as for DoT; -host-ip pins it.
  const [, named, pinned] = parse(
    "server 192.0.2.53\nserver-quic doq.example\nserver quic://DoQ.Example:8853 -host-ip 192.0.2.8\n",
  ).upstreams;
  assertEquals([named.transport, named.name, named.port, named.hostIp], [
    "quic",
    "doq.example",
    853,
    undefined,
  ]);
  assertEquals([pinned.transport, pinned.name, pinned.port, pinned.hostIp], [
    "quic",
    "doq.example",
    8853,
    "192.0.2.8",
  ]);
});

Deno.test("smartdns.conf: proxy-server, -proxy, -set-mark and -interface", () => {
  const c = parse(
    "server 192.0.2.1 -proxy s\n" +
      "server-tcp 192.0.2.2 -p h\n" +
      "server 192.0.2.3 -proxy d -set-mark 0x10 -interface lo\n" +
      "proxy-server socks5://user:p@ss@127.0.0.1 -name s\n" +
      "proxy-server http://[::1]:8080 -name h\n" +
      "proxy-server direct:// -name d\n",
  );
  assertEquals(c.upstreams[0].proxy, {
    name: "s",
    kind: "socks5",
    host: "127.0.0.1",
    port: 1080,
    username: "user",
    password: "p@ss",
    source: { file: "/etc/smartdns/smartdns.conf", line: 4, col: 14 },
  });
  assertEquals(c.upstreams[1].proxy?.kind, "http");
  assertEquals([c.upstreams[1].proxy?.host, c.upstreams[1].proxy?.port], ["::1", 8080]);
  assertEquals(c.upstreams[2].proxy, undefined, "a direct:// proxy is no proxy");
  assertEquals([c.upstreams[2].setMark, c.upstreams[2].interface], [16, "lo"]);
  assertEquals(c.unsupported, []);
  assertThrows(
    () => parse("server 9.9.9.9\nproxy-server socks5://127.0.0.1\n"),
    /:2:1: proxy-server: -name is missing/,
  );
  assertThrows(
    () => parse("server 9.9.9.9\nproxy-server socks4://127.0.0.1 -name a\n"),
    /:2:14: proxy-server: unknown proxy scheme "socks4:\/\/"/,
  );
  assertThrows(
    () =>
      parse("server 9.9.9.9\nproxy-server socks5://1.2.3.4 -name a\nproxy-server http://1.2.3.4 -name a\n"),
    /:3:1: proxy-server: "a" is defined twice/,
  );
  assertThrows(() => parse("server 9.9.9.9 -set-mark x\n"), /-set-mark "x" is not a mark/);
  assertThrows(
    () => parse("server 9.9.9.9\nproxy-server socks5://proxy.lan:1080 -name a\n"),
    /:2:14: proxy-server: "proxy.lan:1080": give the proxy's IP address/,
  );
  const k = parse("server-tls 192.0.2.9 -tcp-keepalive 1200\nserver 192.0.2.8 -tcp-keepalive 10\n");
  assertEquals(k.upstreams.map((u) => u.tcpKeepalive), [1200, undefined]);
  assertMatch(k.warnings[0].message, /-tcp-keepalive is sent to TCP and TLS servers only .*; ignored/);
});

Deno.test("smartdns.conf: edns-client-subnet and server -subnet, one per family, as SmartDNS reads them", () => {
  const c = parse(`
edns-client-subnet 1.2.3.4/24
edns-client-subnet 2001:db8:1::/48
edns-client-subnet 5.6.7.8/16
server 9.9.9.9 -subnet 10.0.0.0/0 -subnet-all-query-types
server 192.0.2.1 -check-edns -subnet 2001:db8::1
`);
  // A later line replaces its family's subnet; the host bits are cleared.
  assertEquals(c.server.clientSubnet, ["5.6.0.0/16", "2001:db8:1::/48"]);
  // SmartDNS reads /0 (or no length) as the whole address; /0 is said so.
  assertEquals(c.upstreams.map((u) => u.clientSubnet), [["10.0.0.0/32"], ["2001:db8::1/128"]]);
  assertEquals(c.upstreams.map((u) => [u.subnetAllQueryTypes, u.checkEdns]), [[true, undefined], [
    undefined,
    true,
  ]]);
  assertEquals(c.warnings.map((w) => `${w.source.line}:${w.source.col} ${w.message}`), [
    '5:24 server: "10.0.0.0/0" read as 10.0.0.0/32, as SmartDNS reads /0',
  ]);
  assertEquals(c.unsupported, []);
});

Deno.test("smartdns.conf: edns-client-subnet in a client group is laid over the global one by family", () => {
  const c = parse(`
edns-client-subnet 1.2.3.0/24
edns-client-subnet 2001:db8::/56
server 9.9.9.9
client-rules 192.168.1.0/24 -group kids
group-begin kids
edns-client-subnet 9.9.9.0/24
group-end
group-begin guests
group-end
`);
  assertEquals(c.server.clientSubnet, ["1.2.3.0/24", "2001:db8::/56"]);
  assertEquals(c.groups.map((g) => [g.name, g.clientSubnet]), [
    ["kids", ["2001:db8::/56", "9.9.9.0/24"]],
    ["guests", undefined],
  ]);
});

Deno.test("smartdns.conf: a bad subnet is refused at its word", () => {
  for (
    const [text, pattern] of [
      ["edns-client-subnet 1.2.3.0/33\nserver 9.9.9.9\n", /:1:20: edns-client-subnet: .*0\.\.32/],
      ["server 9.9.9.9 -subnet cdn.example\n", /:1:24: server: "cdn\.example" is not an IPv4 address/],
      [
        "server 9.9.9.9\ngroup-begin kids\nedns-client-subnet ::/200\ngroup-end\n",
        /:3:20: edns-client-subnet: .*0\.\.128/,
      ],
    ] as const
  ) {
    const e = assertThrows(() => parse(text), pattern);
    assert(e instanceof ConfigError);
  }
});

Deno.test("smartdns.conf: speed check, response mode and dual-stack, with SmartDNS's defaults", () => {
  const d = parse("server 9.9.9.9\n").rules;
  assertEquals(d.speedCheck, [{ kind: "ping" }, { kind: "tcp", port: 80 }, { kind: "tcp", port: 443 }]);
  assertEquals([d.responseMode, d.blockingAnswerVote], ["first-ping", true]);
  assertEquals(d.dualstack, { enabled: true, thresholdMs: 10, allowForceAAAA: false });
  const c = parse(
    "server 9.9.9.9\nspeed-check-mode tcp-syn:8443,ping,none,tcp:80\nresponse-mode fastest-response\n" +
      "dualstack-ip-selection no\ndualstack-ip-selection-threshold 30\ndualstack-ip-allow-force-AAAA yes\n",
  ).rules;
  assertEquals(c.speedCheck, [{ kind: "tcp", port: 8443 }, { kind: "ping" }], "none ends the list");
  assertEquals(c.responseMode, "fastest-response");
  assertEquals(c.dualstack, { enabled: false, thresholdMs: 30, allowForceAAAA: true });
  assertEquals(parse("server 9.9.9.9\nspeed-check-mode none\n").rules.speedCheck, []);
});

Deno.test("smartdns.conf: servers by host name, -bootstrap-dns and -host-ip", () => {
  const c = parse(
    "server 192.0.2.53 -bootstrap-dns -group boot\n" +
      "server-tls dns.example\n" +
      "server-https https://doh.example:8443/q -host-ip 192.0.2.8\n" +
      "server udp.example:5353 -host-name x\n" +
      "server tcp://DNS.Example. -host-ip 2001:db8::1\n" +
      "server 192.0.2.1 -host-ip 192.0.2.2\n",
  );
  const [boot, tls, https, udp, tcp, ip] = c.upstreams;
  assertEquals(boot.bootstrap, true);
  assertEquals(boot.excludeDefault, true, "SmartDNS moves a -bootstrap-dns server out of the default group");
  assertEquals(boot.groups, ["boot"]);
  assertEquals([tls.transport, tls.host, tls.name, tls.port, tls.hostIp], [
    "tls",
    "dns.example",
    "dns.example",
    853,
    undefined,
  ]);
  assertEquals(tls.tls?.hostName, undefined, "the SNI default (the name) is applied when used, not written");
  assertEquals([https.name, https.port, https.path, https.hostIp], ["doh.example", 8443, "/q", "192.0.2.8"]);
  assertEquals([udp.transport, udp.name, udp.port], ["udp", "udp.example", 5353]);
  assertEquals([tcp.transport, tcp.name, tcp.hostIp], ["tcp", "dns.example", "2001:db8::1"]);
  assertEquals(
    [ip.host, ip.name, ip.hostIp],
    ["192.0.2.1", undefined, undefined],
    "-host-ip is for names only",
  );
  assertEquals(c.upstreams.length, 6, "no resolv.conf servers added: there is a bootstrap server");
  assert(
    c.warnings.some((w) => w.source.line === 4 && /-host-name only applies to encrypted/.test(w.message)),
  );
  assertThrows(
    () => parse("server 192.0.2.1\nserver-tls dns.example -host-ip dns.other"),
    /:2:1: server-tls: -host-ip "dns.other" is not an IP address/,
  );
});

Deno.test("smartdns.conf: which servers resolve names, and a name nothing can resolve", () => {
  // No -bootstrap-dns: the servers of the default group given by IP address resolve them.
  assertEquals(parse("server 192.0.2.1\nserver-tls dns.example\n").upstreams.length, 2);
  // A bootstrap server given by name would need another to resolve it.
  assertThrows(
    () => parse("server 192.0.2.1\nserver-tls dns.example -bootstrap-dns\n"),
    /:2:12: dns.example: a bootstrap server cannot itself be given by host name/,
  );
  // ... unless -host-ip pins it.
  assertEquals(
    parse("server-tls dns.example -bootstrap-dns -host-ip 192.0.2.9\nserver b.example\n").upstreams.length,
    2,
  );
  // Nothing but names (an IP server outside the default group does not count): resolv.conf's
  // nameservers become the bootstrap servers, as SmartDNS asks getaddrinfo.
  files["/etc/resolv.conf"] = "# system\nnameserver 192.0.2.200\nnameserver fe80::1%eth0\n";
  try {
    const c = parse("server 192.0.2.1 -group g -exclude-default-group\nserver-tls dns.example\n");
    assertEquals(c.upstreams.length, 3);
    const added = c.upstreams[2];
    assertEquals([added.host, added.port, added.bootstrap, added.excludeDefault], [
      "192.0.2.200",
      53,
      true,
      true,
    ]);
    files["/etc/resolv.conf"] = "# nothing\n";
    assertThrows(
      () => parse("server-tls dns.example\n"),
      /:1:12: dns.example: nothing can resolve this host name: no bootstrap server .*no nameserver in \/etc\/resolv.conf/,
    );
  } finally {
    delete files["/etc/resolv.conf"];
  }
});

Deno.test("smartdns.conf: domain-rules -c/-r/-d and speed settings inside a client group", () => {
  const c = parse(
    "server 9.9.9.9\ndomain-rules /a.test/ -c none -r fastest-ip -d no\n" +
      "domain-rules /b.test/ -speed-check-mode tcp:443\n" +
      "client-rules 192.168.1.0/24 -group kids\ngroup-begin kids\nspeed-check-mode tcp:8080\n" +
      "response-mode fastest-response\ndualstack-ip-selection no\ngroup-end\n",
  );
  const [a, b] = c.rules.domainRules;
  assertEquals([a.speedCheck, a.responseMode, a.dualstack], [[], "fastest-ip", false]);
  assertEquals(b.speedCheck, [{ kind: "tcp", port: 443 }]);
  assertEquals(c.unsupported, []);
  assertEquals(c.rules.responseMode, "first-ping", "the default policy keeps its own");
  const kids = c.groups[0].rules;
  assertEquals([kids.speedCheck, kids.responseMode, kids.dualstack.enabled], [
    [{ kind: "tcp", port: 8080 }],
    "fastest-response",
    false,
  ]);
});

Deno.test("smartdns.conf: server-quic -proxy refuses the file (Deno's QUIC cannot be tunnelled); direct:// is fine", () => {
  assertThrows(
    () => parse("server 9.9.9.9\nserver-quic 192.0.2.9 -proxy s\nproxy-server socks5://127.0.0.1 -name s\n"),
    /:2:1: server-quic -proxy \(DNS over QUIC\) is not supported yet.*QUIC endpoint sends its own UDP packets/,
  );
  const c = parse("server-quic 192.0.2.9 -proxy d\nproxy-server direct:// -name d\n");
  assertEquals([c.upstreams[0].transport, c.upstreams[0].proxy], ["quic", undefined]);
});

Deno.test("smartdns.conf: rr-ttl-reply-max and cache-mem-size (with SmartDNS's size suffixes)", () => {
  const c = parse("server 9.9.9.9\nrr-ttl-reply-max 30\ncache-mem-size 32m\n");
  assertEquals([c.cache.rrTtlReplyMax, c.cache.memSize], [30, 32 * 1024 * 1024]);
  assertEquals(c.unsupported, []);
  assertEquals(parse("server 9.9.9.9\ncache-mem-size 512k\n").cache.memSize, 512 * 1024);
  assertEquals(parse("server 9.9.9.9\ncache-mem-size 1g\n").cache.memSize, 1024 ** 3);
  assertEquals(parse("server 9.9.9.9\n").cache.memSize, 0);
  assertEquals(parse("server 9.9.9.9\n").cache.rrTtlReplyMax, 0);
  assertThrows(() => parse("server 9.9.9.9\nrr-ttl-reply-max soon\n"), /rr-ttl-reply-max/);
});

Deno.test("smartdns.conf: serve-expired is on unless set to no; its window and reply TTL are read", () => {
  const on = parse("server 9.9.9.9\nserve-expired-ttl 600\nserve-expired-reply-ttl 5\n").cache;
  assertEquals([on.serveExpired, on.serveExpiredTtl, on.serveExpiredReplyTtl], [true, 600, 5]);
  assertEquals(parse("server 9.9.9.9\nserve-expired no\n").cache.serveExpired, false);
  assertEquals(parse("server 9.9.9.9\nserve-expired no\n").unsupported, []);
});

Deno.test("smartdns.conf: prefetch-domain, serve-expired-prefetch-time and domain-rules -no-serve-expired are honoured", () => {
  const c = parse(
    "server 9.9.9.9\nprefetch-domain yes\nserve-expired-prefetch-time 60\ndomain-rules /a.example/ -no-serve-expired -c none\n",
  );
  assertEquals(c.unsupported, []);
  // SmartDNS HEAD sets its defaults before reading the file: serve-expired-ttl stays 86400.
  assertEquals([c.cache.prefetch, c.cache.serveExpiredPrefetchTime, c.cache.serveExpiredTtl], [
    true,
    60,
    86400,
  ]);
  assertEquals(c.rules.domainRules[0].noServeExpired, true);
  assertEquals(parse("server 9.9.9.9\n").cache.prefetch, false, "off unless set, as in SmartDNS");
});

Deno.test("smartdns.conf: audit-* take SmartDNS's defaults and forms; a bad mode is refused at its line", () => {
  const c = parse("server 9.9.9.9\naudit-enable yes\n");
  assertEquals(c.audit, {
    enable: true,
    file: "/var/log/smartdns/smartdns-audit.log",
    size: 128 * 1024,
    num: 2,
    fileMode: 0o640,
    console: false,
    soa: false,
    queryLogSize: 0,
  });
  assertEquals(parse("server 9.9.9.9\naudit-SOA yes\naudit-file-mode 0644\n").audit.soa, true);
  assertEquals(parse("server 9.9.9.9\naudit-file-mode 0644\n").audit.fileMode, 0o644);
  assertEquals(c.unsupported, []);
  assertThrows(
    () => parse("server 9.9.9.9\naudit-file-mode 888\n"),
    /^\/etc\/smartdns\/smartdns\.conf:2:17: audit-file-mode: "888" is not an octal file mode/,
  );
  assertEquals(parse("server 9.9.9.9\nlog-console no\nlog-file-mode 600\n").log.console, false);
});
