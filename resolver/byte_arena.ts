/**
 * Variable-length byte records kept in a few large buffers instead of one buffer each, so that a
 * cache of 100k answers is a handful of allocations the garbage collector never has to walk.
 *
 * Records are rounded up to a 16-byte granule and carved from 1 MiB chunks; a freed record goes
 * on the free list of its rounded size and is reused by the next record of that size. Chunks are
 * allocated when needed and kept; a user whose record sizes drift copies its live records into a
 * fresh arena (as `AnswerCache` compacts) to give the rest back.
 *
 * @module
 */

/** Bytes per chunk; also the largest record. */
export const CHUNK_SIZE = 1 << 20;
const GRANULE = 16;
const NONE = -1;

/** Allocates and frees byte records addressed by a number (chunk × CHUNK_SIZE + offset). */
export class ByteArena {
  /** The chunks; record `address` lives in `chunks[address / CHUNK_SIZE]`. */
  readonly chunks: Uint8Array[] = [];
  private readonly views: DataView[] = [];
  /** Head address of the free list for each rounded size (index = granules), or NONE. */
  private readonly freeHeads = new Float64Array(CHUNK_SIZE / GRANULE + 1).fill(NONE);
  /** Where the next record is carved from the newest chunk. */
  private top = CHUNK_SIZE;

  /** Bytes reserved by chunks (what the arena costs, whether used or not). */
  get reservedBytes(): number {
    return this.chunks.length * CHUNK_SIZE;
  }

  /** The room a record of `length` bytes takes. */
  static roundedLength(length: number): number {
    return Math.ceil(Math.max(length, GRANULE) / GRANULE) * GRANULE;
  }

  /** Reserves a record of `length` bytes (at most {@link CHUNK_SIZE}); returns its address. */
  allocate(length: number): number {
    const size = ByteArena.roundedLength(length);
    if (size > CHUNK_SIZE) throw new RangeError(`record of ${length} bytes is larger than a chunk`);
    const granules = size / GRANULE;
    const head = this.freeHeads[granules];
    if (head !== NONE) {
      this.freeHeads[granules] = this.readLink(head);
      return head;
    }
    if (this.top + size > CHUNK_SIZE) {
      // The rest of the current chunk becomes a free record of its own size.
      if (this.chunks.length > 0 && this.top < CHUNK_SIZE) {
        this.free((this.chunks.length - 1) * CHUNK_SIZE + this.top, CHUNK_SIZE - this.top);
      }
      const chunk = new Uint8Array(CHUNK_SIZE);
      this.chunks.push(chunk);
      this.views.push(new DataView(chunk.buffer));
      this.top = 0;
    }
    const address = (this.chunks.length - 1) * CHUNK_SIZE + this.top;
    this.top += size;
    return address;
  }

  /** Returns the record at `address`, allocated with `length` bytes, for reuse. */
  free(address: number, length: number): void {
    const granules = ByteArena.roundedLength(length) / GRANULE;
    this.writeLink(address, this.freeHeads[granules]);
    this.freeHeads[granules] = address;
  }

  /** The chunk holding `address`. */
  chunkOf(address: number): Uint8Array {
    return this.chunks[Math.floor(address / CHUNK_SIZE)];
  }

  /** Offset of `address` inside its chunk. */
  static offsetOf(address: number): number {
    return address % CHUNK_SIZE;
  }

  /** Drops every record and chunk. */
  clear(): void {
    this.chunks.length = 0;
    this.views.length = 0;
    this.freeHeads.fill(NONE);
    this.top = CHUNK_SIZE;
  }

  // A free record's first 8 bytes hold the next free address (a float64, NONE at the end).
  private readLink(address: number): number {
    return this.views[Math.floor(address / CHUNK_SIZE)].getFloat64(ByteArena.offsetOf(address), true);
  }

  private writeLink(address: number, next: number): void {
    this.views[Math.floor(address / CHUNK_SIZE)].setFloat64(ByteArena.offsetOf(address), next, true);
  }
}
