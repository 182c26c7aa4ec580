import { assertEquals } from "../tests/helpers/assert.ts";
import { buildQuery } from "../tests/helpers/dns_client.ts";
import { decodePacket, encodePacket } from "../dns/packet.ts";
import { parseQuery } from "../dns/wire.ts";
import { UdpUpstream } from "./udp.ts";
import dgram from "node:dgram";
import { Buffer } from "node:buffer";

/** Binds a UDP socket on 127.0.0.1 with a random port. */
async function socketOn(): Promise<dgram.Socket> {
  const s = dgram.createSocket("udp4");
  await new Promise<void>((r) => s.bind(0, "127.0.0.1", () => r()));
  return s;
}

Deno.test({
  name: "UdpUpstream ignores spoofed replies (other port, wrong ID, wrong question) and takes the real one",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const server = await socketOn();
    const spoofer = await socketOn();
    const seenPorts: number[] = [];
    server.on("message", (msg: Uint8Array, rinfo: dgram.RemoteInfo) => {
      const query = decodePacket(msg);
      seenPorts.push(rinfo.port);
      const answer = (id: number, name: string, ip: string) =>
        Buffer.from(encodePacket({
          type: "response",
          id,
          flags: 0x8180,
          questions: [{ name, type: "A", class: "IN" }],
          answers: [{ name, type: "A", ttl: 60, data: ip }],
        }));
      spoofer.send(answer(query.id!, "a.test", "203.0.113.66"), rinfo.port, rinfo.address);
      server.send(answer((query.id! + 1) & 0xffff, "a.test", "203.0.113.67"), rinfo.port, rinfo.address);
      server.send(answer(query.id!, "b.test", "203.0.113.68"), rinfo.port, rinfo.address);
      setTimeout(() => server.send(answer(query.id!, "a.test", "192.0.2.1"), rinfo.port, rinfo.address), 20);
    });
    try {
      const upstream = new UdpUpstream("127.0.0.1", server.address().port);
      const q = parseQuery(buildQuery("a.test", "A"));
      const a = decodePacket(await upstream.exchange(q, new AbortController().signal));
      assertEquals((a.answers![0] as { data: string }).data, "192.0.2.1");
      const b = decodePacket(await upstream.exchange(q, new AbortController().signal));
      assertEquals((b.answers![0] as { data: string }).data, "192.0.2.1");
      assertEquals(seenPorts.length, 2);
      assertEquals(seenPorts[0] !== seenPorts[1], true, "consecutive exchanges leave from different sockets");
    } finally {
      server.close();
      spoofer.close();
    }
  },
});

Deno.test({
  name: "UdpUpstream gives up when the signal aborts",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const silent = await socketOn();
    try {
      const upstream = new UdpUpstream("127.0.0.1", silent.address().port);
      const controller = new AbortController();
      setTimeout(() => controller.abort(), 50);
      let error: Error | undefined;
      await upstream.exchange(parseQuery(buildQuery("a.test", "A")), controller.signal).catch((e) =>
        error = e
      );
      assertEquals(error?.name, "UpstreamError");
    } finally {
      silent.close();
    }
  },
});

Deno.test({
  name: "UdpUpstream keeps moving to new random source ports",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const server = await socketOn();
    const ports = new Set<number>();
    server.on("message", (msg: Uint8Array, rinfo: dgram.RemoteInfo) => {
      ports.add(rinfo.port);
      const out = new Uint8Array(msg);
      out[2] |= 0x80;
      server.send(out, rinfo.port, rinfo.address);
    });
    try {
      const upstream = new UdpUpstream("127.0.0.1", server.address().port);
      const q = parseQuery(buildQuery("a.test", "A"));
      for (let i = 0; i < 1100; i++) await upstream.exchange(q, new AbortController().signal);
      // 4 sockets rotated every 256 queries: 1100 queries must have used more than 4 ports.
      assertEquals(ports.size > 4, true, `only ${ports.size} source ports`);
    } finally {
      server.close();
    }
  },
});
