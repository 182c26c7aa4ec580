/**
 * createUpstream where servers by host name meet proxies and socket marks: the name is resolved
 * through the bootstrap servers as they are (not through the named server's proxy) and the address
 * it resolved to is dialled through the proxy; settings no address could honour refuse the server
 * before anything is resolved.
 */
import { assert, assertEquals, assertMatch } from "../tests/helpers/assert.ts";
import { buildQuery } from "../tests/helpers/dns_client.ts";
import { FakeUpstream } from "../tests/helpers/fake_upstream.ts";
import { Socks5Proxy } from "../tests/helpers/socks5_proxy.ts";
import { decodePacket } from "../dns/packet.ts";
import { parseQuery } from "../dns/wire.ts";
import type { ProxyConfig, UpstreamConfig } from "../config/schema.ts";
import { BootstrapResolver } from "./bootstrap.ts";
import { createUpstream } from "./create.ts";
import { UdpUpstream } from "./udp.ts";
import { Cancel } from "./cancel.ts";

const NAME = "dns.example";

function named(extra: Partial<UpstreamConfig>): UpstreamConfig {
  return { transport: "tcp", host: NAME, name: NAME, port: 53, groups: [], excludeDefault: false, ...extra };
}

/** A bootstrap server that resolves NAME to 127.0.0.1, and the resolver asking it. */
async function bootstrap(): Promise<{ boot: FakeUpstream; names: BootstrapResolver }> {
  const boot = await FakeUpstream.start((name, type) =>
    name === NAME && type === "A" ? { answers: [{ name, type: "A", ttl: 300, data: "127.0.0.1" }] } : {
      answers: [],
    }
  );
  return { boot, names: new BootstrapResolver([new UdpUpstream("127.0.0.1", boot.port)], 2000) };
}

Deno.test("createUpstream: a server by host name with -proxy is resolved directly, then dialled through the proxy", async () => {
  const { boot, names } = await bootstrap();
  const server = await FakeUpstream.start();
  const proxy = Socks5Proxy.start();
  const via: ProxyConfig = { name: "p", kind: "socks5", host: "127.0.0.1", port: proxy.port };
  const up = createUpstream(named({ port: server.port, proxy: via }), undefined, undefined, names);
  try {
    const wire = await up.exchange(parseQuery(buildQuery("q.test", "A")), Cancel.after(5000));
    assertEquals(decodePacket(wire).answers?.map((a) => (a as { data?: unknown }).data), ["192.0.2.1"]);
    assertEquals(up.address, `tcp://${NAME}:${server.port}`);
    assert(boot.count(NAME) >= 1, "the bootstrap server was asked for the name");
    assertEquals(proxy.associations, 0, "the bootstrap query did not go through the named server's proxy");
    assertEquals(proxy.connects, 1, "the query went to the resolved address through the proxy");
    assert(server.log.includes("q.test A tcp"), server.log.join(", "));
  } finally {
    up.close();
    proxy.close();
    await server.close();
    await boot.close();
  }
});

Deno.test("createUpstream: a server by host name whose settings no address can honour is refused unresolved", async () => {
  const { boot, names } = await bootstrap();
  const http: ProxyConfig = { name: "h", kind: "http", host: "127.0.0.1", port: 3128 };
  try {
    for (
      const [config, reason] of [
        [named({ setMark: 1 }), /-set-mark and -interface are only honoured on plain UDP servers/],
        [named({ transport: "udp", proxy: http }), /proxy h is an HTTP proxy, which carries no UDP/],
        [named({ transport: "udp", interface: "lo" }), /-interface lo needs the batched UDP sockets/],
      ] as const
    ) {
      const up = createUpstream(config, undefined, undefined, names);
      assertMatch((up as { refusal?: string }).refusal ?? "", reason);
      const error = await up.exchange(parseQuery(buildQuery("q.test", "A")), Cancel.after(2000))
        .then(() => undefined, (e: Error) => e);
      assertMatch(String(error?.message), /refused: /);
      up.close();
    }
    assertEquals(boot.count(NAME), 0, "nothing was resolved for a refused server");
  } finally {
    await boot.close();
  }
});
