/**
 * End to end: the real keeldns on a smartdns.conf whose servers go through a SOCKS5 proxy
 * (`proxy-server socks5://… -name p`, `server … -proxy p`), with the test proxy and a fake
 * upstream that counts what reaches it: UDP servers go through UDP ASSOCIATE and TCP servers
 * through CONNECT (the proxy's counters prove it); with the proxy down the answer is SERVFAIL and
 * not one query reaches the server directly. And a server-tls through the proxy to a real unbound,
 * also one given by host name: its bootstrap server is asked as configured (directly, or through
 * its own -proxy), and the address it resolved to is dialled through the named server's proxy.
 */
import { assert, assertEquals } from "./helpers/assert.ts";
import { udpQuery } from "./helpers/dns_client.ts";
import { FakeUpstream } from "./helpers/fake_upstream.ts";
import { freePort, KeeldnsProcess, skipWithout } from "./helpers/keeldns_process.ts";
import { dig, startUnboundTls, stopPeer } from "./helpers/peers.ts";
import { Socks5Proxy } from "./helpers/socks5_proxy.ts";
import { makeTestPki } from "./helpers/test_pki.ts";

Deno.test({
  name:
    "smartdns.conf -proxy: UDP and TCP servers answer through SOCKS5; a down proxy gives SERVFAIL, no direct query",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const udpServer = await FakeUpstream.start();
    const tcpServer = await FakeUpstream.start();
    const proxy = Socks5Proxy.start({ auth: { user: "keel", pass: "s3cret" }, zeroRelayAddress: true });
    const k = await KeeldnsProcess.start(
      `bind 127.0.0.1:{port}\n` +
        `proxy-server socks5://keel:s3cret@127.0.0.1:${proxy.port} -name p\n` +
        `server 127.0.0.1:${udpServer.port} -proxy p\n` +
        `server-tcp 127.0.0.1:${tcpServer.port} -proxy p\n` +
        `cache-size 0\nlog-level info\n`,
      { name: "smartdns.conf" },
    );
    try {
      await t.step("answers come through the proxy: UDP ASSOCIATE and CONNECT", async () => {
        for (let i = 0; i < 5; i++) {
          const r = await udpQuery(k.port, `n${i}.test`, "A");
          assertEquals(r.rcode, "NOERROR");
          assertEquals(r.answers.map((a) => a.data), ["192.0.2.1"]);
        }
        // The race may answer before the slower server was asked; both are asked in the end.
        await new Promise((r) => setTimeout(r, 300));
        assert(udpServer.log.some((l) => l.endsWith(" udp")), `UDP server: ${udpServer.log.join(", ")}`);
        assert(tcpServer.log.some((l) => l.endsWith(" tcp")), `TCP server: ${tcpServer.log.join(", ")}`);
        assertEquals(proxy.associations, 1, "one UDP association for the UDP server");
        assert(proxy.udpRelayed >= 5, `datagrams relayed: ${proxy.udpRelayed}`);
        assert(proxy.connects >= 5, `CONNECTs: ${proxy.connects}`);
        assertEquals(proxy.authFailures, 0);
      });
      await t.step("the proxy down: SERVFAIL, and neither server is asked directly", async () => {
        proxy.close();
        await new Promise((r) => setTimeout(r, 100));
        const r = await udpQuery(k.port, "down.test", "A", { timeoutMs: 8000 });
        assertEquals(r.rcode, "SERVFAIL");
        await new Promise((r) => setTimeout(r, 500));
        assertEquals(udpServer.count("down.test"), 0);
        assertEquals(tcpServer.count("down.test"), 0);
      });
    } finally {
      await k.stop();
      proxy.close();
      await udpServer.close();
      await tcpServer.close();
    }
  },
});

Deno.test({
  name: "smartdns.conf -proxy: server-tls through SOCKS5 to a real unbound, TLS end to end",
  ignore: skipWithout("dig", "unbound", "openssl"),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "keeldns-proxy-dot-" });
    await makeTestPki(dir, "dot.test");
    const upstreamPort = await freePort();
    const unbound = await startUnboundTls(dir, {
      host: "127.0.0.1",
      port: upstreamPort,
      zone: "dot.test.",
      records: ["a.dot.test. 300 IN A 192.0.2.53"],
    });
    const proxy = Socks5Proxy.start();
    try {
      const k = await KeeldnsProcess.start(
        `bind 127.0.0.1:{port}\nproxy-server socks5://127.0.0.1:${proxy.port} -name p\n` +
          `server-tls 127.0.0.1:${upstreamPort} -host-name dot.test -proxy p\nca-file ${dir}/ca.pem\ncache-size 0\n`,
        { name: "smartdns.conf" },
      );
      try {
        const at = ["@127.0.0.1", "-p", String(k.port), "+time=3", "+tries=1"];
        for (let i = 0; i < 3; i++) {
          assertEquals((await dig(...at, "+short", "a.dot.test")).trim(), "192.0.2.53");
        }
        assertEquals(proxy.connects, 1, "one reused DoT connection, through the proxy");
      } finally {
        await k.stop();
      }
    } finally {
      proxy.close();
      await stopPeer(unbound);
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "smartdns.conf -proxy: server-tls by host name, resolved by its bootstrap server as configured, " +
    "dialled at that address through the proxy",
  ignore: skipWithout("dig", "unbound", "openssl"),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const name = "dot.test.example";
    const dir = await Deno.makeTempDir({ prefix: "keeldns-proxy-dot-name-" });
    await makeTestPki(dir, name);
    const upstreamPort = await freePort();
    const unbound = await startUnboundTls(dir, {
      host: "127.0.0.1",
      port: upstreamPort,
      zone: "dot.test.",
      records: ["a.dot.test. 300 IN A 192.0.2.53"],
    });
    const boot = await FakeUpstream.start((n, type) =>
      n !== name
        ? { rcode: "NXDOMAIN" }
        : { answers: type === "A" ? [{ name: n, type: "A", ttl: 300, data: "127.0.0.1" }] : [] }
    );
    const run = async (bootstrapOptions: string, check: (proxy: Socks5Proxy) => void) => {
      const proxy = Socks5Proxy.start();
      try {
        const k = await KeeldnsProcess.start(
          `bind 127.0.0.1:{port}\nproxy-server socks5://127.0.0.1:${proxy.port} -name p\n` +
            `server 127.0.0.1:${boot.port} -bootstrap-dns ${bootstrapOptions}\n` +
            `server-tls ${name}:${upstreamPort} -proxy p\nca-file ${dir}/ca.pem\ncache-size 0\nlog-level info\n`,
          { name: "smartdns.conf" },
        );
        try {
          const at = ["@127.0.0.1", "-p", String(k.port), "+time=5", "+tries=1"];
          assertEquals((await dig(...at, "+short", "a.dot.test")).trim(), "192.0.2.53");
          await k.waitFor(new RegExp(`tls://${name}:${upstreamPort}: ${name} resolved to 127\\.0\\.0\\.1`));
          assertEquals(
            proxy.connects,
            1,
            "the DoT connection to the resolved address went through the proxy",
          );
          check(proxy);
        } finally {
          await k.stop();
        }
      } finally {
        proxy.close();
      }
    };
    try {
      await t.step("a bootstrap server without -proxy is asked directly", async () => {
        const before = boot.count(name);
        await run("", (proxy) => assertEquals(proxy.associations, 0, "no UDP through the proxy"));
        assert(boot.count(name) > before, "the bootstrap server was asked");
      });
      await t.step("a bootstrap server with its own -proxy is asked through it", async () => {
        await run("-proxy p", (proxy) => {
          assertEquals(proxy.associations, 1, "the bootstrap query went through UDP ASSOCIATE");
          assert(proxy.udpRelayed >= 1, `datagrams relayed: ${proxy.udpRelayed}`);
        });
      });
    } finally {
      await boot.close();
      await stopPeer(unbound);
      await Deno.remove(dir, { recursive: true });
    }
  },
});
