/**
 * The upstream interface: one DNS exchange with one server, whatever the protocol. Each exchange
 * uses a fresh random ID and accepts only a response that matches ID, question and server address.
 *
 * @module
 */
import type { Question } from "../dns/wire.ts";
import type { Cancel } from "./cancel.ts";

/** One upstream server. */
export interface Upstream {
  /** The server as a URL, e.g. `udp://9.9.9.9:53`. */
  readonly address: string;
  /**
   * Sends `q` and resolves with the verified response bytes. Rejects with {@link UpstreamError}
   * on network failure, or when `cancel` fires (timeout or a faster server already answered).
   */
  exchange(q: Question, cancel: Cancel): Promise<Uint8Array>;
  /** Frees what the server holds (sockets); exchanges under way finish or fail. Idempotent. */
  close(): void;
}

/** An upstream exchange that failed; `message` says which server and why. */
export class UpstreamError extends Error {
  constructor(readonly upstream: string, reason: string) {
    super(`${upstream}: ${reason}`);
    this.name = "UpstreamError";
  }
}

/** Formats host and port as a URL authority (`[v6]:port` for IPv6). */
export function authority(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

/** The canonical text form of an IP address (compressed, lower-case IPv6). */
export function canonicalIp(host: string): string {
  if (!host.includes(":")) return host;
  return new URL(`http://[${host}]/`).hostname.slice(1, -1);
}
