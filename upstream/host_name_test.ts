import { assert, assertEquals, assertMatch } from "../tests/helpers/assert.ts";
import type { UpstreamConfig } from "../config/schema.ts";
import { type Answer, decodePacket, encodePacket } from "../dns/packet.ts";
import { parseQuery, type Question } from "../dns/wire.ts";
import { BootstrapResolver } from "./bootstrap.ts";
import { HostNameUpstream } from "./host_name.ts";
import { type Upstream, UpstreamError } from "./upstream.ts";
import { Cancel } from "./cancel.ts";

/** A bootstrap server that answers from a script: name and type → records or an rcode. */
class ScriptedServer implements Upstream {
  readonly asked: string[] = [];
  constructor(
    readonly address: string,
    public script: (name: string, type: string) => Answer[] | "NXDOMAIN" | "SERVFAIL" | "silent",
  ) {}
  close(): void {}
  exchange(q: Question, cancel: Cancel): Promise<Uint8Array> {
    const query = decodePacket(q.wire.subarray(0, q.questionEnd));
    const { name, type } = query.questions![0];
    this.asked.push(`${name} ${type}`);
    const got = this.script(name, type);
    if (got === "silent") {
      return new Promise((_, reject) =>
        cancel.listen(() => reject(new UpstreamError(this.address, "aborted")))
      );
    }
    return Promise.resolve(encodePacket({
      type: "response",
      id: 0,
      flags: 0x8180 | (got === "NXDOMAIN" ? 3 : got === "SERVFAIL" ? 2 : 0),
      questions: query.questions,
      answers: Array.isArray(got) ? got : [],
    }));
  }
}

const a = (name: string, ip: string, ttl = 300): Answer => ({ name, type: "A", ttl, data: ip });
const aaaa = (name: string, ip: string, ttl = 300): Answer => ({ name, type: "AAAA", ttl, data: ip });

/** What the wrapper built: one fake inner upstream per address, recording its configuration. */
class Inners {
  readonly built: UpstreamConfig[] = [];
  readonly closed: string[] = [];
  readonly sent: string[] = [];
  failWith?: string;
  create = (c: UpstreamConfig): Upstream => {
    this.built.push(c);
    return {
      address: `${c.transport}://${c.host}:${c.port}`,
      close: () => this.closed.push(c.host),
      exchange: () => {
        this.sent.push(c.host);
        if (this.failWith) {
          return Promise.reject(new UpstreamError(`${c.transport}://${c.host}:${c.port}`, this.failWith));
        }
        return Promise.resolve(new Uint8Array([c.host.length]));
      },
    };
  };
}

const TLS_NAMED: UpstreamConfig = {
  transport: "tls",
  host: "dot.test.example",
  name: "dot.test.example",
  port: 853,
  tls: { verifyCertificate: true, spkiPins: [] },
  groups: [],
  excludeDefault: false,
};

function query(): Question {
  return parseQuery(
    encodePacket({ type: "query", id: 1, flags: 0x0100, questions: [{ name: "a.test", type: "A" }] }),
  );
}

const signal = () => new Cancel();
const settle = () => new Promise((r) => setTimeout(r, 10));

Deno.test("BootstrapResolver: A before AAAA, AAAA when there is no A, the least TTL of the answer", async () => {
  const server = new ScriptedServer("udp://192.0.2.53:53", (name, type) => {
    if (name === "both.example") {
      return type === "A"
        ? [{ name, type: "CNAME", ttl: 40, data: "x.example" }, a("x.example", "192.0.2.1", 90)]
        : [aaaa(name, "2001:db8::1")];
    }
    if (name === "six.example") return type === "AAAA" ? [aaaa(name, "2001:DB8:0:0::6", 77)] : [];
    return "NXDOMAIN";
  });
  const r = new BootstrapResolver([server], 1000);
  assertEquals(await r.resolve("both.example"), { ip: "192.0.2.1", ttl: 40 });
  assertEquals(await r.resolve("six.example"), { ip: "2001:db8::6", ttl: 77 });
  const e = await r.resolve("none.example").then(() => null, (e) => e as Error);
  assertMatch(e!.message, /^A: udp:\/\/192\.0\.2\.53:53 NXDOMAIN; AAAA: udp:\/\/192\.0\.2\.53:53 NXDOMAIN$/);
  assertEquals(
    await new BootstrapResolver([], 1000).resolve("x.example").then(() => "", (e) => (e as Error).message),
    "no bootstrap server to resolve it",
  );
});

Deno.test("BootstrapResolver: every server is asked at once; one that answers wins over one that fails or is silent", async () => {
  const failing = new ScriptedServer("udp://192.0.2.1:53", () => "SERVFAIL");
  const silent = new ScriptedServer("udp://192.0.2.2:53", () => "silent");
  const good = new ScriptedServer(
    "udp://192.0.2.3:53",
    (name, type) => type === "A" ? [a(name, "192.0.2.9")] : [],
  );
  const r = new BootstrapResolver([failing, silent, good], 2000);
  const t0 = performance.now();
  assertEquals((await r.resolve("dns.example")).ip, "192.0.2.9");
  assert(performance.now() - t0 < 500, "did not wait for the silent server");
  assertEquals([failing.asked.length, silent.asked.length, good.asked.length], [2, 2, 2]);
  // All silent: the resolution gives up after its timeout, saying so.
  const slow = new BootstrapResolver([silent], 50);
  assertMatch(await slow.resolve("dns.example").then(() => "", (e) => (e as Error).message), /aborted/);
});

Deno.test("HostNameUpstream: connects to the address the name resolves to, the name stays SNI and address", async () => {
  const boot = new ScriptedServer(
    "udp://192.0.2.53:53",
    (name, type) => type === "A" ? [a(name, "127.0.0.1")] : [],
  );
  const inners = new Inners();
  const logs: string[] = [];
  const u = new HostNameUpstream(TLS_NAMED, {
    resolver: new BootstrapResolver([boot], 1000),
    create: inners.create,
    log: (level, m) => logs.push(`${level} ${m}`),
  });
  try {
    assertEquals(u.address, "tls://dot.test.example:853");
    assertEquals((await u.exchange(query(), signal()))[0], "127.0.0.1".length);
    assertEquals(inners.built.length, 1);
    const inner = inners.built[0];
    assertEquals([inner.host, inner.port, inner.name, inner.tls?.hostName], [
      "127.0.0.1",
      853,
      undefined,
      "dot.test.example",
    ]);
    assertEquals(boot.asked.sort(), ["dot.test.example A", "dot.test.example AAAA"]);
    assertEquals(logs, [
      "info tls://dot.test.example:853: dot.test.example resolved to 127.0.0.1 (kept 300 s)",
    ]);
    // Within the TTL nothing more is asked.
    await u.exchange(query(), signal());
    assertEquals(boot.asked.length, 2);
    // The inner's failure is reported under the configured name, with the address.
    inners.failWith = "connect failed";
    const e = await u.exchange(query(), signal()).then(() => null, (e) => e as UpstreamError);
    assertEquals(e?.message, "tls://dot.test.example:853: connect failed (at 127.0.0.1)");
  } finally {
    u.close();
  }
  assertEquals(inners.closed, ["127.0.0.1"]);
});

Deno.test("HostNameUpstream: -host-name overrides the SNI; -host-ip pins the address and nothing is resolved", async () => {
  const boot = new ScriptedServer("udp://192.0.2.53:53", (name) => [a(name, "192.0.2.1")]);
  const inners = new Inners();
  const u = new HostNameUpstream(
    {
      ...TLS_NAMED,
      hostIp: "127.0.0.2",
      tls: { verifyCertificate: true, spkiPins: [], hostName: "sni.example" },
    },
    { resolver: new BootstrapResolver([boot], 1000), create: inners.create, log: () => {} },
  );
  try {
    await u.exchange(query(), signal());
    await settle();
    assertEquals(inners.built.map((c) => [c.host, c.tls?.hostName]), [["127.0.0.2", "sni.example"]]);
    assertEquals(boot.asked, [], "a pinned server never asks the bootstrap servers");
    assertEquals(u.resolutions, 0);
  } finally {
    u.close();
  }
});

Deno.test("HostNameUpstream: re-resolved once the TTL ends; a new address gets a new inner, the old one is closed", async () => {
  let ip = "127.0.0.1";
  const boot = new ScriptedServer(
    "udp://192.0.2.53:53",
    (name, type) => type === "A" ? [a(name, ip, 0)] : [],
  );
  const inners = new Inners();
  const logs: string[] = [];
  const u = new HostNameUpstream(TLS_NAMED, {
    resolver: new BootstrapResolver([boot], 1000),
    create: inners.create,
    minTtlS: 0.05,
    graceMs: 0,
    log: (level, m) => logs.push(`${level} ${m}`),
  });
  try {
    await u.exchange(query(), signal());
    assertEquals(u.resolutions, 1);
    ip = "127.0.0.3";
    await new Promise((r) => setTimeout(r, 80)); // past the (floored) TTL
    await u.exchange(query(), signal()); // still the old address, while re-resolving
    assertEquals(inners.sent, ["127.0.0.1", "127.0.0.1"]);
    await settle();
    await u.exchange(query(), signal());
    assertEquals(inners.sent.at(-1), "127.0.0.3");
    assertEquals(u.resolutions, 2);
    assertEquals(inners.closed, ["127.0.0.1"], "the replaced inner upstream is closed");
    assertMatch(
      logs.at(-1)!,
      /dot\.test\.example now resolves to 127\.0\.0\.3 \(was 127\.0\.0\.1; kept 0\.05 s\)/,
    );
  } finally {
    u.close();
  }
});

Deno.test("HostNameUpstream: a failed re-resolution keeps the last good address, logged once", async () => {
  let broken = false;
  const boot = new ScriptedServer(
    "udp://192.0.2.53:53",
    (name, type) => broken ? "SERVFAIL" : type === "A" ? [a(name, "127.0.0.1", 0)] : [],
  );
  const inners = new Inners();
  const logs: string[] = [];
  const u = new HostNameUpstream(TLS_NAMED, {
    resolver: new BootstrapResolver([boot], 1000),
    create: inners.create,
    minTtlS: 0.01,
    retryMinMs: 1,
    retryMaxMs: 1,
    log: (level, m) => logs.push(`${level} ${m}`),
  });
  try {
    await u.exchange(query(), signal());
    broken = true;
    for (let i = 0; i < 5; i++) {
      await new Promise((r) => setTimeout(r, 15));
      await u.exchange(query(), signal());
    }
    assert(u.resolutions >= 3, `re-resolution was tried again (${u.resolutions})`);
    assertEquals(new Set(inners.sent), new Set(["127.0.0.1"]));
    const warnings = logs.filter((l) => l.startsWith("warn"));
    assertEquals(warnings.length, 1, logs.join("\n"));
    assertMatch(warnings[0], /cannot resolve dot\.test\.example: A: .* SERVFAIL.*; still using 127\.0\.0\.1/);
  } finally {
    u.close();
  }
});

Deno.test("HostNameUpstream: a name nothing resolves fails every exchange with the reason, never elsewhere", async () => {
  const boot = new ScriptedServer("udp://192.0.2.53:53", () => "NXDOMAIN");
  const inners = new Inners();
  const logs: string[] = [];
  const u = new HostNameUpstream(TLS_NAMED, {
    resolver: new BootstrapResolver([boot], 1000),
    create: inners.create,
    log: (level, m) => logs.push(`${level} ${m}`),
  });
  try {
    for (let i = 0; i < 5; i++) {
      const e = await u.exchange(query(), signal()).then(() => null, (e) => e as UpstreamError);
      assert(e instanceof UpstreamError);
      assertMatch(
        e.message,
        /^tls:\/\/dot\.test\.example:853: cannot resolve dot\.test\.example: A: .*NXDOMAIN/,
      );
    }
    assertEquals(inners.built, [], "no inner upstream: nothing is sent anywhere");
    assertEquals(u.resolutions, 1, "not resolved again per query: the retry waits");
    assertEquals(logs.length, 1);
    assertMatch(logs[0], /^error .*cannot resolve dot\.test\.example.*; its queries fail until it resolves$/);
    // No resolver at all (a configuration without bootstrap servers): the same, with that reason.
    const lone = new HostNameUpstream(TLS_NAMED, { create: inners.create, log: () => {} });
    const e = await lone.exchange(query(), signal()).then(() => null, (e) => e as Error);
    assertMatch(e!.message, /cannot resolve dot\.test\.example: no bootstrap server to resolve it/);
    lone.close();
  } finally {
    u.close();
  }
});

Deno.test("HostNameUpstream: the first exchanges wait for the first resolution, bounded by their signal", async () => {
  let release = () => {};
  const gate = new Promise<void>((r) => release = r);
  const boot = new ScriptedServer(
    "udp://192.0.2.53:53",
    (name, type) => type === "A" ? [a(name, "127.0.0.1")] : [],
  );
  const slow: Upstream = {
    address: boot.address,
    close() {},
    exchange: async (q, s) => {
      await gate;
      return boot.exchange(q, s);
    },
  };
  const inners = new Inners();
  const u = new HostNameUpstream(TLS_NAMED, {
    resolver: new BootstrapResolver([slow], 5000),
    create: inners.create,
    log: () => {},
  });
  try {
    const aborted = new Cancel();
    const first = u.exchange(query(), aborted).then(() => "answered", (e) => (e as Error).message);
    const second = u.exchange(query(), signal());
    aborted.cancel();
    assertEquals(await first, "tls://dot.test.example:853: aborted");
    release();
    assertEquals((await second)[0], "127.0.0.1".length);
    assertEquals(u.resolutions, 1, "the waiting exchanges share one resolution");
  } finally {
    u.close();
  }
});

Deno.test("HostNameUpstream: a name that did not resolve is retried by itself, without queries", async () => {
  let up = false;
  const boot = new ScriptedServer(
    "udp://192.0.2.53:53",
    (name, type) => !up ? "silent" : type === "A" ? [a(name, "127.0.0.1")] : [],
  );
  const inners = new Inners();
  const u = new HostNameUpstream(TLS_NAMED, {
    resolver: new BootstrapResolver([boot], 20),
    create: inners.create,
    retryMinMs: 10,
    retryMaxMs: 20,
    log: () => {},
  });
  try {
    await new Promise((r) => setTimeout(r, 100));
    assertEquals(u.ip, undefined);
    assert(u.resolutions >= 2, `retried (${u.resolutions})`);
    up = true;
    for (let i = 0; i < 50 && u.ip === undefined; i++) await settle();
    assertEquals(u.ip, "127.0.0.1");
    const resolutions = u.resolutions;
    await new Promise((r) => setTimeout(r, 60));
    assertEquals(u.resolutions, resolutions, "no more retries once resolved");
  } finally {
    u.close();
  }
});
