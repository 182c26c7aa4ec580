/**
 * DNS over UDP to one upstream. Queries leave from a small pool of sockets, each bound to a random
 * port by the kernel and retired after `ROTATE_AFTER` queries, so source ports keep changing without
 * paying for a socket per query. Every query carries a fresh random ID; a response is accepted only
 * from the server's address and port, for an ID pending on that socket, with the same question.
 * A truncated answer is retried over TCP.
 *
 * @module
 */
import dgram from "node:dgram";
import { type Question, readId, sameQuestion } from "../dns/wire.ts";
import { exchangeOn, type ExchangeSocket, type PendingQuery, ROTATE_AFTER } from "./pending_exchange.ts";
import { TcpUpstream } from "./tcp.ts";
import type { Cancel } from "./cancel.ts";
import { authority, canonicalIp, type Upstream, UpstreamError } from "./upstream.ts";

/** Sockets in use at once per upstream. */
const POOL_SIZE = 4;

/** One outgoing socket and the queries pending on it, by ID. */
class OutgoingSocket implements ExchangeSocket {
  readonly pending = new Map<number, PendingQuery>();
  sent = 0;
  retired = false;
  private closed = false;

  constructor(readonly socket: dgram.Socket) {}

  /** Marks the socket as not taking new queries; it closes once nothing is pending. */
  retire(): void {
    this.retired = true;
    this.settled();
  }

  /** Closes a retired socket once its last query has settled. */
  settled(): void {
    if (this.retired && this.pending.size === 0 && !this.closed) {
      this.closed = true;
      this.socket.close();
    }
  }
}

/** A UDP upstream server. */
export class UdpUpstream implements Upstream {
  readonly address: string;
  private readonly canonicalHost: string;
  private readonly tcp: TcpUpstream;
  private readonly pool: (OutgoingSocket | undefined)[] = new Array(POOL_SIZE);
  private next = 0;

  constructor(readonly host: string, readonly port: number) {
    this.address = `udp://${authority(host, port)}`;
    this.canonicalHost = canonicalIp(host);
    this.tcp = new TcpUpstream(host, port);
  }

  /** A socket with room for another query, opening or rotating one as needed. */
  private socket(): OutgoingSocket {
    const slot = this.next;
    this.next = (this.next + 1) % POOL_SIZE;
    let out = this.pool[slot];
    if (out && out.sent >= ROTATE_AFTER) {
      out.retire();
      out = undefined;
    }
    if (!out) {
      out = this.open();
      this.pool[slot] = out;
    }
    return out;
  }

  private open(): OutgoingSocket {
    const socket = dgram.createSocket(this.host.includes(":") ? "udp6" : "udp4");
    const out = new OutgoingSocket(socket);
    socket.on("error", (e: Error) => {
      // The socket is unusable: fail what waits on it and let the pool open a new one.
      for (const p of out.pending.values()) p.done(new UpstreamError(this.address, e.message));
      const slot = this.pool.indexOf(out);
      if (slot >= 0) this.pool[slot] = undefined;
      out.retire();
    });
    socket.on("message", (msg: Uint8Array, rinfo: { address: string; port: number }) => {
      if (rinfo.port !== this.port || msg.length < 12 || !(msg[2] & 0x80)) return;
      const pending = out.pending.get(readId(msg));
      if (!pending || canonicalIp(rinfo.address) !== this.canonicalHost) return;
      if (!sameQuestion(pending.query, pending.questionEnd, msg)) return;
      pending.done(null, new Uint8Array(msg.buffer, msg.byteOffset, msg.byteLength), (msg[2] & 0x02) !== 0);
    });
    return out;
  }

  /** Retires every socket of the pool; each closes once its pending queries settle. */
  close(): void {
    for (let i = 0; i < POOL_SIZE; i++) {
      this.pool[i]?.retire();
      this.pool[i] = undefined;
    }
  }

  /** Sends `q` and resolves with the first verified response (over TCP if it came truncated). */
  exchange(q: Question, cancel: Cancel): Promise<Uint8Array> {
    if (cancel.cancelled) return Promise.reject(new UpstreamError(this.address, "aborted"));
    const out = this.socket();
    return exchangeOn(out, q, cancel, this.address, this.tcp, (query, failure) => {
      out.socket.send(query, this.port, this.host, (e: Error | null) => e && failure.fail(e));
    });
  }
}
