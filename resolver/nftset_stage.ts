/**
 * The nftset stage, first in the chain: for a question whose rules name an nftables set
 * (`nftset`, `ipset`, `domain-rules -nftset/-ipset`), the A or AAAA addresses of its answer —
 * from upstream, from the cache, or from a local rule — go to that set, with their TTL as the
 * element timeout under `nftset-timeout yes`. Owns SmartDNS's `nftset`, `ipset`,
 * `nftset-timeout`, `ipset-timeout` and `nftset-debug`; ops/nft_batch.ts does the writing.
 *
 * A new answer waits (at most {@link NftsetOptions.wait} ms, about one nft round trip in practice)
 * until its addresses are in the set, so the client's first packet already matches the firewall
 * rule, as SmartDNS adds before it replies. Cache hits re-add too — a firewall reload empties
 * the sets while the cache still holds the names (SmartDNS issue #1353) — but only once per name
 * and family every {@link NftsetOptions.refresh} ms, and without waiting. A question no set rule
 * names costs one rule lookup (the same the rules stage makes) and allocates nothing.
 *
 * @module
 */
import type { NftSetTarget, RulesConfig } from "../config/schema.ts";
import type { Answer } from "../dns/answer.ts";
import { StoredAnswer } from "../dns/stored_answer.ts";
import { HEADER_LENGTH, Rcode, readU32, skipName } from "../dns/wire.ts";
import { NftBatcher, type NftLog } from "../ops/nft_batch.ts";
import { type QueryContext, Reason } from "./query_context.ts";
import type { RuleSet } from "./rule_set.ts";
import type { MaybePromise, Next, Stage } from "./stage.ts";

const TYPE_A = 1;
const TYPE_AAAA = 28;
/** Names remembered per family before the memory is started afresh. */
const MAX_SEEN = 65_536;

/** How the stage behaves. */
export interface NftsetOptions {
  /** Elements time out with the answer's TTL (`nftset-timeout`). */
  readonly timeout: boolean;
  /** A cached answer's addresses are re-added at most this often per name (ms). */
  readonly refresh?: number;
  /** A new answer waits at most this long for nft (ms). */
  readonly wait?: number;
  readonly now?: () => number;
}

/** Counters the stage keeps. */
export interface NftsetCounters {
  /** Answers whose addresses were queued. */
  answers: number;
  /** Of those, cache hits re-added. */
  readds: number;
  /** Answers skipped: the same answer's addresses were queued within the refresh time. */
  skipped: number;
}

/** When a name's addresses were last queued, and from which answer. */
interface Seen {
  storedAt: number;
  addedAt: number;
}

/** Adds the answer addresses of questions whose rules name an nftables set. */
export class NftsetStage implements Stage {
  readonly counters: NftsetCounters = { answers: 0, readds: 0, skipped: 0 };
  private readonly refresh: number;
  private readonly wait: number;
  private readonly now: () => number;
  private seen4 = new Map<string, Seen>();
  private seen6 = new Map<string, Seen>();

  constructor(
    private readonly rules: RuleSet,
    private readonly batcher: NftBatcher,
    private readonly options: NftsetOptions,
  ) {
    this.refresh = options.refresh ?? 10_000;
    this.wait = options.wait ?? 100;
    this.now = options.now ?? Date.now;
  }

  /** Passes `ctx` on and adds its answer's addresses when a rule names a set. */
  resolve(ctx: QueryContext, next: Next): MaybePromise<Answer> {
    const set = this.rules.judge(ctx.wire, ctx.qtype).nftset;
    if (set === undefined) return next(ctx);
    const answer = next(ctx);
    if (answer instanceof Promise) return answer.then((a) => this.observe(ctx, a, set));
    return this.observe(ctx, answer, set);
  }

  private observe(ctx: QueryContext, answer: Answer, set: NftSetTarget): MaybePromise<Answer> {
    if (answer.rcode !== Rcode.NOERROR) return answer;
    const now = this.now();
    const storedAt = answer instanceof StoredAnswer ? answer.storedAt : -1;
    let seenMap = ctx.qtype === TYPE_A ? this.seen4 : this.seen6;
    let seen = seenMap.get(ctx.name);
    const hit = ctx.reason === Reason.CACHE || ctx.reason === Reason.STALE;
    if (seen !== undefined && seen.storedAt === storedAt && now - seen.addedAt < this.refresh) {
      this.counters.skipped++;
      return answer;
    }
    const fresh = !hit && seen?.storedAt !== storedAt;
    if (seen === undefined) {
      if (seenMap.size >= MAX_SEEN) {
        seenMap = new Map();
        if (ctx.qtype === TYPE_A) this.seen4 = seenMap;
        else this.seen6 = seenMap;
      }
      seenMap.set(ctx.name, seen = { storedAt, addedAt: now });
    } else {
      seen.storedAt = storedAt;
      seen.addedAt = now;
    }
    const added = addAddresses(
      answer.render(ctx, now, 65535),
      ctx.qtype,
      (ip, ttl) => this.batcher.add(set, ip, this.options.timeout ? Math.max(ttl, 1) : 0),
    );
    if (added === 0) return answer;
    this.counters.answers++;
    if (hit) this.counters.readds++;
    return fresh ? this.settle(answer) : answer;
  }

  /** `answer`, once the batcher has written its addresses (or after {@link NftsetOptions.wait}). */
  private settle(answer: Answer): Promise<Answer> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<void>((resolve) => timer = setTimeout(resolve, this.wait));
    return Promise.race([this.batcher.settled(), late]).then(() => {
      clearTimeout(timer);
      return answer;
    });
  }
}

/**
 * Calls `add` with every record of type `qtype` (A or AAAA) in the answer section of `wire`, its
 * address as text and its TTL; returns how many.
 */
export function addAddresses(
  wire: Uint8Array,
  qtype: number,
  add: (ip: string, ttl: number) => void,
): number {
  if (qtype !== TYPE_A && qtype !== TYPE_AAAA) return 0;
  const qdcount = (wire[4] << 8) | wire[5];
  const ancount = (wire[6] << 8) | wire[7];
  let pos = HEADER_LENGTH;
  for (let i = 0; i < qdcount; i++) {
    pos = skipName(wire, pos);
    if (pos < 0) return 0;
    pos += 4;
  }
  let count = 0;
  for (let i = 0; i < ancount; i++) {
    pos = skipName(wire, pos);
    if (pos < 0 || pos + 10 > wire.length) return count;
    const type = (wire[pos] << 8) | wire[pos + 1];
    const ttl = readU32(wire, pos + 4);
    const length = (wire[pos + 8] << 8) | wire[pos + 9];
    const rdata = pos + 10;
    pos = rdata + length;
    if (pos > wire.length) return count;
    if (type !== qtype) continue;
    if (type === TYPE_A && length === 4) {
      add(`${wire[rdata]}.${wire[rdata + 1]}.${wire[rdata + 2]}.${wire[rdata + 3]}`, ttl);
      count++;
    } else if (type === TYPE_AAAA && length === 16) {
      add(ipv6Text(wire, rdata), ttl);
      count++;
    }
  }
  return count;
}

/** The RFC 5952 text of the 16 bytes at `at`: lower-case, the longest run of zero groups as `::`. */
export function ipv6Text(bytes: Uint8Array, at: number): string {
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((bytes[at + i] << 8) | bytes[at + i + 1]);
  let best = -1;
  let bestLength = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) best = i, bestLength = j - i;
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best < 0) return hex.join(":");
  return `${hex.slice(0, best).join(":")}::${hex.slice(best + bestLength).join(":")}`;
}

let shared: NftBatcher | undefined;

/**
 * The nftset stage for `rules`, writing through the one batcher of this process (its `nft -i`
 * outlives reloads). `KEELDNS_NFT` names the nft to run when it is not `nft` on the PATH.
 */
export function nftsetStage(rules: RuleSet, config: RulesConfig, log: NftLog): NftsetStage {
  if (!shared) {
    let nft = "nft";
    try {
      nft = Deno.env.get("KEELDNS_NFT") || nft;
    } catch {
      // no --allow-env: the nft on the PATH
    }
    shared = new NftBatcher(log, { command: [nft, "-i"] });
  }
  shared.debug = config.nftsetDebug ?? false;
  return new NftsetStage(rules, shared, { timeout: config.nftsetTimeout });
}
