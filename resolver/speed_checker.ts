/**
 * The speed check: how fast an address answers, by SmartDNS's `speed-check-mode` probes in order
 * (`ping`, `tcp:PORT`). The first probe kind starts at once; each next kind starts when the ones
 * before have given nothing for another 100 ms (SmartDNS's check interval), and the first result
 * of any kind counts. Results are kept per address for a minute, so a name asked again, or another
 * name on the same address, is not probed again.
 *
 * @module
 */
import { formatSpeedCheckModes, type SpeedCheckMode } from "../config/schema.ts";
import { type IcmpAccess, IcmpPinger } from "../net/icmp_probe.ts";
import { tcpConnectTime } from "../net/tcp_probe.ts";

/** How long after its previous kind a probe kind starts, when that one has no result yet (ms). */
export const NEXT_KIND_AFTER_MS = 100;
/** How long a probe result (or its failure) is kept for an address (ms). */
export const RESULT_LIFETIME_MS = 60_000;
/** At most this many addresses' results are kept. */
const MAX_RESULTS = 8192;

/** A probe kind: sends one probe, resolves with the RTT in ms or undefined. */
export type Probe = (ip: string, timeoutMs: number) => Promise<number | undefined>;

/** The process's one ICMP pinger (its sockets are shared by every resolver built on reload). */
let pinger: IcmpPinger | undefined;

/** The probe for one configured kind. */
function probeFor(mode: SpeedCheckMode): Probe {
  if (mode.kind === "tcp") return (ip, timeoutMs) => tcpConnectTime(ip, mode.port, timeoutMs);
  pinger ??= new IcmpPinger();
  const p = pinger;
  return (ip, timeoutMs) => p.probe(ip, timeoutMs);
}

/** Probes addresses and remembers how fast they were. */
export class SpeedChecker {
  private readonly results = new Map<string, { rtt: number | undefined; at: number }>();
  private readonly inFlight = new Map<string, Promise<number | undefined>>();
  private readonly probes: Probe[];
  /** Probes sent (for counters and the bench). */
  probesSent = 0;

  /**
   * @param modes the kinds in order (`none` is an empty list)
   * @param probes the probe of each kind (tests inject their own)
   */
  constructor(readonly modes: readonly SpeedCheckMode[], probes?: Probe[], private readonly now = Date.now) {
    this.probes = probes ?? modes.map(probeFor);
  }

  /** The kinds as `speed-check-mode` writes them (a reload with the same ones keeps the results). */
  get modesText(): string {
    return formatSpeedCheckModes(this.modes);
  }

  /** How ICMP probes go out, if `ping` is one of the kinds (for the one log line at start). */
  static icmpAccess(): IcmpAccess {
    pinger ??= new IcmpPinger();
    return pinger.access();
  }

  /** The remembered RTT of `ip` (ms; undefined = failed or never probed) and whether one is known. */
  known(ip: string): { rtt: number | undefined } | undefined {
    const r = this.results.get(ip);
    if (!r || this.now() - r.at > RESULT_LIFETIME_MS) return undefined;
    return r;
  }

  /**
   * The RTT of `ip` in ms, or undefined when no probe kind got an answer within `budgetMs`:
   * remembered, joined to a probe already under way, or probed now.
   */
  check(ip: string, budgetMs: number): Promise<number | undefined> {
    const known = this.known(ip);
    if (known) return Promise.resolve(known.rtt);
    const running = this.inFlight.get(ip);
    if (running) return running;
    const probing = this.probe(ip, budgetMs).then((rtt) => {
      this.inFlight.delete(ip);
      if (this.results.size >= MAX_RESULTS) {
        const oldest = this.results.keys().next().value;
        if (oldest !== undefined) this.results.delete(oldest);
      }
      this.results.delete(ip); // re-inserted last: the map's order is the eviction order
      this.results.set(ip, { rtt, at: this.now() });
      return rtt;
    });
    this.inFlight.set(ip, probing);
    return probing;
  }

  /**
   * Runs the kinds in order: the next starts when the one before fails or has given nothing for
   * {@link NEXT_KIND_AFTER_MS}; the first result wins, and all of it ends within `budgetMs`.
   */
  private probe(ip: string, budgetMs: number): Promise<number | undefined> {
    const kinds = this.probes;
    if (kinds.length === 0) return Promise.resolve(undefined);
    const started = performance.now();
    return new Promise((resolve) => {
      let next = 0;
      let open = 0;
      let done = false;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const finish = (rtt: number | undefined) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        resolve(rtt);
      };
      const startNext = () => {
        clearTimeout(timer);
        const left = budgetMs - (performance.now() - started);
        if (done || next >= kinds.length || left <= 0) {
          if (!done && open === 0) finish(undefined);
          return;
        }
        const probe = kinds[next++];
        open++;
        this.probesSent++;
        const failed = () => {
          open--;
          startNext();
        };
        probe(ip, left).then((rtt) => rtt === undefined ? failed() : finish(rtt), failed);
        if (next < kinds.length) timer = setTimeout(startNext, NEXT_KIND_AFTER_MS);
      };
      startNext();
    });
  }
}
