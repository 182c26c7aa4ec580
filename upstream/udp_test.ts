import { assertEquals } from "../tests/helpers/assert.ts";
import { buildQuery } from "../tests/helpers/dns_client.ts";
import { decodePacket, encodePacket } from "../dns/packet.ts";
import { parseQuery } from "../dns/wire.ts";
import { UdpUpstream } from "./udp.ts";
import { BatchedUdpUpstream, OutgoingSocketPool, sameSockaddr } from "./udp_batched.ts";
import type { Upstream } from "./upstream.ts";
import { encodeSockaddr } from "../net/linux_socket.ts";
import { frame, FramedReader, writeAll } from "../dns/stream_framing.ts";

/** Both UDP upstream implementations, each with what it needs to be torn down. */
const IMPLEMENTATIONS: {
  name: string;
  make: (port: number, host?: string) => { upstream: Upstream; close: () => void };
}[] = [
  {
    name: "node:dgram",
    make: (port, host = "127.0.0.1") => ({ upstream: new UdpUpstream(host, port), close: () => {} }),
  },
  {
    name: "batched",
    make: (port, host = "127.0.0.1") => {
      const pool = new OutgoingSocketPool();
      return { upstream: new BatchedUdpUpstream(host, port, pool), close: () => pool.close() };
    },
  },
];
import dgram from "node:dgram";
import { Buffer } from "node:buffer";
import { Cancel } from "./cancel.ts";

/** Binds a UDP socket on 127.0.0.1 with a random port. */
async function socketOn(): Promise<dgram.Socket> {
  const s = dgram.createSocket("udp4");
  await new Promise<void>((r) => s.bind(0, "127.0.0.1", () => r()));
  return s;
}

for (const impl of IMPLEMENTATIONS) {
  Deno.test({
    name:
      `UDP upstream (${impl.name}) ignores spoofed replies (other port, wrong ID, wrong question), takes the real one`,
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
        setTimeout(
          () => server.send(answer(query.id!, "a.test", "192.0.2.1"), rinfo.port, rinfo.address),
          20,
        );
      });
      const { upstream, close } = impl.make(server.address().port);
      try {
        const q = parseQuery(buildQuery("a.test", "A"));
        const a = decodePacket(await upstream.exchange(q, new Cancel()));
        assertEquals((a.answers![0] as { data: string }).data, "192.0.2.1");
        const b = decodePacket(await upstream.exchange(q, new Cancel()));
        assertEquals((b.answers![0] as { data: string }).data, "192.0.2.1");
        assertEquals(seenPorts.length, 2);
        assertEquals(
          seenPorts[0] !== seenPorts[1],
          true,
          "consecutive exchanges leave from different sockets",
        );
      } finally {
        close();
        server.close();
        spoofer.close();
      }
    },
  });

  Deno.test({
    name: `UDP upstream (${impl.name}) talks to an IPv6 server and checks its address`,
    sanitizeOps: false,
    sanitizeResources: false,
    async fn() {
      const server = dgram.createSocket("udp6");
      await new Promise<void>((r) => server.bind(0, "::1", () => r()));
      const sources: string[] = [];
      server.on("message", (msg: Uint8Array, rinfo: dgram.RemoteInfo) => {
        sources.push(rinfo.address);
        const out = new Uint8Array(msg);
        out[2] |= 0x80;
        server.send(out, rinfo.port, rinfo.address);
      });
      const { upstream, close } = impl.make(server.address().port, "::1");
      try {
        const q = parseQuery(buildQuery("six.test", "AAAA"));
        const reply = await upstream.exchange(q, new Cancel());
        assertEquals(decodePacket(reply).questions![0].name, "six.test");
        assertEquals(sources, ["::1"]);
      } finally {
        close();
        server.close();
      }
    },
  });

  Deno.test({
    name: `UDP upstream (${impl.name}) gives up when the signal aborts`,
    sanitizeOps: false,
    sanitizeResources: false,
    async fn() {
      const silent = await socketOn();
      const { upstream, close } = impl.make(silent.address().port);
      try {
        const controller = new Cancel();
        setTimeout(() => controller.cancel(), 50);
        let error: Error | undefined;
        await upstream.exchange(parseQuery(buildQuery("a.test", "A")), controller).catch((e) => error = e);
        assertEquals(error?.name, "UpstreamError");
      } finally {
        close();
        silent.close();
      }
    },
  });

  Deno.test({
    name: `UDP upstream (${impl.name}) keeps moving to new random source ports`,
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
      const { upstream, close } = impl.make(server.address().port);
      try {
        const q = parseQuery(buildQuery("a.test", "A"));
        for (let i = 0; i < 1100; i++) await upstream.exchange(q, new Cancel());
        // 4 sockets rotated every 256 queries: 1100 queries must have used more than 4 ports.
        assertEquals(ports.size > 4, true, `only ${ports.size} source ports`);
      } finally {
        close();
        server.close();
      }
    },
  });
  Deno.test({
    name: `UDP upstream (${impl.name}) gets an answer larger than its receive slot in full (over TCP if cut)`,
    sanitizeOps: false,
    sanitizeResources: false,
    async fn() {
      // A UDP port whose TCP twin is free too (another test may hold it: try another).
      let server = await socketOn();
      let tcp: Deno.TcpListener | undefined;
      for (let tries = 0; !tcp; tries++) {
        try {
          tcp = Deno.listen({ hostname: "127.0.0.1", port: server.address().port });
        } catch (e) {
          if (!(e instanceof Deno.errors.AddrInUse) || tries >= 20) throw e;
          server.close();
          server = await socketOn();
        }
      }
      const port = server.address().port;
      /** 60 TXT records of 100 bytes: about 6.6 KB, more than the 4096-byte receive slot. */
      const big = (query: Uint8Array) => {
        const p = decodePacket(query);
        return encodePacket({
          type: "response",
          id: p.id,
          flags: 0x8180,
          questions: p.questions,
          answers: Array.from({ length: 60 }, (_, i) => ({
            name: "big.test",
            type: "TXT",
            ttl: 60,
            data: [String(i).padStart(100, "x")],
          })),
        });
      };
      server.on("message", (msg: Uint8Array, rinfo: dgram.RemoteInfo) => {
        server.send(big(msg), rinfo.port, rinfo.address);
      });
      const serving = (async () => {
        for await (const conn of tcp) {
          const reader = new FramedReader(conn);
          const query = await reader.next().catch(() => null);
          if (query) await writeAll(conn, frame(big(query))).catch(() => {});
          conn.close();
        }
      })();
      const { upstream, close } = impl.make(port);
      try {
        const controller = new Cancel();
        const timer = setTimeout(() => controller.cancel(), 3000);
        const answer = await upstream.exchange(parseQuery(buildQuery("big.test", "TXT")), controller);
        clearTimeout(timer);
        assertEquals(decodePacket(answer).answers!.length, 60);
      } finally {
        close();
        server.close();
        tcp.close();
        await serving.catch(() => {});
      }
    },
  });
}

Deno.test("sameSockaddr compares family, port and address only", () => {
  const a = encodeSockaddr("192.0.2.1", 53);
  const b = encodeSockaddr("192.0.2.1", 53);
  b[10] = 7; // sin_zero padding differs: still the same address
  assertEquals(sameSockaddr(a, b), true);
  assertEquals(sameSockaddr(a, encodeSockaddr("192.0.2.1", 54)), false);
  assertEquals(sameSockaddr(a, encodeSockaddr("192.0.2.2", 53)), false);
  assertEquals(sameSockaddr(encodeSockaddr("2001:db8::1", 53), encodeSockaddr("2001:db8::1", 53)), true);
  assertEquals(sameSockaddr(encodeSockaddr("2001:db8::1", 53), encodeSockaddr("2001:db8::2", 53)), false);
  assertEquals(sameSockaddr(a, encodeSockaddr("::ffff:192.0.2.1", 53)), false);
});
