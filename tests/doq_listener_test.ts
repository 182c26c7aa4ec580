/**
 * End to end: keeldns's DNS-over-QUIC listener (`[[server.listen]] address = "quic://…"`, TOML
 * only: SmartDNS has no DoQ listener), asked by keeldns's own DoQ client (upstream/quic.ts) and by
 * raw `Deno.connectQuic` streams for the protocol errors; the connection cap and the idle timeout
 * of `tcp-idle-time` apply; a planned restart binds the port again once the old child lets it go.
 * Another keeldns asks it with `server-quic`, also by host name (`-host-ip`, the name as SNI).
 * Without a certificate configured, the listener presents the one keeldns makes in its data
 * directory, and `flags = ["ddr"]` lists it in the DDR answer with ALPN "doq".
 * No Debian peer on this machine speaks DoQ (kdig 3.2.6 is built without QUIC), so the clients are
 * Deno's QUIC stack.
 */
import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { buildQuery, decodeReply, udpQuery } from "./helpers/dns_client.ts";
import { FakeUpstream } from "./helpers/fake_upstream.ts";
import { freePort, KeeldnsProcess, runKeeldns, skipWithout } from "./helpers/keeldns_process.ts";
import { dig } from "./helpers/peers.ts";
import { makeTestPki } from "./helpers/test_pki.ts";
import { frame } from "../dns/stream_framing.ts";
import { parseQuery } from "../dns/wire.ts";
import { QuicUpstream } from "../upstream/quic.ts";
import { Cancel } from "../upstream/cancel.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Sends `bytes` on a new stream with FIN; the answer bytes, or the error that ended the stream. */
async function rawStream(conn: Deno.QuicConn, bytes: Uint8Array): Promise<Uint8Array> {
  const stream = await conn.createBidirectionalStream();
  const writer = stream.writable.getWriter();
  await writer.write(bytes);
  await writer.close();
  const chunks: number[] = [];
  for await (const chunk of stream.readable) chunks.push(...chunk);
  return new Uint8Array(chunks);
}

/** The close code a connection ended with (rejections of `closed` carry none: -1). */
function closeCode(conn: Deno.QuicConn, timeoutMs: number): Promise<number | "open"> {
  return Promise.race([
    conn.closed.then((info) => info.closeCode, (e) => {
      const m = /code (\d+)/.exec((e as Error).message);
      return m ? Number(m[1]) : -1;
    }),
    sleep(timeoutMs).then(() => "open" as const),
  ]);
}

Deno.test({
  name: "DoQ listener: answers, ID 0 kept, protocol errors close with code 2, cap, idle, restart",
  ignore: skipWithout("openssl"),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const pki = await makeTestPki(await Deno.makeTempDir({ prefix: "keeldns-doq-listen-" }), "dns.test");
    const ca = await Deno.readTextFile(pki.caFile);
    const fake = await FakeUpstream.start();
    const quicPort = await freePort();
    const k = await KeeldnsProcess.start(
      `[server]
bind = ["127.0.0.1:{port}"]
cert-file = "${pki.certFile}"
key-file = "${pki.keyFile}"
tcp-idle-time = 1
max-tcp-connections = 3
[[server.listen]]
address = "quic://127.0.0.1:${quicPort}"
[[upstream]]
address = "udp://127.0.0.1:${fake.port}"
[[rule]]
domains = ["x.test"]
address = "192.0.2.77"
[log]
level = "info"
`,
      { name: "keeldns.toml" },
    );
    const pidFile = `${k.dir}/keeldns.pid`;
    const client = new QuicUpstream(
      {
        transport: "quic",
        host: "127.0.0.1",
        port: quicPort,
        groups: [],
        excludeDefault: false,
        tls: { verifyCertificate: true, spkiPins: [], hostName: "dns.test" },
      },
      { caFile: pki.caFile },
      { log: () => {} },
    );
    const ask = async (name: string) => {
      const answer = await client.exchange(parseQuery(buildQuery(name, "A")), Cancel.after(3000));
      return decodeReply(answer);
    };
    const connect = () =>
      Deno.connectQuic({
        hostname: "127.0.0.1",
        port: quicPort,
        serverName: "dns.test",
        alpnProtocols: ["doq"],
        caCerts: [ca],
      });
    try {
      await t.step("keeldns's DoQ client gets the rule's and the upstream's answers", async () => {
        const local = await ask("x.test");
        assertEquals(local.rcode, "NOERROR");
        assertEquals(local.answers.map((a) => a.data), ["192.0.2.77"]);
        assertEquals(local.id, 0, "the answer keeps the query's ID 0");
        const forwarded = await ask("fwd.test");
        assertEquals(forwarded.rcode, "NOERROR");
        assert(fake.log.some((l) => l.startsWith("fwd.test ")), "asked the upstream");
        const many = await Promise.all(Array.from({ length: 50 }, (_, i) => ask(`m${i}.test`)));
        assert(many.every((a) => a.rcode === "NOERROR"));
        assertEquals(client.connections, 1, "one connection for every query");
      });
      await t.step(
        "a query with an ID other than 0 closes the connection with DOQ_PROTOCOL_ERROR",
        async () => {
          const conn = await connect();
          const query = buildQuery("x.test", "A");
          query[0] = 0x12;
          query[1] = 0x34;
          await rawStream(conn, frame(query)).catch(() => new Uint8Array(0));
          assertEquals(await closeCode(conn, 2000), 2);
        },
      );
      await t.step("a stream that is not one length-prefixed message closes it too", async () => {
        const conn = await connect();
        const query = buildQuery("x.test", "A");
        query[0] = query[1] = 0;
        const bad = frame(query).slice(0, 10); // the length says more than comes
        await rawStream(conn, bad).catch(() => new Uint8Array(0));
        assertEquals(await closeCode(conn, 2000), 2);
        // Still serving.
        assertEquals((await ask("x.test")).answers.map((a) => a.data), ["192.0.2.77"]);
      });
      await t.step("a raw stream with ID 0 gets one length-prefixed answer and FIN", async () => {
        const conn = await connect();
        const query = buildQuery("x.test", "A");
        query[0] = query[1] = 0;
        const out = await rawStream(conn, frame(query));
        assertEquals((out[0] << 8) | out[1], out.length - 2);
        assertEquals(decodeReply(out.subarray(2)).answers.map((a) => a.data), ["192.0.2.77"]);
        conn.close({ closeCode: 0, reason: "" });
      });
      await t.step("an idle connection is closed after tcp-idle-time", async () => {
        const conn = await connect();
        await conn.handshake;
        const t0 = performance.now();
        const code = await closeCode(conn, 4000);
        const took = performance.now() - t0;
        assert(code !== "open", "closed");
        assert(took > 700 && took < 3000, `closed after ${took.toFixed(0)} ms`);
      });
      await t.step("connections past max-tcp-connections are refused", async () => {
        await sleep(1500); // the earlier connections are gone (idle)
        const open = [await connect(), await connect(), await connect()];
        let refused = "";
        try {
          const extra = await connect();
          await extra.handshake;
          await rawStream(extra, frame(buildQuery("x.test", "A")));
        } catch (e) {
          refused = (e as Error).message;
        }
        assertMatch(refused, /refused|closed|reset/i);
        for (const c of open) c.close({ closeCode: 0, reason: "" });
      });
      await t.step("a second keeldns with server-quic asks this one over DoQ", async () => {
        const front = await KeeldnsProcess.start(
          `bind 127.0.0.1:{port}\nserver-quic 127.0.0.1:${quicPort} -host-name dns.test\n` +
            `ca-file ${pki.caFile}\ncache-size 0\n`,
          { name: "smartdns.conf" },
        );
        try {
          for (let i = 0; i < 5; i++) {
            const reply = await udpQuery(front.port, "x.test", "A");
            assertEquals(reply.answers.map((a) => a.data), ["192.0.2.77"]);
          }
        } finally {
          await front.stop();
        }
      });
      await t.step(
        "server-quic by host name (-host-ip): the name is the SNI and certificate name",
        async () => {
          const front = await KeeldnsProcess.start(
            `bind 127.0.0.1:{port}\nserver-quic dns.test:${quicPort} -host-ip 127.0.0.1\n` +
              `ca-file ${pki.caFile}\ncache-size 0\n`,
            { name: "smartdns.conf" },
          );
          try {
            const reply = await udpQuery(front.port, "x.test", "A");
            assertEquals(reply.answers.map((a) => a.data), ["192.0.2.77"]);
          } finally {
            await front.stop();
          }
          // The certificate also names IP:127.0.0.1: only the name as SNI makes another name fail.
          const wrong = await KeeldnsProcess.start(
            `bind 127.0.0.1:{port}\nserver-quic other.test:${quicPort} -host-ip 127.0.0.1\n` +
              `ca-file ${pki.caFile}\ncache-size 0\n`,
            { name: "smartdns.conf" },
          );
          try {
            assertEquals((await udpQuery(wrong.port, "x.test", "A")).rcode, "SERVFAIL");
          } finally {
            await wrong.stop();
          }
        },
      );
      await t.step(
        "a planned restart: the new child binds the DoQ port once the old one lets go",
        async () => {
          await sleep(200);
          const mark = k.lines.length;
          const r = await runKeeldns(["restart", "-p", pidFile]);
          assertEquals(r.code, 0, r.stderr);
          await k.waitFor(/quic:\/\/127\.0\.0\.1:\d+: bound/, 5000, mark);
          let answered = false;
          for (let i = 0; i < 20 && !answered; i++) {
            try {
              answered = (await ask("x.test")).answers[0]?.data === "192.0.2.77";
            } catch {
              await sleep(200);
            }
          }
          assert(answered, "DoQ answers after the restart");
        },
      );
    } finally {
      client.close();
      await k.stop();
      await fake.close();
      await Deno.remove(pki.dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "DoQ listener without cert-file: the made certificate, and DDR advertises it with alpn doq",
  ignore: skipWithout("openssl", "dig"),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const data = await Deno.makeTempDir({ prefix: "keeldns-doq-made-" });
    const fake = await FakeUpstream.start();
    const quicPort = await freePort();
    const plainQuic = await freePort();
    const k = await KeeldnsProcess.start(
      `[server]
bind = ["127.0.0.1:{port}"]
[[server.listen]]
address = "quic://127.0.0.1:${quicPort}"
flags = ["ddr"]
[[server.listen]]
address = "quic://127.0.0.1:${plainQuic}"
[[upstream]]
address = "udp://127.0.0.1:${fake.port}"
[[rule]]
domains = ["x.test"]
address = "192.0.2.77"
[cache]
file = "${data}/keeldns.cache"
[log]
level = "info"
`,
      { name: "keeldns.toml" },
    );
    const client = (port: number, hostName?: string) =>
      new QuicUpstream(
        {
          transport: "quic",
          host: "127.0.0.1",
          port,
          groups: [],
          excludeDefault: false,
          tls: { verifyCertificate: true, spkiPins: [], ...(hostName ? { hostName } : {}) },
        },
        { caFile: `${data}/tls/ca.pem` },
        { log: () => {} },
      );
    const ask = async (u: QuicUpstream) => {
      try {
        const answer = await u.exchange(parseQuery(buildQuery("x.test", "A")), Cancel.after(3000));
        return decodeReply(answer).answers.map((a) => a.data);
      } finally {
        u.close();
      }
    };
    try {
      await t.step("the CA and server certificate are made into the data directory", async () => {
        const m = await k.waitFor(/certificate keeldns made in (\S+) /);
        assertEquals(m[1], `${data}/tls`);
      });
      await t.step("a DoQ client trusting the made CA gets answers, by name and by IP", async () => {
        assertEquals(await ask(client(quicPort, "keeldns")), ["192.0.2.77"]);
        assertEquals(await ask(client(quicPort)), ["192.0.2.77"], "the certificate names 127.0.0.1");
        const wrong = await ask(client(quicPort, "not-this.test")).then(() => "answered", () => "refused");
        assertEquals(wrong, "refused", "a name the certificate does not carry fails the handshake");
      });
      await t.step("_dns.resolver.arpa SVCB lists the -ddr DoQ listener only, with alpn doq", async () => {
        const out = await dig(
          "@127.0.0.1",
          "-p",
          String(k.port),
          "_dns.resolver.arpa",
          "SVCB",
          "+short",
          "+time=2",
        );
        assertEquals(out.trim().split("\n"), [`1 . alpn="doq" port=${quicPort} ipv4hint=127.0.0.1`]);
      });
    } finally {
      await k.stop();
      await fake.close();
      await Deno.remove(data, { recursive: true }).catch(() => {});
    }
  },
});
