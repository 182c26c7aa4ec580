/**
 * The speed-check bench's upstream: answers every A question with 3 to 5 addresses (TTL 3600) that
 * no answer before it had — 127.x.y.z, taken in turn from 127.1.0.1 on (the whole of 127/8 is
 * loopback on Linux, so one listener on 0.0.0.0 takes the speed check's probes to all of them).
 * Fresh addresses are the point: the speed check remembers an address's result for a minute, so
 * repeated addresses would not be probed again. Other question types get NOERROR without records.
 * Batched recvmmsg/sendmmsg through FFI (as bench/echo_server.ts), so it is never the bottleneck.
 *
 * Usage: deno run --allow-net --allow-ffi bench/address_upstream.ts PORT
 *
 * @module
 */
import { parseQuery } from "../dns/wire.ts";
import { LinuxUdpSocket, MmsgVector } from "../net/linux_socket.ts";

const port = Number(Deno.args[0]);
// c00c: pointer to the question name; type A, class IN, TTL 3600, 4 bytes of address (then the address).
const RECORD = new Uint8Array([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0x0e, 0x10, 0, 4]);
/** How many addresses, and how many A answers, have been handed out. */
let next = 0;
let answers = 0;

/** The `k`th address handed out: 127.x.y.z with x ≥ 1 and z in 1–254 (no 127.0.0.0/16, no .0 or .255). */
function address(k: number, out: Uint8Array, at: number): void {
  const rest = Math.floor(k / 254);
  out[at] = 127;
  out[at + 1] = 1 + Math.floor(rest / 256) % 254;
  out[at + 2] = rest % 256;
  out[at + 3] = 1 + k % 254;
}

/** Writes the answer to `query` at `out[offset]`; returns its length, or 0 to drop. */
function answer(query: Uint8Array, out: Uint8Array, offset: number): number {
  let end: number;
  let qtype: number;
  try {
    const q = parseQuery(query);
    end = q.questionEnd;
    qtype = q.qtype;
  } catch {
    return 0;
  }
  out.set(query.subarray(0, end), offset);
  out[offset + 2] = 0x81 | (query[2] & 0x01); // QR, RD as asked
  out[offset + 3] = 0x80; // RA
  out[offset + 6] =
    out[offset + 8] =
    out[offset + 9] =
    out[offset + 10] =
    out[offset + 11] =
      0;
  const count = qtype === 1 ? 3 + (answers++ % 3) : 0;
  out[offset + 7] = count;
  let at = offset + end;
  for (let i = 0; i < count; i++) {
    out.set(RECORD, at);
    address(next++, out, at + 12);
    at += 16;
  }
  return at - offset;
}

Deno.addSignalListener("SIGTERM", () => Deno.exit(0));
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
