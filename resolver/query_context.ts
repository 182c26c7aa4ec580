/**
 * The query context: one object per query, carried down the resolver chain instead of a bare
 * question. It is the parsed question itself (a {@link ParsedQuestion} subclass made by
 * {@link parseQuery}), so a cache hit allocates nothing more than it did before; a miss keeps the
 * same object (its query bytes copied by `detachQuestion`) while it waits.
 *
 * Why not one reused context per listener, copied on a miss: stages that go asynchronous (cache
 * store, coalescing, the race) hold the context past their synchronous return, so a reused one
 * would have to be copied before the first of them, in every stage that might; the question
 * object already exists per query, and putting the context on it costs a few field stores.
 *
 * @module
 */
import type { Answer } from "../dns/answer.ts";
import type { StoredAnswer } from "../dns/stored_answer.ts";
import type { SpeedOverride } from "./rule_set.ts";
import type { QueryTrace } from "./query_trace.ts";
import { ParsedQuestion, parseQuery } from "../dns/wire.ts";

/** Why an answer is what it is (for counters, the audit log, `explain`). */
export const Reason = {
  /** Raced upstream. */
  UPSTREAM: 0,
  /** Served from the cache. */
  CACHE: 1,
  /** Joined an identical query already on its way upstream. */
  COALESCED: 2,
  /** Answered by a local rule (address, hosts, local records). */
  RULE: 3,
  /** Blocked by a rule (`address /d/#`, a block list). */
  BLOCKED: 4,
  /** Answered SOA by a forced-SOA rule (`force-AAAA-SOA`, `force-qtype-SOA`, `#4`/`#6`). */
  SOA: 5,
  /** No usable upstream answer: SERVFAIL made locally. */
  SERVFAIL: 6,
  /** Served from the cache after it expired (serve-expired), refreshed behind. */
  STALE: 7,
} as const;

/** One of {@link Reason}'s values. */
export type ReasonCode = typeof Reason[keyof typeof Reason];

/** The per-listener switches of SmartDNS's `bind` options, as bits. */
export const BindFlag = {
  /** `-no-rule-addr`: address rules do not apply. */
  NO_RULE_ADDR: 1,
  /** `-no-rule-nameserver`: nameserver rules do not apply (the default group answers). */
  NO_RULE_NAMESERVER: 2,
  /** `-no-rule-soa`: blocks (`#`, `#4`, `#6`) and forced SOA do not apply. */
  NO_RULE_SOA: 4,
  /** `-no-rules`: no domain rule applies. */
  NO_RULES: 8,
  /** `-no-cache`: answers are neither taken from nor put into the cache. */
  NO_CACHE: 16,
  /** `-force-aaaa-soa`: every AAAA question gets an empty answer. */
  FORCE_AAAA_SOA: 32,
  /** `-no-speed-check`: answers go out as the upstream gave them. */
  NO_SPEED_CHECK: 64,
  /** `-no-dualstack-selection`: both families are answered. */
  NO_DUALSTACK: 128,
  /** `-no-serve-expired`: expired answers are not served stale to this listener's clients. */
  NO_SERVE_EXPIRED: 256,
} as const;

/** What the chain knows of the listener a query came in on. */
export interface ListenerProfile {
  /** The listener as a URL, e.g. `udp://127.0.0.1:53`. */
  readonly address: string;
  /** {@link BindFlag} bits. */
  readonly flags: number;
  /** The client group its queries belong to (`bind -group`), or none. */
  readonly group?: string;
}

/** The profile of a query made by keeldns itself or a test, not received on a listener. */
export const INTERNAL_LISTENER: ListenerProfile = { address: "internal", flags: 0 };

/** One query on its way down the chain: the parsed question and what the stages decide about it. */
export class QueryContext extends ParsedQuestion {
  /** The listener it came in on. */
  listener: ListenerProfile = INTERNAL_LISTENER;
  /** The upstream server group that answers it (0 = the default group). */
  upstreamGroup = 0;
  /** The client group whose rules apply (0 = the default; `client-rules`, `bind -group`). */
  ruleGroup = 0;
  /**
   * The client's `sockaddr` bytes at `peerOffset` (a view into the listener's buffer, valid
   * while the query is handled synchronously), or none.
   */
  peer?: Uint8Array;
  peerOffset = 0;
  /** The rule that decided it (an index into the rule set's rules), or -1. */
  rule = -1;
  /** Why the answer is what it is. */
  reason: ReasonCode = Reason.UPSTREAM;
  // The fields below are `declare`d: never written on a cache hit, they cost the object nothing
  // until a miss sets them (initialized fields would be defined on every query).
  /**
   * A better answer for the cache to store once it settles (the speed check's sorted addresses),
   * set on the miss path by the stage that makes it.
   */
  declare refined?: Promise<Answer>;
  /**
   * Set by the speed stage before a miss goes upstream: the race hands it the other servers'
   * positive answers that come after the first, so their addresses are probed too, then
   * `undefined` once no more will come.
   */
  declare onLaterAnswer?: (answer: StoredAnswer | undefined) => void;
  /** Set by the race when it goes on collecting answers for {@link onLaterAnswer}. */
  declare moreAnswersExpected?: boolean;
  /** The names' own speed check settings, from a `domain-rules` line (set by the rules stage). */
  declare speedRule?: SpeedOverride;
  /**
   * Set by the speed stage on a miss for A or AAAA when a speed check is configured for the name
   * (SmartDNS: its check order is not `none`) and the answer is not passed through as it came:
   * the cache stage then sends the client's first reply with SmartDNS's short TTL.
   */
  declare speedCheckOn?: boolean;
  /** Asked by the dual-stack stage for the other family of a client's question (not paired again). */
  declare sibling?: boolean;
  /** The address of the upstream whose answer it got (set by the race). */
  declare answeredBy?: string;
  /** A copy of the client's sockaddr, kept for the query recorder once {@link peer} is gone (a miss). */
  declare clientAddress?: Uint8Array;
  /** Set by `explain` only: the stages record what they decide here (resolver/query_trace.ts). */
  declare trace?: QueryTrace;
}

/** Parses a client query into a {@link QueryContext} (see {@link parseQuery}; throws the same). */
export function parseContext(wire: Uint8Array, length = wire.length): QueryContext {
  return parseQuery(wire, length, QueryContext);
}
