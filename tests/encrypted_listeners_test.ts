/**
 * End to end: the encrypted listeners (`bind-tls`, `bind-https`) of the real program, with a CA
 * and a leaf certificate made by openssl for the test (SAN IP:127.0.0.1, DNS:dns.test), asked by
 * kdig over DoT and DoH (POST and GET); malformed input over TLS and bad HTTP requests get clean
 * errors and never end the child; the connection cap and the idle timeout apply to DoT; without a
 * certificate keeldns makes one, once, into the data directory, and kdig trusting its CA is
 * answered. Needs kdig and openssl (skipped without them, required under KEELDNS_REQUIRE_PEERS=1).
 */
import { assert, assertEquals } from "./helpers/assert.ts";
import { buildQuery, decodeReply } from "./helpers/dns_client.ts";
import { FakeUpstream } from "./helpers/fake_upstream.ts";
import { freePort, KeeldnsProcess, programPath, runKeeldns, skipWithout } from "./helpers/keeldns_process.ts";
import { frame, FramedReader, writeAll } from "../dns/stream_framing.ts";
import { makeTestPki } from "./helpers/test_pki.ts";

const ignore = skipWithout("kdig", "openssl");

async function run(program: string, args: string[], cwd?: string): Promise<string> {
  const out = await new Deno.Command(programPath(program), { args, cwd, stdin: "null" }).output();
  const text = new TextDecoder().decode(out.stdout);
  if (!out.success) {
    throw new Error(`${program} ${args.join(" ")} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
  return text;
}

function kdig(certs: string, port: number, ...args: string[]): Promise<string> {
  return run("kdig", [
    "@127.0.0.1",
    "-p",
    String(port),
    `+tls-ca=${certs}/ca.pem`,
    "+tls-hostname=dns.test",
    "+time=3",
    "+retry=0",
    "+short",
    ...args,
  ]);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

Deno.test({
  name: "DoT and DoH listeners: kdig gets answers; malformed input gets clean errors; cap and idle timeout",
  ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const certs = (await makeTestPki(await Deno.makeTempDir({ prefix: "keeldns-certs-" }), "dns.test")).dir;
    const fake = await FakeUpstream.start();
    const tlsPort = await freePort();
    const httpsPort = await freePort();
    const k = await KeeldnsProcess.start(
      `bind 127.0.0.1:{port}
bind-tls 127.0.0.1:${tlsPort}
bind-https 127.0.0.1:${httpsPort}
bind-cert-file ${certs}/leaf.pem
bind-cert-key-file ${certs}/leaf.key
tcp-idle-time 1
server 127.0.0.1:${fake.port}
address /x.test/192.0.2.77
log-level info
`,
      { name: "smartdns.conf" },
    );
    const child = k.childPid;
    const caCert = await Deno.readTextFile(`${certs}/ca.pem`);
    const client = Deno.createHttpClient({ caCerts: [caCert] });
    const doh = `https://127.0.0.1:${httpsPort}/dns-query`;
    const connectTls = () =>
      Deno.connectTls({ hostname: "127.0.0.1", port: tlsPort, caCerts: [caCert], alpnProtocols: ["dot"] });
    try {
      await t.step("the fingerprint of the certificate is logged", async () => {
        const fp =
          (await run("openssl", ["x509", "-in", `${certs}/leaf.pem`, "-noout", "-fingerprint", "-sha256"]))
            .trim().split("=")[1];
        await k.waitFor(new RegExp(`fingerprint ${fp}`), 2000);
      });
      await t.step("kdig +tls gets the local rule's answer", async () => {
        assertEquals((await kdig(certs, tlsPort, "+tls", "x.test", "A")).trim(), "192.0.2.77");
      });
      await t.step("kdig +https (POST) and +https-get get it too", async () => {
        assertEquals((await kdig(certs, httpsPort, "+https", "x.test", "A")).trim(), "192.0.2.77");
        assertEquals(
          (await kdig(certs, httpsPort, "+https", "+https-get", "x.test", "A")).trim(),
          "192.0.2.77",
        );
      });
      await t.step("a forwarded name over DoT comes from the upstream", async () => {
        const out = await kdig(certs, tlsPort, "+tls", "other.test", "A");
        assert(out.trim().length > 0, "an answer");
      });
      await t.step("bad HTTP requests get 400, 415, 413, 404, 405", async () => {
        const status = async (url: string, init: RequestInit = {}) => {
          const r = await fetch(url, { ...init, client });
          await r.body?.cancel();
          return r.status;
        };
        assertEquals(await status(`${doh}`), 400, "GET without ?dns=");
        assertEquals(await status(`${doh}?dns=***`), 400, "not base64url");
        assertEquals(await status(`${doh}?dns=AAAA`), 400, "too short for a DNS message");
        assertEquals(
          await status(doh, { method: "POST", headers: { "content-type": "text/plain" }, body: "x" }),
          415,
        );
        assertEquals(
          await status(doh, {
            method: "POST",
            headers: { "content-type": "application/dns-message" },
            body: new Uint8Array(70000),
          }),
          413,
        );
        assertEquals(
          await status(doh, {
            method: "POST",
            headers: { "content-type": "application/dns-message" },
            body: crypto.getRandomValues(new Uint8Array(40)).fill(0xff, 0, 12),
          }),
          400,
          "garbage body",
        );
        assertEquals(await status(`https://127.0.0.1:${httpsPort}/other`), 404);
        assertEquals(await status(doh, { method: "PUT", body: "x" }), 405);
        // and a good POST still works, with its content type and a cache lifetime
        const r = await fetch(doh, {
          method: "POST",
          headers: { "content-type": "application/dns-message" },
          body: buildQuery("x.test", "A", { id: 77 }) as Uint8Array<ArrayBuffer>,
          client,
        });
        assertEquals(r.status, 200);
        assertEquals(r.headers.get("content-type"), "application/dns-message");
        assert(/^max-age=\d+$/.test(r.headers.get("cache-control") ?? ""), "cache-control");
        const reply = decodeReply(new Uint8Array(await r.arrayBuffer()));
        assertEquals(reply.id, 77);
      });
      await t.step("garbage instead of a TLS handshake only ends that connection", async () => {
        const raw = await Deno.connect({ hostname: "127.0.0.1", port: tlsPort });
        await writeAll(raw, new TextEncoder().encode("GET / HTTP/1.0\r\n\r\n" + "\x00".repeat(500)));
        const buf = new Uint8Array(4096);
        for (;;) {
          const n = await raw.read(buf).catch(() => null);
          if (n === null) break;
        }
        raw.close();
        // plain HTTP to the DoH port too
        const raw2 = await Deno.connect({ hostname: "127.0.0.1", port: httpsPort });
        await writeAll(raw2, new TextEncoder().encode("POST /dns-query HTTP/1.1\r\nHost: x\r\n\r\n"));
        for (;;) {
          const n = await raw2.read(buf).catch(() => null);
          if (n === null) break;
        }
        raw2.close();
      });
      await t.step("a garbage DNS message inside TLS gets no crash; the next query is answered", async () => {
        const conn = await connectTls();
        await conn.handshake();
        await writeAll(conn, frame(new Uint8Array(30).fill(0xff)));
        await writeAll(conn, frame(buildQuery("x.test", "A", { id: 5 })));
        const reader = new FramedReader(conn);
        let id = -1;
        for (let i = 0; i < 2 && id !== 5; i++) {
          const m = await reader.next();
          if (m === null) break;
          try {
            id = decodeReply(m).id;
          } catch { /* an error answer to the garbage */ }
        }
        conn.close();
        assertEquals(id, 5);
      });
      await t.step("an idle DoT connection is closed after tcp-idle-time", async () => {
        const conn = await connectTls();
        await conn.handshake();
        const started = performance.now();
        const end = await new FramedReader(conn).next().catch(() => null);
        const waited = performance.now() - started;
        conn.close();
        assertEquals(end, null);
        assert(waited > 800 && waited < 5000, `closed after ${waited.toFixed(0)} ms`);
      });
      await t.step("a handshake that never comes is closed by the idle timeout", async () => {
        const raw = await Deno.connect({ hostname: "127.0.0.1", port: tlsPort });
        const started = performance.now();
        const n = await raw.read(new Uint8Array(16)).catch(() => null);
        const waited = performance.now() - started;
        raw.close();
        assertEquals(n, null);
        assert(waited > 800 && waited < 5000, `closed after ${waited.toFixed(0)} ms`);
      });
      await t.step("the child is the one that started", () => {
        assertEquals(k.childPid, child);
        assert(!k.lines.some((l) => /uncaught|unhandled/.test(l)), k.lines.join("\n"));
      });
    } finally {
      client.close();
      await k.stop();
      await fake.close();
      await Deno.remove(certs, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test({
  name: "TOML tls:// and https:// listeners, max-tcp-connections on DoT, a planned restart keeps both",
  ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const certs = (await makeTestPki(await Deno.makeTempDir({ prefix: "keeldns-certs-" }), "dns.test")).dir;
    const fake = await FakeUpstream.start();
    const httpsPort = await freePort();
    const k = await KeeldnsProcess.start(`
[server]
cert-file = "${certs}/leaf.pem"
key-file = "${certs}/leaf.key"
max-tcp-connections = 2
[[server.listen]]
address = "tls://127.0.0.1:{port}"
[[server.listen]]
address = "https://127.0.0.1:${httpsPort}"
[[upstream]]
address = "udp://127.0.0.1:${fake.port}"
[log]
level = "info"
`);
    const caCert = await Deno.readTextFile(`${certs}/ca.pem`);
    const connectTls = async () => {
      const c = await Deno.connectTls({ hostname: "127.0.0.1", port: k.port, caCerts: [caCert] });
      await c.handshake();
      return c;
    };
    try {
      assert((await kdig(certs, httpsPort, "+https", "a.test", "A")).trim().length > 0, "DoH answers");
      const a = await connectTls();
      const b = await connectTls();
      await sleep(100);
      const c = await Deno.connectTls({ hostname: "127.0.0.1", port: k.port, caCerts: [caCert] });
      const refused = await c.handshake().then(() => new FramedReader(c).next()).catch(() => null);
      assertEquals(refused, null, "the third connection is closed at once");
      c.close();
      await writeAll(a, frame(buildQuery("a.test", "A", { id: 9 })));
      assertEquals(decodeReply((await new FramedReader(a).next())!).id, 9);
      a.close();
      b.close();
      // A planned restart binds the new child beside the old one (SO_REUSEPORT on both listeners).
      const before = k.childPid;
      const r = await runKeeldns(["restart", "-p", `${k.dir}/keeldns.pid`]);
      assertEquals(r.code, 0, r.stderr + r.stdout);
      assert(k.childPid !== before, "a new child serves");
      assert((await kdig(certs, k.port, "+tls", "b.test", "A")).trim().length > 0, "DoT after the restart");
      assert(
        (await kdig(certs, httpsPort, "+https", "c.test", "A")).trim().length > 0,
        "DoH after the restart",
      );
    } finally {
      await k.stop();
      await fake.close();
      await Deno.remove(certs, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test({
  name: "bind-tls and bind-https without a certificate: keeldns makes one once into the data directory",
  ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const fake = await FakeUpstream.start();
    const tlsPort = await freePort();
    const httpsPort = await freePort();
    // cache-file names the data directory: the test's own (relative to the config file).
    const k = await KeeldnsProcess.start(
      `bind 127.0.0.1:{port}
bind-tls 127.0.0.1:${tlsPort}
bind-https 127.0.0.1:${httpsPort}
cache-file keeldns.cache
server 127.0.0.1:${fake.port}
address /x.test/192.0.2.77
log-level info
`,
      { name: "smartdns.conf" },
    );
    const tls = `${k.dir}/tls`;
    const ask = (port: number, hostname: string, ...args: string[]) =>
      run("kdig", [
        "@127.0.0.1",
        "-p",
        String(port),
        `+tls-ca=${tls}/ca.pem`,
        `+tls-hostname=${hostname}`,
        "+time=3",
        "+retry=0",
        "+short",
        ...args,
      ]);
    try {
      let fingerprint = "";
      await t.step("the CA and the server certificate are made and both fingerprints logged", async () => {
        const m = await k.waitFor(
          /certificate keeldns made in (\S+) .*CA SHA-256 fingerprint ([0-9A-F:]{95}).*SHA-256 fingerprint ([0-9A-F:]{95})/,
        );
        assertEquals(m[1], tls);
        const caFp =
          (await run("openssl", ["x509", "-in", `${tls}/ca.pem`, "-noout", "-fingerprint", "-sha256"]))
            .trim().split("=")[1];
        assertEquals(m[2], caFp);
        fingerprint = m[3];
        assertEquals((await Deno.stat(`${tls}/ca.key`)).mode! & 0o777, 0o600);
        assertEquals((await Deno.stat(`${tls}/server.pem`)).mode! & 0o777, 0o600);
        const verify = await run("openssl", ["verify", "-CAfile", `${tls}/ca.pem`, `${tls}/server.pem`]);
        assert(/OK/.test(verify), verify);
      });
      await t.step("kdig trusting the made CA gets answers over DoT and DoH, by name and by IP", async () => {
        assertEquals((await ask(tlsPort, "keeldns", "+tls", "x.test", "A")).trim(), "192.0.2.77");
        assertEquals((await ask(tlsPort, "localhost", "+tls", "x.test", "A")).trim(), "192.0.2.77");
        assertEquals((await ask(httpsPort, "keeldns", "+https", "x.test", "A")).trim(), "192.0.2.77");
        // No +tls-hostname: kdig checks the address it connects to against the certificate.
        const byIp = await run("kdig", [
          "@127.0.0.1",
          "-p",
          String(tlsPort),
          `+tls-ca=${tls}/ca.pem`,
          "+time=3",
          "+retry=0",
          "+short",
          "+tls",
          "x.test",
        ]);
        assertEquals(byIp.trim(), "192.0.2.77");
      });
      await t.step(
        "a name the certificate does not carry is refused by kdig (the check can fail)",
        async () => {
          const wrong = await ask(tlsPort, "not-this.test", "+tls", "x.test", "A").then(
            () => "answered",
            () => "refused",
          );
          assertEquals(wrong, "refused");
        },
      );
      await t.step("a new child uses the same files again", async () => {
        const from = k.lines.length;
        Deno.kill(k.childPid, "SIGKILL");
        // (The guardian's crash report quotes the old child's lines, "made" among them.)
        const m = await k.waitFor(
          /certificate keeldns reused in .*SHA-256 fingerprint ([0-9A-F:]{95})$/,
          20_000,
          from,
        );
        assertEquals(m[1], fingerprint);
        assert(
          !k.lines.slice(from).some((l) => /^\S.*certificate keeldns made/.test(l)),
          "nothing made anew",
        );
        await k.waitFor(/child (\d+) ready/, 20_000, from);
        assertEquals((await ask(tlsPort, "keeldns", "+tls", "x.test", "A")).trim(), "192.0.2.77");
      });
    } finally {
      await k.stop();
      await fake.close();
    }
  },
});

Deno.test({
  name: "bind-cert-file without bind-cert-key-file: the start is refused with a clear message",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const fake = await FakeUpstream.start();
    const k = await KeeldnsProcess.start(
      `bind-tls 127.0.0.1:{port}\nbind-cert-file /nonexistent/cert.pem\nserver 127.0.0.1:${fake.port}\n`,
      { name: "smartdns.conf", waitReady: false },
    );
    try {
      await k.waitFor(/bind-cert-file needs bind-cert-key-file too/, 20_000);
    } finally {
      await k.stop();
      await fake.close();
    }
  },
});
