/**
 * What every listener (UDP, TCP, later DoT/DoH) looks like to the child that owns it.
 *
 * @module
 */

/** A bound, serving socket. */
export interface Listener {
  /** e.g. `udp://127.0.0.1:5353`. */
  readonly address: string;
  /**
   * Stops taking new queries, lets the answers under way go out (bounded by `drainMs`), and
   * releases the socket; resolves when it is released.
   */
  close(drainMs?: number): Promise<void>;
}

/** Default time a closing listener waits for answers under way. */
export const DRAIN_MS = 3000;
