/**
 * One UDP exchange over a shared outgoing socket, whatever the socket: register the query under a
 * fresh random ID, send it (and once more after `RETRANSMIT_AFTER`), settle on the verified answer,
 * an abort or an error, and retry a truncated answer over TCP. The socket's receive path calls
 * `done` on the pending query it matched.
 *
 * @module
 */
import { buildUpstreamQuery, type Question } from "../dns/wire.ts";
import { type Upstream, UpstreamError } from "./upstream.ts";
import { randomId } from "../dns/transaction_id.ts";
import { hasOptRecord } from "../dns/client_subnet.ts";
import { requiresOpt } from "./query_options.ts";

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
  readonly done: (error: Error | null, response?: Uint8Array, truncated?: boolean) => void;
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

/**
 * Sends `q` over `socket` with `send` and resolves with the verified response (over `tcp` if it came
 * truncated: a TCP upstream to the same server, the same way it is reached). Rejects with {@link UpstreamError} on abort or a send error.
 */
export function exchangeOn(
  socket: ExchangeSocket,
  q: Question,
  signal: AbortSignal,
  address: string,
  tcp: Pick<Upstream, "exchange">,
  send: (query: Uint8Array, fail: (e: Error) => void) => void,
  server?: Uint8Array,
): Promise<Uint8Array> {
  let id = randomId();
  while (socket.pending.has(id)) id = randomId();
  const query = buildUpstreamQuery(q, id);
  const requireOpt = requiresOpt(q);
  socket.sent++;
  return new Promise((resolve, reject) => {
    const finish: PendingQuery["done"] = (error, response, truncated) => {
      if (socket.pending.get(id) !== pending) return;
      // -check-edns: an answer without an OPT record (a forged one, typically) is not the answer;
      // the server's own may still come.
      if (requireOpt && !error && !truncated && response && !hasOptRecord(response)) return;
      socket.pending.delete(id);
      clearTimeout(retransmit);
      signal.removeEventListener("abort", onAbort);
      socket.settled?.();
      if (error) reject(error);
      else if (truncated) tcp.exchange(q, signal).then(resolve, reject);
      else resolve(response!);
    };
    const pending: PendingQuery = { query, questionEnd: q.questionEnd, server, done: finish };
    const onAbort = () => finish(new UpstreamError(address, "aborted"));
    const fail = (e: Error) => finish(new UpstreamError(address, e.message));
    socket.pending.set(id, pending);
    signal.addEventListener("abort", onAbort, { once: true });
    const retransmit = setTimeout(() => send(query, fail), RETRANSMIT_AFTER);
    send(query, fail);
  });
}
