/**
 * Growable bytes filled in place and taken whole: what a batch of records or lines waits in
 * before one write. Doubles when full; `view` follows the bytes.
 *
 * @module
 */

/** Bytes written at `length`, growing as needed. */
export class ByteBuffer {
  bytes: Uint8Array;
  /** A view over {@link bytes} (made again when they grow). */
  view: DataView;
  length = 0;

  constructor(initial = 16 * 1024) {
    this.bytes = new Uint8Array(initial);
    this.view = new DataView(this.bytes.buffer);
  }

  /** Makes room for `n` more bytes. */
  reserve(n: number): void {
    if (this.length + n <= this.bytes.length) return;
    let size = this.bytes.length * 2;
    while (size < this.length + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.bytes.subarray(0, this.length));
    this.bytes = next;
    this.view = new DataView(next.buffer);
  }

  /** Appends `part`. */
  append(part: Uint8Array): void {
    this.reserve(part.length);
    this.bytes.set(part, this.length);
    this.length += part.length;
  }

  /** A copy of what was written, leaving the buffer empty. */
  take(): Uint8Array {
    const out = this.bytes.slice(0, this.length);
    this.length = 0;
    return out;
  }

  /** Puts `part` (taken earlier) back before what was written since. */
  prepend(part: Uint8Array): void {
    this.reserve(part.length);
    this.bytes.copyWithin(part.length, 0, this.length);
    this.bytes.set(part);
    this.length += part.length;
  }
}
