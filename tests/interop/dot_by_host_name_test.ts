/**
 * Interop: `server-tls dot.test.example -bootstrap-dns`-style configurations. keeldns resolves the
 * DoT server's name through a fake bootstrap server and forwards to a real unbound at the address
 * it got (the certificate is for the name, which stays the SNI); a new answer after the TTL moves
 * it to a second unbound; a name the bootstrap server cannot resolve fails with the reason, said
 * once; `-host-ip` pins the address and the bootstrap server is never asked. A plain UDP server
 * by name is resolved by the default group's server given by IP address when none is marked
 * `-bootstrap-dns`; and a file whose names nothing can resolve is refused at load.
 */
import { assert, assertEquals, assertMatch } from "../helpers/assert.ts";
import { udpQuery } from "../helpers/dns_client.ts";
import { FakeUpstream } from "../helpers/fake_upstream.ts";
import { freePort, KeeldnsProcess, runKeeldns, skipWithout } from "../helpers/keeldns_process.ts";
import { startUnboundTls, stopPeer } from "../helpers/peers.ts";
import { makeTestPki } from "../helpers/test_pki.ts";

const NAME = "dot.test.example";

/** The address keeldns's answer for who.test. holds (192.0.2.1 from one unbound, .2 from the other). */
async function who(port: number): Promise<string> {
  const reply = await udpQuery(port, "who.test", "A", { timeoutMs: 5000 });
  return reply.rcode === "NOERROR" ? String(reply.answers[0]?.data) : reply.rcode;
}

Deno.test({
  name:
    "server-tls by host name: resolved through -bootstrap-dns, re-resolved after the TTL; -host-ip asks nobody",
  ignore: skipWithout("unbound", "openssl"),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const dir = await Deno.makeTempDir({ prefix: "keeldns-dot-name-" });
    await makeTestPki(dir, NAME);
    const port = await freePort();
    const unbound = (host: string, ip: string) =>
      startUnboundTls(dir, { host, port, zone: "who.test.", records: [`who.test. 300 IN A ${ip}`] });
    const first = await unbound("127.0.0.1", "192.0.2.1");
    const second = await unbound("127.0.0.2", "192.0.2.2");
    let target = "127.0.0.1";
    const boot = await FakeUpstream.start((name, type) =>
      name !== NAME
        ? { rcode: "NXDOMAIN" }
        : { answers: type === "A" ? [{ name, type: "A", ttl: 1, data: target }] : [] }
    );
    const config = (server: string, bootstrap = boot.port) =>
      `bind 127.0.0.1:{port}\nserver 127.0.0.1:${bootstrap} -bootstrap-dns\n${server}\n` +
      `ca-file ${dir}/ca.pem\ncache-size 0\nlog-level info\n`;
    try {
      await t.step(
        "resolved through the bootstrap server; queries go to unbound at that address",
        async (s) => {
          const k = await KeeldnsProcess.start(config(`server-tls ${NAME}:${port}`), {
            name: "smartdns.conf",
          });
          try {
            assertEquals(await who(k.port), "192.0.2.1");
            await k.waitFor(
              new RegExp(`tls://${NAME}:${port}: ${NAME} resolved to 127\\.0\\.0\\.1 \\(kept 10 s\\)`),
            );
            assert(boot.count(NAME) >= 1, "the bootstrap server was asked for the name");
            assertEquals(boot.count("who.test"), 0, "a -bootstrap-dns server is not in the default group");

            await s.step(
              "a new address after the TTL (floored to 10 s) moves the queries there",
              async () => {
                target = "127.0.0.2";
                const asked = boot.count(NAME);
                const started = performance.now();
                let answer = "";
                for (let i = 0; i < 60 && answer !== "192.0.2.2"; i++) {
                  answer = await who(k.port);
                  // Until the new address is in use, the old one keeps answering: no query fails.
                  assert(answer === "192.0.2.1" || answer === "192.0.2.2", `answer ${answer}`);
                  if (answer !== "192.0.2.2") await new Promise((r) => setTimeout(r, 500));
                }
                assertEquals(answer, "192.0.2.2", "re-resolved within 30 s");
                assert(boot.count(NAME) > asked, "asked the bootstrap server again");
                assert(performance.now() - started > 5000, "not before the floored TTL ran out");
                await k.waitFor(new RegExp(`${NAME} now resolves to 127\\.0\\.0\\.2 \\(was 127\\.0\\.0\\.1`));
              },
            );
          } finally {
            await k.stop();
          }
        },
      );

      await t.step(
        "a name the bootstrap server cannot resolve: SERVFAIL, and the reason logged once",
        async () => {
          const k = await KeeldnsProcess.start(config(`server-tls nowhere.test.example:${port}`), {
            name: "smartdns.conf",
          });
          try {
            for (let i = 0; i < 3; i++) assertEquals(await who(k.port), "SERVFAIL");
            const reason = /cannot resolve nowhere\.test\.example: A: udp:\/\/127\.0\.0\.1:\d+ NXDOMAIN/;
            await k.waitFor(reason);
            assertEquals(k.lines.filter((l) => reason.test(l)).length, 1, k.lines.join("\n"));
          } finally {
            await k.stop();
          }
        },
      );

      await t.step("-host-ip pins the address: the bootstrap server is never asked", async () => {
        const silent = await FakeUpstream.start(() => ({ answers: [] }));
        const k = await KeeldnsProcess.start(
          config(`server-tls ${NAME}:${port} -host-ip 127.0.0.2`, silent.port),
          { name: "smartdns.conf" },
        );
        try {
          for (let i = 0; i < 3; i++) assertEquals(await who(k.port), "192.0.2.2");
          assertEquals(silent.log, [], "nothing was asked of the bootstrap server");
        } finally {
          await k.stop();
          await silent.close();
        }
      });
    } finally {
      await boot.close();
      await stopPeer(first);
      await stopPeer(second);
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("smartdns.conf: a host-named server nothing can resolve is refused at load, with its line", async () => {
  const dir = await Deno.makeTempDir({ prefix: "keeldns-dot-name-" });
  try {
    const path = `${dir}/smartdns.conf`;
    // A -bootstrap-dns server that is itself a name, and one with nothing at all to resolve it.
    await Deno.writeTextFile(path, "bind 127.0.0.1:5353\nserver-tls dot.test.example -bootstrap-dns\n");
    let r = await runKeeldns(["check", "-c", path]);
    assertEquals(r.code, 1);
    assertMatch(r.stderr, new RegExp(`${path}:2:12: dot\\.test\\.example: a bootstrap server cannot itself`));
    r = await runKeeldns(["run", "-c", path, "-p", `${dir}/keeldns.pid`]);
    assert(r.code !== 0, "keeldns run refuses the file");
    assertMatch(r.stderr, new RegExp(`${path}:2:12: dot\\.test\\.example: a bootstrap server cannot itself`));
    // No server given by IP address in the default group: /etc/resolv.conf's nameservers resolve
    // the name (SmartDNS's getaddrinfo), and convert writes them out; with none the file is refused.
    await Deno.writeTextFile(
      path,
      "bind 127.0.0.1:5353\nserver 192.0.2.1 -e -g x\nserver-tls dot.test.example\n",
    );
    const system = /^\s*nameserver\s+(\d+\.\d+\.\d+\.\d+)\s*$/m.exec(
      await Deno.readTextFile("/etc/resolv.conf").catch(() => ""),
    );
    r = await runKeeldns(["convert", path]);
    if (system) {
      assertEquals(r.code, 0, r.stderr);
      assertMatch(
        r.stdout,
        new RegExp(
          `address = "udp://${
            system[1].replaceAll(".", "\\.")
          }:53"\nexclude-default-group = true\nbootstrap = true`,
        ),
      );
    } else {
      assertEquals(r.code, 1);
      assertMatch(
        r.stderr,
        new RegExp(`${path}:3:12: dot\\.test\\.example: nothing can resolve this host name`),
      );
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "server udp://host:port by name, no -bootstrap-dns: the default group's server by IP resolves it",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    // SmartDNS asks the servers given by IP address when no server is marked -bootstrap-dns.
    const byIp = await FakeUpstream.start((name) =>
      name === "plain.test.example"
        ? { answers: [{ name, type: "A", ttl: 300, data: "127.0.0.1" }] }
        : { rcode: "REFUSED" }
    );
    const named = await FakeUpstream.start((name) => ({
      answers: [{ name, type: "A", ttl: 60, data: "192.0.2.7" }],
    }));
    const k = await KeeldnsProcess.start(
      `bind 127.0.0.1:{port}\nserver 127.0.0.1:${byIp.port}\nserver udp://plain.test.example:${named.port}\n` +
        "cache-size 0\nlog-level info\n",
      { name: "smartdns.conf" },
    );
    try {
      assertEquals(await who(k.port), "192.0.2.7");
      assert(byIp.count("plain.test.example") >= 1, "the server given by IP address resolved the name");
      assertEquals(named.count("who.test"), 1, "the server given by name got the query");
      await k.waitFor(/udp:\/\/plain\.test\.example:\d+: plain\.test\.example resolved to 127\.0\.0\.1/);
    } finally {
      await k.stop();
      await byIp.close();
      await named.close();
    }
  },
});
