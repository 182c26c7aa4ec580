/**
 * One UDP exchange over a shared outgoing socket, whatever the socket: register the query under a
 * fresh random ID, send it (and once more after `RETRANSMIT_AFTER`), settle on the verified answer,
 * a cancel or an error, and retry a truncated answer over TCP. The socket's receive path calls
 * `done` on the pending query it matched.
 *
 * @module
 */
import { buildUpstreamQuery, type Question } from "../dns/wire.ts";
import { type Upstream, UpstreamError } from "./upstream.ts";
import { randomId } from "../dns/transaction_id.ts";
import { hasOptRecord } from "../dns/client_subnet.ts";
import { requiresOpt } from "./query_options.ts";
import { type CoarseTimer, coarseTimers } from "./coarse_timers.ts";
import type { Cancel } from "./cancel.ts";

/** Milliseconds before an unanswered query is sent once more. */
export const RETRANSMIT_AFTER = 700;
/** Queries one socket sends before it is replaced by one on a new random port. */
export const ROTATE_AFTER = 256;

/** A query waiting for its answer. */
export interface PendingQuery {
  readonly query: Uint8Array;
  readonly questionEnd: number;
  /** The server's socket address, for sockets that compare it as bytes. */
  readonly server?: Uint8Array;
  done(error: Error | null, response?: Uint8Array, truncated?: boolean): void;
}

/** What an exchange needs of an outgoing socket. */
export interface ExchangeSocket {
  /** Queries waiting for an answer, by ID. */
  readonly pending: Map<number, PendingQuery>;
  /** Queries sent so far (for rotation). */
  sent: number;
  /** Called after a query settles (e.g. to close a retired socket once idle). */
  settled?(): void;
}

/** Where a send that failed is reported (the exchange then fails with the error's message). */
export interface SendFailure {
  fail(e: Error): void;
}

/** Sends one query datagram; a failure is told to `failure` (at once or later). */
export type QuerySender = (query: Uint8Array, failure: SendFailure) => void;

/** One exchange's state: the pending query, its retransmit timer and its promise's ends. */
class PendingExchange implements PendingQuery, SendFailure {
  resolve!: (response: Uint8Array) => void;
  reject!: (error: unknown) => void;
  retransmit!: CoarseTimer;

  constructor(
    readonly socket: ExchangeSocket,
    readonly id: number,
    readonly query: Uint8Array,
    readonly q: Question,
    readonly cancel: Cancel,
    readonly address: string,
    readonly tcp: Pick<Upstream, "exchange">,
    readonly send: QuerySender,
    readonly requireOpt: boolean,
    readonly server?: Uint8Array,
  ) {}

  get questionEnd(): number {
    return this.q.questionEnd;
  }

  done(error: Error | null, response?: Uint8Array, truncated?: boolean): void {
    if (this.socket.pending.get(this.id) !== this) return;
    // -check-edns: an answer without an OPT record (a forged one, typically) is not the answer;
    // the server's own may still come.
    if (this.requireOpt && !error && !truncated && response && !hasOptRecord(response)) return;
    this.socket.pending.delete(this.id);
    this.retransmit.cancel();
    this.cancel.unlisten(this);
    this.socket.settled?.();
    if (error) this.reject(error);
    else if (truncated) this.tcp.exchange(this.q, this.cancel).then(this.resolve, this.reject);
    else this.resolve(response!);
  }

  /** The exchange's {@link Cancel} fired. */
  onCancel(): void {
    this.done(new UpstreamError(this.address, "aborted"));
  }

  fail(e: Error): void {
    this.done(new UpstreamError(this.address, e.message));
  }

  /** The retransmit timer ran out: the query is sent once more. */
  timeUp(): void {
    this.send(this.query, this);
  }
}

/**
 * Sends `q` over `socket` with `send` and resolves with the verified response (over `tcp` if it came
 * truncated: a TCP upstream to the same server, the same way it is reached). Rejects with
 * {@link UpstreamError} when `cancel` fires or a send fails.
 */
export function exchangeOn(
  socket: ExchangeSocket,
  q: Question,
  cancel: Cancel,
  address: string,
  tcp: Pick<Upstream, "exchange">,
  send: QuerySender,
  server?: Uint8Array,
): Promise<Uint8Array> {
  let id = randomId();
  while (socket.pending.has(id)) id = randomId();
  const query = buildUpstreamQuery(q, id);
  socket.sent++;
  const p = new PendingExchange(socket, id, query, q, cancel, address, tcp, send, requiresOpt(q), server);
  const promise = new Promise<Uint8Array>((resolve, reject) => {
    p.resolve = resolve;
    p.reject = reject;
  });
  socket.pending.set(id, p);
  cancel.listen(p);
  p.retransmit = coarseTimers.after(RETRANSMIT_AFTER, p);
  try {
    send(query, p);
  } catch (e) {
    p.fail(e as Error);
  }
  return promise;
}
