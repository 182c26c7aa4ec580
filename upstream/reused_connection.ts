/**
 * The one reused connection an upstream server keeps (DoT, DoQ): opened on demand and shared by
 * concurrent callers, retried with a doubling delay after failed attempts (each new failure
 * logged), closed after a while without queries, and never opened for a server refused for good
 * (the refusal logged once).
 *
 * @module
 */
import { getLogger } from "../ops/log.ts";
import type { Cancel } from "./cancel.ts";
import { UpstreamError } from "./upstream.ts";

/** Where an upstream's problems go: refusals and certificate failures as errors, the rest warnings. */
export type UpstreamLog = (level: "error" | "warn", message: string) => void;

/** What the reused connection needs of a protocol's connection. */
export interface Reusable {
  /** True once the connection is closed, by either side. */
  readonly closed: boolean;
  /** True while an exchange is using the connection. */
  readonly busy: boolean;
  /** Closes the connection; exchanges still using it fail with `reason`. */
  close(reason: string): void;
}

/** Why opening a connection failed, and how loudly to log it. */
export class OpenFailure extends Error {
  constructor(message: string, readonly level: "error" | "warn") {
    super(message);
  }
}

/** Settings of a {@link ReusedConnection}. */
export interface ReusedConnectionOptions<C> {
  /** The server's address, starting every error and log message. */
  readonly address: string;
  /** Milliseconds without queries after which the connection is closed. */
  readonly idleMs: number;
  /** First delay after a failed attempt (default 500 ms); doubles up to `maxBackoffMs` (default 30 s). */
  readonly backoffMs?: number;
  readonly maxBackoffMs?: number;
  /** Why the server can never be used, if so. */
  readonly refusal?: string;
  /** Where problems go (default: the "upstream" logger). */
  readonly log?: UpstreamLog;
  /**
   * Opens and handshakes a new connection; a failure is thrown as an {@link OpenFailure} whose
   * message is the reason. The connection hands itself to {@link ReusedConnection.forget} when it
   * closes.
   */
  readonly open: () => Promise<C>;
}

/** One connection to a server, reused by every exchange and reopened when it is gone. */
export class ReusedConnection<C extends Reusable> {
  /** Connections opened so far (for tests and statistics). */
  opened = 0;
  private closedForGood = false;
  private readonly options: ReusedConnectionOptions<C>;
  private readonly log: UpstreamLog;
  private refusalLogged = false;
  private current?: C;
  private connecting?: Promise<C>;
  private idleTimer?: ReturnType<typeof setTimeout>;
  private failures = 0;
  private retryAt = 0;
  private lastFailure = "";

  constructor(options: ReusedConnectionOptions<C>) {
    this.options = options;
    const logger = options.log ? undefined : getLogger("upstream");
    this.log = options.log ??
      ((level, message) =>
        level === "error" ? logger!.error("{message}", { message }) : logger!.warn("{message}", { message }));
  }

  /** True once {@link close} is called: nothing is opened any more. */
  get closed(): boolean {
    return this.closedForGood;
  }

  /** True while an open connection is there to reuse. */
  get isOpen(): boolean {
    return this.current !== undefined && !this.current.closed;
  }

  /**
   * Throws the {@link UpstreamError} that stops an exchange before it starts (the server refused,
   * closed, or `cancel` already fired); else holds off the idle close until {@link end}.
   */
  begin(cancel: Cancel): void {
    const { address, refusal } = this.options;
    if (refusal) {
      if (!this.refusalLogged) {
        this.refusalLogged = true;
        this.log("error", `${address}: refused: ${refusal}`);
      }
      throw new UpstreamError(address, refusal);
    }
    if (this.closedForGood) throw new UpstreamError(address, "upstream closed");
    if (cancel.cancelled) throw new UpstreamError(address, "aborted");
    this.stopIdleTimer();
  }

  /** An exchange is over: closes the connection `idleMs` from now if it is not busy by then. */
  end(): void {
    this.stopIdleTimer();
    const c = this.current;
    if (!c || c.closed || c.busy) return;
    const timer = setTimeout(() => {
      this.idleTimer = undefined;
      if (!c.busy) c.close("idle");
    }, this.options.idleMs);
    Deno.unrefTimer(timer);
    this.idleTimer = timer;
  }

  /** The open connection, or a new one (shared by concurrent callers). */
  connection(cancel: Cancel): Promise<C> {
    const address = this.options.address;
    if (this.current && !this.current.closed) return Promise.resolve(this.current);
    if (!this.connecting) {
      const now = Date.now();
      if (now < this.retryAt) {
        return Promise.reject(
          new UpstreamError(address, `not retrying for ${this.retryAt - now} ms after: ${this.lastFailure}`),
        );
      }
      this.connecting = this.openNew().finally(() => this.connecting = undefined);
    }
    const connecting = this.connecting;
    return new Promise((resolve, reject) => {
      const onAbort = () => reject(new UpstreamError(address, "aborted"));
      cancel.listen(onAbort);
      connecting.then(resolve, reject).finally(() => cancel.unlisten(onAbort));
    });
  }

  /** Lets go of `c` (closed) if it is the current connection. */
  forget(c: C): void {
    if (this.current === c) this.current = undefined;
  }

  /** Closes the connection with `reason` and opens no other. Idempotent. */
  close(reason: string): void {
    this.closedForGood = true;
    this.stopIdleTimer();
    this.current?.close(reason);
  }

  /** Opens a connection; on failure, schedules when the next attempt may start. */
  private async openNew(): Promise<C> {
    const { address, backoffMs = 500, maxBackoffMs = 30_000 } = this.options;
    try {
      const connection = await this.options.open();
      this.failures = 0;
      this.opened++;
      this.current = connection;
      return connection;
    } catch (e) {
      const reason = e instanceof Error ? e.message : String(e);
      const delay = Math.min(maxBackoffMs, backoffMs * 2 ** this.failures);
      this.failures++;
      this.retryAt = Date.now() + delay;
      if (this.failures === 1 || reason !== this.lastFailure) {
        this.log(
          e instanceof OpenFailure ? e.level : "warn",
          `${address}: ${reason}; retrying after ${delay} ms`,
        );
      }
      this.lastFailure = reason;
      throw new UpstreamError(address, reason);
    }
  }

  private stopIdleTimer(): void {
    if (this.idleTimer !== undefined) clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
  }
}
