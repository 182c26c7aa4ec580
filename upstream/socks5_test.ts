/**
 * Upstreams through proxies, against the test SOCKS5 proxy and a tiny HTTP CONNECT proxy on
 * loopback, with a fake upstream that counts what reaches it: answers come through the proxy
 * (its counters prove it), UDP goes through UDP ASSOCIATE, a truncated UDP answer is retried over
 * TCP through the same proxy, and a proxy that is down or refuses the credentials fails the
 * exchange without the server ever being asked directly.
 */
import { assert, assertEquals, assertMatch } from "../tests/helpers/assert.ts";
import { buildQuery } from "../tests/helpers/dns_client.ts";
import { FakeUpstream } from "../tests/helpers/fake_upstream.ts";
import { Socks5Proxy } from "../tests/helpers/socks5_proxy.ts";
import { decodePacket } from "../dns/packet.ts";
import { buildUpstreamQuery, parseQuery } from "../dns/wire.ts";
import type { ProxyConfig } from "../config/schema.ts";
import { parseUdpDatagram, udpDatagram } from "./socks5.ts";
import { TcpUpstream } from "./tcp.ts";
import { Socks5UdpUpstream } from "./udp_socks5.ts";
import type { Upstream } from "./upstream.ts";
import { Cancel } from "./cancel.ts";

const q = (name: string) => parseQuery(buildQuery(name, "A"));
const signal = () => Cancel.after(3000);

function socks(port: number, extra: Partial<ProxyConfig> = {}): ProxyConfig {
  return { name: "p", kind: "socks5", host: "127.0.0.1", port, ...extra };
}

async function firstAddress(up: Upstream, name: string): Promise<string> {
  const answer = decodePacket(await up.exchange(q(name), signal()));
  return String((answer.answers?.[0] as { data?: unknown } | undefined)?.data);
}

/** The error `p` rejects with (fails the test if it resolves). */
async function rejects(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new Error("expected a rejection");
}

/** A free loopback port with nothing listening on it. */
function closedPort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = l.addr.port;
  l.close();
  return port;
}

Deno.test("socks5: the UDP header round-trips for IPv4 and IPv6", () => {
  for (const host of ["192.0.2.7", "2001:db8::7"]) {
    const d = parseUdpDatagram(udpDatagram({ host, port: 53 }, new Uint8Array([1, 2, 3])));
    assertEquals(d?.from, { host, port: 53 });
    assertEquals([...d!.payload], [1, 2, 3]);
  }
  assertEquals(parseUdpDatagram(new Uint8Array([0, 0, 1, 1, 127, 0, 0, 1, 0, 53])), undefined, "fragment");
});

Deno.test("socks5: TCP and UDP servers answer through the proxy, with and without auth", async () => {
  const fake = await FakeUpstream.start();
  for (const auth of [undefined, { user: "u", pass: "p@ss:w" }]) {
    const proxy = Socks5Proxy.start({ auth, zeroRelayAddress: true });
    const cfg = socks(proxy.port, auth ? { username: auth.user, password: auth.pass } : {});
    try {
      const tcp = new TcpUpstream("127.0.0.1", fake.port, cfg);
      assertEquals(await firstAddress(tcp, "t.test"), "192.0.2.1");
      assertEquals(proxy.connects, 1, "the TCP exchange went through CONNECT");
      const udp = new Socks5UdpUpstream("127.0.0.1", fake.port, cfg);
      try {
        for (let i = 0; i < 3; i++) assertEquals(await firstAddress(udp, `u${i}.test`), "192.0.2.1");
        assertEquals(proxy.associations, 1, "one association serves every query");
        assert(proxy.udpRelayed >= 3, `relayed ${proxy.udpRelayed}`);
        assert(fake.log.includes("u0.test A udp"), fake.log.join(", "));
      } finally {
        udp.close();
      }
    } finally {
      proxy.close();
    }
  }
  await fake.close();
});

Deno.test("socks5: a truncated UDP answer is asked again over TCP through the same proxy", async () => {
  const fake = await FakeUpstream.start(() => ({ truncateUdp: true }));
  const proxy = Socks5Proxy.start();
  const udp = new Socks5UdpUpstream("127.0.0.1", fake.port, socks(proxy.port));
  try {
    assertEquals(await firstAddress(udp, "tc.test"), "192.0.2.1");
    assertEquals(fake.log, ["tc.test A udp", "tc.test A tcp"]);
    assertEquals(proxy.connects, 1, "the TCP retry went through the proxy");
  } finally {
    udp.close();
    proxy.close();
    await fake.close();
  }
});

Deno.test("socks5: the association is opened again after the proxy ends it", async () => {
  const fake = await FakeUpstream.start();
  let proxy = Socks5Proxy.start();
  const port = proxy.port;
  const udp = new Socks5UdpUpstream("127.0.0.1", fake.port, socks(port));
  try {
    assertEquals(await firstAddress(udp, "a.test"), "192.0.2.1");
    proxy.close();
    await new Promise((r) => setTimeout(r, 50));
    await rejects(udp.exchange(q("b.test"), signal()));
    assertEquals(fake.count("b.test"), 0, "never asked directly while the proxy is down");
    // A proxy on the same port again: the next query opens a new association.
    proxy = Socks5Proxy.start({}, port);
    assertEquals(await firstAddress(udp, "c.test"), "192.0.2.1");
  } finally {
    udp.close();
    proxy.close();
    await fake.close();
  }
});

Deno.test("socks5: a proxy that is down or refuses the credentials fails, the server is not asked", async () => {
  const fake = await FakeUpstream.start();
  const down = socks(closedPort());
  for (
    const up of [
      new TcpUpstream("127.0.0.1", fake.port, down),
      new Socks5UdpUpstream("127.0.0.1", fake.port, down),
    ]
  ) {
    const e = await rejects(up.exchange(q("down.test"), signal()));
    assertMatch((e as Error).message, /proxy p/);
    up.close();
  }
  const proxy = Socks5Proxy.start({ auth: { user: "u", pass: "right" } });
  const wrong = socks(proxy.port, { username: "u", password: "wrong" });
  const none = socks(proxy.port);
  try {
    for (
      const [cfg, reason] of [[wrong, /refused the user name/], [
        none,
        /wants a user name|accepts none/,
      ]] as const
    ) {
      const e = await rejects(
        new TcpUpstream("127.0.0.1", fake.port, cfg).exchange(q("auth.test"), signal()),
      );
      assertMatch((e as Error).message, reason);
    }
    assertEquals(proxy.authFailures, 1);
  } finally {
    proxy.close();
  }
  assertEquals(fake.log, [], "no query reached the server");
  await fake.close();
});

Deno.test("http proxy: a TCP server answers through CONNECT with Basic credentials", async () => {
  const fake = await FakeUpstream.start();
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const seen: string[] = [];
  (async () => {
    for await (const conn of listener) {
      (async () => {
        const buf = new Uint8Array(4096);
        let head = "";
        while (!head.includes("\r\n\r\n")) {
          const n = await conn.read(buf);
          if (n === null) return conn.close();
          head += new TextDecoder().decode(buf.subarray(0, n));
        }
        seen.push(head);
        const target = head.split(" ")[1];
        const [host, port] = [target.slice(0, target.lastIndexOf(":")), Number(target.split(":").pop())];
        const server = await Deno.connect({ hostname: host, port });
        await conn.write(new TextEncoder().encode("HTTP/1.1 200 Connection established\r\n\r\n"));
        await Promise.allSettled([
          conn.readable.pipeTo(server.writable),
          server.readable.pipeTo(conn.writable),
        ]);
      })().catch(() => {});
    }
  })().catch(() => {});
  try {
    const cfg: ProxyConfig = {
      name: "h",
      kind: "http",
      host: "127.0.0.1",
      port: listener.addr.port,
      username: "u",
      password: "p",
    };
    assertEquals(await firstAddress(new TcpUpstream("127.0.0.1", fake.port, cfg), "h.test"), "192.0.2.1");
    assertMatch(seen[0], new RegExp(`^CONNECT 127\\.0\\.0\\.1:${fake.port} HTTP/1\\.1\\r\\n`));
    assert(seen[0].includes(`Proxy-Authorization: Basic ${btoa("u:p")}`), seen[0]);
    assertEquals(fake.log, ["h.test A tcp"]);
  } finally {
    listener.close();
    await fake.close();
  }
});

Deno.test("tcp-keepalive: TCP queries carry the RFC 7828 option with the configured timeout", async () => {
  const { withTcpKeepalive } = await import("./tcp_keepalive.ts");
  const plain = buildUpstreamQuery(q("k.test"), 1);
  const withOption = withTcpKeepalive(plain, 1200);
  assertEquals([...withOption.subarray(plain.length - 2)], [0, 6, 0, 11, 0, 2, 1200 >> 8, 1200 & 0xff]);
  // Against a TCP listener that records the query as received.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  let received: Uint8Array | undefined;
  (async () => {
    const conn = await listener.accept();
    const buf = new Uint8Array(512);
    let n = 0;
    while (n < 2 || n < 2 + ((buf[0] << 8) | buf[1])) n += (await conn.read(buf.subarray(n))) ?? 0;
    received = buf.slice(2, n);
    conn.close();
  })();
  const up = new TcpUpstream("127.0.0.1", listener.addr.port, undefined, 1200);
  await rejects(up.exchange(q("k.test"), signal()));
  listener.close();
  const opt = decodePacket(received!).additionals?.[0] as { options?: { code: number; timeout?: number }[] };
  assertEquals(opt.options?.map((o) => o.code), [11]);
  assertEquals(opt.options?.[0].timeout, 1200);
});
