/**
 * A server's per-query options, as a wrapper around its {@link Upstream}: the EDNS Client Subnet
 * option its queries carry (`edns-client-subnet`, `server … -subnet`, `-subnet-all-query-types`)
 * and `-check-edns` (an answer without an OPT record is not taken from it). A server with neither
 * is not wrapped, so it pays nothing.
 *
 * The cache: the subnet sent is fixed by the configuration (per server, else per client group,
 * else global), never taken from the client, so an answer depends on no more than the client
 * group, which the cache key and the coalescing of in-flight misses already hold: it is cached as
 * before (one entry per name, type, DO bit and client group). A Client Subnet option in the
 * client's own query is not passed upstream (upstream queries are built fresh, see
 * `buildUpstreamQuery`). SmartDNS differs there: it forwards the client's option but does not key
 * its cache on it, so one client's tailored answer is served to every other; keeldns keeps the
 * answer independent of the client instead, and the cache-hit path untouched.
 *
 * @module
 */
import { ClientSubnetChoice, hasOptRecord } from "../dns/client_subnet.ts";
import type { Question } from "../dns/wire.ts";
import { type Upstream, UpstreamError } from "./upstream.ts";
import type { Cancel } from "./cancel.ts";

/** What is configured for one server. */
export interface QueryOptions {
  /** The server's own `-subnet` values (`IP/len`), if any: they replace `globalSubnets`. */
  readonly subnets?: readonly string[];
  /** `-subnet-all-query-types`: its own subnet goes with every query type, not only A and AAAA. */
  readonly subnetAllQueryTypes?: boolean;
  /** `edns-client-subnet`: the subnets every server without its own sends. */
  readonly globalSubnets?: readonly string[];
  /**
   * Client groups with their own `edns-client-subnet`: the subnets for group i + 1 (0 is the
   * default, `globalSubnets`), sent by servers without their own; `clientGroupOf` tells a query's.
   */
  readonly clientGroupSubnets?: readonly (readonly string[] | undefined)[];
  readonly clientGroupOf?: (q: Question) => number;
  /** `-check-edns`: answers without an OPT record are refused. */
  readonly checkEdns?: boolean;
}

/**
 * The question an upstream is handed: the client's, seen through, with the option to send.
 * Made per exchange, only for a server whose queries carry an option.
 */
export class QuestionWithOptions implements Question {
  constructor(
    private readonly base: Question,
    readonly upstreamOption: Uint8Array | undefined,
    /** Set for `-check-edns`: UDP exchanges wait on past an answer without an OPT record. */
    readonly requireOpt: boolean,
  ) {}
  get wire(): Uint8Array {
    return this.base.wire;
  }
  set wire(wire: Uint8Array) {
    this.base.wire = wire;
  }
  get id(): number {
    return this.base.id;
  }
  get name(): string {
    return this.base.name;
  }
  get qtype(): number {
    return this.base.qtype;
  }
  get qclass(): number {
    return this.base.qclass;
  }
  get questionEnd(): number {
    return this.base.questionEnd;
  }
  get edns(): boolean {
    return this.base.edns;
  }
  get dnssecOk(): boolean {
    return this.base.dnssecOk;
  }
  get udpSize(): number {
    return this.base.udpSize;
  }
  get recursionDesired(): boolean {
    return this.base.recursionDesired;
  }
  get key(): string {
    return this.base.key;
  }
}

/** Whether an exchange of `q` must ignore answers without an OPT record (see {@link QuestionWithOptions}). */
export function requiresOpt(q: Question): boolean {
  return (q as Partial<QuestionWithOptions>).requireOpt === true;
}

/** Questions keeldns asks for itself (see {@link ownQuestion}). */
const OWN_QUESTIONS = new WeakSet<Question>();

/**
 * Marks `q` as asked for keeldns itself, not for a client (the bootstrap servers' lookups of
 * upstream host names): it goes without a Client Subnet option whatever the server's options, as
 * no client's network is behind it. Returns `q`.
 */
export function ownQuestion(q: Question): Question {
  OWN_QUESTIONS.add(q);
  return q;
}

/** An upstream whose queries carry its configured options. */
export class UpstreamWithOptions implements Upstream {
  readonly address: string;

  /**
   * @param subnets the choice by client group (one entry: the same for every client)
   * @param groupOf the client group of a query, when `subnets` has more than one entry
   */
  constructor(
    readonly inner: Upstream,
    private readonly subnets: readonly (ClientSubnetChoice | undefined)[],
    private readonly checkEdns: boolean,
    private readonly groupOf: (q: Question) => number = () => 0,
  ) {
    this.address = inner.address;
  }

  /** The question as this server is asked it: with its subnet option for `q.qtype`, if any. */
  private view(q: Question): Question {
    const subnet = this.subnets.length === 1
      ? this.subnets[0]
      : this.subnets[this.groupOf(q)] ?? this.subnets[0];
    const option = subnet === undefined || OWN_QUESTIONS.has(q) ? undefined : subnet.forType(q.qtype);
    return option === undefined && !this.checkEdns ? q : new QuestionWithOptions(q, option, this.checkEdns);
  }

  /** Sends `q` with the options; with `-check-edns` an answer without an OPT record rejects. */
  exchange(q: Question, cancel: Cancel): Promise<Uint8Array> {
    const sent = this.inner.exchange(this.view(q), cancel);
    if (!this.checkEdns) return sent;
    return sent.then((response) => {
      if (!hasOptRecord(response)) {
        throw new UpstreamError(this.address, "answer without an OPT record refused (-check-edns)");
      }
      return response;
    });
  }

  close(): void {
    this.inner.close();
  }
}

/**
 * `upstream` wrapped with its options, or `upstream` itself when it has none (no subnet to send,
 * no `-check-edns`). Throws on a subnet that is not `IP` or `IP/len`.
 */
export function withQueryOptions(upstream: Upstream, options: QueryOptions): Upstream {
  const all = options.subnetAllQueryTypes ?? false;
  const own = options.subnets !== undefined && options.subnets.length > 0;
  const groups = options.clientGroupSubnets ?? [];
  const byGroup = !own && groups.some((g) => g !== undefined);
  const subnets = [
    ClientSubnetChoice.of(options.subnets, all, options.globalSubnets),
    ...(byGroup ? groups.map((g) => ClientSubnetChoice.of(undefined, all, g ?? options.globalSubnets)) : []),
  ];
  if (subnets.every((s) => s === undefined) && !options.checkEdns) return upstream;
  return new UpstreamWithOptions(upstream, subnets, options.checkEdns ?? false, options.clientGroupOf);
}
