/**
 * Adds answer addresses to nftables sets through one long-lived `nft -i` process (SmartDNS's
 * `nftset`, and `ipset` mapped onto nftables). Addresses are gathered per set and family and
 * written as one `add element` line per set once per event-loop turn; while a batch is in
 * nft's hands the next one gathers, so under load a line carries many answers and the number of
 * processes stays at one. Each batch ends with a marker line that nft refuses at once (a syntax
 * error, no netlink round trip): its error on stderr says every line before it is done, and the
 * errors in between name the lines they belong to. A failing set (missing, no permission, no
 * `flags timeout`, the wrong address family) is logged at most once a minute and never stops the
 * others, nor answering.
 *
 * @module
 */
import type { Logger } from "./log.ts";

/** One nftables set (`inet#mytable#myset`). Pass the same object for the same set (it is cached). */
export interface NftSet {
  readonly family: string;
  readonly table: string;
  readonly set: string;
}

/** What the batcher needs of a logger. */
export type NftLog = Pick<Logger, "warn" | "info">;

/** How to run nft, and how much to keep. */
export interface NftBatcherOptions {
  /** The command and its arguments; it must read nft commands line by line on stdin. */
  readonly command?: readonly string[];
  /** Log every batch (SmartDNS's `nftset-debug`). */
  readonly debug?: boolean;
  /** The clock (ms). */
  readonly now?: () => number;
  /** A batch nft has not finished after this long (ms) ends the process; a new one starts. */
  readonly stallTimeout?: number;
  /** Elements waiting beyond this are dropped (and counted) rather than kept. */
  readonly maxPending?: number;
  /** Elements per `add element` line (one refused element refuses its whole line). */
  readonly lineElements?: number;
}

/** What the batcher has done so far. */
export interface NftCounters {
  /** Elements handed to {@link NftBatcher.add}. */
  queued: number;
  /** Elements written to nft (after merging duplicates within a batch). */
  sent: number;
  /** Elements nft refused. */
  refused: number;
  /** Elements dropped: nft could not be started, or too many were waiting. */
  dropped: number;
  /** Batches written. */
  batches: number;
  /** nft processes started. */
  processes: number;
}

/** Error-log interval per set (ms). */
const LOG_INTERVAL = 60_000;
/** A set that does not take a family is not sent that family again for this long (ms). */
const FAMILY_MUTE = 600_000;
/** Longest element timeout (s): the kernel keeps timeouts in ms, older kernels in 32 bits. */
export const MAX_TIMEOUT = 2_147_483;
/** The furthest expiry kept per address, so a shorter TTL never cuts one keeldns set; bound per set. */
const MAX_TRACKED = 262_144;
const MARKER = "keeldns-batch-";

/** Elements of one set and family: its own line in every batch. */
class SetFamily {
  /** Address → timeout (s; 0 = none), for the batch being gathered. */
  pending = new Map<string, number>();
  /** Address → the furthest expiry (ms) keeldns has given it. */
  readonly expiry = new Map<string, number>();
  /** Until when this family is not sent (the set does not take it). */
  mutedUntil = 0;
  constructor(readonly set: SetState, readonly v6: boolean) {}
}

/** One set: its name as nft writes it, and how it has fared. */
class SetState {
  readonly v4: SetFamily;
  readonly v6: SetFamily;
  /** The set has no `flags timeout`: elements go without one. */
  noTimeout = false;
  lastLogged = -Infinity;
  suppressed = 0;
  constructor(readonly spec: string) {
    this.v4 = new SetFamily(this, false);
    this.v6 = new SetFamily(this, true);
  }
}

/** One line of a batch in nft's hands. */
interface SentLine {
  readonly text: string;
  readonly family: SetFamily;
  readonly elements: readonly (readonly [string, number])[];
}

/** A batch written to nft and not yet confirmed. */
interface InFlight {
  readonly id: number;
  readonly lines: SentLine[];
  readonly done: () => void;
  readonly timer: ReturnType<typeof setTimeout>;
}

/** Adds addresses to nftables sets in batches through one `nft -i` (see the module doc). */
export class NftBatcher {
  readonly counters: NftCounters = { queued: 0, sent: 0, refused: 0, dropped: 0, batches: 0, processes: 0 };
  /** Log every batch. */
  debug: boolean;
  private readonly command: readonly string[];
  private readonly now: () => number;
  private readonly stallTimeout: number;
  private readonly maxPending: number;
  private readonly lineElements: number;
  private readonly byObject = new WeakMap<NftSet, SetState>();
  private readonly byName = new Map<string, SetState>();
  private readonly dirty = new Set<SetFamily>();
  private pendingCount = 0;
  private scheduled = false;
  private waiters: (() => void)[] = [];
  private inFlight?: InFlight;
  private process?: Deno.ChildProcess;
  private stdin?: WritableStreamDefaultWriter<Uint8Array>;
  private lastStart = -Infinity;
  private startFailedLogged = -Infinity;
  private nextId = 1;
  private lastSweep: number;
  private closed = false;
  private readonly encoder = new TextEncoder();

  constructor(private readonly log: NftLog, options: NftBatcherOptions = {}) {
    this.command = options.command ?? ["nft", "-i"];
    this.debug = options.debug ?? false;
    this.now = options.now ?? Date.now;
    this.stallTimeout = options.stallTimeout ?? 5_000;
    this.maxPending = options.maxPending ?? 100_000;
    this.lineElements = options.lineElements ?? 2_000;
    this.lastSweep = this.now();
  }

  /**
   * Queues `ip` (IPv4 or IPv6 text) for `set`, with `timeout` seconds (0: no timeout). Never
   * throws; the element is written with the next batch.
   */
  add(set: NftSet, ip: string, timeout: number): void {
    this.counters.queued++;
    if (this.closed) return void this.counters.dropped++;
    const family = ip.includes(":") ? this.stateOf(set).v6 : this.stateOf(set).v4;
    const now = this.now();
    if (family.mutedUntil > now) return;
    let t = timeout > 0 ? Math.min(Math.ceil(timeout), MAX_TIMEOUT) : 0;
    if (t > 0) {
      // Never cut short what keeldns gave the address before (another name, a longer TTL).
      const known = family.expiry.get(ip);
      const until = now + t * 1000;
      if (known !== undefined && known > until) t = Math.ceil((known - now) / 1000);
      else if (known !== undefined || family.expiry.size < MAX_TRACKED) family.expiry.set(ip, until);
    }
    const before = family.pending.get(ip);
    if (before === undefined) {
      if (this.pendingCount >= this.maxPending) return void this.counters.dropped++;
      this.pendingCount++;
    }
    if (before === undefined || t > before) family.pending.set(ip, t);
    this.dirty.add(family);
    this.schedule();
  }

  /** Resolves once everything queued so far has been through nft (or given up on). */
  settled(): Promise<void> {
    if (this.dirty.size === 0 && !this.inFlight) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Whether elements are waiting or in nft's hands. */
  get busy(): boolean {
    return this.dirty.size > 0 || this.inFlight !== undefined;
  }

  /** Ends the nft process (after the batch in its hands); later adds are dropped. */
  async close(): Promise<void> {
    this.closed = true;
    const process = this.process;
    if (!process) return this.release();
    try {
      await this.stdin?.close();
    } catch {
      // already gone
    }
    const timer = setTimeout(() => this.kill(), 2_000);
    await process.status;
    clearTimeout(timer);
    this.release();
  }

  private stateOf(set: NftSet): SetState {
    let state = this.byObject.get(set);
    if (state) return state;
    const spec = `${set.family} ${set.table} ${set.set}`;
    state = this.byName.get(spec);
    if (!state) this.byName.set(spec, state = new SetState(spec));
    this.byObject.set(set, state);
    return state;
  }

  private schedule(): void {
    if (this.scheduled || this.inFlight) return;
    this.scheduled = true;
    setTimeout(() => {
      this.scheduled = false;
      this.flush();
    }, 0);
  }

  /** Writes what has gathered as one batch, if nothing is in nft's hands. */
  private flush(): void {
    if (this.inFlight || this.dirty.size === 0) {
      if (!this.inFlight) this.release();
      return;
    }
    const now = this.now();
    if (!this.process) {
      if (now - this.lastStart < 1_000) {
        // It died a moment ago: try again in a second rather than in a loop.
        if (!this.scheduled) {
          this.scheduled = true;
          setTimeout(() => {
            this.scheduled = false;
            this.flush();
          }, 1_000 - (now - this.lastStart));
        }
        return;
      }
      if (!this.start()) return this.dropAll();
    }
    const lines: SentLine[] = [];
    for (const family of this.dirty) {
      const entries = [...family.pending];
      family.pending = new Map();
      const state = family.set;
      for (let i = 0; i < entries.length; i += this.lineElements) {
        const chunk = entries.slice(i, i + this.lineElements);
        lines.push({ text: this.line(state, chunk), family, elements: chunk });
      }
    }
    this.dirty.clear();
    this.pendingCount = 0;
    if (now - this.lastSweep > LOG_INTERVAL) this.sweep(now);
    const id = this.nextId++;
    const text = lines.map((l) => l.text).join("\n") + `\n${MARKER}${id}\n`;
    const waiters = this.waiters;
    this.waiters = [];
    const timer = setTimeout(() => this.stalled(id), this.stallTimeout);
    this.inFlight = {
      id,
      lines,
      timer,
      done: () => {
        for (const w of waiters) w();
      },
    };
    this.counters.batches++;
    for (const l of lines) this.counters.sent += l.elements.length;
    if (this.debug) {
      this.log.info("nftset: batch {id}: {lines}", { id, lines: lines.map((l) => l.text).join("; ") });
    }
    this.stdin!.write(this.encoder.encode(text)).catch(() => {
      // The process is gone; its exit handler finishes the batch.
    });
  }

  private line(state: SetState, elements: readonly (readonly [string, number])[]): string {
    const items = elements.map(([ip, t]) => t > 0 && !state.noTimeout ? `${ip} timeout ${t}s` : ip);
    return `add element ${state.spec} { ${items.join(", ")} }`;
  }

  /** Starts nft; false (and a log line at most once a minute) if it cannot be started. */
  private start(): boolean {
    this.lastStart = this.now();
    let process: Deno.ChildProcess;
    try {
      process = new Deno.Command(this.command[0], {
        args: this.command.slice(1),
        stdin: "piped",
        stdout: "null",
        stderr: "piped",
      }).spawn();
    } catch (e) {
      if (this.now() - this.startFailedLogged >= LOG_INTERVAL) {
        this.startFailedLogged = this.now();
        this.log.warn(
          "nftset: cannot start {command}: {error}; answer addresses are not added to nftables sets " +
            "(is nftables installed, and may keeldns run it?)",
          { command: this.command.join(" "), error: e instanceof Error ? e.message : String(e) },
        );
      }
      return false;
    }
    this.counters.processes++;
    this.process = process;
    this.stdin = process.stdin.getWriter();
    process.unref();
    this.readErrors(process);
    process.status.then((status) => {
      if (this.process !== process) return;
      this.process = undefined;
      this.stdin = undefined;
      if (!this.closed) {
        this.log.warn("nftset: {command} ended ({how}); a new one starts with the next batch", {
          command: this.command.join(" "),
          how: status.signal ? `signal ${status.signal}` : `exit ${status.code}`,
        });
      }
      this.finish();
    });
    return true;
  }

  /** Reads nft's stderr: errors name the line they belong to; a marker ends its batch. */
  private async readErrors(process: Deno.ChildProcess): Promise<void> {
    const reader = process.stderr.pipeThrough(new TextDecoderStream()).getReader();
    // Reading stderr must not keep the process alive once everything else is done.
    // deno-lint-ignore no-explicit-any
    (reader as any)[Symbol.for("Deno.internal.unref")]?.();
    let buffer = "";
    let error = "";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let nl: number;
        while ((nl = buffer.indexOf("\n")) >= 0) {
          const line = buffer.slice(0, nl);
          buffer = buffer.slice(nl + 1);
          if (line.startsWith("Error: ")) error = line.slice(7);
          else if (line.startsWith(MARKER)) {
            const id = Number(line.slice(MARKER.length));
            if (this.inFlight?.id === id) this.finish();
            error = "";
          } else if (line.startsWith("add element ")) {
            this.refused(line, error);
            error = "";
          }
        }
      }
    } catch {
      // the process went away
    }
  }

  /** A line nft refused: log it (once a minute per set), and retry what can be retried. */
  private refused(echo: string, error: string): void {
    const batch = this.inFlight;
    if (!batch) return;
    const index = batch.lines.findIndex((l) => l.text === echo) >= 0
      ? batch.lines.findIndex((l) => l.text === echo)
      : batch.lines.findIndex((l) => echo.startsWith(l.text.slice(0, Math.min(l.text.length, 200))));
    if (index < 0) return;
    const [line] = batch.lines.splice(index, 1);
    const family = line.family;
    const state = family.set;
    this.counters.refused += line.elements.length;
    const now = this.now();
    const hadTimeouts = !state.noTimeout && line.elements.some(([, t]) => t > 0);
    if (hadTimeouts && /Invalid argument|Operation not supported/.test(error)) {
      // A set without `flags timeout`: add without timeouts from now on, this line too.
      state.noTimeout = true;
      this.log.warn(
        "nftset: set {set} has no timeout flag (`flags timeout;`); its elements are added without a " +
          "timeout",
        { set: state.spec },
      );
      for (const [ip, t] of line.elements) this.requeue(family, ip, t);
      return;
    }
    if (/Address family|Could not resolve/.test(error)) {
      family.mutedUntil = now + FAMILY_MUTE;
      this.log.warn(
        "nftset: set {set} does not take IPv{v} addresses ({error}); they are not sent to it for " +
          "the next 10 minutes",
        { set: state.spec, v: family.v6 ? 6 : 4, error },
      );
      return;
    }
    if (now - state.lastLogged < LOG_INTERVAL) {
      state.suppressed++;
      return;
    }
    const more = state.suppressed > 0 ? ` (${state.suppressed} more refusals in the last minute)` : "";
    state.lastLogged = now;
    state.suppressed = 0;
    this.log.warn(
      "nftset: nft refused adding {count} addresses to set {set}: {error}{more}; check the set exists " +
        "(`nft list set {set}`) and keeldns may change it; answers are sent regardless",
      { count: line.elements.length, set: state.spec, error: error || "no reason given", more },
    );
  }

  private requeue(family: SetFamily, ip: string, timeout: number): void {
    if (!family.pending.has(ip)) this.pendingCount++;
    family.pending.set(ip, timeout);
    this.dirty.add(family);
  }

  /** The batch in nft's hands is done (or given up on): wake its waiters, send the next. */
  private finish(): void {
    const batch = this.inFlight;
    if (batch) {
      this.inFlight = undefined;
      clearTimeout(batch.timer);
      batch.done();
    }
    if (this.dirty.size > 0) this.schedule();
    else this.release();
  }

  /** nft has not answered a batch in time: end it; the next batch starts a new one. */
  private stalled(id: number): void {
    if (this.inFlight?.id !== id) return;
    this.log.warn("nftset: nft did not finish a batch within {ms} ms; starting it again", {
      ms: this.stallTimeout,
    });
    this.kill();
  }

  private kill(): void {
    try {
      this.process?.kill("SIGKILL");
    } catch {
      // already gone
    }
  }

  /** nft cannot run: what waits is dropped. */
  private dropAll(): void {
    for (const family of this.dirty) {
      this.counters.dropped += family.pending.size;
      family.pending = new Map();
    }
    this.dirty.clear();
    this.pendingCount = 0;
    this.release();
  }

  /** Wakes whoever waits for a batch that will not come. */
  private release(): void {
    if (this.dirty.size > 0 || this.inFlight) return;
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  /** Forgets expiries that have passed. */
  private sweep(now: number): void {
    this.lastSweep = now;
    for (const state of this.byName.values()) {
      for (const family of [state.v4, state.v6]) {
        for (const [ip, until] of family.expiry) if (until <= now) family.expiry.delete(ip);
      }
    }
  }
}
