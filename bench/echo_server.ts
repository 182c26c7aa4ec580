/**
 * The runtime's ceilings for the benchmark: trivial UDP responders that answer every query with one
 * fixed A record, no cache, no resolver — one on `node:dgram` (the portable transport), one on
 * batched recvmmsg/sendmmsg through FFI (the batched transport).
 *
 * Usage: deno run --allow-net --allow-ffi bench/echo_server.ts PORT portable|batched
 *
 * @module
 */
import dgram from "node:dgram";
import { parseQuery } from "../dns/wire.ts";
import { LinuxUdpSocket, MmsgVector } from "../net/linux_socket.ts";

const port = Number(Deno.args[0]);
const mode = Deno.args[1] ?? "portable";
// c00c: pointer to the question name; type A, class IN, TTL 60, 4 bytes of address.
const RECORD = new Uint8Array([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1]);

/** Writes the fixed answer to `query` at `out[offset]`; returns its length, or 0 to drop. */
function answer(query: Uint8Array, out: Uint8Array, offset: number): number {
  let end: number;
  try {
    end = parseQuery(query).questionEnd;
  } catch {
    return 0;
  }
  out.set(query.subarray(0, end), offset);
  out[offset + 2] = 0x81;
  out[offset + 3] = 0x80;
  out[offset + 6] =
    out[offset + 8] =
    out[offset + 9] =
    out[offset + 10] =
    out[offset + 11] =
      0;
  out[offset + 7] = 1;
  out.set(RECORD, offset + end);
  return end + RECORD.length;
}

Deno.addSignalListener("SIGTERM", () => Deno.exit(0));
if (mode === "batched") {
  const socket = LinuxUdpSocket.bind("127.0.0.1", port, { receiveTimeoutMs: 200 });
  const rx = new MmsgVector(64, 4096);
  const tx = new MmsgVector(64, 1536);
  for (;;) {
    const n = await socket.receive(rx);
    let out = 0;
    for (let i = 0; i < n; i++) {
      const length = answer(rx.payload(i), tx.data, tx.slotOffset(out));
      if (length > 0) tx.setSendLength(out++, length, rx.name(i));
      rx.resetForReceive(i);
    }
    if (out > 0) socket.send(tx, out);
  }
} else {
  const socket = dgram.createSocket("udp4");
  socket.on("message", (msg: Uint8Array, rinfo: dgram.RemoteInfo) => {
    const out = new Uint8Array(msg.length + RECORD.length);
    const length = answer(msg, out, 0);
    if (length > 0) socket.send(out.subarray(0, length), rinfo.port, rinfo.address);
  });
  socket.bind(port, "127.0.0.1");
}
