/**
 * The trace of one `keeldns explain` question: what the stages it went through decided, filled
 * in only when a {@link QueryContext} carries one (`ctx.trace`, a `declare`d field: a client's
 * query has none and pays nothing for it). Stages write here on paths that already branch — a
 * miss's race, the speed check's probes, the dual-stack choice — never on a cache hit.
 *
 * @module
 */
import type { SourcePosition } from "../config/schema.ts";
import type { Next } from "./stage.ts";

/** What became of one server's exchange in the race. */
export type UpstreamVerdict =
  /** Its positive answer won the race. */
  | "accepted"
  /** A negative answer (NXDOMAIN or no records), held for a positive one from another server. */
  | "negative"
  /** REFUSED, SERVFAIL or another error rcode: passed on only if nothing better came. */
  | "error-rcode"
  /** Refused by an IP rule (ignore-ip, blacklist-ip, whitelist-ip). */
  | "filtered"
  /** Turned into NXDOMAIN by bogus-nxdomain. */
  | "bogus-nxdomain"
  /** A malformed answer, refused. */
  | "malformed"
  /** A positive answer after the winner's, whose addresses the speed check probed too. */
  | "later"
  /** Another server answered first; this one was no longer waited for. */
  | "outrun"
  /** No answer within the race's timeout. */
  | "timeout"
  /** The exchange failed (connection refused, a transport error …). */
  | "failed";

/** An IP rule as the trace names it. */
export interface TracedIpRule {
  /** The rule as a smartdns.conf line would say it, e.g. `ignore-ip 192.0.2.66/32`. */
  readonly text: string;
  readonly source: SourcePosition;
}

/** One server's exchange in the race. */
export interface UpstreamAttempt {
  /** The server's address, as configured. */
  readonly server: string;
  /** Milliseconds from the race's start to its answer or failure. */
  readonly rttMs: number;
  readonly verdict: UpstreamVerdict;
  /** The answer's rcode, when there was an answer. */
  readonly rcode?: string;
  /** The answer's A/AAAA addresses, when there was an answer. */
  readonly addresses?: readonly string[];
  /** Why (the error, the filter's reason). */
  readonly detail?: string;
  /** The IP rules that refused its answer (`filtered`, `bogus-nxdomain`). */
  readonly ipRules?: readonly TracedIpRule[];
}

/** The speed check of the answer's addresses. */
export interface SpeedTrace {
  /** The probe kinds, e.g. `ping,tcp:443`. */
  readonly probes: string;
  /** The response mode (first-ping, fastest-ip, fastest-response). */
  readonly responseMode: string;
  /** Each probed address with its RTT in ms (null: no probe answered). */
  readonly results: readonly { readonly ip: string; readonly rttMs: number | null }[];
}

/** The dual-stack selection between the two families' fastest probes. */
export interface DualstackTrace {
  /** The question's own family's fastest RTT (ms; null: none answered in time). */
  readonly ownMs: number | null;
  /** The other family's fastest RTT (ms; null: none answered, or it had no addresses). */
  readonly otherMs: number | null;
  readonly thresholdMs: number;
  /** Whether the question was answered empty so the client uses the other family. */
  readonly answeredEmpty: boolean;
}

/** The trace a question collects on its way down the chain. */
export class QueryTrace {
  /** Every server's exchange, in the order they ended. */
  readonly upstreams: UpstreamAttempt[] = [];
  /** The upstream group raced (its index), once a race began. */
  raceGroup?: number;
  speed?: SpeedTrace;
  dualstack?: DualstackTrace;
  /** The other family's question of the dual-stack selection, traced on its own. */
  sibling?: QueryTrace;
  /** Work the trace waits for before it is complete (the speed check's probes). */
  private readonly waits: Promise<unknown>[] = [];
  /** Exchanges still under way. */
  private open = 0;
  private idle?: () => void;

  /**
   * @param fromCache the trace chain from the cache on, for the dual-stack selection's other
   *   question (so it too leaves the cache as it is)
   */
  constructor(readonly fromCache?: Next) {}

  /** A trace for the dual-stack selection's other question. */
  forSibling(): QueryTrace {
    return this.sibling = new QueryTrace();
  }

  /** An exchange with a server began; the returned function records how it ended. */
  exchangeStarted(server: string): (attempt: Omit<UpstreamAttempt, "server" | "rttMs">) => void {
    const started = performance.now();
    this.open++;
    let ended = false;
    return (attempt) => {
      if (ended) return;
      ended = true;
      this.upstreams.push({ server, rttMs: Math.round((performance.now() - started) * 10) / 10, ...attempt });
      if (--this.open === 0) this.idle?.();
    };
  }

  /** Has {@link settled} wait for `work` too (what it records comes when it is done). */
  waitFor(work: Promise<unknown>): void {
    this.waits.push(work.catch(() => {}));
  }

  /**
   * Resolves once every exchange begun has ended and the work given to {@link waitFor} is done
   * (its sibling's too), or after `timeoutMs`.
   */
  async settled(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<void>((resolve) => timer = setTimeout(resolve, timeoutMs));
    await Promise.race([Promise.all(this.waits), timeout]);
    clearTimeout(timer);
    if (this.open > 0) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        this.idle = resolve;
        timer = setTimeout(resolve, timeoutMs);
      });
      clearTimeout(timer);
      this.idle = undefined;
    }
    await this.sibling?.settled(Math.max(0, deadline - Date.now()));
  }
}
