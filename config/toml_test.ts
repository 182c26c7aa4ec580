import { assert, assertEquals, assertThrows } from "../tests/helpers/assert.ts";
import { EMBEDDED_CONFIG_TOML } from "./defaults.ts";
import { ConfigError } from "./errors.ts";
import { loadConfig } from "./load.ts";
import { parseTomlConfig } from "./toml.ts";

Deno.test("the embedded default serves 127.0.0.1:5353 over UDP and TCP with public upstreams", () => {
  const c = loadConfig();
  assertEquals(c.server.binds.map((b) => `${b.transport}://${b.host}:${b.port}`), [
    "udp://127.0.0.1:5353",
    "tcp://127.0.0.1:5353",
  ]);
  assertEquals(c.upstreams.length, 3);
  assert(EMBEDDED_CONFIG_TOML.includes("[[upstream]]"));
});

Deno.test("TOML: every key is read", () => {
  const c = parseTomlConfig(
    `
[server]
bind = ["[::1]:53"]
bind-udp = "0.0.0.0:5300"
bind-tcp = ["tcp://127.0.0.1:5301"]
tcp-idle-time = 10
max-tcp-connections = 64
upstream-timeout = 900

[[upstream]]
address = "tcp://192.0.2.1:5353"
groups = ["lan"]
exclude-default-group = true

[[upstream]]
address = "2001:db8::53"

[cache]
size = -1
rr-ttl-min = 10
rr-ttl-max = 3600

[log]
level = "debug"
file = "/tmp/k.log"
size = "256k"
num = 2
`,
    "k.toml",
  );
  assertEquals(c.server.binds.map((b) => `${b.transport}://${b.host}:${b.port}`), [
    "udp://::1:53",
    "tcp://::1:53",
    "udp://0.0.0.0:5300",
    "tcp://127.0.0.1:5301",
  ]);
  assertEquals(c.server.tcpIdleTime, 10);
  assertEquals(c.server.maxTcpConnections, 64);
  assertEquals(c.server.upstreamTimeout, 900);
  assertEquals(c.upstreams[0], {
    transport: "tcp",
    host: "192.0.2.1",
    port: 5353,
    groups: ["lan"],
    excludeDefault: true,
    source: { file: "k.toml", line: 11, col: 1 },
  });
  assertEquals(c.upstreams[1].host, "2001:db8::53");
  assertEquals(c.cache.size, 16384);
  assertEquals(c.cache.rrTtlMin, 10);
  assertEquals(c.log, {
    level: "debug",
    file: "/tmp/k.log",
    size: 256 * 1024,
    num: 2,
    console: true,
    fileMode: 0o640,
  });
});

Deno.test("TOML: errors point at file:line:col", () => {
  const cases: [string, RegExp][] = [
    ["[server]\nbind = [\n", /^k\.toml:3:1: /],
    ['[[upstream]]\naddress = "1.1.1.1"\n[cache]\nsize = "big"\n', /^k\.toml:4:1: size must be an integer/],
    [
      '[[upstream]]\naddress = "1.1.1.1"\n\n[[upstream]]\naddress = "h3://1.1.1.1"\n',
      /^k\.toml:5:1: address: h3:\/\/ upstreams are not supported yet/,
    ],
    [
      '[[upstream]]\naddress = "1.1.1.1"\n[sever]\n',
      /^k\.toml:3:1: unknown key "sever" \(did you mean "server"\?\)/,
    ],
    [
      '[[upstream]]\naddress = "1.1.1.1"\n[log]\n  levle = "info"\n',
      /^k\.toml:4:3: unknown key "levle" in \[log\] \(did you mean "level"\?\)/,
    ],
    ["[server]\n", /^k\.toml:1:1: no \[\[upstream\]\] servers are configured/],
    [
      '[[upstream]]\naddress = "1.1.1.1"\n[rules]\nspeed-check-mode = "ping,udp:53"\n',
      /^k\.toml:4:1: .*unknown speed check "udp:53"/,
    ],
    [
      '[[upstream]]\naddress = "1.1.1.1"\n[rules]\nresponse-mode = "fastest"\n',
      /^k\.toml:4:1: .*response-mode/,
    ],
    ['[[upstream]]\ngroups = ["x"]\n', /^k\.toml:1:1: \[\[upstream\]\] #1 has no address/],
    [
      '[[upstream]]\naddress = "tls://dns.example"\n',
      /^k\.toml:2:1: dns.example: nothing can resolve this host name: no bootstrap server .*by IP address; add one/,
    ],
    [
      '[[upstream]]\naddress = "tls://dns.example"\nbootstrap = true\n',
      /^k\.toml:2:1: dns.example: a bootstrap server cannot itself be given by host name/,
    ],
    [
      '[[upstream]]\naddress = "tls://dns.example"\nhost-ip = "x"\n',
      /^k\.toml:3:1: host-ip "x" is not an IP/,
    ],
    [
      '[[upstream]]\naddress = "1.1.1.1"\nhost-ip = "1.1.1.2"\n',
      /^k\.toml:3:1: host-ip is only for a server whose/,
    ],
  ];
  for (const [text, pattern] of cases) {
    const e = assertThrows(() => parseTomlConfig(text, "k.toml"), pattern);
    assert(e instanceof ConfigError);
  }
});

Deno.test("TOML: [guardian] settings, with a suggestion for a misspelt choice", () => {
  const c = parseTomlConfig(
    '[[upstream]]\naddress = "1.1.1.1"\n[guardian]\nwatchdog-timeout = 2\nstartup-timeout = 90\nmax-memory = "256m"\n' +
      'crash-files = 3\noptimize-for = "memory"\n',
    "k.toml",
  );
  assertEquals(c.guardian, {
    watchdogTimeout: 2,
    startupTimeout: 90,
    maxMemory: 256 * 1024 * 1024,
    crashFiles: 3,
    optimizeFor: "memory",
  });
  assertThrows(
    () =>
      parseTomlConfig('[[upstream]]\naddress = "1.1.1.1"\n[guardian]\noptimize-for = "memroy"\n', "k.toml"),
    /^k\.toml:4:1: optimize-for must be one of speed, memory \(did you mean "memory"\?\)/,
  );
});

Deno.test("TOML: edns-client-subnet and the upstream subnet options", () => {
  const c = parseTomlConfig(
    `
[server]
edns-client-subnet = "1.2.3.4/24"
[[upstream]]
address = "9.9.9.9"
subnet = ["2001:db8::/56", "0.0.0.0/0"]
subnet-all-query-types = true
check-edns = true
[[upstream]]
address = "1.1.1.1"
[[group]]
name = "kids"
clients = ["192.168.1.0/24"]
edns-client-subnet = ["9.9.9.0/24", "2001:db8:9::/48"]
[[group]]
name = "guests"
clients = ["192.168.2.0/24"]
`,
    "k.toml",
  );
  assertEquals(c.server.clientSubnet, ["1.2.3.0/24"]);
  assertEquals(c.groups.map((g) => g.clientSubnet), [["9.9.9.0/24", "2001:db8:9::/48"], undefined]);
  // In TOML /0 is a zero-length prefix (no address sent), not SmartDNS's whole address.
  assertEquals(c.upstreams[0].clientSubnet, ["2001:db8::/56", "0.0.0.0/0"]);
  assertEquals([c.upstreams[0].subnetAllQueryTypes, c.upstreams[0].checkEdns], [true, true]);
  assertEquals([c.upstreams[1].clientSubnet, c.upstreams[1].checkEdns], [undefined, undefined]);
  for (
    const [text, pattern] of [
      [
        '[server]\nedns-client-subnet = "1.2.3.0/40"\n[[upstream]]\naddress = "9.9.9.9"',
        /edns-client-subnet: .*0\.\.32/,
      ],
      ['[[upstream]]\naddress = "9.9.9.9"\nsubnet = ["1.2.3.0/24", "5.6.7.0/24"]', /at most one IPv4 subnet/],
      ['[[upstream]]\naddress = "9.9.9.9"\ncheck-edns = "yes"', /check-edns must be true or false/],
    ] as const
  ) {
    const e = assertThrows(() => parseTomlConfig(text, "k.toml"), pattern);
    assert(e instanceof ConfigError);
  }
});

Deno.test("TOML: the speed check, response mode and dual-stack keys; off unless set", () => {
  const off = parseTomlConfig('[[upstream]]\naddress = "1.1.1.1"\n', "k.toml").rules;
  assertEquals([off.speedCheck, off.dualstack.enabled, off.blockingAnswerVote], [[], false, false]);
  const on = parseTomlConfig(
    '[[upstream]]\naddress = "1.1.1.1"\n[rules]\nspeed-check-mode = "ping,tcp:443"\nresponse-mode = "fastest-ip"\n' +
      "dualstack-ip-selection = true\ndualstack-ip-selection-threshold = 25\n",
    "k.toml",
  ).rules;
  assertEquals(on.speedCheck, [{ kind: "ping" }, { kind: "tcp", port: 443 }]);
  assertEquals(on.responseMode, "fastest-ip");
  assertEquals(on.dualstack, { enabled: true, thresholdMs: 25, allowForceAAAA: false });
});

Deno.test("TOML: an upstream by host name, pinned with host-ip or resolved through a bootstrap server", () => {
  const c = parseTomlConfig(
    '[[upstream]]\naddress = "192.0.2.53"\nbootstrap = true\nexclude-default-group = true\n\n' +
      '[[upstream]]\naddress = "tls://Dns.Example."\n\n' +
      '[[upstream]]\naddress = "https://doh.example/dns-query"\nhost-ip = "2001:db8::8"\n',
    "k.toml",
  );
  const [boot, tls, https] = c.upstreams;
  assertEquals([boot.bootstrap, boot.excludeDefault, boot.name], [true, true, undefined]);
  assertEquals([tls.host, tls.name, tls.port, tls.hostIp], ["dns.example", "dns.example", 853, undefined]);
  assertEquals([https.name, https.hostIp, https.path], ["doh.example", "2001:db8::8", "/dns-query"]);
});

Deno.test('TOML: [cache] rr-ttl-reply-max and mem-size (bytes or text such as "16m")', () => {
  const read = (cache: string) =>
    parseTomlConfig(`[[upstream]]\naddress = "9.9.9.9"\n[cache]\n${cache}\n`, "k.toml").cache;
  const c = read('rr-ttl-reply-max = 20\nmem-size = "16m"');
  assertEquals([c.rrTtlReplyMax, c.memSize], [20, 16 * 1024 * 1024]);
  assertEquals(read("mem-size = 65536").memSize, 65536);
  assertEquals([read("").rrTtlReplyMax, read("").memSize], [0, 0]);
  assertThrows(() => read("rr-ttl-reply-max = -1"), /rr-ttl-reply-max/);
  assertThrows(() => read('mem-size = "lots"'), /mem-size/);
});

Deno.test("TOML: [cache] serve-expired is off unless set; its window and reply TTL", () => {
  const read = (cache: string) =>
    parseTomlConfig(`[[upstream]]\naddress = "9.9.9.9"\n[cache]\n${cache}\n`, "k.toml").cache;
  const off = read("");
  assertEquals([off.serveExpired, off.serveExpiredTtl, off.serveExpiredReplyTtl], [false, 86400, 3]);
  const on = read("serve-expired = true\nserve-expired-ttl = 0\nserve-expired-reply-ttl = 10");
  assertEquals([on.serveExpired, on.serveExpiredTtl, on.serveExpiredReplyTtl], [true, 0, 10]);
  assertThrows(() => read('serve-expired = "yes"'), /serve-expired/);
  assertThrows(() => read("serve-expired-reply-ttl = -1"), /serve-expired-reply-ttl/);
});

Deno.test("TOML: [cache] prefetch and serve-expired-prefetch-time; [[rule]] no-serve-expired", () => {
  const read = (cache: string, rule = "") =>
    parseTomlConfig(`[[upstream]]\naddress = "9.9.9.9"\n[cache]\n${cache}\n${rule}`, "k.toml");
  const off = read("").cache;
  assertEquals([off.prefetch, off.serveExpiredPrefetchTime], [false, 0]);
  const on = read("prefetch = true\nserve-expired-prefetch-time = 30").cache;
  assertEquals([on.prefetch, on.serveExpiredPrefetchTime], [true, 30]);
  assertThrows(() => read('prefetch = "yes"'), /prefetch/);
  assertThrows(() => read("serve-expired-prefetch-time = -1"), /serve-expired-prefetch-time/);
  const rules = read("", '[[rule]]\ndomains = ["a.example"]\nno-serve-expired = true\n').rules.domainRules;
  assertEquals(rules[0].noServeExpired, true);
  assertThrows(
    () => read("", '[[rule]]\ndomains = ["a.example"]\nno-serve-expired = 1\n'),
    /no-serve-expired/,
  );
});

Deno.test("TOML: [metrics] enable turns the query statistics off; absent, they are on; other keys are refused", () => {
  const base = '[[upstream]]\naddress = "1.1.1.1"\n';
  assertEquals(parseTomlConfig(base, "k.toml").metrics, undefined);
  assertEquals(parseTomlConfig(base + "[metrics]\nenable = false\n", "k.toml").metrics, { enable: false });
  assertEquals(parseTomlConfig(base + "[metrics]\n", "k.toml").metrics, { enable: true });
  assertThrows(() => parseTomlConfig(base + "[metrics]\nenabled = false\n", "k.toml"), /^k\.toml:4:1: /);
  assertThrows(() => parseTomlConfig(base + '[metrics]\nenable = "no"\n', "k.toml"), /^k\.toml:4:/);
});

Deno.test("TOML: [audit] and the log's console and file-mode", () => {
  const c = parseTomlConfig(
    '[[upstream]]\naddress = "9.9.9.9"\n[audit]\nenable = true\nfile = "/tmp/a.log"\nsize = "64k"\n' +
      'file-mode = 0o600\nquery-log-size = 10000\n[log]\nconsole = false\nfile-mode = "644"\n',
    "k.toml",
  );
  assertEquals(c.audit, {
    enable: true,
    file: "/tmp/a.log",
    size: 64 * 1024,
    num: 2,
    fileMode: 0o600,
    console: false,
    soa: true,
    queryLogSize: 10000,
  });
  assertEquals([c.log.console, c.log.fileMode], [false, 0o644]);
  assertThrows(
    () => parseTomlConfig('[[upstream]]\naddress = "9.9.9.9"\n[audit]\nfile-mode = 640\n', "k.toml"),
    /^k\.toml:4:1: file-mode must be an octal mode such as 0o640/,
  );
});
