/**
 * Resolves the host names of upstream servers (`server-tls dns.google`) through the bootstrap
 * servers (config/bootstrap_servers.ts says which): A and AAAA are asked of every bootstrap server
 * at once; the first answer that holds an IPv4 address wins, else the first with an IPv6 one (as
 * SmartDNS, which asks both and prefers IPv4 when it cannot tell them apart). Nothing is cached
 * here: {@link HostNameUpstream} keeps the address for the answer's TTL.
 *
 * @module
 */
import { decodePacket, encodePacket, RECURSION_DESIRED } from "../dns/packet.ts";
import { parseQuery, type Question } from "../dns/wire.ts";
import { OUTRUN } from "./health.ts";
import { ownQuestion } from "./query_options.ts";
import { canonicalIp, type Upstream, UpstreamError } from "./upstream.ts";
import { Cancel } from "./cancel.ts";

/** An address a name resolved to, and for how many seconds the answer said it holds. */
export interface ResolvedAddress {
  readonly ip: string;
  readonly ttl: number;
}

/** What one question (A or AAAA) brought: addresses, or why there are none. */
type Outcome = { readonly ips: string[]; readonly ttl: number } | string;

const RCODE_NAMES = ["NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED"];

/** A query for `name` and `type`, as the upstreams take it (with no Client Subnet: keeldns's own). */
function question(name: string, type: "A" | "AAAA"): Question {
  const wire = encodePacket({
    type: "query",
    id: 0,
    flags: RECURSION_DESIRED,
    questions: [{ name, type, class: "IN" }],
  });
  return ownQuestion(parseQuery(wire));
}

/** The addresses of `type` in an answer and their TTL (the least of the answer records), or why none. */
function addressesIn(wire: Uint8Array, type: "A" | "AAAA"): Outcome {
  const rcode = wire[3] & 0x0f;
  if (rcode !== 0) return RCODE_NAMES[rcode] ?? `rcode ${rcode}`;
  let packet;
  try {
    packet = decodePacket(wire);
  } catch (e) {
    return `malformed answer: ${(e as Error).message}`;
  }
  const answers = packet.answers ?? [];
  const ips = answers.flatMap((a) => a.type === type ? [canonicalIp(String(a.data))] : []);
  if (ips.length === 0) return `no ${type} record`;
  return { ips, ttl: Math.min(...answers.map((a) => ("ttl" in a ? a.ttl ?? 0 : 0))) };
}

/** Resolves names through a fixed set of bootstrap servers. */
export class BootstrapResolver {
  /**
   * @param servers the bootstrap servers (none: every resolution fails, saying so)
   * @param timeoutMs how long one resolution may take
   */
  constructor(readonly servers: readonly Upstream[], private readonly timeoutMs: number) {}

  /**
   * Resolves `name` to one address. Rejects with an Error whose message says what each server
   * answered, or when `cancel` fires.
   */
  async resolve(name: string, cancel?: Cancel): Promise<ResolvedAddress> {
    if (this.servers.length === 0) throw new Error("no bootstrap server to resolve it");
    const v6 = new Cancel();
    const aaaa = this.ask(name, "AAAA", v6, cancel);
    const a = await this.ask(name, "A", undefined, cancel);
    if (typeof a !== "string") {
      v6.cancel(OUTRUN);
      aaaa.catch(() => {});
      return { ip: a.ips[0], ttl: a.ttl };
    }
    const b = await aaaa;
    if (typeof b !== "string") return { ip: b.ips[0], ttl: b.ttl };
    throw new Error(`A: ${a}; AAAA: ${b}`);
  }

  /** Asks every server for `name`/`type`; the first answer with addresses wins, the others are dropped. */
  private ask(name: string, type: "A" | "AAAA", own?: Cancel, outer?: Cancel): Promise<Outcome> {
    const exchanges = new Cancel();
    const abort = (reason: unknown) => exchanges.cancel(reason);
    own?.listen(abort);
    outer?.listen(abort);
    const timer = setTimeout(() => abort(new Error(`no answer in ${this.timeoutMs} ms`)), this.timeoutMs);
    const q = question(name, type);
    const { promise, resolve } = Promise.withResolvers<Outcome>();
    const reasons: string[] = [];
    let left = this.servers.length;
    const none = (reason: string) => {
      reasons.push(reason);
      if (--left === 0) resolve(reasons.join(", "));
    };
    for (const server of this.servers) {
      server.exchange(q, exchanges).then((wire) => {
        const got = addressesIn(wire, type);
        if (typeof got === "string") none(`${server.address} ${got}`);
        else resolve(got);
      }, (e) => none(e instanceof UpstreamError ? e.message : `${server.address}: ${(e as Error).message}`));
    }
    return promise.finally(() => {
      clearTimeout(timer);
      own?.unlisten(abort);
      outer?.unlisten(abort);
      exchanges.cancel(OUTRUN); // the others' answers are not needed
    });
  }
}
