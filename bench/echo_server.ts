/**
 * The runtime's ceiling for the benchmark: a trivial UDP responder on `node:dgram` (the transport
 * keeldns uses) that answers every query with one fixed A record. No cache, no resolver.
 *
 * Usage: deno run --allow-net bench/echo_server.ts PORT
 *
 * @module
 */
import dgram from "node:dgram";
import { parseQuery } from "../dns/wire.ts";

const port = Number(Deno.args[0]);
const socket = dgram.createSocket("udp4");
// c00c: pointer to the question name; type A, class IN, TTL 60, 4 bytes of address.
const record = new Uint8Array([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1]);
socket.on("message", (msg: Uint8Array, rinfo: dgram.RemoteInfo) => {
  let end: number;
  try {
    end = parseQuery(msg).questionEnd;
  } catch {
    return;
  }
  const out = new Uint8Array(end + record.length);
  out.set(msg.subarray(0, end));
  out[2] = 0x81;
  out[3] = 0x80;
  out[7] = 1;
  out[9] =
    out[11] =
    out[8] =
    out[10] =
    out[6] =
      0;
  out.set(record, end);
  socket.send(out, rinfo.port, rinfo.address);
});
socket.bind(port, "127.0.0.1");
Deno.addSignalListener("SIGTERM", () => Deno.exit(0));
