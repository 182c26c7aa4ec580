import { assertEquals, assertLess, assertThrows } from "../tests/helpers/assert.ts";
import {
  AF_INET,
  AF_INET6,
  decodeSockaddr,
  encodeSockaddr,
  ipBytes,
  LinuxUdpSocket,
  MMSGHDR_SIZE,
  MmsgVector,
  MsgOffset,
  NAME_SIZE,
} from "./linux_socket.ts";
import { udpExchangeRaw } from "../tests/helpers/dns_client.ts";

Deno.test("ipBytes parses IPv4 and every IPv6 spelling", () => {
  assertEquals([...ipBytes("192.0.2.1")], [192, 0, 2, 1]);
  assertEquals([...ipBytes("::")], Array(16).fill(0));
  assertEquals([...ipBytes("::1")], [...Array(15).fill(0), 1]);
  assertEquals([...ipBytes("2001:db8::53")], [0x20, 0x01, 0x0d, 0xb8, ...Array(10).fill(0), 0, 0x53]);
  assertEquals([...ipBytes("::ffff:192.0.2.1")], [...Array(10).fill(0), 0xff, 0xff, 192, 0, 2, 1]);
  assertEquals([...ipBytes("1:2:3:4:5:6:7:8")], [0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0, 8]);
  for (const bad of ["1.2.3", "256.1.1.1", "1::2::3", "1:2:3:4:5:6:7:8:9", "g::1"]) {
    assertThrows(() => ipBytes(bad));
  }
});

Deno.test("sockaddr_in and sockaddr_in6 have the kernel's layout", () => {
  const v4 = encodeSockaddr("127.0.0.1", 5353);
  assertEquals([...v4], [AF_INET, 0, 0x14, 0xe9, 127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
  const v6 = encodeSockaddr("::1", 53);
  assertEquals(v6.length, 28);
  assertEquals([...v6.subarray(0, 8)], [AF_INET6, 0, 0, 53, 0, 0, 0, 0]);
  assertEquals(v6[23], 1);
  assertEquals(decodeSockaddr(v4), { host: "127.0.0.1", port: 5353 });
  assertEquals(decodeSockaddr(v6), { host: "0:0:0:0:0:0:0:1", port: 53 });
});

Deno.test("MmsgVector points every header at its own iovec, slot and address room", () => {
  const v = new MmsgVector(3, 100);
  const addr = (a: Uint8Array) =>
    BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(a as Uint8Array<ArrayBuffer>)));
  for (let i = 0; i < 3; i++) {
    const h = i * MMSGHDR_SIZE;
    assertEquals(v.view.getBigUint64(h + MsgOffset.name, true), addr(v.names) + BigInt(i * NAME_SIZE));
    assertEquals(v.view.getUint32(h + MsgOffset.namelen, true), NAME_SIZE);
    assertEquals(v.view.getBigUint64(h + MsgOffset.iovlen, true), 1n);
    const iov = new Deno.UnsafePointerView(
      Deno.UnsafePointer.create(v.view.getBigUint64(h + MsgOffset.iov, true))!,
    );
    assertEquals(iov.getBigUint64(0), addr(v.data) + BigInt(i * 100));
    assertEquals(iov.getBigUint64(8), 100n);
  }
  assertEquals(v.setForSend(1, new Uint8Array(101), new Uint8Array(16)), false, "too big for the slot");
  assertEquals(v.setForSend(1, new Uint8Array([7, 8, 9]), new Uint8Array(16)), true);
  assertEquals(v.nameLength(1), 16);
});

/** A loopback socket with receive and send vectors of 8 × 512 bytes, closed after `fn`. */
function socketTest(
  name: string,
  fn: (socket: LinuxUdpSocket, rx: MmsgVector, tx: MmsgVector) => Promise<void>,
): void {
  Deno.test({
    name,
    sanitizeOps: false,
    sanitizeResources: false,
    async fn() {
      const socket = LinuxUdpSocket.bind("127.0.0.1", 0, { receiveTimeoutMs: 200 });
      try {
        await fn(socket, new MmsgVector(8, 512), new MmsgVector(8, 512));
      } finally {
        socket.close();
      }
    },
  });
}

socketTest(
  "a batched socket receives datagrams with their sender and answers them",
  async (socket, rx, tx) => {
    const reply = udpExchangeRaw(socket.localPort(), new Uint8Array([1, 2, 3, 4]), 2000);
    let n = -1;
    while (n <= 0) n = await socket.receive(rx);
    assertEquals(n, 1);
    assertEquals([...rx.payload(0)], [1, 2, 3, 4]);
    assertEquals(decodeSockaddr(rx.name(0)).host, "127.0.0.1");
    tx.setForSend(0, new Uint8Array([4, 3, 2, 1]), rx.name(0));
    assertEquals(socket.send(tx, 1), 1);
    assertEquals([...(await reply)!], [4, 3, 2, 1]);
    assertEquals(await socket.receive(rx), -1, "an idle receive times out");
  },
);

socketTest(
  "receiveNow takes what is queued without blocking, and replies go back to each sender",
  async (socket, rx, tx) => {
    const started = performance.now();
    assertEquals(socket.receiveNow(rx), -1, "nothing queued");
    assertLess(performance.now() - started, 100);
    const port = socket.localPort();
    const replies = [1, 2, 3].map((b) => udpExchangeRaw(port, new Uint8Array([b]), 2000));
    let n = 0;
    for (let tries = 0; n < 3 && tries < 200; tries++) {
      const got = socket.receiveNow(rx);
      if (got > 0) {
        for (let i = 0; i < got; i++) {
          tx.data[tx.slotOffset(i)] = rx.payload(i)[0] + 10;
          tx.setReplyLength(i, 1, rx, i);
          rx.resetForReceive(i);
        }
        assertEquals(socket.send(tx, got), got);
        n += got;
      } else {
        await new Promise((r) => setTimeout(r, 5));
      }
    }
    assertEquals(n, 3);
    assertEquals((await Promise.all(replies)).map((r) => r![0]), [11, 12, 13]);
  },
);

/** Whether this process's descriptor `fd` is close-on-exec (O_CLOEXEC in /proc/self/fdinfo). */
function closeOnExec(fd: number): boolean {
  const flags = /^flags:\s+(\d+)$/m.exec(Deno.readTextFileSync(`/proc/self/fdinfo/${fd}`))![1];
  return (parseInt(flags, 8) & 0o2000000) !== 0;
}

Deno.test({
  name: "an inheritable socket has no close-on-exec; fromFd takes it over close-on-exec and serves it",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const held = LinuxUdpSocket.bindInheritable("127.0.0.1", 0, { receiveBufferBytes: 16 * 1024 * 1024 });
    try {
      assertEquals(closeOnExec(held.fd), false, "inherited by what this process starts");
      // As root (CAP_NET_ADMIN), SO_RCVBUFFORCE passes net.core.rmem_max; the kernel doubles it.
      const rmemMax = Number(Deno.readTextFileSync("/proc/sys/net/core/rmem_max"));
      const expected = Deno.uid() === 0 ? 32 * 1024 * 1024 : Math.min(16 * 1024 * 1024, rmemMax) * 2;
      assertEquals(held.receiveBufferBytes(), expected);
      const adopted = LinuxUdpSocket.fromFd(held.fd, { receiveTimeoutMs: 200 });
      assertEquals(closeOnExec(adopted.fd), true, "the taker's copy is close-on-exec");
      assertEquals(adopted.localPort(), held.localPort());
      const rx = new MmsgVector(8, 512);
      const tx = new MmsgVector(8, 512);
      const answered = udpExchangeRaw(adopted.localPort(), new Uint8Array([1, 2, 3]), 2000);
      const n = await adopted.receive(rx);
      assertEquals(n, 1);
      tx.data.set(rx.payload(0));
      tx.setSendLength(0, rx.length(0), rx.name(0));
      assertEquals(adopted.send(tx, 1), 1);
      assertEquals([...(await answered)!], [1, 2, 3]);
    } finally {
      held.close();
    }
  },
});

Deno.test("fromFd refuses a descriptor that is no socket", () => {
  const path = Deno.realPathSync(Deno.execPath());
  const file = Deno.openSync(path);
  try {
    const fd = [...Deno.readDirSync("/proc/self/fd")].map((e) => Number(e.name)).find((n) => {
      try {
        return Deno.readLinkSync(`/proc/self/fd/${n}`) === path;
      } catch {
        return false;
      }
    })!;
    assertThrows(() => LinuxUdpSocket.fromFd(fd, { receiveTimeoutMs: 200 }), /is not a socket/);
  } finally {
    file.close();
  }
});
