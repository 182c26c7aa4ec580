/**
 * DNS over UDP to upstream servers on batched Linux syscalls, the miss-path twin of the batched
 * listener: queries made in the same tick leave in one `sendmmsg`, answers arrive up to 32 per
 * `recvmmsg` on a worker thread. A small pool of sockets, each on a random port and retired after
 * `ROTATE_AFTER` queries, is shared by every upstream; each query carries a fresh random ID, and a
 * response is accepted only from the server's address and port, for an ID pending on that socket,
 * with the same question. A truncated answer, or one larger than the receive slot, is retried over TCP.
 * A server with `-set-mark` or `-interface` has a pool of its own whose sockets carry SO_MARK /
 * SO_BINDTODEVICE.
 *
 * @module
 */
import { type Question, readId, sameQuestion } from "../dns/wire.ts";
import { encodeSockaddr, LinuxUdpSocket, MmsgVector, MSG_TRUNC, SendQueue } from "../net/linux_socket.ts";
import { exchangeOn, type ExchangeSocket, type PendingQuery, ROTATE_AFTER } from "./pending_exchange.ts";
import { TcpUpstream } from "./tcp.ts";
import type { Cancel } from "./cancel.ts";
import { authority, type Upstream, UpstreamError } from "./upstream.ts";

/** Sockets in use at once per address family. */
const POOL_SIZE = 4;
/** Datagrams per receive and per send call. */
const BATCH = 32;
/** Room per received answer (a UDP answer to our 1232-byte EDNS offer fits). */
const RECEIVE_SLOT = 4096;
/** Room per query sent (header, question of at most 259 bytes, OPT). */
const SEND_SLOT = 512;
/** How long one blocking receive waits, so that a retired socket notices it may close. */
const RECEIVE_TIMEOUT_MS = 200;
/** Batches taken at once on the main thread (MSG_DONTWAIT) after a receive, before the next
 * worker-thread receive: under load answers are already queued, and each hop costs a thread wake. */
const EAGER_BATCHES = 4;

/** Whether two sockaddr_in/in6 name the same family, port and address. */
export function sameSockaddr(a: Uint8Array, b: Uint8Array): boolean {
  if (a[0] !== b[0] || a[1] !== b[1] || a[2] !== b[2] || a[3] !== b[3]) return false;
  const [start, end] = a[0] === 2 ? [4, 8] : [8, 24]; // AF_INET: sin_addr; AF_INET6: sin6_addr
  if (a.length < end || b.length < end) return false;
  for (let i = start; i < end; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** One outgoing socket: its pending queries by ID, its send queue and its receive loop. */
class OutgoingSocket implements ExchangeSocket {
  readonly pending = new Map<number, PendingQuery>();
  sent = 0;
  retired = false;
  private readonly rx = new MmsgVector(BATCH, RECEIVE_SLOT);
  /** Queries made in one tick leave in one sendmmsg; a failed send shows up as no answer, which
   * the retransmit and the race's timeout handle. */
  private readonly outgoing: SendQueue;

  constructor(private readonly socket: LinuxUdpSocket) {
    this.outgoing = new SendQueue(socket, new MmsgVector(BATCH, SEND_SLOT));
    this.receiveLoop();
  }

  /** Queues `query` for `server`; everything queued in this tick leaves in one sendmmsg. */
  send(query: Uint8Array, server: Uint8Array): void {
    this.outgoing.push(query, server);
  }

  private async receiveLoop(): Promise<void> {
    const rx = this.rx;
    let eager = 0;
    while (!(this.retired && this.pending.size === 0)) {
      let n = eager < EAGER_BATCHES && this.pending.size > 0 ? this.socket.receiveNow(rx) : -1;
      if (n > 0) {
        eager++;
      } else {
        eager = 0;
        const started = performance.now();
        n = await this.socket.receive(rx);
        if (n <= 0) {
          if (performance.now() - started < 5) await new Promise((r) => setTimeout(r, 10));
          continue;
        }
      }
      for (let i = 0; i < n; i++) {
        if (rx.length(i) >= 12) {
          const payload = rx.payload(i);
          const pending = (payload[2] & 0x80) ? this.pending.get(readId(payload)) : undefined;
          if (
            pending?.server && sameSockaddr(rx.name(i), pending.server) &&
            sameQuestion(pending.query, pending.questionEnd, payload)
          ) {
            // An answer too large for the slot was cut by the kernel: ask again over TCP, as for TC.
            const cut = (rx.flags(i) & MSG_TRUNC) !== 0;
            pending.done(null, cut ? undefined : payload.slice(), cut || (payload[2] & 0x02) !== 0);
          }
        }
        rx.resetForReceive(i);
      }
    }
    this.outgoing.close();
    this.socket.close();
  }

  /** Stops taking queries; the socket closes once its pending ones are answered or given up. */
  retire(): void {
    this.retired = true;
  }
}

/** Socket options every socket of a pool carries. */
export interface SocketMarking {
  /** SO_MARK (`-set-mark`). */
  readonly mark?: number;
  /** SO_BINDTODEVICE (`-interface`). */
  readonly device?: string;
}

/** A pool of outgoing sockets, one set per address family (shared, or one server's own). */
export class OutgoingSocketPool {
  private readonly sockets: Record<"v4" | "v6", (OutgoingSocket | undefined)[]> = {
    v4: new Array(POOL_SIZE),
    v6: new Array(POOL_SIZE),
  };
  private next = 0;

  constructor(private readonly marking: SocketMarking = {}) {}

  /**
   * Opens (and keeps) a socket for `family` now, so that a socket option the kernel refuses
   * (EPERM without the capability, ENODEV for an unknown interface) is known before any query.
   * Throws with the reason.
   */
  probe(family: "v4" | "v6"): void {
    this.socket(family);
  }

  /** A socket for `family` with room for another query, opening or rotating one as needed. */
  socket(family: "v4" | "v6"): OutgoingSocket {
    const slots = this.sockets[family];
    const slot = this.next = (this.next + 1) % POOL_SIZE;
    let out = slots[slot];
    if (out && out.sent >= ROTATE_AFTER) {
      out.retire();
      out = undefined;
    }
    if (!out) {
      const host = family === "v4" ? "0.0.0.0" : "::";
      out = new OutgoingSocket(
        LinuxUdpSocket.bind(host, 0, { receiveTimeoutMs: RECEIVE_TIMEOUT_MS, ...this.marking }),
      );
      slots[slot] = out;
    }
    return out;
  }

  /** Retires every socket; each closes within a receive timeout once nothing is pending. */
  close(): void {
    for (const slots of Object.values(this.sockets)) {
      for (const s of slots) s?.retire();
      slots.fill(undefined);
    }
  }
}

/** A UDP upstream server on the batched outgoing sockets. */
export class BatchedUdpUpstream implements Upstream {
  readonly address: string;
  private readonly server: Uint8Array;
  private readonly family: "v4" | "v6";
  private readonly tcp: Pick<Upstream, "exchange">;

  /**
   * `tcp` asks again when an answer comes truncated (default: plain TCP to the server); `ownPool`
   * says the pool is this server's alone, closed with it.
   */
  constructor(
    readonly host: string,
    readonly port: number,
    private readonly pool: OutgoingSocketPool,
    options: { tcp?: Pick<Upstream, "exchange">; ownPool?: boolean } = {},
  ) {
    this.address = `udp://${authority(host, port)}`;
    this.server = encodeSockaddr(host, port);
    this.family = host.includes(":") ? "v6" : "v4";
    this.tcp = options.tcp ?? new TcpUpstream(host, port);
    this.ownPool = options.ownPool ?? false;
  }

  private readonly ownPool: boolean;

  /** Closes the pool if it is this server's own; the shared one is closed with the child. */
  close(): void {
    if (this.ownPool) this.pool.close();
  }

  /** Sends `q` and resolves with the first verified response (over TCP if it came truncated). */
  exchange(q: Question, cancel: Cancel): Promise<Uint8Array> {
    if (cancel.cancelled) return Promise.reject(new UpstreamError(this.address, "aborted"));
    let out: OutgoingSocket;
    try {
      out = this.pool.socket(this.family);
    } catch (e) {
      return Promise.reject(new UpstreamError(this.address, (e as Error).message));
    }
    return exchangeOn(
      out,
      q,
      cancel,
      this.address,
      this.tcp,
      (query) => out.send(query, this.server),
      this.server,
    );
  }
}
