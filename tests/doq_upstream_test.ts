/**
 * End to end: dig asks keeldns over UDP, keeldns forwards over DNS-over-QUIC (RFC 9250) to a DoQ
 * server built on Deno's QUIC endpoint in this test process, with a test CA and leaf made by
 * openssl. No Debian package on this machine speaks DoQ (kdig 3.2.6 is built without QUIC, dnsdist
 * 1.7.3 has no DoQ), so the server is ours: the interop shown is with quinn, Deno's QUIC stack.
 */
import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { KeeldnsProcess, skipWithout } from "./helpers/keeldns_process.ts";
import { dig } from "./helpers/peers.ts";
import { makeTestCa, makeTestPki } from "./helpers/test_pki.ts";
import { doqAddressFor, DoqServer } from "./helpers/doq_server.ts";

Deno.test({
  name: "dig → keeldns → DoQ server: answers over one reused QUIC connection; wrong CA or -k refused",
  ignore: skipWithout("dig", "openssl"),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const dir = await Deno.makeTempDir({ prefix: "keeldns-doq-e2e-" });
    const pki = await makeTestPki(dir, "doq.test");
    await makeTestCa(dir, "other-ca");
    const server = new DoqServer(pki);
    const conf = (ca: string, extra = "") =>
      `bind 127.0.0.1:{port}\nserver-quic 127.0.0.1:${server.port} -host-name doq.test${extra}\n` +
      `ca-file ${dir}/${ca}\ncache-size 0\nlog-level info\n`;
    try {
      await t.step("smartdns.conf server-quic with ca-file: the answers come through", async () => {
        const k = await KeeldnsProcess.start(conf("ca.pem"), { name: "smartdns.conf" });
        try {
          const at = ["@127.0.0.1", "-p", String(k.port), "+time=3", "+tries=1", "+short"];
          const times: number[] = [];
          for (let i = 0; i < 20; i++) {
            const t0 = performance.now();
            assertEquals((await dig(...at, `q${i}.test`)).trim(), doqAddressFor(`q${i}.test`));
            times.push(performance.now() - t0);
          }
          times.sort((a, b) => a - b);
          console.log(`dig through keeldns over a reused DoQ connection: median ${times[10].toFixed(1)} ms`);
          assertEquals(server.accepted, 1, "one QUIC connection for all the queries");
          assertEquals(server.streams, 20);
          assert(server.queryIds.every((id) => id === 0), `IDs on the wire: ${server.queryIds}`);
        } finally {
          await k.stop();
        }
      });
      await t.step("a TOML quic:// upstream works the same", async () => {
        const before = server.accepted;
        const toml = `[server]\nbind = ["127.0.0.1:{port}"]\nca-file = "${dir}/ca.pem"\n` +
          `[[upstream]]\naddress = "quic://127.0.0.1:${server.port}"\nhost-name = "doq.test"\n` +
          `[cache]\nsize = 0\n`;
        const k = await KeeldnsProcess.start(toml, { name: "keeldns.toml" });
        try {
          const at = ["@127.0.0.1", "-p", String(k.port), "+time=3", "+tries=1", "+short"];
          assertEquals((await dig(...at, "q7.test")).trim(), "192.0.2.8");
          assertEquals(server.accepted, before + 1);
        } finally {
          await k.stop();
        }
      });
      await t.step("a wrong CA: SERVFAIL and a log line naming the certificate problem", async () => {
        const k = await KeeldnsProcess.start(conf("other-ca.pem"), { name: "smartdns.conf" });
        try {
          const out = await dig("@127.0.0.1", "-p", String(k.port), "+time=5", "+tries=1", "q1.test");
          assertMatch(out, /status: SERVFAIL/);
          assertEquals(/192\.0\.2\.2/.test(out), false, "no answer through an untrusted server");
          await k.waitFor(
            /quic:\/\/127\.0\.0\.1:\d+: QUIC handshake failed \(server name doq\.test\).*UnknownIssuer/,
          );
        } finally {
          await k.stop();
        }
      });
      await t.step("-no-check-certificate: the server is refused, saying why", async () => {
        const k = await KeeldnsProcess.start(conf("ca.pem", " -no-check-certificate"), {
          name: "smartdns.conf",
        });
        try {
          const before = server.accepted;
          const out = await dig("@127.0.0.1", "-p", String(k.port), "+time=5", "+tries=1", "q1.test");
          assertMatch(out, /status: SERVFAIL/);
          await k.waitFor(/-no-check-certificate is not supported: Deno's QUIC client always checks/);
          assertEquals(server.accepted, before, "a refused server is never contacted");
        } finally {
          await k.stop();
        }
      });
    } finally {
      server.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
