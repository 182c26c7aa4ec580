/**
 * DNS64 (RFC 6147; SmartDNS's `dns64 PREFIX/96`): an AAAA question whose answer holds no AAAA
 * record is answered with AAAA records made from the name's A records under the prefix, for
 * IPv6-only clients behind a NAT64 gateway. Sits after the cache, so the synthesized answer is
 * cached like any other and a hit costs nothing more.
 *
 * @module
 */
import type { Answer } from "../dns/answer.ts";
import { decodePacket, encodePacket, type Packet } from "../dns/packet.ts";
import { StoredAnswer } from "../dns/stored_answer.ts";
import { Rcode, scanResponse } from "../dns/wire.ts";
import { ipBytes } from "../net/address.ts";
import { parseContext, type QueryContext } from "./query_context.ts";
import type { MaybePromise, Next, Stage } from "./stage.ts";

const TYPE_AAAA = 28;

/** The IPv6 text of `prefix` (its first 12 bytes) followed by the IPv4 address `v4`. */
export function synthesize(prefix: Uint8Array, v4: string): string {
  const bytes = prefix.slice(0, 16);
  bytes.set(ipBytes(v4), 12);
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i] << 8) | bytes[i + 1]).toString(16));
  return groups.join(":");
}

/** Answers AAAA questions without AAAA records from the A records, under a /96 prefix. */
export class Dns64Stage implements Stage {
  /** AAAA answers synthesized. */
  synthesized = 0;
  private readonly prefix: Uint8Array;

  /** `prefix` is an IPv6 address whose first 96 bits are the NAT64 prefix (e.g. 64:ff9b::). */
  constructor(prefix: string) {
    this.prefix = ipBytes(prefix);
  }

  /** Passes every question on; an AAAA answer without AAAA records is replaced by a synthesized one. */
  resolve(ctx: QueryContext, next: Next): MaybePromise<Answer> {
    const answer = next(ctx);
    if (ctx.qtype !== TYPE_AAAA) return answer;
    return Promise.resolve(answer).then((a) => this.synthesizeFor(ctx, a, next));
  }

  private async synthesizeFor(ctx: QueryContext, answer: Answer, next: Next): Promise<Answer> {
    if (answer.rcode !== Rcode.NOERROR) return answer;
    const own = decodePacket(answer.render(ctx, Date.now(), 65535)) as Packet;
    if ((own.answers ?? []).some((r) => r.type === "AAAA")) return answer;
    const query = encodePacket({
      type: "query",
      id: 0,
      flags: 0x0100,
      questions: [{ name: ctx.name, type: "A", class: "IN" }],
      additionals: ctx.edns
        ? [{ type: "OPT", name: ".", udpPayloadSize: 1232, flags: ctx.dnssecOk ? 0x8000 : 0 } as never]
        : [],
    });
    const a = parseContext(query);
    a.listener = ctx.listener;
    a.upstreamGroup = ctx.upstreamGroup;
    const v4 = await next(a);
    if (v4.rcode !== Rcode.NOERROR) return answer;
    const reply = decodePacket(v4.render(a, Date.now(), 65535)) as Packet;
    const records = reply.answers ?? [];
    if (!records.some((r) => r.type === "A")) return answer;
    const wire = encodePacket({
      type: "response",
      id: ctx.id,
      flags: 0x8180,
      questions: [{ name: ctx.name, type: "AAAA", class: "IN" }],
      answers: records.map((r) =>
        r.type === "A"
          ? { name: r.name, type: "AAAA" as const, ttl: r.ttl, data: synthesize(this.prefix, r.data) }
          : r
      ),
    });
    const layout = scanResponse(wire);
    if (!layout) return answer;
    this.synthesized++;
    return StoredAnswer.fromResponse(wire, layout, { rrTtl: 0, rrTtlMin: 0, rrTtlMax: 0 }, Date.now());
  }
}
