/**
 * End to end: Discovery of Designated Resolvers (RFC 9462). keeldns with `bind-tls … -ddr` and
 * `bind-https … -ddr` (and the certificate it makes itself) answers `_dns.resolver.arpa` SVCB
 * over plain DNS with one record per listener, as dig shows them; a client that follows the
 * records (the port, the address hint, the DoH path) reaches the encrypted listeners, and the
 * certificate covers the address the client first asked (verified discovery, RFC 9462 §4.2).
 * Without a listener marked -ddr the question goes upstream as any other. Needs dig, kdig and
 * openssl (skipped without them, required under KEELDNS_REQUIRE_PEERS=1).
 */
import { assert, assertEquals } from "./helpers/assert.ts";
import { buildQuery, decodeReply } from "./helpers/dns_client.ts";
import { FakeUpstream } from "./helpers/fake_upstream.ts";
import { freePort, KeeldnsProcess, programPath, skipWithout } from "./helpers/keeldns_process.ts";
import { dig } from "./helpers/peers.ts";

const ignore = skipWithout("dig", "kdig", "openssl");

async function kdig(args: string[]): Promise<string> {
  const out = await new Deno.Command(programPath("kdig"), { args, stdin: "null" }).output();
  if (!out.success) throw new Error(`kdig ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  return new TextDecoder().decode(out.stdout);
}

function base64Url(bytes: Uint8Array): string {
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

Deno.test({
  name: "DDR: _dns.resolver.arpa SVCB lists the -ddr listeners; following the records reaches them",
  ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const fake = await FakeUpstream.start();
    const tlsPort = await freePort();
    const httpsPort = await freePort();
    const otherTls = await freePort();
    const k = await KeeldnsProcess.start(
      `bind 127.0.0.1:{port}
bind-tcp 127.0.0.1:{port}
bind-tls 127.0.0.1:${tlsPort} -ddr
bind-https 127.0.0.1:${httpsPort} -ddr
bind-tls 127.0.0.1:${otherTls}
cache-file keeldns.cache
server 127.0.0.1:${fake.port}
address /x.test/192.0.2.77
log-level info
`,
      { name: "smartdns.conf" },
    );
    const ca = `${k.dir}/tls/ca.pem`;
    try {
      let records: string[] = [];
      await t.step("dig over UDP and TCP shows one SVCB record per -ddr listener", async () => {
        const out = await dig(
          "@127.0.0.1",
          "-p",
          String(k.port),
          "_dns.resolver.arpa",
          "SVCB",
          "+short",
          "+time=2",
        );
        records = out.trim().split("\n").sort();
        assertEquals(records, [
          `1 . alpn="dot" port=${tlsPort} ipv4hint=127.0.0.1`,
          `2 . alpn="h2,http/1.1" port=${httpsPort} ipv4hint=127.0.0.1 key7="/dns-query{?dns}"`,
        ]);
        const tcp = await dig(
          "@127.0.0.1",
          "-p",
          String(k.port),
          "+tcp",
          "_dns.resolver.arpa",
          "SVCB",
          "+short",
          "+time=2",
        );
        assertEquals(tcp.trim().split("\n").sort(), records);
        const full = await dig("@127.0.0.1", "-p", String(k.port), "_dns.resolver.arpa", "SVCB", "+time=2");
        assert(/status: NOERROR/.test(full) && /ANSWER: 2,/.test(full), full);
        assertEquals(fake.count("_dns.resolver.arpa"), 0, "answered locally, never forwarded");
      });
      await t.step("other types of the name and names below it go on as usual", async () => {
        await dig("@127.0.0.1", "-p", String(k.port), "_dns.resolver.arpa", "A", "+short", "+time=2");
        await dig("@127.0.0.1", "-p", String(k.port), "x._dns.resolver.arpa", "SVCB", "+short", "+time=2");
        assertEquals(fake.count("_dns.resolver.arpa"), 1);
        assertEquals(fake.count("x._dns.resolver.arpa"), 1);
      });
      await t.step(
        "the DoT record: port and hint reach the listener; the certificate names the hint",
        async () => {
          const [, port, hint] = /^1 \. alpn="dot" port=(\d+) ipv4hint=(\S+)$/.exec(records[0])!;
          // Verified discovery: no host name, the certificate must carry the IP address asked.
          const out = await kdig([
            `@${hint}`,
            "-p",
            port,
            "+tls",
            `+tls-ca=${ca}`,
            "+short",
            "+time=3",
            "x.test",
          ]);
          assertEquals(out.trim(), "192.0.2.77");
        },
      );
      await t.step("the DoH record: its dohpath template answers a GET", async () => {
        const m = /port=(\d+) ipv4hint=(\S+) key7="([^"]+)"/.exec(records[1])!;
        const path = m[3].replace("{?dns}", `?dns=${base64Url(buildQuery("x.test", "A", { id: 0 }))}`);
        const client = Deno.createHttpClient({ caCerts: [await Deno.readTextFile(ca)] });
        try {
          const r = await fetch(`https://${m[2]}:${m[1]}${path}`, { client });
          assertEquals(r.status, 200);
          const reply = decodeReply(new Uint8Array(await r.arrayBuffer()));
          assertEquals(reply.answers.map((a) => a.data), ["192.0.2.77"]);
        } finally {
          client.close();
        }
      });
      await t.step("asked over DoT, the same records", async () => {
        const out = await kdig([
          "@127.0.0.1",
          "-p",
          String(tlsPort),
          "+tls",
          `+tls-ca=${ca}`,
          "+short",
          "+time=3",
          "_dns.resolver.arpa",
          "SVCB",
        ]);
        assertEquals(out.trim().split("\n").length, 2, out);
      });
    } finally {
      await k.stop();
      await fake.close();
    }
  },
});

Deno.test({
  name: "DDR: without a listener marked -ddr, _dns.resolver.arpa goes upstream as any name",
  ignore: skipWithout("dig"),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const fake = await FakeUpstream.start();
    const tlsPort = await freePort();
    const k = await KeeldnsProcess.start(
      `bind 127.0.0.1:{port}\nbind-tls 127.0.0.1:${tlsPort}\ncache-file keeldns.cache\nserver 127.0.0.1:${fake.port}\n`,
      { name: "smartdns.conf" },
    );
    try {
      const out = await dig("@127.0.0.1", "-p", String(k.port), "_dns.resolver.arpa", "SVCB", "+time=2");
      assert(/status: NOERROR/.test(out) && /ANSWER: 0,/.test(out), out);
      assertEquals(fake.count("_dns.resolver.arpa"), 1, "forwarded");
    } finally {
      await k.stop();
      await fake.close();
    }
  },
});
