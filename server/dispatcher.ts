/**
 * Turns received bytes into an answer for one client, whatever the transport: parse the question
 * (never the whole message), resolve, render the stored answer with the client's ID and size limit.
 * Bad input is counted and dropped or answered FORMERR/NOTIMP; nothing thrown escapes.
 *
 * @module
 */
import type { StoredAnswer } from "../dns/stored_answer.ts";
import {
  buildEmptyAnswer,
  buildHeaderOnlyAnswer,
  MalformedQuery,
  parseQuery,
  type Question,
  Rcode,
} from "../dns/wire.ts";
import type { Logger } from "../ops/log.ts";
import type { Next } from "../resolver/stage.ts";
import type { ServerStats } from "./stats.ts";

/** Sends one answer back the way the query came. */
export type Reply = (answer: Uint8Array) => void;

/** Routes each received query through the resolver chain and back to its client. */
export class QueryDispatcher {
  constructor(
    private readonly resolve: Next,
    readonly stats: ServerStats,
    private readonly log: Logger,
  ) {}

  /**
   * Handles one received message; `udp` applies the client's UDP size limit (else 65535). `reply` may be called synchronously (cache hit), and is
   * called exactly once if this returns true; false means the message was dropped unanswered.
   */
  handle(wire: Uint8Array, udp: boolean, reply: Reply): boolean {
    this.stats.received++;
    let q: Question;
    try {
      q = parseQuery(wire);
    } catch (e) {
      this.stats.malformed++;
      if (e instanceof MalformedQuery && e.rcode !== null) {
        const answer = buildHeaderOnlyAnswer(wire, e.rcode);
        if (answer) {
          this.send(answer, reply);
          return true;
        }
      }
      return false;
    }
    try {
      const answer = this.resolve(q);
      if (answer instanceof Promise) {
        answer.then((a) => this.render(q, a, udp, reply), (e) => this.fail(q, e, reply));
      } else {
        this.render(q, answer, udp, reply);
      }
    } catch (e) {
      this.fail(q, e, reply);
    }
    return true;
  }

  private render(q: Question, answer: StoredAnswer, udp: boolean, reply: Reply): void {
    const out = answer.render(q, Date.now(), udp ? q.udpSize : 65535);
    if (out[2] & 0x02) this.stats.truncated++;
    this.send(out, reply);
  }

  private fail(q: Question, error: unknown, reply: Reply): void {
    this.stats.internalErrors++;
    this.log.error("resolving {name} type {type} failed: {error}", { name: q.name, type: q.qtype, error });
    this.send(buildEmptyAnswer(q, Rcode.SERVFAIL), reply);
  }

  private send(answer: Uint8Array, reply: Reply): void {
    try {
      reply(answer);
      this.stats.answered++;
    } catch (e) {
      this.log.warn("sending an answer failed: {error}", { error: e });
    }
  }
}
