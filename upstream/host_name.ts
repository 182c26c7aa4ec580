/**
 * An upstream given by host name (`server-tls dns.google`): wraps the protocol's own upstream
 * (udp.ts, tcp.ts, tls.ts, https.ts, quic.ts), built for the address the name resolves to through the
 * {@link BootstrapResolver}, with the name kept as the SNI and certificate name (unless
 * `-host-name` says otherwise). The address is kept for the answer's TTL, clamped to
 * [{@link MIN_TTL_S}, {@link MAX_TTL_S}]; once it has run out, the next exchange starts a
 * re-resolution in the background and still goes to the last good address, which is kept for as
 * long as re-resolving fails (retried after 1 s, doubling to 10 s). A new address gets a new inner
 * upstream; the old one is closed a few seconds later, once exchanges under way on it are done.
 *
 * Until a name has resolved once, exchanges fail with the reason (never sent elsewhere) and the
 * resolution is retried by itself on the same schedule (a server named at boot, before the link is
 * up, comes into use once it is); the reason is logged when it changes, not per query. `-host-ip` pins the address: nothing is
 * resolved. Either way {@link address} is the configured URL, with the name.
 *
 * @module
 */
import type { UpstreamConfig } from "../config/schema.ts";
import type { Question } from "../dns/wire.ts";
import { getLogger } from "../ops/log.ts";
import { BootstrapResolver, type ResolvedAddress } from "./bootstrap.ts";
import { authority, type Upstream, UpstreamError } from "./upstream.ts";
import { Cancel } from "./cancel.ts";

/** Shortest time a resolved address is kept, in seconds (a TTL of 0 or 1 is not asked again per query). */
export const MIN_TTL_S = 10;
/** Longest time a resolved address is kept, in seconds. */
export const MAX_TTL_S = 3600;

/** Tunables, mainly for tests. */
export interface HostNameOptions {
  /** Resolves the name; none (or one without servers) fails every exchange, unless pinned. */
  readonly resolver?: BootstrapResolver;
  /** Builds the protocol's upstream for a configuration with a literal address. */
  readonly create: (config: UpstreamConfig) => Upstream;
  readonly minTtlS?: number;
  readonly maxTtlS?: number;
  /** First retry delay after a failed resolution (default 1000 ms), doubling up to `retryMaxMs` (10 s). */
  readonly retryMinMs?: number;
  readonly retryMaxMs?: number;
  /** How long a replaced inner upstream stays open for exchanges under way (default 5000 ms). */
  readonly graceMs?: number;
  /** Where changes go (default: the "upstream" logger). */
  readonly log?: (level: "error" | "warn" | "info", message: string) => void;
}

/** The configured URL of a server, with its name. */
function urlOf(config: UpstreamConfig, name: string): string {
  const path = config.transport === "https" ? config.path || "/dns-query" : "";
  return `${config.transport}://${authority(name, config.port)}${path}`;
}

/** An {@link Upstream} reached through the address its host name resolves to (see the module doc). */
export class HostNameUpstream implements Upstream {
  readonly address: string;
  readonly name: string;
  /** The address in use (undefined until the name has resolved). */
  ip?: string;
  private inner?: Upstream;
  private expiresAt = 0;
  private resolving?: Promise<void>;
  private failures = 0;
  private retryAt = 0;
  private failure?: string;
  private logged?: string;
  private retryTimer?: ReturnType<typeof setTimeout>;
  private closed = false;
  private readonly pinned: boolean;
  private readonly resolver: BootstrapResolver;
  private readonly stop = new Cancel();
  private readonly retired = new Map<Upstream, ReturnType<typeof setTimeout>>();
  private readonly log: NonNullable<HostNameOptions["log"]>;
  /** Resolutions started (for tests and statistics). */
  resolutions = 0;

  constructor(private readonly config: UpstreamConfig, private readonly options: HostNameOptions) {
    if (config.name === undefined) throw new Error("HostNameUpstream needs a server given by host name");
    this.name = config.name;
    this.address = urlOf(config, this.name);
    this.resolver = options.resolver ?? new BootstrapResolver([], 0);
    const logger = options.log ? undefined : getLogger("upstream");
    this.log = options.log ?? ((level, message) => logger![level]("{message}", { message }));
    this.pinned = config.hostIp !== undefined;
    if (config.hostIp !== undefined) this.use(config.hostIp);
    else this.refresh();
  }

  /** Sends `q` to the address the name resolves to (resolving it first if it never has). */
  async exchange(q: Question, cancel: Cancel): Promise<Uint8Array> {
    if (this.closed) throw new UpstreamError(this.address, "upstream closed");
    if (!this.inner) {
      this.refresh();
      if (this.resolving) await this.until(this.resolving, cancel);
      if (!this.inner) throw new UpstreamError(this.address, this.failure ?? "not resolved yet");
    } else if (!this.pinned && Date.now() >= this.expiresAt) {
      this.refresh(); // in the background: this exchange still goes to the last good address
    }
    const inner = this.inner!;
    const ip = this.ip;
    try {
      return await inner.exchange(q, cancel);
    } catch (e) {
      const reason = e instanceof UpstreamError
        ? e.message.slice(e.upstream.length + 2)
        : (e as Error).message;
      throw new UpstreamError(this.address, `${reason} (at ${ip})`);
    }
  }

  /** Closes the inner upstreams and stops resolving. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.retryTimer);
    this.stop.cancel();
    this.inner?.close();
    for (const [old, timer] of this.retired) {
      clearTimeout(timer);
      old.close();
    }
    this.retired.clear();
  }

  /** Waits for `work`, or until `cancel` fires. */
  private until(work: Promise<void>, cancel: Cancel): Promise<void> {
    if (cancel.cancelled) return Promise.reject(new UpstreamError(this.address, "aborted"));
    return new Promise((resolve, reject) => {
      const onAbort = () => reject(new UpstreamError(this.address, "aborted"));
      cancel.listen(onAbort);
      work.then(resolve).finally(() => cancel.unlisten(onAbort));
    });
  }

  /** Starts a resolution unless one is under way, the upstream is pinned or closed, or a retry is not due. */
  private refresh(): void {
    if (this.pinned || this.closed || this.resolving || Date.now() < this.retryAt) return;
    this.resolutions++;
    this.resolving = this.resolver.resolve(this.name, this.stop).then(
      (r) => this.resolved(r),
      (e) => this.failed((e as Error).message),
    ).finally(() => this.resolving = undefined);
  }

  private resolved(r: ResolvedAddress): void {
    if (this.closed) return;
    const min = this.options.minTtlS ?? MIN_TTL_S;
    const ttl = Math.min(Math.max(r.ttl, min), this.options.maxTtlS ?? MAX_TTL_S);
    this.expiresAt = Date.now() + ttl * 1000;
    this.failures = 0;
    this.retryAt = 0;
    this.failure = undefined;
    this.logged = undefined;
    if (r.ip === this.ip) return;
    this.log(
      "info",
      this.ip === undefined
        ? `${this.address}: ${this.name} resolved to ${r.ip} (kept ${ttl} s)`
        : `${this.address}: ${this.name} now resolves to ${r.ip} (was ${this.ip}; kept ${ttl} s)`,
    );
    this.use(r.ip);
  }

  private failed(reason: string): void {
    if (this.closed) return;
    const min = this.options.retryMinMs ?? 1000;
    const delay = Math.min(this.options.retryMaxMs ?? 10_000, min * 2 ** this.failures);
    this.failures++;
    this.retryAt = Date.now() + delay;
    this.failure = `cannot resolve ${this.name}: ${reason}`;
    if (this.ip === undefined) {
      // Never resolved (say, at boot before the link is up): try again by itself, not only when asked.
      this.retryTimer = setTimeout(() => {
        this.retryAt = 0; // due now, even if the clock reads a hair early
        this.refresh();
      }, delay);
      Deno.unrefTimer(this.retryTimer);
    }
    if (reason === this.logged) return;
    this.logged = reason;
    if (this.ip === undefined) {
      this.log("error", `${this.address}: ${this.failure}; its queries fail until it resolves`);
    } else {
      this.log("warn", `${this.address}: ${this.failure}; still using ${this.ip}`);
    }
  }

  /** Builds the inner upstream for `ip`, retiring the previous one. */
  private use(ip: string): void {
    const tls = this.config.tls ??
      (this.config.transport === "tls" || this.config.transport === "https" ||
          this.config.transport === "quic"
        ? { verifyCertificate: true, spkiPins: [] }
        : undefined);
    const { name: _name, hostIp: _hostIp, ...rest } = this.config;
    const inner = this.options.create({
      ...rest,
      host: ip,
      ...(tls ? { tls: { ...tls, hostName: tls.hostName ?? this.name } } : {}),
    });
    const refusal = (inner as { refusal?: string }).refusal;
    if (refusal) this.log("warn", `${this.address} is refused: ${refusal}`);
    const old = this.inner;
    this.inner = inner;
    this.ip = ip;
    if (old) {
      const timer = setTimeout(() => {
        this.retired.delete(old);
        old.close();
      }, this.options.graceMs ?? 5000);
      Deno.unrefTimer(timer);
      this.retired.set(old, timer);
    }
  }
}
