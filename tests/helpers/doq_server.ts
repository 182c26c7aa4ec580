/**
 * A small DNS-over-QUIC server for tests (RFC 9250), built on `Deno.QuicEndpoint` (needs
 * `--unstable-net`, which deno.json turns on): ALPN "doq", one query per bidirectional stream,
 * read to the client's FIN, answered with one length-prefixed message and FIN. It answers A
 * queries itself (192.0.2.N+1 for `qN.test`, 198.51.100.1 for other names) and counts what the
 * tests check: connections, streams, the IDs queries carried, how many streams were open at once.
 *
 * @module
 */
import { decodePacket, encodePacket } from "../../dns/packet.ts";

/** The address the server answers `name` with: 192.0.2.N+1 for `qN.test`, 198.51.100.1 otherwise. */
export function doqAddressFor(name: string): string {
  const m = /^q(\d+)\.test$/.exec(name);
  return m ? `192.0.2.${(Number(m[1]) % 250) + 1}` : "198.51.100.1";
}

/** Where the server's certificate and key are (PEM files). */
export interface DoqServerPki {
  readonly certFile: string;
  readonly keyFile: string;
}

/** A DoQ server on 127.0.0.1 and a random UDP port. */
export class DoqServer {
  readonly endpoint: Deno.QuicEndpoint;
  private readonly listener: Deno.QuicListener;
  private readonly conns = new Set<Deno.QuicConn>();
  /** Connections whose handshake completed. */
  accepted = 0;
  /** Handshakes that failed (wrong CA or name on the client's side, wrong ALPN). */
  failedHandshakes = 0;
  /** Streams (queries) received. */
  streams = 0;
  /** The message ID of every query received, in order. */
  readonly queryIds: number[] = [];
  /** Every query received as sent (without the length prefix), in order. */
  readonly queries: Uint8Array[] = [];
  /** The most streams open at once on one connection. */
  maxConcurrent = 0;
  /** Streams not answered: the client reset or stopped them, or the server is silent. */
  cancelled = 0;
  /** Hold each answer this long (ms). */
  delayMs = 0;
  /** Close each connection after this many answers (0: never). */
  closeAfter = 0;
  /** Never answer (streams stay open). */
  silent = false;
  /** Answer with this message ID instead of the query's (to test the client's check). */
  answerId?: number;

  constructor(pki: DoqServerPki, alpn = "doq") {
    this.endpoint = new Deno.QuicEndpoint({ hostname: "127.0.0.1", port: 0 });
    this.listener = this.endpoint.listen({
      alpnProtocols: [alpn],
      cert: Deno.readTextFileSync(pki.certFile),
      key: Deno.readTextFileSync(pki.keyFile),
    });
    this.accept();
  }

  /** The UDP port the server listens on. */
  get port(): number {
    return this.endpoint.addr.port;
  }

  private async accept(): Promise<void> {
    for (;;) {
      let incoming: Deno.QuicIncoming;
      try {
        incoming = await this.listener.incoming();
      } catch {
        return; // endpoint closed
      }
      incoming.accept<false>().then((conn) => {
        this.accepted++;
        this.conns.add(conn);
        conn.closed.catch(() => {}).finally(() => this.conns.delete(conn));
        this.serve(conn);
      }, () => this.failedHandshakes++);
    }
  }

  private async serve(conn: Deno.QuicConn): Promise<void> {
    let open = 0;
    let answered = 0;
    try {
      for await (const stream of conn.incomingBidirectionalStreams) {
        this.streams++;
        open++;
        this.maxConcurrent = Math.max(this.maxConcurrent, open);
        this.answer(stream).then((ok) => {
          open--;
          if (!ok) return;
          answered++;
          if (this.closeAfter && answered >= this.closeAfter) {
            // Closing at once would drop the answer still in flight (QUIC's CONNECTION_CLOSE).
            setTimeout(() => conn.close({ closeCode: 0, reason: "enough" }), 50);
          }
        });
      }
    } catch {
      // connection closed
    }
  }

  /** Reads one query to FIN and writes its answer; false when the stream was given up. */
  private async answer(stream: Deno.QuicBidirectionalStream): Promise<boolean> {
    try {
      const chunks: number[] = [];
      for await (const chunk of stream.readable) chunks.push(...chunk);
      const length = (chunks[0] << 8) | chunks[1];
      if (chunks.length !== 2 + length) throw new Error("not one length-prefixed message");
      const wire = new Uint8Array(chunks.slice(2));
      this.queries.push(wire);
      const query = decodePacket(wire);
      this.queryIds.push(query.id ?? -1);
      if (this.silent) return false;
      const name = query.questions![0].name;
      const answer = encodePacket({
        type: "response",
        id: this.answerId ?? query.id,
        flags: 0x8180,
        questions: query.questions,
        answers: [{ name, type: "A", ttl: 60, data: doqAddressFor(name) }],
      });
      if (this.delayMs) await new Promise((r) => setTimeout(r, this.delayMs));
      const out = new Uint8Array(answer.length + 2);
      out[0] = answer.length >> 8;
      out[1] = answer.length & 0xff;
      out.set(answer, 2);
      const writer = stream.writable.getWriter();
      await writer.write(out);
      await writer.close();
      return true;
    } catch {
      this.cancelled++;
      return false;
    }
  }

  /** Closes every connection (as a server restart would) but keeps listening. */
  dropConnections(): void {
    for (const c of this.conns) c.close({ closeCode: 0, reason: "restart" });
  }

  /** Stops the server. */
  close(): void {
    try {
      this.listener.stop();
    } catch {
      // already stopped
    }
    this.endpoint.close({ closeCode: 0, reason: "" });
  }
}
