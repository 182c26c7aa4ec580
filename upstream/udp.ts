/**
 * DNS over UDP to one upstream. Every exchange opens its own socket, so each query leaves from a
 * fresh random port with a fresh random ID; a response is accepted only from the server's address
 * and port, with the same ID and question. A truncated answer is retried over TCP.
 *
 * @module
 */
import dgram from "node:dgram";
import { buildUpstreamQuery, type Question, readId, sameQuestion } from "../dns/wire.ts";
import { TcpUpstream } from "./tcp.ts";
import { authority, canonicalIp, randomId, type Upstream, UpstreamError } from "./upstream.ts";

/** Milliseconds before an unanswered UDP query is sent once more. */
const RETRANSMIT_AFTER = 700;

/** A UDP upstream server. */
export class UdpUpstream implements Upstream {
  readonly address: string;
  private readonly canonicalHost: string;
  private readonly tcp: TcpUpstream;

  constructor(readonly host: string, readonly port: number) {
    this.address = `udp://${authority(host, port)}`;
    this.canonicalHost = canonicalIp(host);
    this.tcp = new TcpUpstream(host, port);
  }

  /** Sends `q` and resolves with the first verified response (over TCP if it came truncated). */
  exchange(q: Question, signal: AbortSignal): Promise<Uint8Array> {
    if (signal.aborted) return Promise.reject(new UpstreamError(this.address, "aborted"));
    return new Promise((resolve, reject) => {
      const id = randomId();
      const query = buildUpstreamQuery(q, id);
      const socket = dgram.createSocket(this.host.includes(":") ? "udp6" : "udp4");
      const timers: { retransmit?: ReturnType<typeof setTimeout> } = {};
      let settled = false;
      const finish = (error: Error | null, response?: Uint8Array) => {
        if (settled) return;
        settled = true;
        clearTimeout(timers.retransmit);
        signal.removeEventListener("abort", onAbort);
        socket.close();
        if (error) reject(error);
        else resolve(response!);
      };
      const onAbort = () => finish(new UpstreamError(this.address, "aborted"));
      signal.addEventListener("abort", onAbort, { once: true });
      socket.on("error", (e: Error) => finish(new UpstreamError(this.address, e.message)));
      socket.on("message", (msg: Uint8Array, rinfo: { address: string; port: number }) => {
        if (rinfo.port !== this.port || canonicalIp(rinfo.address) !== this.canonicalHost) return;
        if (msg.length < 12 || readId(msg) !== id || !(msg[2] & 0x80)) return;
        if (!sameQuestion(query, q.questionEnd, msg)) return;
        if (msg[2] & 0x02) {
          // Truncated: ask the same server over TCP, still bound by the caller's signal.
          settled = true;
          clearTimeout(timers.retransmit);
          signal.removeEventListener("abort", onAbort);
          socket.close();
          this.tcp.exchange(q, signal).then(resolve, reject);
          return;
        }
        finish(null, new Uint8Array(msg.buffer, msg.byteOffset, msg.byteLength));
      });
      const send = () => {
        socket.send(query, this.port, this.host, (e: Error | null) => {
          if (e) finish(new UpstreamError(this.address, e.message));
        });
      };
      send();
      timers.retransmit = setTimeout(send, RETRANSMIT_AFTER);
    });
  }
}
