import { assertEquals, assertMatch } from "../tests/helpers/assert.ts";
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
import { decodePacket, encodePacket } from "../dns/packet.ts";
import { frame, FramedReader, writeAll } from "../dns/stream_framing.ts";
import { parseQuery } from "../dns/wire.ts";
import type { TlsOptions } from "../config/schema.ts";
import { loadCaCerts, TlsUpstream, type TlsUpstreamOptions } from "./tls.ts";
import { makeTestCa, makeTestPki } from "../tests/helpers/test_pki.ts";
import { spkiPin } from "../net/x509_spki.ts";
import { Cancel } from "./cancel.ts";

/** A test CA and a leaf it signed for IP 127.0.0.1 and DNS dot.test, plus an unrelated CA. */
interface Pki {
  dir: string;
  caFile: string;
  otherCaFile: string;
  cert: string;
  key: string;
}

async function makePki(): Promise<Pki> {
  const pki = await makeTestPki(await Deno.makeTempDir({ prefix: "keeldns-tls-" }), "dot.test");
  const dir = pki.dir;
  await makeTestCa(dir, "other-ca");
  return {
    dir,
    caFile: `${dir}/ca.pem`,
    otherCaFile: `${dir}/other-ca.pem`,
    cert: await Deno.readTextFile(`${dir}/leaf.pem`),
    key: await Deno.readTextFile(`${dir}/leaf.key`),
  };
}

/** The address a name is answered with: 192.0.2.N for `qN.test`, 198.51.100.1 otherwise. */
function addressFor(name: string): string {
  const m = /^q(\d+)\.test$/.exec(name);
  return m ? `192.0.2.${Number(m[1]) + 1}` : "198.51.100.1";
}

function answer(id: number, name: string, data = addressFor(name)): Uint8Array {
  return encodePacket({
    type: "response",
    id,
    flags: 0x8180,
    questions: [{ name, type: "A", class: "IN" }],
    answers: [{ name, type: "A", ttl: 60, data }],
  });
}

/** A tiny DoT server; `batch` > 1 holds answers until that many queries came, then answers in reverse. */
class DotServer {
  readonly listener: Deno.TlsListener;
  accepted = 0;
  closedByClient = 0;
  /** Close each connection after this many answers (0: never). */
  closeAfter = 0;
  batch = 1;
  private readonly conns = new Set<Deno.Conn>();

  constructor(pki: Pki) {
    this.listener = Deno.listenTls({ hostname: "127.0.0.1", port: 0, cert: pki.cert, key: pki.key });
    this.accept();
  }

  get port(): number {
    return this.listener.addr.port;
  }

  private async accept(): Promise<void> {
    try {
      for await (const conn of this.listener) {
        this.accepted++;
        this.conns.add(conn);
        this.serve(conn);
      }
    } catch {
      // listener closed
    }
  }

  private async serve(conn: Deno.Conn): Promise<void> {
    const reader = new FramedReader(conn);
    let answered = 0;
    let held: Uint8Array[] = [];
    try {
      for (;;) {
        const query = await reader.next();
        if (query === null) {
          this.closedByClient++;
          break;
        }
        const q = decodePacket(query);
        const name = q.questions![0].name;
        held.push(answer(q.id!, name));
        if (held.length < this.batch) continue;
        // A foreign answer (wrong ID) and one with the wrong question come first: both ignored.
        // One write: the server side has Nagle on, small separate writes would wait for ACKs.
        const frames = [
          answer((q.id! + 1) & 0xffff, name, "203.0.113.66"),
          answer(q.id!, "other.test", "203.0.113.67"),
          ...held.reverse(),
        ].map(frame);
        const out = new Uint8Array(frames.reduce((n, f) => n + f.length, 0));
        frames.reduce((at, f) => (out.set(f, at), at + f.length), 0);
        await writeAll(conn, out);
        answered += held.length;
        held = [];
        if (this.closeAfter && answered >= this.closeAfter) break;
      }
    } catch {
      // connection reset
    }
    this.conns.delete(conn);
    try {
      conn.close();
    } catch {
      // already closed
    }
  }

  close(): void {
    this.listener.close();
    for (const c of this.conns) {
      try {
        c.close();
      } catch {
        // already closed
      }
    }
  }
}

const HAVE_OPENSSL = hasProgram("openssl");
const pki = HAVE_OPENSSL ? await makePki() : undefined;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Runs `fn` with a fresh server and upstream, then closes both. */
function withServer(
  tls: Partial<TlsOptions>,
  trust: { caFile?: string; caPath?: string },
  options: TlsUpstreamOptions,
  fn: (server: DotServer, upstream: TlsUpstream, logged: string[]) => Promise<void>,
): Promise<void> {
  return withServerAndUpstream(
    new DotServer(pki!),
    (server, log) =>
      new TlsUpstream(loopbackConfig("tls", server.port, "dot.test", tls), trust, { log, ...options }),
    fn,
  );
}

const test = testsNamed("DoT upstream", !HAVE_OPENSSL);

test("10 concurrent queries share one connection, answered out of order, foreign answers ignored", async () => {
  await withServer({}, { caFile: pki!.caFile }, {}, async (server, upstream) => {
    server.batch = 10;
    const names = Array.from({ length: 10 }, (_, i) => `q${i}.test`);
    const got = await Promise.all(names.map((n) => askA(upstream, n)));
    assertEquals(got, names.map(addressFor));
    assertEquals(server.accepted, 1);
    assertEquals(upstream.connections, 1);
  });
});

test("first query and reused-connection timings (printed)", async () => {
  await withServer({}, { caFile: pki!.caFile }, {}, async (server, upstream) => {
    await printReuseTimings("DoT", (name, timeoutMs) => askA(upstream, name, timeoutMs), 10_000);
    assertEquals(server.accepted, 1);
  });
});

test("reconnects after the server closes the connection", async () => {
  await withServer({}, { caFile: pki!.caFile }, {}, async (server, upstream) => {
    server.closeAfter = 1;
    assertEquals(await askA(upstream, "q1.test"), "192.0.2.2");
    await sleep(100);
    assertEquals(await askA(upstream, "q2.test"), "192.0.2.3");
    assertEquals(server.accepted, 2);
  });
});

test("a certificate from another CA fails with a clear reason, logged, then backs off", async () => {
  await withServer(
    {},
    { caFile: pki!.otherCaFile },
    { backoffMs: 300 },
    async (server, upstream, logged) => {
      const e = await failure(askA(upstream, "q1.test"));
      assertMatch(
        e.message,
        /^tls:\/\/127\.0\.0\.1:\d+: TLS handshake failed \(server name dot\.test\).*UnknownIssuer/,
      );
      assertEquals(logged.length, 1);
      assertMatch(logged[0], /TLS handshake failed.*UnknownIssuer.*retrying after 300 ms/);
      const again = await failure(askA(upstream, "q1.test"));
      assertMatch(again.message, /not retrying for \d+ ms after: TLS handshake failed/);
      assertEquals(server.accepted, 1);
      await sleep(350);
      await failure(askA(upstream, "q1.test"));
      assertEquals(server.accepted, 2);
    },
  );
});

test("no ca-file: the test CA is not trusted", async () => {
  await withServer({}, {}, {}, async (_server, upstream) => {
    const e = await failure(askA(upstream, "q1.test"));
    assertMatch(e.message, /TLS handshake failed.*UnknownIssuer/);
  });
});

test("an SNI name the certificate does not carry fails", async () => {
  await withServer({ hostName: "wrong.test" }, { caFile: pki!.caFile }, {}, async (_server, upstream) => {
    const e = await failure(askA(upstream, "q1.test"));
    assertMatch(
      e.message,
      /TLS handshake failed \(server name wrong\.test\).*not valid for name "wrong\.test"/,
    );
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

test("ca-path: every PEM file in the directory is trusted", async () => {
  const dir = await Deno.makeTempDir({ prefix: "keeldns-capath-" });
  await Deno.copyFile(pki!.caFile, `${dir}/ca.pem`);
  await Deno.writeTextFile(`${dir}/README`, "not a certificate");
  assertEquals(loadCaCerts({ caPath: dir }).length, 1);
  await withServer({}, { caPath: dir }, {}, async (_server, upstream) => {
    assertEquals(await askA(upstream, "q4.test"), "192.0.2.5");
  });
});

test("closes the connection when idle and reopens it on demand", async () => {
  await withServer({}, { caFile: pki!.caFile }, { idleMs: 150 }, async (server, upstream) => {
    assertEquals(await askA(upstream, "q1.test"), "192.0.2.2");
    await sleep(50);
    assertEquals(await askA(upstream, "q2.test"), "192.0.2.3");
    await sleep(100);
    assertEquals(server.closedByClient, 0, "each query restarts the idle time");
    await sleep(150);
    assertEquals(server.closedByClient, 1);
    assertEquals(await askA(upstream, "q3.test"), "192.0.2.4");
    assertEquals(server.accepted, 2);
  });
});

test("an aborted exchange fails as aborted and leaves the connection usable", async () => {
  await withServer({}, { caFile: pki!.caFile }, {}, async (server, upstream) => {
    server.batch = 2;
    const controller = new Cancel();
    const pending = upstream.exchange(parseQuery(buildQuery("q1.test", "A")), controller);
    await sleep(50);
    controller.cancel();
    assertMatch((await failure(pending)).message, /aborted/);
    assertEquals(await askA(upstream, "q2.test"), "192.0.2.3");
    assertEquals(server.accepted, 1);
  });
});

test("-no-check-certificate, -spki-pin and -tls-host-verify are checked through node:tls", async () => {
  const der = Uint8Array.from(
    atob(pki!.cert.replace(/-----[^-]+-----/g, "").replace(/\s+/g, "")),
    (c) => c.charCodeAt(0),
  );
  const pin = await spkiPin(der);
  // No CA given: the chain is not trusted, and not checked.
  await withServer({ verifyCertificate: false }, {}, {}, async (_server, upstream) => {
    assertEquals(await askA(upstream, "q1.test"), addressFor("q1.test"));
  });
  await withServer({ spkiPins: ["AAAA", pin] }, { caFile: pki!.caFile }, {}, async (server, upstream) => {
    assertEquals(await askA(upstream, "q2.test"), addressFor("q2.test"));
    assertEquals(await askA(upstream, "q3.test"), addressFor("q3.test"));
    assertEquals(server.accepted, 1, "one connection, reused");
  });
  await withServer(
    { spkiPins: ["AAAA"] },
    { caFile: pki!.caFile },
    {},
    async (_server, upstream, logged) => {
      assertMatch((await failure(askA(upstream, "q1.test"))).message, /is not one of the -spki-pin values/);
      assertMatch(logged[0], new RegExp(`SPKI pin ${pin.replace(/[+/]/g, "\\$&")}`));
    },
  );
  // SNI other.sni, which the certificate does not carry; checked for dot.test, which it does.
  await withServer(
    { hostName: "other.sni", verifyName: "dot.test" },
    { caFile: pki!.caFile },
    {},
    async (_server, upstream) => assertEquals(await askA(upstream, "q4.test"), addressFor("q4.test")),
  );
  await withServer(
    { hostName: "dot.test", verifyName: "nope.test" },
    { caFile: pki!.caFile },
    {},
    async (_server, upstream) => {
      assertMatch((await failure(askA(upstream, "q5.test"))).message, /TLS handshake failed/);
    },
  );
  const missing = new TlsUpstream(loopbackConfig("tls", 853, "dot.test"), { caFile: "/nonexistent/ca.pem" }, {
    log: () => {},
  });
  assertMatch((await failure(askA(missing, "q1.test"))).message, /ca-file \/nonexistent\/ca\.pem: /);
});

test("close() fails exchanges under way", async () => {
  await withServer({}, { caFile: pki!.caFile }, {}, async (server, upstream) => {
    server.batch = 5;
    const pending = askA(upstream, "q1.test");
    await sleep(50);
    upstream.close();
    assertMatch((await failure(pending)).message, /upstream closed/);
  });
});

if (pki) {
  globalThis.addEventListener("unload", () => Deno.removeSync(pki.dir, { recursive: true }));
}
