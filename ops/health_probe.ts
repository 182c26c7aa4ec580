/**
 * `keeldns health`: one real DNS query to a running server, for cron and service managers.
 *
 * @module
 */
import dgram from "node:dgram";
import { encodePacket } from "../dns/packet.ts";
import { readId } from "../dns/wire.ts";
import { randomId } from "../dns/transaction_id.ts";

/** Exit codes of `keeldns health`. */
export const HealthExit = {
  /** The server answered NOERROR or NXDOMAIN. */
  OK: 0,
  /** No answer within the timeout (server down, hung, or unreachable). */
  NO_ANSWER: 1,
  /** The server answered, but with SERVFAIL, REFUSED or another error: upstreams may be down. */
  ERROR_ANSWER: 2,
  /** Bad command-line arguments. */
  USAGE: 64,
} as const;

/** The outcome of one probe. */
export interface HealthResult {
  readonly exitCode: number;
  /** One line saying what happened. */
  readonly message: string;
  /** Milliseconds until the answer (or the timeout). */
  readonly elapsedMs: number;
}

const RCODE_NAMES = ["NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED"];

/** Sends one UDP query for `name`/`type` to host:port and waits up to `timeoutMs` for its answer. */
export function probe(
  host: string,
  port: number,
  name: string,
  type: string,
  timeoutMs: number,
): Promise<HealthResult> {
  const id = randomId();
  const query = encodePacket({
    type: "query",
    id,
    flags: 0x0100,
    questions: [{ name, type: type as "A", class: "IN" }],
  });
  const started = performance.now();
  const target = `${host.includes(":") ? `[${host}]` : host}:${port}`;
  return new Promise((resolve) => {
    const socket = dgram.createSocket(host.includes(":") ? "udp6" : "udp4");
    const finish = (exitCode: number, message: string) => {
      clearTimeout(timer);
      socket.close();
      resolve({ exitCode, message, elapsedMs: performance.now() - started });
    };
    const timer = setTimeout(
      () => finish(HealthExit.NO_ANSWER, `no answer from ${target} in ${timeoutMs} ms`),
      timeoutMs,
    );
    socket.on("error", (e: Error) => finish(HealthExit.NO_ANSWER, `${target}: ${e.message}`));
    socket.on("message", (msg: Uint8Array) => {
      if (msg.length < 12 || readId(msg) !== id || !(msg[2] & 0x80)) return;
      const rcode = msg[3] & 0x0f;
      const ms = (performance.now() - started).toFixed(1);
      const rcodeName = RCODE_NAMES[rcode] ?? `rcode ${rcode}`;
      if (rcode === 0 || rcode === 3) {
        finish(HealthExit.OK, `${target} answered ${name} ${type}: ${rcodeName} in ${ms} ms`);
      } else {finish(
          HealthExit.ERROR_ANSWER,
          `${target} answered ${name} ${type} with ${rcodeName} in ${ms} ms`,
        );}
    });
    socket.send(query, port, host);
  });
}
