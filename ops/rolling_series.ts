/**
 * Counters per time bucket over a rolling window (e.g. 10-second buckets for the last hour), for
 * the dashboard's charts: a ring of fixed-width buckets, each slot reset when a new bucket takes
 * it. Bucket numbers are absolute (`floor(time / width)`), so two series of the same shape from
 * different processes add up bucket by bucket (a successor takes over its predecessor's).
 *
 * @module
 */

/** A series as carried to a successor: its shape, and each non-empty bucket `[bucket, ...values]`. */
export interface RollingSeriesState {
  readonly widthMs: number;
  readonly fields: readonly string[];
  readonly buckets: readonly (readonly number[])[];
}

/** A series' buckets in time order, for a chart. */
export interface SeriesRows {
  /** The width of a bucket, in seconds. */
  readonly widthSeconds: number;
  /** The start of the oldest bucket (ms since the epoch); bucket `k` starts `k * width` later. */
  readonly start: number;
  /** Each field's values, oldest bucket first (0 where nothing was counted). */
  readonly values: Readonly<Record<string, number[]>>;
}

/** Per-bucket counters of `fields` over the last `length` buckets of `widthMs`. */
export class RollingSeries {
  /** The bucket number each slot holds (-1: none yet). */
  private readonly stamps: Float64Array;
  /** Per field, per slot. */
  readonly values: Float64Array[];

  constructor(readonly widthMs: number, readonly length: number, readonly fields: readonly string[]) {
    this.stamps = new Float64Array(length).fill(-1);
    this.values = fields.map(() => new Float64Array(length));
  }

  /** The last bucket asked for: its time span and slot (most records fall in the same one). */
  private lastStart = 0;
  private lastEnd = 0;
  private lastSlot = 0;

  /** The slot of the bucket holding `timeMs`, emptied first if it held an older bucket. */
  slot(timeMs: number): number {
    if (timeMs >= this.lastStart && timeMs < this.lastEnd) return this.lastSlot;
    const bucket = Math.floor(timeMs / this.widthMs);
    const slot = bucket % this.length;
    if (this.stamps[slot] !== bucket) {
      this.stamps[slot] = bucket;
      for (const v of this.values) v[slot] = 0;
    }
    this.lastStart = bucket * this.widthMs;
    this.lastEnd = this.lastStart + this.widthMs;
    this.lastSlot = slot;
    return slot;
  }

  /** The buckets of the window ending at `nowMs`, oldest first. */
  rows(nowMs: number): SeriesRows {
    const last = Math.floor(nowMs / this.widthMs);
    const first = last - this.length + 1;
    const values: Record<string, number[]> = {};
    this.fields.forEach((field, f) => {
      const out: number[] = new Array(this.length);
      for (let b = first; b <= last; b++) {
        const slot = ((b % this.length) + this.length) % this.length;
        out[b - first] = this.stamps[slot] === b ? this.values[f][slot] : 0;
      }
      values[field] = out;
    });
    return { widthSeconds: this.widthMs / 1000, start: first * this.widthMs, values };
  }

  /** What a successor needs to go on: the non-empty buckets still in the window at `nowMs`. */
  state(nowMs: number): RollingSeriesState {
    const first = Math.floor(nowMs / this.widthMs) - this.length + 1;
    const buckets: number[][] = [];
    for (let slot = 0; slot < this.length; slot++) {
      const b = this.stamps[slot];
      if (b < first || !this.values.some((v) => v[slot] !== 0)) continue;
      buckets.push([b, ...this.values.map((v) => v[slot])]);
    }
    buckets.sort((a, b) => a[0] - b[0]);
    return { widthMs: this.widthMs, fields: this.fields, buckets };
  }

  /** Adds a predecessor's buckets (fields matched by name; another shape is ignored). */
  merge(state: RollingSeriesState | undefined, nowMs: number): void {
    if (!state || state.widthMs !== this.widthMs || !Array.isArray(state.buckets)) return;
    const first = Math.floor(nowMs / this.widthMs) - this.length + 1;
    const fieldIndex = state.fields.map((f) => this.fields.indexOf(f));
    for (const row of state.buckets) {
      const bucket = row[0];
      if (!(bucket >= first) || bucket > first + this.length - 1) continue;
      const slot = this.slot(bucket * this.widthMs);
      fieldIndex.forEach((f, k) => {
        if (f >= 0) this.values[f][slot] += Number(row[k + 1]) || 0;
      });
    }
  }
}
