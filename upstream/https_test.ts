/**
 * The DoH upstream against a tiny Deno HTTPS server with a test CA and a leaf for 127.0.0.1 and
 * doh.test (made with openssl), which answers DNS messages and counts the connections it sees.
 */
import { assert, assertEquals, assertMatch } from "../tests/helpers/assert.ts";
import { buildQuery } from "../tests/helpers/dns_client.ts";
import { hasProgram } from "../tests/helpers/keeldns_process.ts";
import { decodePacket, encodePacket } from "../dns/packet.ts";
import { parseQuery } from "../dns/wire.ts";
import { HttpsUpstream } from "./https.ts";
import { UpstreamError } from "./upstream.ts";
import { makeTestCa, makeTestPki } from "../tests/helpers/test_pki.ts";
import { Socks5Proxy } from "../tests/helpers/socks5_proxy.ts";
import { Cancel } from "./cancel.ts";

interface TestServer {
  port: number;
  /** Client ports seen, one per connection. */
  connections: Set<number>;
  requests: { host: string | null; url: string; id: number; type: string | null }[];
  shutdown(): Promise<void>;
}

async function startServer(dir: string, status = 200): Promise<TestServer> {
  const connections = new Set<number>();
  const requests: TestServer["requests"] = [];
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    cert: await Deno.readTextFile(`${dir}/leaf.pem`),
    key: await Deno.readTextFile(`${dir}/leaf.key`),
    onListen() {},
  }, async (request, info) => {
    connections.add(info.remoteAddr.port);
    const body = new Uint8Array(await request.arrayBuffer());
    const query = decodePacket(body);
    requests.push({
      host: request.headers.get("host"),
      url: request.url,
      id: query.id ?? -1,
      type: request.headers.get("content-type"),
    });
    if (status !== 200) return new Response("no", { status });
    await new Promise((r) => setTimeout(r, 20)); // let the queries overlap
    const answer = encodePacket({
      type: "response",
      id: query.id,
      flags: 0x8180,
      questions: query.questions,
      answers: [{ name: query.questions![0].name, type: "A", ttl: 300, data: "192.0.2.54" }],
    });
    return new Response(answer as Uint8Array<ArrayBuffer>, {
      headers: { "content-type": "application/dns-message" },
    });
  });
  return { port: server.addr.port, connections, requests, shutdown: () => server.shutdown() };
}

const tls = (extra: Record<string, unknown> = {}) => ({ verifyCertificate: true, spkiPins: [], ...extra });

Deno.test({
  name: "DoH upstream: answers, one connection for 20 concurrent queries, SNI name, Host, errors",
  ignore: !hasProgram("openssl"),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const dir = await Deno.makeTempDir({ prefix: "keeldns-doh-" });
    const other = await Deno.makeTempDir({ prefix: "keeldns-doh-other-" });
    await makeTestPki(dir, "doh.test", "keeldns test CA");
    await makeTestCa(other, "ca", "another test CA");
    const server = await startServer(dir);
    const failing = await startServer(dir, 503);
    const config = (port: number, extra: Record<string, unknown> = {}) => ({
      host: "127.0.0.1",
      port,
      path: "/dns-query",
      tls: tls(extra),
    });
    const signal = () => Cancel.after(5000);
    try {
      await t.step("by IP: answer with ID 0 in query and answer", async () => {
        const up = new HttpsUpstream(config(server.port), { caFile: `${dir}/ca.pem` });
        try {
          const answer = await up.exchange(parseQuery(buildQuery("a.test", "A")), signal());
          const packet = decodePacket(answer);
          assertEquals(packet.id, 0);
          assertEquals((packet.answers?.[0] as { data?: unknown })?.data, "192.0.2.54");
          const last = server.requests.at(-1)!;
          assertEquals(last.id, 0);
          assertEquals(last.type, "application/dns-message");
          assertEquals(up.address, `https://127.0.0.1:${server.port}/dns-query`);
        } finally {
          up.close();
        }
      });

      await t.step("20 concurrent queries share one connection", async () => {
        const up = new HttpsUpstream(config(server.port), { caFile: `${dir}/ca.pem` });
        try {
          const before = new Set(server.connections);
          await up.exchange(parseQuery(buildQuery("warm.test", "A")), signal());
          const answers = await Promise.all(
            Array.from(
              { length: 20 },
              (_, i) => up.exchange(parseQuery(buildQuery(`q${i}.test`, "A")), signal()),
            ),
          );
          for (const [i, a] of answers.entries()) {
            assertEquals(decodePacket(a).questions![0].name, `q${i}.test`);
          }
          const fresh = [...server.connections].filter((p) => !before.has(p));
          assertEquals(fresh.length, 1, `connections: ${fresh}`);
        } finally {
          up.close();
        }
      });

      await t.step("-host-name: SNI and certificate name doh.test, connecting to the IP", async () => {
        const up = new HttpsUpstream(
          config(server.port, { hostName: "doh.test", httpHost: "front.example" }),
          {
            caFile: `${dir}/ca.pem`,
          },
        );
        try {
          await up.exchange(parseQuery(buildQuery("named.test", "A")), signal());
          const last = server.requests.at(-1)!;
          assertEquals(new URL(last.url).hostname, "doh.test"); // the :authority / URL host
          assertEquals(last.host, "front.example"); // -http-host
          const before = new Set(server.connections);
          await Promise.all(
            Array.from(
              { length: 20 },
              (_, i) => up.exchange(parseQuery(buildQuery(`t${i}.test`, "A")), signal()),
            ),
          );
          assertEquals(
            [...server.connections].filter((p) => !before.has(p)).length,
            0,
            "the tunnel's one connection",
          );
        } finally {
          up.close();
        }
      });

      await t.step("a -host-name the certificate lacks fails clearly", async () => {
        const up = new HttpsUpstream(config(server.port, { hostName: "bad.test" }), {
          caFile: `${dir}/ca.pem`,
        });
        try {
          const e = await up.exchange(parseQuery(buildQuery("a.test", "A")), signal()).catch((e) => e);
          assert(e instanceof UpstreamError, String(e));
          assertMatch(e.message, /not valid for name "bad\.test"/);
        } finally {
          up.close();
        }
      });

      await t.step("the wrong CA fails clearly", async () => {
        const up = new HttpsUpstream(config(server.port), { caFile: `${other}/ca.pem` });
        try {
          const e = await up.exchange(parseQuery(buildQuery("a.test", "A")), signal()).catch((e) => e);
          assert(e instanceof UpstreamError, String(e));
          assertMatch(
            e.message,
            /^https:\/\/127\.0\.0\.1:\d+\/dns-query: .*invalid peer certificate: UnknownIssuer/,
          );
        } finally {
          up.close();
        }
      });

      await t.step("an HTTP error status is an UpstreamError", async () => {
        const up = new HttpsUpstream(config(failing.port), { caFile: `${dir}/ca.pem` });
        try {
          const e = await up.exchange(parseQuery(buildQuery("a.test", "A")), signal()).catch((e) => e);
          assert(e instanceof UpstreamError, String(e));
          assertMatch(e.message, /HTTP status 503/);
        } finally {
          up.close();
        }
      });

      await t.step("a timeout aborts the exchange", async () => {
        const up = new HttpsUpstream(config(server.port), { caFile: `${dir}/ca.pem` });
        try {
          const e = await up.exchange(parseQuery(buildQuery("a.test", "A")), Cancel.after(1)).catch((
            e,
          ) => e);
          assert(e instanceof UpstreamError, String(e));
          assertMatch(e.message, /aborted/);
        } finally {
          up.close();
        }
      });

      await t.step("options Deno cannot honour refuse the server, saying why", async () => {
        const cases: [Record<string, unknown>, RegExp][] = [
          [{ verifyCertificate: false }, /-no-check-certificate is not supported/],
          [{ spkiPins: ["AAAA"] }, /-spki-pin is not supported/],
          [{ hostName: "doh.test", verifyName: "other.test" }, /-tls-host-verify other\.test differs/],
        ];
        for (const [extra, reason] of cases) {
          const up = new HttpsUpstream(config(server.port, extra), { caFile: `${dir}/ca.pem` });
          assertMatch(up.refusal ?? "", reason);
          const e = await up.exchange(parseQuery(buildQuery("a.test", "A")), signal()).catch((e) => e);
          assert(e instanceof UpstreamError);
          assertMatch(e.message, /refused: /);
          up.close();
        }
        const missing = new HttpsUpstream(config(server.port), { caFile: `${dir}/none.pem` });
        assertMatch(missing.refusal ?? "", /ca-file .*none\.pem/);
      });

      await t.step("ca-path: a directory of PEM files", async () => {
        const up = new HttpsUpstream(config(server.port), { caPath: dir });
        try {
          assertEquals(up.refusal, undefined);
          await up.exchange(parseQuery(buildQuery("a.test", "A")), signal());
        } finally {
          up.close();
        }
      });
    } finally {
      await server.shutdown();
      await failing.shutdown();
      await Deno.remove(dir, { recursive: true });
      await Deno.remove(other, { recursive: true });
    }
  },
});

Deno.test({
  name: "DoH upstream through a SOCKS5 proxy: by IP and by -host-name, and never around a proxy that is down",
  ignore: !hasProgram("openssl"),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const signal = () => Cancel.after(5000);
    const dir = await Deno.makeTempDir({ prefix: "keeldns-doh-proxy-" });
    await makeTestPki(dir, "doh.test", "keeldns test CA");
    const server = await startServer(dir);
    const proxy = Socks5Proxy.start();
    const via = (port: number) => ({ name: "p", kind: "socks5" as const, host: "127.0.0.1", port });
    try {
      for (const hostName of [undefined, "doh.test"]) {
        const up = new HttpsUpstream({
          host: "127.0.0.1",
          port: server.port,
          path: "/dns-query",
          tls: tls(hostName ? { hostName } : {}),
          proxy: via(proxy.port),
        }, { caFile: `${dir}/ca.pem` });
        try {
          const before = proxy.connects;
          const answer = decodePacket(await up.exchange(parseQuery(buildQuery("p.test", "A")), signal()));
          assertEquals((answer.answers?.[0] as { data?: unknown }).data, "192.0.2.54");
          assertEquals(proxy.connects, before + 1, `through the proxy (host-name ${hostName})`);
        } finally {
          up.close();
        }
      }
      const seen = server.requests.length;
      const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const downPort = l.addr.port;
      l.close();
      const down = new HttpsUpstream(
        { host: "127.0.0.1", port: server.port, path: "/dns-query", tls: tls(), proxy: via(downPort) },
        { caFile: `${dir}/ca.pem` },
      );
      try {
        let failed = "";
        try {
          await down.exchange(parseQuery(buildQuery("down.test", "A")), signal());
        } catch (e) {
          if (e instanceof UpstreamError) failed = e.message;
        }
        assertMatch(failed, /tunnel: proxy p \(127\.0\.0\.1:\d+\): Connection refused/);
        assertEquals(server.requests.length, seen, "the server was not asked directly");
      } finally {
        down.close();
      }
    } finally {
      proxy.close();
      await server.shutdown();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
