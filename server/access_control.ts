/**
 * Who may ask: keeldns is not an open resolver by default. A listener on `[::]:53` of a router
 * also faces the WAN, so unless the configuration says otherwise only loopback and clients on
 * directly connected subnets are answered (dnsmasq's `local-service` idea; the prefixes come from
 * the machine's interfaces and are read again when they may have changed). With an ACL (SmartDNS's
 * `acl-enable` and the `client-rules` addresses) only the listed clients are. Everyone else gets
 * REFUSED, counted, and logged at most once a minute. A per-client rate limit (token bucket)
 * catches a flood that a LAN client never reaches; 127.0.0.1 and ::1 are never limited.
 *
 * Reads the client's address from its `sockaddr` bytes in place (the batched listener's receive
 * vector), so a check allocates nothing.
 *
 * @module
 */
import { CidrSet } from "../net/cidr_set.ts";

const AF_INET = 2;
const AF_INET6 = 10;

/** Who is answered: everyone, loopback and directly connected subnets, or the ACL's clients. */
export type ClientPolicy = "any" | "local" | "acl";

/** The access settings of a configuration. */
export interface AccessSettings {
  readonly policy: ClientPolicy;
  /** Prefixes the ACL lets in (policy "acl"). */
  readonly allowed: readonly string[];
  /** Queries per second one client may send on average (0: no limit). */
  readonly rateLimit: number;
  /** Queries one client may send at once above the average. */
  readonly burst: number;
}

/** The interfaces' prefixes, as `Deno.networkInterfaces()` gives them (injectable for tests). */
export type InterfaceReader = () => { cidr: string }[];

/** Why a client was refused. */
export type Refusal = "not-local" | "not-in-acl" | "rate-limited";

/** Slots in the rate limit's table; a client hashes to one (collisions share a bucket). */
const RATE_SLOTS = 4096;
/** How often the interfaces' prefixes are read again at most (when an unknown client asks). */
const INTERFACE_REREAD_MS = 1000;
/** How often they are read again anyway (a subnet that went away). */
const INTERFACE_REFRESH_MS = 10_000;
/** REFUSED answers sent per second at most, all clients together: beyond it they are dropped, so a
 * spoofed flood cannot bounce traffic off keeldns. */
const REFUSALS_PER_SECOND = 100;

/** Decides, per query, whether its client is answered. */
export class AccessControl {
  private local = new CidrSet();
  private readonly acl = new CidrSet();
  private localReadAt = -Infinity;
  private readonly tokens = new Float64Array(RATE_SLOTS);
  private readonly seen = new Float64Array(RATE_SLOTS);
  /** Queries refused, by reason. */
  readonly refused: Record<Refusal, number> = { "not-local": 0, "not-in-acl": 0, "rate-limited": 0 };

  constructor(
    readonly settings: AccessSettings,
    private readonly interfaces: InterfaceReader = () => Deno.networkInterfaces(),
    private readonly now: () => number = performance.now.bind(performance),
  ) {
    for (const cidr of settings.allowed) this.acl.add(cidr, 1);
    if (settings.policy === "local") this.readInterfaces();
  }

  /** Whether this configuration checks clients at all (otherwise the listeners skip the check). */
  static needed(settings: AccessSettings): boolean {
    return settings.policy !== "any" || settings.rateLimit > 0;
  }

  /** Reads the interfaces' prefixes (at start, and when an unknown client may be on a new one). */
  private readInterfaces(): void {
    this.localReadAt = this.now();
    const set = new CidrSet();
    try {
      for (const i of this.interfaces()) {
        // fe80::/64 link-local clients are on the link by definition; the cidr says so too.
        if (i.cidr) set.add(i.cidr.replace(/%.*\//, "/"), 1);
      }
    } catch {
      // no --allow-sys: loopback only
    }
    this.local = set;
  }

  /**
   * Why the client whose `sockaddr_in`/`sockaddr_in6` is at `addr[offset]` is refused, or null
   * when it is answered.
   */
  check(addr: Uint8Array, offset: number): Refusal | null {
    const family = addr[offset] | (addr[offset + 1] << 8);
    let at: number;
    let length: number;
    if (family === AF_INET) {
      at = offset + 4;
      length = 4;
    } else if (family === AF_INET6) {
      at = offset + 8;
      length = 16;
      if (isMapped(addr, at)) {
        at += 12;
        length = 4;
      }
    } else {
      return null;
    }
    const policy = this.settings.policy;
    // Read the interfaces again now and then, so a subnet that went away stops being trusted.
    if (policy === "local" && this.now() - this.localReadAt > INTERFACE_REFRESH_MS) this.readInterfaces();
    if (isLoopback(addr, at, length)) {
      return isHostLoopback(addr, at, length) ? null : this.limited(addr, at, length);
    }
    if (policy === "local" && this.local.longest(addr, at, length) < 0) {
      // A new interface (or address) may have come up since the last look.
      if (this.now() - this.localReadAt > INTERFACE_REREAD_MS) {
        this.readInterfaces();
        if (this.local.longest(addr, at, length) >= 0) return this.limited(addr, at, length);
      }
      this.refused["not-local"]++;
      return "not-local";
    }
    if (policy === "acl" && this.acl.longest(addr, at, length) < 0) {
      this.refused["not-in-acl"]++;
      return "not-in-acl";
    }
    return this.limited(addr, at, length);
  }

  private refusalTokens = REFUSALS_PER_SECOND;
  private refusalsAt = 0;

  /** Whether another REFUSED answer may be sent now (else the refused query is dropped). */
  mayAnswerRefusal(): boolean {
    const now = this.now();
    this.refusalTokens = Math.min(
      REFUSALS_PER_SECOND,
      this.refusalTokens + ((now - this.refusalsAt) / 1000) * REFUSALS_PER_SECOND,
    );
    this.refusalsAt = now;
    if (this.refusalTokens < 1) return false;
    this.refusalTokens--;
    return true;
  }

  /** The rate limit: a token bucket per client slot. */
  private limited(addr: Uint8Array, at: number, length: number): Refusal | null {
    const rate = this.settings.rateLimit;
    if (rate <= 0) return null;
    let h = 0x811c9dc5;
    for (let i = at; i < at + length; i++) h = Math.imul(h ^ addr[i], 0x01000193);
    const slot = (h >>> 0) & (RATE_SLOTS - 1);
    const now = this.now();
    const capacity = rate + this.settings.burst;
    const elapsed = (now - this.seen[slot]) / 1000;
    let tokens = this.seen[slot] === 0 ? capacity : Math.min(capacity, this.tokens[slot] + elapsed * rate);
    this.seen[slot] = now;
    if (tokens < 1) {
      this.tokens[slot] = tokens;
      this.refused["rate-limited"]++;
      return "rate-limited";
    }
    tokens -= 1;
    this.tokens[slot] = tokens;
    return null;
  }
}

/** Whether the 16 bytes at `at` are an IPv4-mapped IPv6 address (::ffff:a.b.c.d). */
function isMapped(addr: Uint8Array, at: number): boolean {
  for (let i = 0; i < 10; i++) if (addr[at + i] !== 0) return false;
  return addr[at + 10] === 0xff && addr[at + 11] === 0xff;
}

/** Whether the address at `at` is this host's own loopback address (127.0.0.1 or ::1), never limited. */
function isHostLoopback(addr: Uint8Array, at: number, length: number): boolean {
  if (length === 4) return addr[at] === 127 && addr[at + 1] === 0 && addr[at + 2] === 0 && addr[at + 3] === 1;
  return true; // ::1 is the only IPv6 loopback address
}

/** Whether the address at `at` is loopback (127.0.0.0/8 or ::1). */
function isLoopback(addr: Uint8Array, at: number, length: number): boolean {
  if (length === 4) return addr[at] === 127;
  for (let i = 0; i < 15; i++) if (addr[at + i] !== 0) return false;
  return addr[at + 15] === 1;
}
