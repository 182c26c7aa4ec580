/**
 * What every listener (UDP, TCP, later DoT/DoH) looks like to the child that owns it.
 *
 * @module
 */

/** A bound, serving socket. */
export interface Listener {
  /** e.g. `udp://127.0.0.1:5353`. */
  readonly address: string;
  /** Stops accepting and releases the socket; resolves when it is released. */
  close(): Promise<void>;
}
