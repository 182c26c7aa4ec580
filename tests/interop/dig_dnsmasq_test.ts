/**
 * Interop: dig (BIND's client) asks keeldns, which forwards to a real dnsmasq — both real
 * processes, as a user would run them.
 */
import { assertEquals, assertMatch } from "../helpers/assert.ts";
import { freePort, KeeldnsProcess, skipWithout } from "../helpers/keeldns_process.ts";
import { dig, EXAMPLE_RECORDS, startDnsmasq, stopPeer } from "../helpers/peers.ts";

Deno.test({
  name: "dig → keeldns → dnsmasq: A, AAAA, MX, TXT, NXDOMAIN, TCP",
  ignore: skipWithout("dig", "dnsmasq"),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const upstreamPort = await freePort();
    const dnsmasq = await startDnsmasq(upstreamPort, EXAMPLE_RECORDS, {
      name: "shop.example",
      expect: "198.51.100.7",
    });
    const k = await KeeldnsProcess.start(
      `bind 127.0.0.1:{port}\nbind-tcp 127.0.0.1:{port}\nserver 127.0.0.1:${upstreamPort}\ncache-size 512\nrr-ttl-min 0\n`,
      { name: "smartdns.conf" },
    );
    const at = ["@127.0.0.1", "-p", String(k.port), "+time=2", "+tries=1"];
    try {
      await t.step("A", async () => {
        assertEquals((await dig(...at, "+short", "shop.example")).trim(), "198.51.100.7");
      });
      await t.step("AAAA", async () => {
        assertEquals((await dig(...at, "+short", "mail.example", "AAAA")).trim(), "2001:db8::25");
      });
      await t.step("MX", async () => {
        assertEquals((await dig(...at, "+short", "example", "MX")).trim(), "10 mail.example.");
      });
      await t.step("TXT", async () => {
        assertEquals((await dig(...at, "+short", "info.example", "TXT")).trim(), '"keeldns interop"');
      });
      await t.step("NXDOMAIN", async () => {
        assertMatch(await dig(...at, "nothing.example"), /status: NXDOMAIN/);
      });
      await t.step("TCP", async () => {
        assertEquals((await dig(...at, "+tcp", "+short", "shop.example")).trim(), "198.51.100.7");
      });
      await t.step("a cached answer's TTL counts down from dnsmasq's", async () => {
        const full = await dig(...at, "+noall", "+answer", "shop.example");
        const ttl = Number(full.trim().split(/\s+/)[1]);
        assertMatch(String(ttl), /^(29\d|300)$/);
      });
      await t.step("EDNS0 with DNSSEC OK is accepted", async () => {
        assertMatch(await dig(...at, "+dnssec", "+bufsize=1232", "shop.example"), /status: NOERROR/);
      });
    } finally {
      await k.stop();
      await stopPeer(dnsmasq);
    }
  },
});
