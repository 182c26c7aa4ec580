import { assert, assertEquals, assertMatch } from "../tests/helpers/assert.ts";
import { buildQuery } from "../tests/helpers/dns_client.ts";
import {
  askA,
  failure,
  loopbackConfig,
  printReuseTimings,
  testsNamed,
  withServerAndUpstream,
} from "../tests/helpers/reused_upstream_test_kit.ts";
import { hasProgram } from "../tests/helpers/keeldns_process.ts";
import { makeTestCa, makeTestPki, type TestPki } from "../tests/helpers/test_pki.ts";
import { doqAddressFor, DoqServer } from "../tests/helpers/doq_server.ts";
import { decodePacket } from "../dns/packet.ts";
import { parseQuery } from "../dns/wire.ts";
import type { TlsOptions } from "../config/schema.ts";
import { encodePacket } from "../dns/packet.ts";
import { BootstrapResolver } from "./bootstrap.ts";
import { readClientSubnet } from "../dns/client_subnet.ts";
import { createUpstream } from "./create.ts";
import { withQueryOptions } from "./query_options.ts";
import { QuicUpstream, type QuicUpstreamOptions } from "./quic.ts";
import type { Upstream } from "./upstream.ts";
import { Cancel } from "./cancel.ts";

const HAVE_OPENSSL = hasProgram("openssl");
const pki: (TestPki & { otherCaFile: string }) | undefined = HAVE_OPENSSL
  ? await (async () => {
    const made = await makeTestPki(await Deno.makeTempDir({ prefix: "keeldns-doq-" }), "doq.test");
    return { ...made, otherCaFile: await makeTestCa(made.dir, "other-ca") };
  })()
  : undefined;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The config of a DoQ server on 127.0.0.1:`port`, checked for doq.test. */
const config = (port: number, tls: Partial<TlsOptions> = {}) => loopbackConfig("quic", port, "doq.test", tls);

/** Runs `fn` with a fresh server (offering `alpn`) and upstream, then closes both. */
function withServer(
  tls: Partial<TlsOptions>,
  trust: { caFile?: string; caPath?: string },
  options: QuicUpstreamOptions,
  fn: (server: DoqServer, upstream: QuicUpstream, logged: string[]) => Promise<void>,
  alpn = "doq",
): Promise<void> {
  return withServerAndUpstream(
    new DoqServer(pki!, alpn),
    (server, log) => new QuicUpstream(config(server.port, tls), trust, { log, ...options }),
    fn,
  );
}

const test = testsNamed("DoQ upstream", !HAVE_OPENSSL);

test("concurrent queries share one connection, one stream each, ID 0 on the wire", async () => {
  await withServer({}, { caFile: pki!.caFile }, {}, async (server, upstream) => {
    server.delayMs = 50;
    const names = Array.from({ length: 20 }, (_, i) => `q${i}.test`);
    const got = await Promise.all(names.map((n) => askA(upstream, n)));
    assertEquals(got, names.map(doqAddressFor));
    assertEquals(server.accepted, 1);
    assertEquals(upstream.connections, 1);
    assertEquals(server.streams, 20);
    assertEquals(server.queryIds, names.map(() => 0));
    assert(server.maxConcurrent > 10, `pipelined: ${server.maxConcurrent} streams were open at once`);
  });
});

test("more concurrent queries than the server's stream limit (100) all get answers", async () => {
  await withServer({}, { caFile: pki!.caFile }, {}, async (server, upstream) => {
    server.delayMs = 20;
    const names = Array.from({ length: 300 }, (_, i) => `q${i}.test`);
    const got = await Promise.all(names.map((n) => askA(upstream, n, 10_000)));
    assertEquals(got, names.map(doqAddressFor));
    assertEquals(server.accepted, 1);
    assert(server.maxConcurrent <= 100, `at most 100 open streams, saw ${server.maxConcurrent}`);
  });
});

test("first query and reused-connection timings (printed)", async () => {
  await withServer({}, { caFile: pki!.caFile }, {}, async (server, upstream) => {
    await printReuseTimings("DoQ", (name, timeoutMs) => askA(upstream, name, timeoutMs), 20_000);
    assertEquals(server.accepted, 1);
  });
});

test("reconnects after the server closes the connection", async () => {
  await withServer({}, { caFile: pki!.caFile }, {}, async (server, upstream) => {
    server.closeAfter = 1;
    assertEquals(await askA(upstream, "q1.test"), "192.0.2.2");
    await sleep(100);
    assertEquals(await askA(upstream, "q2.test"), "192.0.2.3");
    server.closeAfter = 0;
    await sleep(100);
    server.dropConnections();
    await sleep(100);
    assertEquals(await askA(upstream, "q3.test"), "192.0.2.4");
    assertEquals(server.accepted, 3);
    assertEquals(upstream.connections, 3);
  });
});

test("a certificate from another CA fails with a clear reason, logged once, then backs off", async () => {
  await withServer({}, { caFile: pki!.otherCaFile }, { backoffMs: 300 }, async (server, upstream, logged) => {
    const e = await failure(askA(upstream, "q1.test"));
    assertMatch(
      e.message,
      /^quic:\/\/127\.0\.0\.1:\d+: QUIC handshake failed \(server name doq\.test\).*UnknownIssuer/,
    );
    assertEquals(logged.length, 1);
    assertMatch(logged[0], /^error: .*UnknownIssuer.*retrying after 300 ms/);
    const again = await failure(askA(upstream, "q1.test"));
    assertMatch(again.message, /not retrying for \d+ ms after: QUIC handshake failed/);
    await sleep(350);
    await failure(askA(upstream, "q1.test"));
    await sleep(50);
    assertEquals(server.accepted, 0);
    assertEquals(server.failedHandshakes, 2);
  });
});

test("no ca-file: the test CA is not trusted", async () => {
  await withServer({}, {}, {}, async (server, upstream) => {
    assertMatch((await failure(askA(upstream, "q1.test"))).message, /UnknownIssuer/);
    assertEquals(server.accepted, 0);
  });
});

test("an SNI name the certificate does not carry fails", async () => {
  await withServer({ hostName: "wrong.test" }, { caFile: pki!.caFile }, {}, async (_server, upstream) => {
    const e = await failure(askA(upstream, "q1.test"));
    assertMatch(e.message, /\(server name wrong\.test\).*not valid for name "wrong\.test"/);
  });
});

test("host-name '-' or none checks the IP address (the leaf carries IP:127.0.0.1)", async () => {
  for (const hostName of ["-", undefined]) {
    await withServer({ hostName }, { caFile: pki!.caFile }, {}, async (_server, upstream) => {
      assertEquals(upstream.serverName, "127.0.0.1");
      assertEquals(await askA(upstream, "q3.test"), "192.0.2.4");
    });
  }
});

test("a server without the doq ALPN fails the handshake", async () => {
  await withServer({}, { caFile: pki!.caFile }, {}, async (server, upstream) => {
    assertMatch((await failure(askA(upstream, "q1.test"))).message, /handshake failed.*protocol/);
    assertEquals(server.accepted, 0);
  }, "h3");
});

test("-alpn: the tokens offered instead of doq (a draft-era server)", async () => {
  await withServer({ alpn: ["doq-i02", "doq"] }, { caFile: pki!.caFile }, {}, async (server, upstream) => {
    assertEquals(await askA(upstream, "q1.test"), "192.0.2.2");
    assertEquals(server.accepted, 1);
  }, "doq-i02");
  await withServer({ alpn: ["doq-i02"] }, { caFile: pki!.caFile }, {}, async (server, upstream) => {
    assertMatch((await failure(askA(upstream, "q1.test"))).message, /handshake failed.*protocol/);
    assertEquals(server.accepted, 0);
  });
});

test("closes the connection when idle and reopens it on demand", async () => {
  await withServer({}, { caFile: pki!.caFile }, { idleMs: 150 }, async (server, upstream) => {
    assertEquals(await askA(upstream, "q1.test"), "192.0.2.2");
    await sleep(50);
    assertEquals(await askA(upstream, "q2.test"), "192.0.2.3");
    await sleep(100);
    assertEquals(server.accepted, 1, "each query restarts the idle time");
    assertEquals(await askA(upstream, "q3.test"), "192.0.2.4");
    assertEquals(server.accepted, 1);
    await sleep(300);
    assertEquals(await askA(upstream, "q4.test"), "192.0.2.5");
    assertEquals(server.accepted, 2);
  });
});

test("an aborted exchange fails as aborted at once and leaves the connection usable", async () => {
  await withServer({}, { caFile: pki!.caFile }, {}, async (server, upstream) => {
    server.delayMs = 300;
    const controller = new Cancel();
    const pending = upstream.exchange(parseQuery(buildQuery("q1.test", "A")), controller);
    await sleep(100);
    const t = performance.now();
    controller.cancel();
    assertMatch((await failure(pending)).message, /aborted/);
    assert(performance.now() - t < 50, "the abort is at once");
    server.delayMs = 0;
    assertEquals(await askA(upstream, "q2.test"), "192.0.2.3");
    assertEquals(server.accepted, 1);
  });
});

test("50 given-up streams the server never answers: the connection is replaced", async () => {
  await withServer({}, { caFile: pki!.caFile }, { stuckMs: 200 }, async (server, upstream) => {
    server.silent = true;
    const given = await Promise.all(
      Array.from({ length: 60 }, (_, i) => failure(askA(upstream, `q${i}.test`, 100))),
    );
    assertEquals(given.filter((e) => /aborted/.test(e.message)).length, 60);
    await sleep(250);
    server.silent = false;
    assertEquals(await askA(upstream, "q1.test"), "192.0.2.2");
    assertEquals(server.accepted, 2);
  });
});

test("given-up streams the server answers late (lost races) keep the connection", async () => {
  await withServer({}, { caFile: pki!.caFile }, { stuckMs: 300 }, async (server, upstream) => {
    server.delayMs = 150;
    const given = await Promise.all(
      Array.from({ length: 80 }, (_, i) => failure(askA(upstream, `q${i}.test`, 50))),
    );
    assertEquals(given.filter((e) => /aborted/.test(e.message)).length, 80);
    await sleep(400);
    server.delayMs = 0;
    assertEquals(await askA(upstream, "q1.test"), "192.0.2.2");
    assertEquals(server.accepted, 1);
  });
});

test("a reused connection the server closed is replaced and the query sent once more", async () => {
  await withServer({}, { caFile: pki!.caFile }, {}, async (server, upstream) => {
    assertEquals(await askA(upstream, "q1.test"), "192.0.2.2");
    server.delayMs = 200;
    const pending = askA(upstream, "q2.test");
    await sleep(50);
    server.dropConnections();
    server.delayMs = 0;
    assertEquals(await pending, "192.0.2.3");
    assertEquals(server.accepted, 2);
  });
});

test("a silent server: the exchange ends when its signal does", async () => {
  // A bound UDP port nobody answers on.
  const hole = Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
  const upstream = new QuicUpstream(config((hole.addr as Deno.NetAddr).port), { caFile: pki!.caFile }, {
    log: () => {},
  });
  try {
    const t = performance.now();
    assertMatch((await failure(askA(upstream, "q1.test", 300))).message, /aborted/);
    const took = performance.now() - t;
    assert(took >= 280 && took < 600, `took ${took} ms`);
  } finally {
    upstream.close();
    hole.close();
  }
});

test("an answer whose ID is not 0 is refused (RFC 9250 §4.2.1)", async () => {
  await withServer({}, { caFile: pki!.caFile }, {}, async (server, upstream) => {
    server.answerId = 4321;
    assertMatch((await failure(askA(upstream, "q1.test"))).message, /answer has ID 4321, not 0/);
  });
});

test("settings Deno cannot honour refuse the server, logged once", async () => {
  const cases: [Partial<TlsOptions>, RegExp][] = [
    [
      { verifyCertificate: false },
      /-no-check-certificate is not supported: Deno's QUIC client always checks/,
    ],
    [{ spkiPins: ["AAAA"] }, /-spki-pin is not supported: Deno's QUIC connection does not expose/],
    [{ verifyName: "other.test" }, /-tls-host-verify other\.test is not supported/],
  ];
  for (const [tls, reason] of cases) {
    await withServer(tls, { caFile: pki!.caFile }, {}, async (server, upstream, logged) => {
      assertMatch(upstream.refusal ?? "", reason);
      assertMatch((await failure(askA(upstream, "q1.test"))).message, reason);
      assertMatch((await failure(askA(upstream, "q1.test"))).message, reason);
      assertEquals(logged.length, 1);
      assertMatch(logged[0], /refused: /);
      assertEquals(server.accepted + server.failedHandshakes, 0);
    });
  }
  const missing = new QuicUpstream(config(853), { caFile: "/nonexistent/ca.pem" }, { log: () => {} });
  assertMatch((await failure(askA(missing, "q1.test"))).message, /ca-file \/nonexistent\/ca\.pem: /);
});

test("close() fails exchanges under way", async () => {
  await withServer({}, { caFile: pki!.caFile }, {}, async (server, upstream) => {
    server.delayMs = 500;
    const pending = askA(upstream, "q1.test");
    await sleep(100);
    upstream.close();
    await failure(pending);
    assertMatch((await failure(askA(upstream, "q2.test"))).message, /upstream closed/);
  });
});

test("by host name: resolved through the bootstrap servers, the name is the SNI and certificate name", async () => {
  const server = new DoqServer(pki!);
  // A bootstrap server that answers every A question with 127.0.0.1 (and AAAA with nothing).
  const boot: Upstream = {
    address: "udp://192.0.2.53:53",
    close() {},
    exchange(q) {
      const query = decodePacket(q.wire.subarray(0, q.questionEnd));
      const { name, type } = query.questions![0];
      return Promise.resolve(encodePacket({
        type: "response",
        id: 0,
        flags: 0x8180,
        questions: query.questions,
        answers: type === "A" ? [{ name, type: "A", ttl: 300, data: "127.0.0.1" }] : [],
      }));
    },
  };
  const byName = (name: string, hostIp?: string): Upstream =>
    createUpstream(
      {
        transport: "quic",
        host: name,
        name,
        port: server.port,
        ...(hostIp ? { hostIp } : {}),
        tls: { verifyCertificate: true, spkiPins: [] },
        groups: [],
        excludeDefault: false,
      },
      undefined,
      { caFile: pki!.caFile },
      new BootstrapResolver([boot], 1000),
    );
  const exchange = async (u: Upstream) => {
    const a = decodePacket(
      await u.exchange(parseQuery(buildQuery("q5.test", "A")), Cancel.after(3000)),
    );
    return (a.answers![0] as { data: string }).data;
  };
  const named = byName("doq.test");
  // The certificate also names IP:127.0.0.1, so only the name as SNI can fail for another name.
  const other = byName("other.test", "127.0.0.1");
  try {
    assertEquals(named.address, `quic://doq.test:${server.port}`);
    assertEquals(await exchange(named), "192.0.2.6");
    const e = await failure(exchange(other));
    assertMatch(
      e.message,
      /^quic:\/\/other\.test:\d+: .*not valid for name "other\.test".*\(at 127\.0\.0\.1\)$/,
    );
  } finally {
    named.close();
    other.close();
    server.close();
  }
});

test("-subnet: the Client Subnet option goes in the DoQ query (A and AAAA only by default)", async () => {
  await withServer({}, { caFile: pki!.caFile }, {}, async (server, upstream) => {
    const u = withQueryOptions(upstream, { subnets: ["198.51.100.0/24"] });
    for (const type of ["A", "TXT"] as const) {
      await u.exchange(parseQuery(buildQuery("q1.test", type)), Cancel.after(3000));
    }
    assertEquals(server.queries.map((q) => readClientSubnet(q)?.subnet ?? null), ["198.51.100.0/24", null]);
  });
});

Deno.test("DoQ upstream: a server with a proxy is refused, never asked around it", async () => {
  const u = createUpstream({
    transport: "quic",
    host: "127.0.0.1",
    port: 853,
    groups: [],
    excludeDefault: false,
    tls: { verifyCertificate: true, spkiPins: [] },
    proxy: { name: "s", kind: "socks5", host: "127.0.0.1", port: 1080 },
  });
  assertMatch((u as { refusal?: string }).refusal ?? "", /^proxy s: DNS over QUIC cannot go through a proxy/);
  const e = await failure(u.exchange(parseQuery(buildQuery("q1.test", "A")), Cancel.after(1000)));
  assertMatch(e.message, /refused: proxy s: DNS over QUIC cannot go through a proxy/);
});

if (pki) {
  globalThis.addEventListener("unload", () => Deno.removeSync(pki.dir, { recursive: true }));
}
