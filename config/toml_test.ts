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
  assertEquals(c.log, { level: "debug", file: "/tmp/k.log", size: 256 * 1024, num: 2 });
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
    ['[[upstream]]\ngroups = ["x"]\n', /^k\.toml:1:1: \[\[upstream\]\] #1 has no address/],
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
