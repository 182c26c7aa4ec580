/**
 * The client stage, first in the chain: says which client group's rules answer a query
 * (SmartDNS's `client-rules CIDR -group NAME`, `group-begin … group-end`), which upstream group
 * its listener sends it to (`bind -group NAME`, until a nameserver rule says otherwise), and
 * answers AAAA with an empty answer on a listener marked `-force-aaaa-soa`. Only in the chain when
 * the configuration has groups or listener flags.
 *
 * @module
 */
import type { Answer } from "../dns/answer.ts";
import { LocalAnswer } from "../dns/local_answer.ts";
import { Rcode } from "../dns/wire.ts";
import { CidrSet } from "../net/cidr_set.ts";
import { BindFlag, type QueryContext, Reason } from "./query_context.ts";
import type { MaybePromise, Next, Stage } from "./stage.ts";

const AF_INET = 2;
const AF_INET6 = 10;
const TYPE_AAAA = 28;

/** Sets the query's client group and its listener's upstream group. */
export class ClientStage implements Stage {
  private readonly clients = new CidrSet();
  private readonly soa = LocalAnswer.soa(Rcode.NOERROR);
  private readonly listenerGroups = new Map<string, number>();

  /**
   * @param groups each client group's prefixes, in group order (group i + 1; 0 is the default)
   * @param upstreamGroup the index of an upstream group by name (-1: none)
   */
  constructor(
    groups: readonly (readonly string[])[],
    private readonly upstreamGroup: (name: string) => number,
  ) {
    groups.forEach((cidrs, i) => {
      for (const cidr of cidrs) this.clients.add(cidr, i + 1);
    });
  }

  /** Picks the groups, then hands the query on. */
  resolve(ctx: QueryContext, next: Next): MaybePromise<Answer> {
    const listener = ctx.listener;
    if (listener.group !== undefined) {
      let index = this.listenerGroups.get(listener.group);
      if (index === undefined) {
        this.listenerGroups.set(listener.group, index = Math.max(0, this.upstreamGroup(listener.group)));
      }
      ctx.upstreamGroup = index;
    }
    const peer = ctx.peer;
    if (peer && this.clients.prefixes > 0) ctx.ruleGroup = Math.max(0, this.groupOf(peer, ctx.peerOffset));
    if ((listener.flags & BindFlag.FORCE_AAAA_SOA) && ctx.qtype === TYPE_AAAA) {
      ctx.reason = Reason.SOA;
      return this.soa;
    }
    return next(ctx);
  }

  /** The client group of the client whose sockaddr is at `addr[offset]` (-1: none). */
  private groupOf(addr: Uint8Array, offset: number): number {
    const family = addr[offset] | (addr[offset + 1] << 8);
    if (family === AF_INET) return this.clients.longest(addr, offset + 4, 4);
    if (family !== AF_INET6) return -1;
    let mapped = addr[offset + 18] === 0xff && addr[offset + 19] === 0xff;
    for (let i = 8; i < 18 && mapped; i++) mapped = addr[offset + i] === 0;
    return mapped ? this.clients.longest(addr, offset + 20, 4) : this.clients.longest(addr, offset + 8, 16);
  }
}
