/**
 * DNS over a byte stream (RFC 1035 §4.2.2, RFC 7766): each message preceded by a 2-byte length.
 *
 * @module
 */

/** Largest DNS message a 2-byte length prefix can carry. */
export const MAX_STREAM_MESSAGE = 65535;

/** Something bytes can be written to (a `Deno.Conn`). */
export interface ByteWriter {
  write(p: Uint8Array): Promise<number>;
}

/** Something bytes can be read from (a `Deno.Conn`). */
export interface ByteReader {
  read(p: Uint8Array): Promise<number | null>;
}

/** Prefixes `message` with its 2-byte length. */
export function frame(message: Uint8Array): Uint8Array {
  const out = new Uint8Array(message.length + 2);
  out[0] = message.length >> 8;
  out[1] = message.length & 0xff;
  out.set(message, 2);
  return out;
}

/** Writes all of `data` to `writer`, looping over partial writes. */
export async function writeAll(writer: ByteWriter, data: Uint8Array): Promise<void> {
  let written = 0;
  while (written < data.length) written += await writer.write(data.subarray(written));
}

/**
 * Reads length-prefixed messages from a stream. Buffers what it has read, so several pipelined
 * messages in one segment, or one message split over many, both come out whole.
 */
export class FramedReader {
  private buffer = new Uint8Array(4096);
  private start = 0;
  private end = 0;

  constructor(private readonly reader: ByteReader) {}

  /** Returns the next message, or `null` at a clean end of stream. Throws on a cut-off message. */
  async next(): Promise<Uint8Array | null> {
    if (!(await this.fill(2))) return null;
    const length = (this.buffer[this.start] << 8) | this.buffer[this.start + 1];
    if (!(await this.fill(2 + length))) throw new Error("stream ended inside a message");
    const message = this.buffer.slice(this.start + 2, this.start + 2 + length);
    this.start += 2 + length;
    return message;
  }

  /** Ensures `n` unread bytes are buffered; false if the stream ended first (with none buffered). */
  private async fill(n: number): Promise<boolean> {
    while (this.end - this.start < n) {
      if (this.start > 0) {
        this.buffer.copyWithin(0, this.start, this.end);
        this.end -= this.start;
        this.start = 0;
      }
      if (this.buffer.length < n) {
        const bigger = new Uint8Array(Math.max(n, this.buffer.length * 2));
        bigger.set(this.buffer.subarray(0, this.end));
        this.buffer = bigger;
      }
      const read = await this.reader.read(this.buffer.subarray(this.end));
      if (read === null) {
        if (this.end - this.start === 0) return false;
        throw new Error("stream ended inside a message");
      }
      this.end += read;
    }
    return true;
  }
}
