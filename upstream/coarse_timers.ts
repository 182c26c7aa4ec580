/**
 * Cheap timers for the miss path: callbacks due within the same few milliseconds share one real
 * timer. A Deno `setTimeout` costs ~1.3 µs and ~1.4 KB of heap, and every miss used to start three
 * or four of them (retransmit, timeouts) that almost always end cleared; here one costs a small
 * object and an array slot. Callbacks run up to {@link GRANULARITY_MS} late, never early (long
 * delays, which are timeouts that almost never fire, share coarser buckets: up to 16 ms late from
 * 500 ms, 64 ms from 2 s, so that a bucket is not made and dropped every few milliseconds). A
 * bucket's real timer is cleared as soon as nothing in it is still due, so no timer outlives the
 * work it was for.
 *
 * @module
 */

/** How far apart two deadlines may be and still share one real timer (ms), for delays below 500 ms. */
export const GRANULARITY_MS = 4;

/** The bucket width for a delay of `ms`: about 1/32 of it, at least {@link GRANULARITY_MS}. */
function sliceOf(ms: number): number {
  return ms >= 2000 ? 64 : ms >= 500 ? 16 : GRANULARITY_MS;
}

/** What a coarse timer runs: a function, or an object whose `timeUp` is called (no closure needed). */
export type TimerCallback = (() => void) | { timeUp(): void };

/** A callback waiting in a bucket; `cancel` makes it never run. */
export interface CoarseTimer {
  cancel(): void;
}

/**
 * The callbacks due in one slice, in a doubly linked list: a cancelled entry is unlinked at once,
 * so it does not live on (and get promoted to the old generation) until the bucket's time.
 */
class Bucket {
  constructor(readonly due: number) {}
  head: Entry | undefined = undefined;
  tail: Entry | undefined = undefined;
  live = 0;
  fired = false;
  timer?: ReturnType<typeof setTimeout>;
}

class Entry implements CoarseTimer {
  prev: Entry | undefined = undefined;
  next: Entry | undefined = undefined;

  constructor(
    public callback: TimerCallback | undefined,
    readonly bucket: Bucket,
    readonly owner: CoarseTimers,
  ) {}

  cancel(): void {
    if (this.callback === undefined) return;
    this.callback = undefined;
    const bucket = this.bucket;
    if (bucket.fired) return; // being run: the loop skips it
    if (this.prev === undefined) bucket.head = this.next;
    else this.prev.next = this.next;
    if (this.next === undefined) bucket.tail = this.prev;
    else this.next.prev = this.prev;
    this.prev = this.next = undefined;
    if (--bucket.live === 0) this.owner.drop(bucket);
  }
}

/** A set of coarse timers sharing real timers per {@link GRANULARITY_MS} slice of time. */
export class CoarseTimers {
  private readonly buckets = new Map<number, Bucket>();

  /** Runs `callback` once, `ms` milliseconds from now (a little later: see the module doc). */
  after(ms: number, callback: TimerCallback): CoarseTimer {
    const now = performance.now();
    const slice = sliceOf(ms);
    const due = Math.ceil((now + ms) / slice) * slice;
    let bucket = this.buckets.get(due);
    if (bucket === undefined) {
      const b = bucket = new Bucket(due);
      this.buckets.set(due, b);
      b.timer = setTimeout(() => this.fire(b), Math.max(0, due - now));
    }
    const entry = new Entry(callback, bucket, this);
    if (bucket.tail === undefined) bucket.head = entry;
    else {
      bucket.tail.next = entry;
      entry.prev = bucket.tail;
    }
    bucket.tail = entry;
    bucket.live++;
    return entry;
  }

  /** Real timers running (one per bucket with something due). */
  get realTimers(): number {
    return this.buckets.size;
  }

  /** Forgets a bucket with nothing left due, and its real timer. */
  drop(bucket: Bucket): void {
    clearTimeout(bucket.timer);
    if (this.buckets.get(bucket.due) === bucket) this.buckets.delete(bucket.due);
  }

  private fire(bucket: Bucket): void {
    if (this.buckets.get(bucket.due) === bucket) this.buckets.delete(bucket.due);
    bucket.fired = true;
    bucket.live = 0;
    for (let entry = bucket.head; entry !== undefined; entry = entry.next) {
      const callback = entry.callback;
      if (callback === undefined) continue;
      entry.callback = undefined;
      try {
        if (typeof callback === "function") callback();
        else callback.timeUp();
      } catch (e) {
        queueMicrotask(() => {
          throw e;
        });
      }
    }
  }
}

/** The timers shared by every exchange of this process. */
export const coarseTimers: CoarseTimers = new CoarseTimers();
