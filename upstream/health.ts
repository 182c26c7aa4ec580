/**
 * Upstream health (CoreDNS's health-check idea): {@link HealthChecked} wraps any {@link Upstream},
 * counts its consecutive failures, and after {@link FAILURES_TO_DOWN} in a row sets it aside
 * ("down") and probes it — every 2 s at first, backing off to 30 s — until it answers again. Any
 * answer to the probe counts as alive, even NXDOMAIN or REFUSED. It also keeps the server's recent
 * round-trip times in a small ring, for p50/p95 and for an adaptive per-exchange timeout:
 * max(3 × p95, 200 ms), capped at the configured upstream timeout (the configured one until a few
 * answers have been measured).
 *
 * An exchange silent past the adaptive timeout counts as failed (a late answer still resets the
 * count). One aborted with {@link OUTRUN} (another server of the race won) returns at once but goes
 * on in the background until the adaptive timeout: answering counts as alive (and is measured),
 * silence as a failure. So a black-holed server is found out even while others win every race.
 * Any other rejection is a failure, a race's overall timeout included.
 *
 * @module
 */
import { parseQuery, type Question } from "../dns/wire.ts";
import { type Upstream, UpstreamError } from "./upstream.ts";
import { ownQuestion } from "./query_options.ts";
import { type CoarseTimer, coarseTimers } from "./coarse_timers.ts";
import { Cancel } from "./cancel.ts";

/** What the race needs to know of a member's health: a down server is asked only when all are. */
export interface HealthView {
  readonly down: boolean;
  /**
   * The server's adaptive timeout: silent this long, an exchange counts as failed and the race
   * stops waiting on it (it asks the fallback servers, or gives what it has), though a late answer
   * is still taken until the race's own timeout.
   */
  readonly timeoutMs?: number;
}

/** A member the race asks only when no other member of the group answered usably (`-fallback`). */
export interface FallbackView {
  readonly fallback: boolean;
}

/** The abort reason of an exchange cancelled because another server already answered. */
export const OUTRUN: unknown = new DOMException("another server answered first", "AbortError");

/** Consecutive failures that set a server aside. */
export const FAILURES_TO_DOWN = 2;
/** First probe interval while down; doubled after each failed probe up to {@link PROBE_MAX_MS}. */
export const PROBE_MIN_MS = 2000;
/** Longest probe interval. */
export const PROBE_MAX_MS = 30_000;
/** Round-trip samples kept (the "recent window"). */
export const RTT_WINDOW = 64;
/** Samples needed before the timeout adapts. */
export const RTT_MIN_SAMPLES = 4;
/** The percentiles are recomputed after this many new samples. */
const RESORT_EVERY = 8;
/** The adaptive timeout never goes below this. */
export const ADAPTIVE_FLOOR_MS = 200;

/** One server's health, for `keeldns status`. */
export interface UpstreamHealthReport {
  readonly address: string;
  readonly state: "up" | "down";
  readonly fallback: boolean;
  /** Median round trip over the recent window, in ms (0 before the first answer). */
  readonly rttP50Ms: number;
  readonly rttP95Ms: number;
  /** Round trips in the window. */
  readonly samples: number;
  /** The per-exchange timeout in force, in ms. */
  readonly timeoutMs: number;
  /** Exchanges answered, and failed (aborts because another server won excepted), since start. */
  readonly answers: number;
  readonly failures: number;
  readonly consecutiveFailures: number;
  /** Probes sent while down. */
  readonly probes: number;
}

/** Options of {@link HealthChecked}. */
export interface HealthOptions {
  /** The configured upstream timeout: the cap of the adaptive one, and the probe's timeout. */
  readonly timeoutMs: number;
  /** `-fallback`: asked only when the other servers fail. */
  readonly fallback?: boolean;
  /** Called when the server goes down or comes back up. */
  readonly onChange?: (upstream: HealthChecked) => void;
  readonly failuresToDown?: number;
  readonly probeMinMs?: number;
  readonly probeMaxMs?: number;
}

/** The probe question: `. NS`, which any resolver answers one way or another (no client's subnet on it). */
function probeQuestion(): Question {
  const wire = new Uint8Array([0, 0, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 1]);
  crypto.getRandomValues(wire.subarray(0, 2));
  return ownQuestion(parseQuery(wire));
}

/** An {@link Upstream} that tracks its own health (see the module doc). */
export class HealthChecked implements Upstream, HealthView, FallbackView {
  readonly address: string;
  readonly fallback: boolean;
  private readonly rtts = new Float64Array(RTT_WINDOW);
  private rttCount = 0;
  private rttNext = 0;
  private sorted?: Float64Array;
  /** {@link timeoutMs} while {@link sorted} stands (asked twice per exchange: race and here). */
  private adaptiveMs?: number;
  private sinceSorted = 0;
  private isDown = false;
  private consecutive = 0;
  private answered = 0;
  private failed = 0;
  private probed = 0;
  private probeDelay: number;
  private probeTimer?: ReturnType<typeof setTimeout>;
  private probeCancel?: Cancel;
  private outrun?: UpstreamError;
  private closed = false;
  /** Exchanges under way (some only finishing for health's sake), aborted by {@link close}. */
  private readonly inFlight = new Set<HealthExchange>();
  private readonly failuresToDown: number;
  private readonly probeMinMs: number;
  private readonly probeMaxMs: number;

  constructor(readonly inner: Upstream, private readonly options: HealthOptions) {
    this.address = inner.address;
    this.fallback = options.fallback ?? false;
    this.failuresToDown = options.failuresToDown ?? FAILURES_TO_DOWN;
    this.probeMinMs = options.probeMinMs ?? PROBE_MIN_MS;
    this.probeMaxMs = options.probeMaxMs ?? PROBE_MAX_MS;
    this.probeDelay = this.probeMinMs;
  }

  /** Whether the server is set aside. */
  get down(): boolean {
    return this.isDown;
  }

  /** The `p`-th percentile (0–1) of the recent round trips, in ms; 0 when there are none. */
  percentile(p: number): number {
    if (this.rttCount === 0) return 0;
    const sorted = this.sorted ??= this.rtts.slice(0, this.rttCount).sort();
    const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1));
    return sorted[i];
  }

  /** How long one exchange may take: max(3 × p95, 200 ms), capped at the configured timeout. */
  get timeoutMs(): number {
    if (this.rttCount < RTT_MIN_SAMPLES) return this.options.timeoutMs;
    if (this.sorted !== undefined && this.adaptiveMs !== undefined) return this.adaptiveMs;
    return this.adaptiveMs = Math.min(
      this.options.timeoutMs,
      Math.max(3 * this.percentile(0.95), ADAPTIVE_FLOOR_MS),
    );
  }

  /**
   * One exchange. Silent past {@link timeoutMs} (the adaptive timeout), it counts as a failure but
   * goes on, up to the configured timeout, so a slow answer is still used. When `cancel` fires
   * with {@link OUTRUN}, the returned promise rejects at once, but the exchange runs on to the
   * adaptive timeout: a server that never answers is still found out (and a slower live one still
   * measured) while faster servers win every race.
   */
  exchange(q: Question, cancel: Cancel): Promise<Uint8Array> {
    const x = new HealthExchange(this, cancel, this.timeoutMs, this.options.timeoutMs);
    this.inFlight.add(x);
    if (cancel.cancelled) x.onCancel(cancel.reason);
    else cancel.listen(x);
    this.inner.exchange(q, x).then((response) => x.answered(response), (error) => x.failed(error));
    return x.promise;
  }

  /** An exchange ended (for {@link HealthExchange}). */
  ended(x: HealthExchange): void {
    this.inFlight.delete(x);
  }

  /** The rejection of an exchange another server outran (one per server: nobody reads its stack). */
  outrunError(): UpstreamError {
    return this.outrun ??= new UpstreamError(this.address, "another server answered first");
  }

  /** Counts one failed exchange, unless closed (for {@link HealthExchange}). */
  failedExchange(): void {
    if (!this.closed) this.failedOnce();
  }

  close(): void {
    this.closed = true;
    for (const x of this.inFlight) x.cancel();
    clearTimeout(this.probeTimer);
    this.probeCancel?.cancel();
    this.inner.close();
  }

  /** The server's health, for `keeldns status`. */
  report(): UpstreamHealthReport {
    const round = (ms: number) => Math.round(ms * 10) / 10;
    this.sorted = this.adaptiveMs = undefined; // exact for the report
    return {
      address: this.address,
      state: this.isDown ? "down" : "up",
      fallback: this.fallback,
      rttP50Ms: round(this.percentile(0.5)),
      rttP95Ms: round(this.percentile(0.95)),
      samples: this.rttCount,
      timeoutMs: Math.round(this.timeoutMs),
      answers: this.answered,
      failures: this.failed,
      consecutiveFailures: this.consecutive,
      probes: this.probed,
    };
  }

  /** Counts one answer that took `rttMs`. */
  succeeded(rttMs: number): void {
    this.answered++;
    this.consecutive = 0;
    this.rtts[this.rttNext] = rttMs;
    this.rttNext = (this.rttNext + 1) % RTT_WINDOW;
    if (this.rttCount < RTT_WINDOW) this.rttCount++;
    // Sorted again every few samples, not on each answer: the percentiles move slowly.
    if (++this.sinceSorted >= RESORT_EVERY || this.rttCount <= RTT_MIN_SAMPLES) {
      this.sorted = this.adaptiveMs = undefined;
      this.sinceSorted = 0;
    }
    if (this.isDown) this.setDown(false);
  }

  private failedOnce(): void {
    this.failed++;
    if (++this.consecutive >= this.failuresToDown && !this.isDown) this.setDown(true);
  }

  private setDown(down: boolean): void {
    this.isDown = down;
    clearTimeout(this.probeTimer);
    this.probeTimer = undefined;
    if (down) {
      this.probeDelay = this.probeMinMs;
      this.scheduleProbe();
    }
    this.options.onChange?.(this);
  }

  private scheduleProbe(): void {
    if (this.closed || !this.isDown) return;
    this.probeTimer = setTimeout(() => this.probe(), this.probeDelay);
    Deno.unrefTimer(this.probeTimer as unknown as number);
  }

  private probe(): void {
    this.probeTimer = undefined;
    if (this.closed || !this.isDown) return;
    this.probed++;
    const cancel = this.probeCancel = new Cancel();
    const timer = setTimeout(() => cancel.cancel(), Math.min(this.options.timeoutMs, this.probeMinMs));
    const started = performance.now();
    this.inner.exchange(probeQuestion(), cancel).then(
      () => this.succeeded(performance.now() - started),
      () => {
        if (this.closed || !this.isDown) return;
        this.probeDelay = Math.min(this.probeDelay * 2, this.probeMaxMs);
        this.scheduleProbe();
      },
    ).finally(() => clearTimeout(timer));
  }
}

/**
 * One exchange of a {@link HealthChecked}: the inner exchange's {@link Cancel} (it outlives the
 * caller's when another server won), the listener on the caller's, and the exchange's timer.
 */
class HealthExchange extends Cancel {
  readonly promise: Promise<Uint8Array>;
  private resolve!: (response: Uint8Array) => void;
  private reject!: (error: unknown) => void;
  private readonly started = performance.now();
  private timer: CoarseTimer;
  /** Counted as failed already. */
  private counted = false;
  /** Past the adaptive timeout. */
  private late = false;
  /** The caller gave up on it because another server answered. */
  private outrun = false;
  /** Answered. */
  private settled = false;
  /** Past the adaptive timeout and waiting on until the configured one. */
  private waitingOn = false;

  constructor(
    private readonly owner: HealthChecked,
    private readonly outer: Cancel,
    private readonly adaptive: number,
    private readonly hard: number,
  ) {
    super();
    this.promise = new Promise<Uint8Array>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    // One timer at a time: the adaptive timeout first (when shorter), then the rest of the configured one.
    this.waitingOn = adaptive >= hard;
    this.timer = coarseTimers.after(this.waitingOn ? hard : adaptive, this);
  }

  /** The caller's cancel fired. */
  onCancel(reason: unknown): void {
    if (this.settled) return;
    if (reason !== OUTRUN) return this.cancel(reason);
    this.outrun = true;
    this.reject(this.owner.outrunError());
    if (this.late) this.cancel(reason); // already counted: nothing left to learn
  }

  /** The timer ran out: the adaptive timeout, or the configured one. */
  timeUp(): void {
    if (this.waitingOn) {
      this.cancel(new UpstreamError(this.owner.address, `no answer in ${this.hard} ms`));
      return;
    }
    this.late = true;
    this.fail();
    if (this.outrun) this.cancel(new UpstreamError(this.owner.address, `no answer in ${this.adaptive} ms`));
    else {
      this.waitingOn = true;
      this.timer = coarseTimers.after(this.hard - this.adaptive, this);
    }
  }

  answered(response: Uint8Array): void {
    this.settled = true;
    this.owner.succeeded(performance.now() - this.started);
    this.resolve(response);
    this.end();
  }

  failed(error: unknown): void {
    this.fail();
    this.reject(this.reason instanceof UpstreamError ? this.reason : error);
    this.end();
  }

  private fail(): void {
    if (this.counted) return;
    this.counted = true;
    this.owner.failedExchange();
  }

  private end(): void {
    this.timer.cancel();
    this.outer.unlisten(this);
    this.owner.ended(this);
  }
}
