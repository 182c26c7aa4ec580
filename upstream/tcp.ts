/**
 * DNS over TCP to one upstream: a connection per exchange (through the server's proxy when it has
 * one), 2-byte framing, no Nagle delay.
 *
 * @module
 */
import type { ProxyConfig } from "../config/schema.ts";
import { dialTcp } from "./proxy_dial.ts";
import { withTcpKeepalive } from "./tcp_keepalive.ts";
import { frame, FramedReader, writeAll } from "../dns/stream_framing.ts";
import { buildUpstreamQuery, type Question, readId, sameQuestion } from "../dns/wire.ts";
import { authority, type Upstream, UpstreamError } from "./upstream.ts";
import { randomId } from "../dns/transaction_id.ts";
import type { Cancel } from "./cancel.ts";

/** A TCP upstream server. */
export class TcpUpstream implements Upstream {
  readonly address: string;

  /** `keepalive`: the edns-tcp-keepalive TIMEOUT (100 ms units) to send, if any (`-tcp-keepalive`). */
  constructor(
    readonly host: string,
    readonly port: number,
    readonly proxy?: ProxyConfig,
    readonly keepalive?: number,
  ) {
    this.address = `tcp://${authority(host, port)}`;
  }

  /** Nothing to free: each exchange has its own connection. */
  close(): void {}

  /** Sends `q` over a new connection and returns the first response that matches it. */
  async exchange(q: Question, cancel: Cancel): Promise<Uint8Array> {
    if (cancel.cancelled) throw new UpstreamError(this.address, "aborted");
    const id = randomId();
    const plain = buildUpstreamQuery(q, id);
    const query = this.keepalive === undefined ? plain : withTcpKeepalive(plain, this.keepalive);
    let conn: Deno.TcpConn | undefined;
    const abort = () => conn?.close();
    cancel.listen(abort);
    try {
      conn = await dialTcp(this.host, this.port, this.proxy, cancel);
      if (cancel.cancelled) throw new Error("aborted");
      conn.setNoDelay(true);
      await writeAll(conn, frame(query));
      const reader = new FramedReader(conn);
      for (;;) {
        const response = await reader.next();
        if (response === null) throw new Error("connection closed before an answer");
        if (
          response.length >= 12 && readId(response) === id && (response[2] & 0x80) &&
          sameQuestion(query, q.questionEnd, response)
        ) return response;
      }
    } catch (e) {
      if (e instanceof UpstreamError) throw e;
      throw new UpstreamError(this.address, cancel.cancelled ? "aborted" : (e as Error).message);
    } finally {
      cancel.unlisten(abort);
      try {
        conn?.close();
      } catch {
        // already closed by abort
      }
    }
  }
}
