/**
 * Backpressure for one DNS stream connection (TCP now; DoT and DoH connections later): how many
 * answers it may have in flight, how many answer bytes may wait to be written to it, and how long
 * its socket may refuse bytes before the connection is closed.
 *
 * A stream listener reads queries only while its connection is under budget (`await
 * budget.ready()` before each read), so a client that sends and never reads cannot make the
 * server hold more than the budget: once answers stop leaving, the listener stops reading, and
 * the client's own writes block in its kernel. Answers still go out in the order they complete,
 * not the order asked (RFC 7766 §6.2.1.1), one write at a time, coalesced when several wait.
 *
 * The rules, with the defaults ({@link DEFAULT_STREAM_LIMITS}) and why:
 *
 * - **In flight** (`maxInFlight`, 128): queries read whose answers are not yet fully written
 *   (being resolved, or waiting to be written). At the limit the listener stops reading. 128 is
 *   more than a stub resolver or dnsperf-style client pipelines on one connection, and keeps a
 *   flood of cache misses from one connection to 128 upstream queries at a time.
 * - **Queued bytes** (`maxQueuedBytes`, 256 KiB): answer bytes handed to the budget and not yet
 *   taken by the socket. At the limit the listener stops reading. The kernel's socket buffer
 *   (several MB on Linux) comes on top, so a reading client never waits on this; one that does not
 *   read reaches it in milliseconds. Answers already in flight are still queued, so the worst case
 *   is `maxQueuedBytes` + `maxInFlight` × 64 KiB; with real answers (100 B – 4 KB) it stays near
 *   `maxQueuedBytes`.
 * - **Over budget** (`overBudgetMs`, 3 s): a connection over budget whose socket has taken no byte
 *   for this long is closed, reported as `"over-budget"`. It has stopped reading, yet holds the most
 *   we allow, and the kernel already holds megabytes for it. SmartDNS resets such a client after a
 *   few MB; 3 s is long enough for any client that reads at all (one byte taken resets the clock)
 *   and short enough that a flood costs little. Over budget only because answers are still being
 *   resolved (nothing waiting to be written) is the upstream's slowness, not the client's: the
 *   listener waits, and no clock runs.
 * - **Write timeout** (`writeTimeoutMs`, 10 s): any write whose socket takes no byte for this long
 *   closes the connection, reported as `"write-timeout"`, even under budget (a client that asked a
 *   few questions and then stopped reading with a full socket buffer). 10 s is far beyond any
 *   reading client's pause on a LAN and well below the idle timeout, so a stuck connection does
 *   not keep its slot for the whole `tcp-idle-time`.
 *
 * @example
 * ```ts
 * const budget = new StreamBudget(conn, (reason) => { stats.count(reason); conn.close(); });
 * while (await budget.ready()) {
 *   const query = await reader.next();
 *   if (query === null) break;
 *   budget.admit();
 *   resolve(query).then((answer) => answer ? budget.send(frame(answer)) : budget.release());
 * }
 * await budget.drained();
 * budget.close();
 * ```
 *
 * @module
 */

/** The limits of one connection's budget; see the module doc for what each means. */
export interface StreamLimits {
  /** Answers read and not yet fully written, at most. */
  maxInFlight: number;
  /** Answer bytes waiting to be written, at most (before reading stops). */
  maxQueuedBytes: number;
  /** Over budget with no byte written for this long: closed as `"over-budget"`. */
  overBudgetMs: number;
  /** A write that takes no byte for this long: closed as `"write-timeout"`. */
  writeTimeoutMs: number;
}

/** The defaults every stream listener uses (reasons in the module doc). */
export const DEFAULT_STREAM_LIMITS: Readonly<StreamLimits> = Object.freeze({
  maxInFlight: 128,
  maxQueuedBytes: 256 * 1024,
  overBudgetMs: 3_000,
  writeTimeoutMs: 10_000,
});

/** Why a budget closed its connection. */
export type StreamCloseReason = "over-budget" | "write-timeout";

/** Where answers are written: a `Deno.Conn` or a TLS connection. */
export interface StreamSink {
  write(p: Uint8Array): Promise<number>;
}

/** Several small answers waiting are joined into one write of at most this many bytes. */
const COALESCE_BYTES = 16 * 1024;

/** The budget, answer queue and write loop of one stream connection. */
export class StreamBudget {
  private readonly limits: StreamLimits;
  private inFlightCount = 0;
  private queue: Uint8Array[] = [];
  private queueBytes = 0;
  private writing = false;
  private lastProgress = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private ended = false;
  private readyWaiters: ((ready: boolean) => void)[] = [];
  private drainWaiters: (() => void)[] = [];

  /**
   * `onExceeded` is called once, when a rule closes the connection: it should count the reason
   * and close the connection (which ends the pending read and write). `limits` fills in from
   * {@link DEFAULT_STREAM_LIMITS}.
   */
  constructor(
    private readonly sink: StreamSink,
    private readonly onExceeded: (reason: StreamCloseReason) => void,
    limits: Partial<StreamLimits> = {},
  ) {
    this.limits = { ...DEFAULT_STREAM_LIMITS, ...limits };
  }

  /** Answers read and not yet fully written. */
  get inFlight(): number {
    return this.inFlightCount;
  }

  /** Answer bytes waiting to be written (including the part of a write not yet taken). */
  get queuedBytes(): number {
    return this.queueBytes;
  }

  /** Whether the listener should stop reading now. */
  get overBudget(): boolean {
    return this.inFlightCount >= this.limits.maxInFlight || this.queueBytes >= this.limits.maxQueuedBytes;
  }

  /** Whether the budget has been closed (by a rule, a failed write, or {@link close}). */
  get closed(): boolean {
    return this.ended;
  }

  /**
   * Resolves `true` once the connection is under budget (at once if it is), `false` if it was
   * closed first. The listener awaits this before each read.
   */
  ready(): Promise<boolean> {
    if (this.ended) return Promise.resolve(false);
    if (!this.overBudget) return Promise.resolve(true);
    // Over budget: from now on the nearer over-budget clock applies to a stalled write.
    if (this.writing && this.readyWaiters.length === 0) this.arm();
    return new Promise((resolve) => this.readyWaiters.push(resolve));
  }

  /** Counts one query read; its answer follows with {@link send}, or {@link release} if none. */
  admit(): void {
    this.inFlightCount++;
  }

  /** An admitted query gets no answer (dropped): it no longer counts. */
  release(): void {
    this.inFlightCount--;
    this.settled();
  }

  /**
   * Queues the (framed) answer to an admitted query for writing. After {@link close} it is
   * dropped, as the connection is gone.
   */
  send(bytes: Uint8Array): void {
    if (this.ended) {
      this.inFlightCount--;
      this.settled();
      return;
    }
    this.queue.push(bytes);
    this.queueBytes += bytes.length;
    if (!this.writing) this.flush();
  }

  /** Resolves once every admitted query has been answered and written, or the budget is closed. */
  drained(): Promise<void> {
    if (this.ended || this.inFlightCount === 0) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  /** Ends the budget: stops its clock, wakes waiters; later answers are dropped. Idempotent. */
  close(): void {
    if (this.ended) return;
    this.ended = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.queue = [];
    this.queueBytes = 0;
    for (const resolve of this.readyWaiters.splice(0)) resolve(false);
    for (const resolve of this.drainWaiters.splice(0)) resolve();
  }

  /** Writes the queue until it is empty, coalescing small answers. */
  private async flush(): Promise<void> {
    this.writing = true;
    this.lastProgress = performance.now();
    this.arm();
    try {
      while (this.queue.length > 0 && !this.ended) {
        const [chunk, answers] = this.take();
        for (let offset = 0; offset < chunk.length;) {
          const n = await this.sink.write(chunk.subarray(offset));
          if (this.ended) return;
          offset += n;
          this.queueBytes -= n;
          this.lastProgress = performance.now();
        }
        this.inFlightCount -= answers;
        this.settled();
      }
    } catch {
      // the connection is gone (reset, or closed by a rule or the listener)
      this.close();
    } finally {
      this.writing = false;
      clearTimeout(this.timer);
      this.timer = undefined;
    }
  }

  /** The next write: the first waiting answer, with those after it up to {@link COALESCE_BYTES}. */
  private take(): [Uint8Array, number] {
    let count = 1;
    let bytes = this.queue[0].length;
    while (count < this.queue.length && bytes + this.queue[count].length <= COALESCE_BYTES) {
      bytes += this.queue[count++].length;
    }
    const parts = this.queue.splice(0, count);
    if (count === 1) return [parts[0], 1];
    const chunk = new Uint8Array(bytes);
    let at = 0;
    for (const part of parts) {
      chunk.set(part, at);
      at += part.length;
    }
    return [chunk, count];
  }

  /**
   * Sets the clock for the rule that applies now, counted from the last byte written: the write
   * timeout, or the over-budget time if nearer and the connection is over budget. When it fires
   * it closes the connection if that rule has run out, else it is set again (a byte was written
   * since, or the connection is no longer over budget). Called when a write starts and when the
   * connection goes over budget; a byte written does not touch the timer.
   */
  private arm(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.ended || !this.writing) return;
    const { overBudgetMs, writeTimeoutMs } = this.limits;
    const stalled = performance.now() - this.lastProgress;
    const overBudget = this.overBudget;
    const wait = overBudget ? Math.min(overBudgetMs, writeTimeoutMs) - stalled : writeTimeoutMs - stalled;
    if (wait > 0) {
      this.timer = setTimeout(() => this.arm(), wait);
      return;
    }
    this.close();
    this.onExceeded(overBudget && stalled < writeTimeoutMs ? "over-budget" : "write-timeout");
  }

  /** Wakes the reader if under budget again, and drain waiters if nothing is left. */
  private settled(): void {
    if (!this.overBudget && this.readyWaiters.length > 0) {
      for (const resolve of this.readyWaiters.splice(0)) resolve(true);
    }
    if (this.inFlightCount === 0 && this.drainWaiters.length > 0) {
      for (const resolve of this.drainWaiters.splice(0)) resolve();
    }
  }
}
