/**
 * Interop: dig asks keeldns over UDP, keeldns forwards over DNS-over-TLS to a real unbound that
 * answers a local zone itself (no internet), with a test CA and leaf made by openssl.
 */
import { assertEquals, assertMatch } from "../helpers/assert.ts";
import { freePort, KeeldnsProcess, skipWithout } from "../helpers/keeldns_process.ts";
import { dig, startUnboundTls, stopPeer } from "../helpers/peers.ts";
import { makeTestCa, makeTestPki } from "../helpers/test_pki.ts";

Deno.test({
  name:
    "dig → keeldns → unbound over DNS-over-TLS: the right CA answers; a wrong CA, SNI or pin gives SERVFAIL",
  ignore: skipWithout("dig", "unbound", "openssl"),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const dir = await Deno.makeTempDir({ prefix: "keeldns-dot-" });
    await makeTestPki(dir, "dot.test");
    await makeTestCa(dir, "other-ca");
    const upstreamPort = await freePort();
    const unbound = await startUnboundTls(dir, {
      host: "127.0.0.1",
      port: upstreamPort,
      zone: "dot.test.",
      records: ["a.dot.test. 300 IN A 192.0.2.53"],
    });
    const config = (ca: string) =>
      `bind 127.0.0.1:{port}\nserver-tls 127.0.0.1:${upstreamPort} -host-name dot.test\n` +
      `ca-file ${dir}/${ca}\ncache-size 0\n`;
    try {
      await t.step("the right CA: the answer comes through", async () => {
        const k = await KeeldnsProcess.start(config("ca.pem"), { name: "smartdns.conf" });
        try {
          const at = ["@127.0.0.1", "-p", String(k.port), "+time=3", "+tries=1"];
          assertEquals((await dig(...at, "+short", "a.dot.test")).trim(), "192.0.2.53");
          assertMatch(await dig(...at, "b.dot.test"), /status: NXDOMAIN/);
          const times: number[] = [];
          for (let i = 0; i < 20; i++) {
            const t0 = performance.now();
            assertEquals((await dig(...at, "+short", "a.dot.test")).trim(), "192.0.2.53");
            times.push(performance.now() - t0);
          }
          times.sort((a, b) => a - b);
          console.log(`dig through keeldns over a reused DoT connection: median ${times[10].toFixed(1)} ms`);
        } finally {
          await k.stop();
        }
      });
      await t.step("a wrong CA: the server is refused with a clear log line, SERVFAIL", async () => {
        const k = await KeeldnsProcess.start(config("other-ca.pem"), { name: "smartdns.conf" });
        try {
          const at = ["@127.0.0.1", "-p", String(k.port), "+time=5", "+tries=1"];
          const out = await dig(...at, "a.dot.test");
          assertMatch(out, /status: SERVFAIL/);
          assertEquals(/192\.0\.2\.53/.test(out), false, "no answer through an untrusted server");
          await k.waitFor(
            /tls:\/\/127\.0\.0\.1:\d+: TLS handshake failed \(server name dot\.test\).*UnknownIssuer/,
          );
        } finally {
          await k.stop();
        }
      });
      await t.step("a wrong SNI name: refused with the reason, SERVFAIL", async () => {
        const k = await KeeldnsProcess.start(
          config("ca.pem").replace("-host-name dot.test", "-host-name wrong.test"),
          { name: "smartdns.conf" },
        );
        try {
          const out = await dig("@127.0.0.1", "-p", String(k.port), "+time=5", "+tries=1", "a.dot.test");
          assertMatch(out, /status: SERVFAIL/);
          assertEquals(/192\.0\.2\.53/.test(out), false, "no answer through a server of another name");
          await k.waitFor(
            /TLS handshake failed \(server name wrong\.test\).*(not valid for name|NotValidForName)/i,
          );
        } finally {
          await k.stop();
        }
      });
      await t.step("-spki-pin: the server's own key answers, another pin gives SERVFAIL", async () => {
        const pin = new TextDecoder().decode(
          (await new Deno.Command("sh", {
            args: [
              "-c",
              `openssl x509 -in ${dir}/leaf.pem -pubkey -noout | openssl pkey -pubin -outform der | ` +
              "openssl dgst -sha256 -binary | base64",
            ],
          }).output()).stdout,
        ).trim();
        const pinned = (p: string) =>
          config("ca.pem").replace("-host-name dot.test", `-host-name dot.test -spki-pin ${p}`);
        const good = await KeeldnsProcess.start(pinned(pin), { name: "smartdns.conf" });
        try {
          const out = await dig(
            "@127.0.0.1",
            "-p",
            String(good.port),
            "+time=5",
            "+tries=1",
            "+short",
            "a.dot.test",
          );
          assertEquals(out.trim(), "192.0.2.53");
        } finally {
          await good.stop();
        }
        const bad = await KeeldnsProcess.start(pinned("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="), {
          name: "smartdns.conf",
        });
        try {
          const out = await dig("@127.0.0.1", "-p", String(bad.port), "+time=5", "+tries=1", "a.dot.test");
          assertMatch(out, /status: SERVFAIL/);
          assertEquals(/192\.0\.2\.53/.test(out), false, "no answer through a server of another key");
          await bad.waitFor(/is not one of the -spki-pin values/);
        } finally {
          await bad.stop();
        }
      });
    } finally {
      await stopPeer(unbound);
      await Deno.remove(dir, { recursive: true });
    }
  },
});
