import { isDeepStrictEqual } from "node:util";
import { assert, assertEquals, assertMatch, assertThrows } from "../tests/helpers/assert.ts";
import { convertToToml } from "./convert.ts";
import { EMBEDDED_CONFIG_TOML } from "./defaults.ts";
import type { Config } from "./schema.ts";
import { parseSmartdnsConf } from "./smartdns_conf.ts";
import { parseTomlConfig } from "./toml.ts";

const CONF = "/etc/smartdns/smartdns.conf";
const OUT = "/etc/keeldns/keeldns.toml";

/** A smartdns.conf with every directive convert has a TOML equivalent for, and some it has not. */
const RICH = `# SmartDNS for the office
# (kept at the top)

# LAN listener
bind [::]:53 -no-ip-alias
bind 0.0.0.0:5300 # the second one
bind-tcp 127.0.0.1:5353
bind-tcp [::1]:5353
tcp-idle-time 30

# upstreams: the default group
server 9.9.9.9
server 1.1.1.1:5353 -group cf -exclude-default-group
server-tcp [2606:4700::1111] -g cf -g dual
server tcp://8.8.8.8 -check-edns -hitchhiking
server-tls 1.1.1.1
server 10.0.0.1 -group office -e
server udp://192.0.2.53:5353 -grop x
cache-size 2048
cache-size 128k
rr-ttl 5
rr-ttl-min 60
rr-ttl-max 3600
rr-ttl-reply-max 60
cache-mem-size 16m
cache-file cache/smartdns.cache
cache-checkpoint-time 600
log-level warning
log-file "/var/log/smart \\"dns\\".log"
log-size 1m
log-num 3
speed-check-mode ping,tcp:80
# block ads
address /ads.example/tracker.example/#
address /v6.example/#6
address /mixed.example/192.0.2.1,2001:db8::1,192.0.2.2
address /-.bücher.example/-
address /*.wild.example/-4
address #6
nameserver /corp.example/office
nameserver /back.example/-
cname /alias.example/target.example
cname /no-alias.example/-
domain-rules /multi.example/ -a 192.0.2.9 -n office -speed-check-mode none -T "a text"
domain-rules /only-deferred.example/ -no-ip-alias
domain-set -name ads -type list -file lists/ads.txt
domain-set -n abs -f /var/lib/lists/abs.txt
address /domain-set:ads/#
nameserver /domain-set:abs/cf
srv-record /_sip._tcp.example/sip.example,5060,1,2
srv-record /_none._tcp.example/
txt-record /txt.example/hello
txt-record /txt.example/quote"inside
force-qtype-SOA 65 28,64-66 -,64
force-AAAA-SOA yes
local-ttl 300
hosts-file /etc/hosts
# the lab's names
hosts-file hosts.d/lab.hosts
dnsmasq-lease-file /tmp/dhcp.leases
server-name gw.lan
resolv-hostname no
max-reply-ip-num 4
dns64 64:ff9b::/96
expand-ptr-from-address yes
sever 1.2.3.4
smartdns-ui.ip http://0.0.0.0:6080
conf-file extra.conf
no-daemon yes
restart-on-crash yes
`;

const EXTRA =
  "# from the included file\nserver 8.8.4.4 -group cf\ndebug-save-fail-packet yes\nrr-ttl-max 7200\n";

const FILES: Record<string, string> = { [CONF]: RICH, "/etc/smartdns/extra.conf": EXTRA };
const read = (path: string) => {
  if (!(path in FILES)) throw new Error("No such file");
  return FILES[path];
};

/** The model without what cannot be the same in another file: paths, positions, reports, texts. */
function comparable(c: Config): unknown {
  const strip = (value: unknown): unknown => {
    if (Array.isArray(value)) return value.map(strip);
    if (value === null || typeof value !== "object") return value;
    return Object.fromEntries(
      Object.entries(value).filter(([k, v]) => k !== "source" && v !== undefined).map((
        [k, v],
      ) => [k, strip(v)]),
    );
  };
  const { path: _path, format: _format, unsupported: _u, warnings: _w, ...rest } = c;
  // keeldns.toml has no way to say "the self names, under the host name" (SmartDNS's default):
  // convert writes server-name "smartdns" with resolv-hostname, which answers the same names.
  const { selfNames, serverName, resolvHostname, ...rules } = rest.rules;
  const selfNamesAnswered = [
    ...(selfNames ? ["smartdns", serverName ?? "<host name>"] : []),
    ...(resolvHostname ? ["<host name>"] : []),
  ];
  return strip({
    ...rest,
    rules: {
      ...rules,
      selfNamesAnswered: [...new Set(selfNamesAnswered)].sort(),
      // `text` is the line as written; `deferred` keeps options of features not built yet: TOML has neither.
      domainRules: rest.rules.domainRules.map(({ text: _t, deferred: _d, ...r }) => r),
    },
  });
}

function roundTrip(
  text: string,
  sources: Record<string, string> | string = text,
): { toml: string; c: Config } {
  const c = parseSmartdnsConf(text, CONF, read);
  const toml = convertToToml(c, sources);
  const back = parseTomlConfig(toml, OUT);
  const diff = (a: unknown, b: unknown, path: string): string[] => {
    if (isDeepStrictEqual(a, b)) return [];
    if (a && b && typeof a === "object" && typeof b === "object") {
      const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
      return [...keys].flatMap((k) =>
        diff((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], `${path}.${k}`)
      );
    }
    return [`${path}: ${JSON.stringify(a)} vs ${JSON.stringify(b)}`];
  };
  assertEquals(
    comparable(back),
    comparable(c),
    `the TOML reads back into another model (${
      diff(comparable(back), comparable(c), "").join("; ")
    }):\n${toml}`,
  );
  return { toml, c };
}

Deno.test("convert: a rich smartdns.conf becomes TOML that reads back into the same model", () => {
  const { toml, c } = roundTrip(RICH, FILES);
  // The parts are all there (not only equal because both sides are empty).
  assertEquals(c.server.binds.length, 4);
  assertEquals(c.upstreams.length, 8);
  assertEquals(c.rules.domainRules.length, 18);
  assertEquals(c.rules.domainSets.length, 2);
  assertEquals(c.cache.rrTtlMax, 7200, "the included file's line counts");
  assertMatch(
    toml,
    /^bind-udp = \[\n {2}# LAN listener\n {2}# not supported yet: bind -no-ip-alias .*\n {2}"\[::\]:53",/m,
  );
  assertMatch(toml, /^bind-tcp = \["127\.0\.0\.1:5353", "\[::1\]:5353"\]$/m);
  assertMatch(
    toml,
    /^file = "\/etc\/smartdns\/lists\/ads\.txt"$/m,
    "a relative domain-set file is written absolute",
  );
  assertMatch(toml, /^ {2}"\/etc\/smartdns\/hosts\.d\/lab\.hosts",$/m);
  assertMatch(toml, /^file = "\/etc\/smartdns\/cache\/smartdns\.cache"$/m);
  assertMatch(toml, /^file = "\/var\/log\/smart \\"dns\\"\.log"$/m);
});

Deno.test("convert: comments stay above what their lines became; nothing disappears", () => {
  const { toml } = roundTrip(RICH, FILES);
  const lines = toml.split("\n");
  const after = (comment: string) => lines[lines.indexOf(comment) + 1];
  assert(toml.indexOf("# SmartDNS for the office\n# (kept at the top)\n") < toml.indexOf("[server]"), toml);
  assertEquals(after("# upstreams: the default group"), "[[upstream]]");
  assertEquals(after("# block ads"), "[[rule]]");
  assertEquals(
    after("# from the included file"),
    "# from /etc/smartdns/extra.conf:2: server 8.8.4.4 -group cf",
  );
  assertEquals(after("  # the second one"), '  "0.0.0.0:5300",');
  assertEquals(after("  # the lab's names"), '  "/etc/smartdns/hosts.d/lab.hosts",');
  assertMatch(
    toml,
    /^# \/etc\/smartdns\/smartdns\.conf:19: "cache-size 2048" is overridden below\nsize = 131072$/m,
  );
  assertMatch(
    toml,
    /^# not supported yet: server -hitchhiking \(the server is used without it\)\n\[\[upstream\]\]$/m,
  );
  assertMatch(toml, /address = "tcp:\/\/8\.8\.8\.8:53"\ncheck-edns = true\n/);
  assertMatch(toml, /^# warning: server: unknown option "-grop" ignored \(did you mean "group"\?\)$/m);
  assertMatch(toml, /^domains = \["multi\.example"\]\n(.*\n)*?speed-check-mode = "none"$/m);
  assertMatch(toml, /^speed-check-mode = "ping,tcp:80"$/m);
  assertMatch(toml, /^response-mode = "first-ping"$/m);
  // The lines that became nothing, in the file's order, at the end.
  const tail = toml.slice(toml.indexOf("# ---- Lines with no TOML equivalent"));
  assertEquals(tail.split("\n").slice(1).filter((l) => l !== ""), [
    '# not supported: sever 1.2.3.4 (unknown directive, ignored; did you mean "server"?)',
    "# no TOML needed: conf-file extra.conf (the lines it includes are converted above)",
    "# not supported yet: /etc/smartdns/extra.conf:3: debug-save-fail-packet yes " +
    "(not built yet; the service runs without it)",
    "# no TOML needed: no-daemon yes (always: foreground)",
    "# no TOML needed: restart-on-crash yes (always: the guardian)",
  ]);
});

Deno.test("convert: SmartDNS's defaults are written out where keeldns.toml's differ", () => {
  // No bind line: SmartDNS listens on UDP [::]:53 only; keeldns.toml without bind would add TCP.
  const { toml } = roundTrip("server 9.9.9.9\n");
  assertMatch(
    toml,
    /# SmartDNS's default: no bind line means UDP on \[::\]:53.*\nbind-udp = \["\[::\]:53"\]/,
  );
  assert(!/^bind-tcp/m.test(toml), toml);
  assertMatch(toml, /^server-name = "smartdns"\nresolv-hostname = true$/m, "SmartDNS's self names");
  // No server line: the nameservers of resolv-file become the upstreams.
  FILES["/etc/smartdns/resolv.conf"] = "nameserver 192.0.2.53\nnameserver 2001:db8::53\n";
  const resolv = roundTrip("resolv-file /etc/smartdns/resolv.conf\nbind :5353\n").toml;
  assertMatch(
    resolv,
    /# no server line: SmartDNS asks the nameservers of resolv-file \/etc\/smartdns\/resolv.conf/,
  );
  assertMatch(resolv, /address = "udp:\/\/\[2001:db8::53\]:53"/);
  assertMatch(resolv, /no TOML needed: resolv-file \/etc\/smartdns\/resolv.conf \(none: list the servers\)/);
});

Deno.test("convert: a TCP listener before a UDP one keeps the order, with schemes", () => {
  const { toml } = roundTrip("bind-tcp :5301\nbind :5300\nserver 9.9.9.9\n");
  assertMatch(toml, /^bind = \["tcp:\/\/\[::\]:5301", "udp:\/\/\[::\]:5300"\]$/m);
});

Deno.test("convert: without the source text, the model alone is converted, and what it noticed is listed", () => {
  const c = parseSmartdnsConf("server 9.9.9.9\ndebug-save-fail-packet yes\nrr-ttl 10ms\n", CONF, read);
  const toml = convertToToml(c);
  assertEquals(comparable(parseTomlConfig(toml, OUT)), comparable(c));
  assertMatch(
    toml,
    /^# not supported yet: debug-save-fail-packet at \/etc\/smartdns\/smartdns.conf:2 \(not built/m,
  );
  assertMatch(toml, /^# warning at \/etc\/smartdns\/smartdns.conf:3: rr-ttl: "10ms" read as 10$/m);
});

Deno.test("convert: a keeldns TOML converts to itself", () => {
  const samples = [
    EMBEDDED_CONFIG_TOML,
    `[server]
bind = ["udp://[::1]:53", "tcp://127.0.0.1:53", "udp://0.0.0.0:5300"]
max-tcp-connections = 64
upstream-timeout = 900
udp-transport = "portable"
[guardian]
watchdog-timeout = 9
max-memory = "256m"
optimize-for = "memory"
[[upstream]]
address = "tcp://192.0.2.1:5353"
groups = ["lan"]
[rules]
force-qtype-soa = [65]
[[rule]]
domains = [""]
address = "#6"
[[rule]]
domains = ["a.example"]
nameserver = "lan"
txt = ["tab\\there", "ünï"]
`,
    `[server]
bind = ["127.0.0.1:53"]
cert-file = "/etc/keeldns/cert.pem"
key-file = "/etc/keeldns/key.pem"
ca-file = "/etc/keeldns/ca.pem"
[[server.listen]]
address = "quic://[::1]"
group = "lan"
[[upstream]]
address = "quic://192.0.2.1:8853"
host-name = "doq.example"
groups = ["lan"]
`,
  ];
  for (const text of samples) {
    const c = parseTomlConfig(text, OUT);
    const toml = convertToToml(c, text);
    assertEquals(comparable(parseTomlConfig(toml, OUT)), comparable(c), toml);
  }
});

Deno.test("server -fallback becomes fallback = true in [[upstream]], and reads back", () => {
  const c = parseSmartdnsConf("server 9.9.9.9\nserver 192.0.2.53 -fallback\n", CONF, () => "");
  assertEquals(c.unsupported, []);
  assertEquals(c.upstreams.map((u) => u.fallback ?? false), [false, true]);
  const toml = convertToToml(c);
  assertMatch(toml, /address = "udp:\/\/192\.0\.2\.53:53"\nfallback = true\n/);
  const back = parseTomlConfig(toml, OUT);
  assertEquals(back.upstreams.map((u) => u.fallback ?? false), [false, true]);
});

Deno.test("server-quic and quic:// become quic:// upstreams with their TLS options, and read back", () => {
  const { toml, c } = roundTrip(
    "server-quic 127.0.0.1 -host-name doq.test\nserver quic://[2001:db8::53]:8853 -host-name -\n" +
      "server-quic 192.0.2.1:784 -tls-host-verify doq.test -alpn doq\nca-file /etc/ssl/doq-ca.pem\n" +
      "server-tls 192.0.2.2 -alpn dot\n",
  );
  assertEquals(
    c.upstreams.map((u) => [u.transport, u.host, u.port, u.tls?.hostName, u.tls?.verifyName]),
    [
      ["quic", "127.0.0.1", 853, "doq.test", undefined],
      ["quic", "2001:db8::53", 8853, "-", undefined],
      ["quic", "192.0.2.1", 784, undefined, "doq.test"],
      ["tls", "192.0.2.2", 853, undefined, undefined],
    ],
  );
  assertEquals(c.unsupported.map((u) => u.name), ["server-tls -alpn"], "DoT keeps its own ALPN");
  assertEquals(c.upstreams.map((u) => u.tls?.alpn), [undefined, undefined, ["doq"], undefined]);
  assertMatch(toml, /alpn = \["doq"\]/);
  assertMatch(toml, /address = "quic:\/\/127\.0\.0\.1:853"\nhost-name = "doq\.test"\n/);
  assertMatch(toml, /address = "quic:\/\/\[2001:db8::53\]:8853"\nhost-name = "-"\n/);
});

Deno.test("proxy-server and -proxy become [[proxy]] and proxy = NAME; -set-mark, -interface read back", () => {
  const text = "# the office proxy\nproxy-server socks5://u:p@127.0.0.1:1081 -name office\n" +
    "proxy-server http://[::1] -name web\n" +
    "server 192.0.2.1 -proxy office\nserver-tcp 192.0.2.2 -proxy web\nserver 192.0.2.3 -set-mark 7 -interface lo\n" +
    "server tcp://192.0.2.4 -tcp-keepalive 300\n";
  const { toml } = roundTrip(text);
  assertMatch(toml, /\[\[proxy\]\]\nname = "office"\nurl = "socks5:\/\/u:p@127\.0\.0\.1:1081"\n/);
  assertMatch(toml, /\[\[proxy\]\]\nname = "web"\nurl = "http:\/\/\[::1\]:3128"\n/);
  assertMatch(toml, /address = "udp:\/\/192\.0\.2\.1:53"\nproxy = "office"\n/);
  assertMatch(toml, /address = "udp:\/\/192\.0\.2\.3:53"\nset-mark = 7\ninterface = "lo"\n/);
  assertMatch(toml, /address = "tcp:\/\/192\.0\.2\.4:53"\ntcp-keepalive = 300\n/);
  assertThrows(
    () => parseTomlConfig('[[upstream]]\naddress = "9.9.9.9"\nproxy = "nope"\n', OUT),
    /no \[\[proxy\]\] is named "nope"/,
  );
  assertThrows(
    () => parseTomlConfig('[[upstream]]\naddress = "tcp://9.9.9.9"\nset-mark = 1\n', OUT),
    /set-mark is only honoured on plain udp:\/\/ servers/,
  );
  assertThrows(
    () =>
      parseTomlConfig(
        '[[proxy]]\nname = "s"\nurl = "socks5://127.0.0.1"\n[[upstream]]\naddress = "quic://9.9.9.9"\nproxy = "s"\n',
        OUT,
      ),
    /keeldns\.toml:6:1: a quic:\/\/ server cannot go through a proxy/,
  );
});

Deno.test("edns-client-subnet and server -subnet convert to TOML lists and read back the same", () => {
  const c = parseSmartdnsConf(
    "server 9.9.9.9\nedns-client-subnet 1.2.3.4/24\nedns-client-subnet 2001:db8::/56\n" +
      "server 192.0.2.53 -subnet 10.9.8.0/20 -subnet-all-query-types -check-edns\n" +
      "client-rules 192.168.1.0/24 -group kids\ngroup-begin kids\nedns-client-subnet 9.9.9.0/24\ngroup-end\n",
    CONF,
    () => "",
  );
  assertEquals(c.server.clientSubnet, ["1.2.3.0/24", "2001:db8::/56"]);
  assertEquals(c.upstreams[1].clientSubnet, ["10.9.0.0/20"]);
  const toml = convertToToml(c);
  assertEquals(c.unsupported, []);
  assertMatch(toml, /\nedns-client-subnet = \["1\.2\.3\.0\/24", "2001:db8::\/56"\]\n/);
  assertMatch(toml, /subnet = "10\.9\.0\.0\/20"\nsubnet-all-query-types = true\ncheck-edns = true\n/);
  assertMatch(
    toml,
    /\[\[group\]\]\nname = "kids"\n.*\nedns-client-subnet = \["2001:db8::\/56", "9\.9\.9\.0\/24"\]\n/,
  );
  const back = parseTomlConfig(toml, OUT);
  assertEquals(back.server.clientSubnet, c.server.clientSubnet);
  assertEquals(back.groups.map((g) => g.clientSubnet), [["2001:db8::/56", "9.9.9.0/24"]]);
  assertEquals(
    back.upstreams.map((u) => [u.clientSubnet, u.subnetAllQueryTypes, u.checkEdns]),
    c.upstreams.map((u) => [u.clientSubnet, u.subnetAllQueryTypes, u.checkEdns]),
  );
});

Deno.test("servers by host name keep the name, -host-ip and -bootstrap-dns in TOML, and read back", () => {
  const { toml } = roundTrip(
    "server 192.0.2.53 -bootstrap-dns\nserver-tls dns.example -host-name sni.example\n" +
      "server-https https://doh.example/q -host-ip 192.0.2.8\nserver udp.example:5353\n",
  );
  assertMatch(toml, /address = "udp:\/\/192\.0\.2\.53:53"\nexclude-default-group = true\nbootstrap = true\n/);
  assertMatch(toml, /address = "tls:\/\/dns\.example:853"\nhost-name = "sni\.example"\n/);
  assertMatch(toml, /address = "https:\/\/doh\.example:443\/q"\nhost-ip = "192\.0\.2\.8"\n/);
  assertMatch(toml, /address = "udp:\/\/udp\.example:5353"\n/);
});

Deno.test("convert: resolv.conf's nameservers, when only they can resolve the server names, are written out", () => {
  const conf = "server-tls dns.example\n";
  const c = parseSmartdnsConf(conf, CONF, (p) => p === "/etc/resolv.conf" ? "nameserver 192.0.2.200\n" : "");
  const toml = convertToToml(c, conf);
  assertMatch(
    toml,
    /# nothing else resolves the server names: SmartDNS asks the system resolver \(\/etc\/resolv\.conf\)\n\[\[upstream\]\]\naddress = "udp:\/\/192\.0\.2\.200:53"\nexclude-default-group = true\nbootstrap = true\n/,
  );
  assertEquals(parseTomlConfig(toml, OUT).upstreams.map((u) => [u.host, u.bootstrap ?? false]), [
    ["dns.example", false],
    ["192.0.2.200", true],
  ]);
});

Deno.test("convert: a group's own speed check settings become [[group]] keys and read back the same", () => {
  const c = parseSmartdnsConf(
    "server 9.9.9.9\nclient-rules 10.0.0.0/8 -group g\ngroup-begin g\nspeed-check-mode tcp:443\n" +
      "response-mode fastest-ip\ndualstack-ip-selection no\ngroup-end\ndomain-rules /x.test/ -c none -r fastest-response\n",
    CONF,
    () => "",
  );
  const toml = convertToToml(c);
  assertMatch(
    toml,
    /\[\[group\]\]\nname = "g"\n.*\nspeed-check-mode = "tcp:443"\nresponse-mode = "fastest-ip"\ndualstack-ip-selection = false\n/,
  );
  const back = parseTomlConfig(toml, OUT);
  assertEquals(back.groups[0].rules.speedCheck, c.groups[0].rules.speedCheck);
  assertEquals(back.groups[0].rules.responseMode, "fastest-ip");
  assertEquals(back.groups[0].rules.dualstack, c.groups[0].rules.dualstack);
  assertEquals(back.rules.speedCheck, c.rules.speedCheck);
  const rule = back.rules.domainRules.find((r) => r.domains[0] === "x.test")!;
  assertEquals([rule.speedCheck, rule.responseMode], [[], "fastest-response"]);
});

Deno.test("convert: prefetch-domain, serve-expired-prefetch-time and -no-serve-expired", () => {
  const { toml } = roundTrip(
    "server 9.9.9.9\nprefetch-domain yes\nserve-expired-prefetch-time 60\ndomain-rules /a.example/ -no-serve-expired\n",
  );
  assertMatch(toml, /^prefetch = true\nserve-expired-prefetch-time = 60$/m);
  assertMatch(toml, /^domains = \["a\.example"\]\nno-serve-expired = true$/m);
});

Deno.test("convert: [metrics] enable = false survives a TOML round trip; on (the default) is not written", () => {
  const off = parseTomlConfig('[[upstream]]\naddress = "1.1.1.1"\n[metrics]\nenable = false\n', OUT);
  const toml = convertToToml(off);
  assertMatch(toml, /^\[metrics\]\nenable = false$/m);
  assertEquals(parseTomlConfig(toml, OUT).metrics, { enable: false });
  assert(!convertToToml(parseTomlConfig('[[upstream]]\naddress = "1.1.1.1"\n', OUT)).includes("[metrics]"));
});

Deno.test("convert: the audit and log directives become [audit] and [log] keys and read back the same", () => {
  const { toml, c } = roundTrip(
    "server 9.9.9.9\naudit-enable yes\naudit-file audit/queries.log\naudit-size 1m\naudit-num 4\n" +
      "audit-file-mode 600\naudit-console yes\nlog-file /var/log/k.log\nlog-console no\nlog-file-mode 0600\n",
  );
  assertEquals(c.audit, {
    enable: true,
    file: "/etc/smartdns/audit/queries.log",
    size: 1024 * 1024,
    num: 4,
    fileMode: 0o600,
    console: true,
    soa: false,
    queryLogSize: 0,
  });
  assertMatch(
    toml,
    /^\[audit\]\nenable = true\nfile = "\/etc\/smartdns\/audit\/queries\.log"\nsize = "1m"\nnum = 4\n/m,
  );
  assertMatch(toml, /^file-mode = 0o600\nconsole = true\nsoa = false$/m);
  assertMatch(toml, /^console = false\nfile-mode = 0o600$/m);
  // No audit line: no [audit] table, and keeldns's defaults (off) read back.
  assert(!roundTrip("server 9.9.9.9\n").toml.includes("[audit]"));
});
