/**
 * The batched UDP listener: `recvmmsg` takes up to 64 queued datagrams per call on a worker thread,
 * cache hits are rendered straight into a preallocated `sendmmsg` batch, and answers that needed an
 * upstream go out in batches of their own as they complete. One runtime op per batch instead of one
 * per datagram is what lifts Deno past its socket API's ceiling.
 *
 * @module
 */
import type { BindConfig } from "../config/schema.ts";
import type { Logger } from "../ops/log.ts";
import { authority } from "../upstream/upstream.ts";
import type { QueryDispatcher } from "./dispatcher.ts";
import { LinuxUdpSocket, MmsgVector, MSG_TRUNC, NAME_SIZE, SendQueue } from "../net/linux_socket.ts";
import { bindFlags, DRAIN_MS, type Listener } from "./listener.ts";

/** Datagrams taken per receive call and answers per send call. */
export const BATCH = 64;
/** Room per received datagram; longer ones are dropped as malformed (DNS queries are small). */
const RECEIVE_SLOT = 4096;
/** Room per answer: clients are held to at most 1232 bytes over UDP (OPT included). */
const SEND_SLOT = 1536;
/** How long one blocking receive may wait, so that close() is noticed. */
const RECEIVE_TIMEOUT_MS = 200;
/**
 * After a batch, up to this many more are taken straight away on the main thread while datagrams
 * are queued, before waiting on a worker thread again (which also lets timers, upstream answers
 * and TCP run): under load most batches then skip the thread hop.
 */
const EAGER_BATCHES = 4;

/** A UDP DNS listener on batched Linux syscalls. */
export class BatchedUdpListener implements Listener {
  readonly address: string;
  readonly flags: number;
  readonly group?: string;
  private readonly rx = new MmsgVector(BATCH, RECEIVE_SLOT);
  private readonly tx = new MmsgVector(BATCH, SEND_SLOT);
  /** Answers that completed after their receive batch (misses), sent together per task. */
  private readonly late: SendQueue;
  private closing = false;
  private readonly running: Promise<void>;

  private constructor(
    private readonly socket: LinuxUdpSocket,
    bind: BindConfig,
    private readonly dispatcher: QueryDispatcher,
    private readonly log: Logger,
  ) {
    this.address = `udp://${authority(bind.host, bind.port)}`;
    this.flags = bindFlags(bind);
    this.group = bind.group;
    this.late = new SendQueue(
      socket,
      new MmsgVector(BATCH, SEND_SLOT),
      () => log.debug("{address}: sendmmsg failed", { address: this.address }),
    );
    this.running = this.receiveLoop();
  }

  /**
   * Binds `bind` and starts serving; with `inheritedFd`, serves that socket (bound by the guardian
   * for every child) instead of binding, and closing closes only this process's copy. Throws if FFI
   * is unavailable or the port cannot be bound.
   */
  static listen(
    bind: BindConfig,
    dispatcher: QueryDispatcher,
    log: Logger,
    inheritedFd?: number,
  ): BatchedUdpListener {
    // SO_REUSEADDR lets a successor bind the same port; new datagrams then go to the newest socket.
    const socket = inheritedFd !== undefined
      ? LinuxUdpSocket.fromFd(inheritedFd, { receiveTimeoutMs: RECEIVE_TIMEOUT_MS })
      : LinuxUdpSocket.bind(bind.host, bind.port, {
        receiveTimeoutMs: RECEIVE_TIMEOUT_MS,
        reuseAddress: true,
      });
    if (inheritedFd !== undefined && socket.localPort() !== bind.port) {
      throw new Error(`inherited descriptor ${inheritedFd} is bound to port ${socket.localPort()}`);
    }
    return new BatchedUdpListener(socket, bind, dispatcher, log);
  }

  private async receiveLoop(): Promise<void> {
    let eager = 0;
    while (!this.closing) {
      let n = eager < EAGER_BATCHES ? this.socket.receiveNow(this.rx) : -1;
      if (n > 0) {
        eager++;
      } else {
        eager = 0;
        const started = performance.now();
        n = await this.socket.receive(this.rx);
        if (n <= 0) {
          // Timeout (the normal idle case) or an error; never spin on a persistent error.
          if (performance.now() - started < 5) await new Promise((r) => setTimeout(r, 10));
          continue;
        }
      }
      this.answerBatch(n);
    }
  }

  /** Answers the `n` datagrams in the receive vector; hits go out in one sendmmsg. */
  private answerBatch(n: number): void {
    const { rx, tx, dispatcher } = this;
    let out = 0;
    for (let i = 0; i < n; i++) {
      if (rx.flags(i) & MSG_TRUNC) {
        dispatcher.stats.received++;
        dispatcher.stats.malformed++;
      } else {
        const answer = dispatcher.answerInto(
          rx.slot(i),
          tx.data,
          tx.slotOffset(out),
          rx.length(i),
          this,
          rx.names,
          i * NAME_SIZE,
        );
        if (typeof answer === "number") {
          tx.setReplyLength(out++, answer, rx, i);
        } else if (answer) {
          const name = rx.name(i).slice();
          answer.then((bytes) => this.late.push(bytes, name));
        }
      }
      rx.resetForReceive(i);
    }
    if (out > 0) this.socket.send(tx, out);
  }

  /** Stops receiving (within one receive timeout), sends the answers under way, closes the socket. */
  async close(drainMs = DRAIN_MS): Promise<void> {
    this.closing = true;
    await this.running;
    await this.dispatcher.whenIdle(drainMs);
    this.late.flush();
    this.late.close();
    this.socket.close();
  }
}
