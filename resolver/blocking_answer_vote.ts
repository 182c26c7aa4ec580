/**
 * SmartDNS's ad-block vote on upstream answers: an address in 0.0.0.0/8 or 127.0.0.0/8 (AAAA: `::`
 * or `::1`) is what a filtering resolver answers for a blocked name, so such an address is dropped
 * from an answer until more than half of the servers (those not set aside as down) have answered
 * one for the question. A lone server's single blocking address is therefore dropped; the other
 * addresses of its answer stay. Counted per question across its servers, address by address, in
 * the order they arrive, as SmartDNS does.
 *
 * @module
 */
import { answerAddresses, withAddresses } from "../dns/address_selection.ts";

/** Whether `ip` (text) is an address SmartDNS takes for an ad-block answer. */
export function isBlockingAddress(ip: string): boolean {
  if (ip.includes(":")) return ip === "::" || ip === "::1";
  return ip.startsWith("0.") || ip.startsWith("127.");
}

/** One question's tally of blocking addresses seen. */
export interface VoteTally {
  votes: number;
}

/** Applies the vote to the answers of one question's servers. */
export class BlockingAnswerVote {
  /** @param alive how many servers are usable now (SmartDNS's `dns_server_alive_num`) */
  constructor(private readonly alive: () => number) {}

  /**
   * `wire` (an upstream's checked answer to a question of `type`) without the blocking addresses
   * the vote drops, or `wire` itself when none is dropped. Throws when the message cannot be rebuilt.
   */
  apply(tally: VoteTally, wire: Uint8Array, type: number): Uint8Array {
    if (type !== 1 && type !== 28) return wire;
    const ips = answerAddresses(wire, type);
    if (!ips.some(isBlockingAddress)) return wire;
    const alive = this.alive();
    const needed = Math.floor(alive / 2) + (alive % 2);
    const kept = ips.filter((ip) => !isBlockingAddress(ip) || ++tally.votes > needed);
    return kept.length === ips.length ? wire : withAddresses(wire, type, kept);
  }
}
