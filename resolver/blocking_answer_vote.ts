/**
 * SmartDNS's ad-block vote on upstream answers: an address in 0.0.0.0/8 or 127.0.0.0/8 (AAAA: `::`
 * or `::1`) is what a filtering resolver answers for a blocked name, so such an address is dropped
 * from an answer until more than half of the servers (those not set aside as down) have answered
 * one for the question; the other addresses of the answer stay. Counted per question across its
 * servers, address by address, in the order they arrive, as SmartDNS does.
 *
 * An answer whose every address is dropped is not emptied: SmartDNS keeps the first address it
 * saw for the reply and only replaces it with one it keeps, so such an answer is *weak*: it is
 * given (blocking address and all) when no server answers an address that stays, and loses to any
 * answer that has one. A lone server's lone 127.0.0.1 is therefore answered as it came.
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

/** The vote's verdict on one answer. */
export interface VoteResult {
  /** The answer without the dropped addresses; the answer as it came when it is weak. */
  wire: Uint8Array;
  /** Every address of the answer was dropped: give it only if no better answer comes. */
  weak: boolean;
}

/** Applies the vote to the answers of one question's servers. */
export class BlockingAnswerVote {
  /** @param alive how many servers are usable now (SmartDNS's `dns_server_alive_num`) */
  constructor(private readonly alive: () => number) {}

  /**
   * The vote on `wire` (an upstream's checked answer to a question of `type`): without the
   * blocking addresses the vote drops (`wire` itself when none is dropped), or `wire` as it came
   * and weak when all of them are. Throws when the message cannot be rebuilt.
   */
  apply(tally: VoteTally, wire: Uint8Array, type: number): VoteResult {
    if (type !== 1 && type !== 28) return { wire, weak: false };
    const ips = answerAddresses(wire, type);
    if (!ips.some(isBlockingAddress)) return { wire, weak: false };
    const alive = this.alive();
    const needed = Math.floor(alive / 2) + (alive % 2);
    const kept = ips.filter((ip) => !isBlockingAddress(ip) || ++tally.votes > needed);
    if (kept.length === 0) return { wire, weak: true };
    return { wire: kept.length === ips.length ? wire : withAddresses(wire, type, kept), weak: false };
  }
}
