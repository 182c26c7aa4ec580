/**
 * Cheap timers for the miss path: callbacks due within the same few milliseconds share one real
 * timer. A Deno `setTimeout` costs ~1.3 µs and ~1.4 KB of heap, and every miss used to start three
 * or four of them (retransmit, timeouts) that almost always end cleared; here one costs a small
 * object and an array slot. Callbacks run up to {@link GRANULARITY_MS} late, never early. A
 * bucket's real timer is cleared as soon as nothing in it is still due, so no timer outlives the
 * work it was for.
 *
 * @module
 */

/** How far apart two deadlines may be and still share one real timer (ms). */
export const GRANULARITY_MS = 4;

/** What a coarse timer runs: a function, or an object whose `timeUp` is called (no closure needed). */
export type TimerCallback = (() => void) | { timeUp(): void };

/** A callback waiting in a bucket; `cancel` makes it never run. */
export interface CoarseTimer {
  cancel(): void;
}

class Bucket {
  constructor(readonly due: number) {}
  readonly entries: Entry[] = [];
  live = 0;
  timer?: ReturnType<typeof setTimeout>;
}

class Entry implements CoarseTimer {
  constructor(
    public callback: TimerCallback | undefined,
    readonly bucket: Bucket,
    readonly owner: CoarseTimers,
  ) {}

  cancel(): void {
    if (this.callback === undefined) return;
    this.callback = undefined;
    if (--this.bucket.live === 0) this.owner.drop(this.bucket);
  }
}

/** A set of coarse timers sharing real timers per {@link GRANULARITY_MS} slice of time. */
export class CoarseTimers {
  private readonly buckets = new Map<number, Bucket>();

  /** Runs `callback` once, `ms` milliseconds from now (up to {@link GRANULARITY_MS} later). */
  after(ms: number, callback: TimerCallback): CoarseTimer {
    const due = Math.ceil((performance.now() + ms) / GRANULARITY_MS);
    let bucket = this.buckets.get(due);
    if (bucket === undefined) {
      const b = bucket = new Bucket(due);
      this.buckets.set(due, b);
      b.timer = setTimeout(() => this.fire(b), Math.max(0, due * GRANULARITY_MS - performance.now()));
    }
    const entry = new Entry(callback, bucket, this);
    bucket.entries.push(entry);
    bucket.live++;
    return entry;
  }

  /** Forgets a bucket with nothing left due, and its real timer. */
  drop(bucket: Bucket): void {
    clearTimeout(bucket.timer);
    if (this.buckets.get(bucket.due) === bucket) this.buckets.delete(bucket.due);
  }

  private fire(bucket: Bucket): void {
    if (this.buckets.get(bucket.due) === bucket) this.buckets.delete(bucket.due);
    bucket.live = 0;
    for (const entry of bucket.entries) {
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
