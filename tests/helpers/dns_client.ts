/**
 * A minimal DNS client for tests: one query over UDP or TCP, decoded answer back. Every answer it
 * receives passes the strict check of answer_check.ts first (structure, dns-packet decode, QR and,
 * where the query is known, ID, question and OPT), which throws an AssertionError with the packet's
 * hex: no test can receive a malformed answer from keeldns without failing.
 *
 * @module
 */
import dgram from "node:dgram";
import { Buffer } from "node:buffer";
import { type Answer, decodePacket, encodePacket, type Packet } from "../../dns/packet.ts";
import { frame, FramedReader, writeAll } from "../../dns/stream_framing.ts";
import { assertValidAnswer } from "./answer_check.ts";

/** A record as the tests look at it. */
export interface TestRecord {
  name: string;
  type: string;
  ttl?: number;
  // deno-lint-ignore no-explicit-any
  data?: any;
}

/** A decoded answer as the tests look at it. */
export interface TestReply {
  id: number;
  rcode: string;
  /** TC bit. */
  tc: boolean;
  questions: { name: string; type: string }[];
  answers: TestRecord[];
  authorities: TestRecord[];
  additionals: TestRecord[];
  raw: Uint8Array;
}

/**
 * Checks an answer strictly (see answer_check.ts; without the query, the rules that need it are
 * skipped) and decodes it for assertions.
 */
export function decodeReply(raw: Uint8Array): TestReply {
  assertValidAnswer(raw);
  return decoded(raw);
}

/** Checks `raw` as the answer to `query` and decodes it. */
function checkedReply(raw: Uint8Array, query: Uint8Array, context: string): TestReply {
  assertValidAnswer(raw, query, context);
  return decoded(raw);
}

function decoded(raw: Uint8Array): TestReply {
  const p = decodePacket(raw) as Packet & { rcode: string; flag_tc: boolean };
  return {
    id: p.id ?? 0,
    rcode: p.rcode,
    tc: p.flag_tc,
    questions: (p.questions ?? []) as TestReply["questions"],
    answers: (p.answers ?? []) as TestRecord[],
    authorities: (p.authorities ?? []) as TestRecord[],
    additionals: (p.additionals ?? []) as TestRecord[],
    raw,
  };
}

/** Options for one query. */
export interface QueryOptions {
  /** Announce EDNS0 with this UDP payload size. */
  edns?: number;
  /** Milliseconds to wait. */
  timeoutMs?: number;
  id?: number;
  /** Server address (default 127.0.0.1). */
  host?: string;
}

/** Encodes a standard recursive query. */
export function buildQuery(name: string, type: string, options: QueryOptions = {}): Uint8Array {
  return encodePacket({
    type: "query",
    id: options.id ?? Math.floor(Math.random() * 65536),
    flags: 0x0100,
    questions: [{ name, type: type as "A", class: "IN" }],
    additionals: options.edns
      ? [{ type: "OPT", name: ".", udpPayloadSize: options.edns } as unknown as Answer]
      : [],
  });
}

/**
 * Sends raw bytes over UDP and resolves with the first reply's bytes, or null on timeout. When
 * `bytes` are at least a DNS header long, the reply is checked strictly as the answer to them (a
 * header-only FORMERR/NOTIMP is a valid answer to garbage) and a malformed one rejects with an
 * AssertionError; shorter bytes are no DNS message, and their reply is passed on unchecked (raw
 * socket tests echo such bytes; keeldns must not answer them at all).
 */
export function udpExchangeRaw(
  port: number,
  bytes: Uint8Array,
  timeoutMs = 2000,
  host = "127.0.0.1",
): Promise<Uint8Array | null> {
  return new Promise((resolve, reject) => {
    const socket = dgram.createSocket(host.includes(":") ? "udp6" : "udp4");
    const timer = setTimeout(() => {
      socket.close();
      resolve(null);
    }, timeoutMs);
    socket.on("message", (msg: Uint8Array) => {
      clearTimeout(timer);
      socket.close();
      const reply = new Uint8Array(msg);
      try {
        if (bytes.length >= 12) assertValidAnswer(reply, bytes, `UDP from ${host}:${port}`);
      } catch (e) {
        return reject(e);
      }
      resolve(reply);
    });
    socket.send(Buffer.from(bytes), port, host);
  });
}

/** Queries over UDP and decodes the answer; throws on timeout. */
export async function udpQuery(
  port: number,
  name: string,
  type: string,
  options: QueryOptions = {},
): Promise<TestReply> {
  const query = buildQuery(name, type, options);
  const raw = await udpExchangeRaw(port, query, options.timeoutMs ?? 3000, options.host);
  if (!raw) throw new Error(`no UDP answer for ${name} ${type} from port ${port}`);
  return decoded(raw); // checked against the query by udpExchangeRaw
}

/** Queries over TCP and decodes the answer. */
export async function tcpQuery(
  port: number,
  name: string,
  type: string,
  options: QueryOptions = {},
): Promise<TestReply> {
  const conn = await Deno.connect({ hostname: options.host ?? "127.0.0.1", port });
  try {
    const query = buildQuery(name, type, options);
    await writeAll(conn, frame(query));
    const timer = setTimeout(() => conn.close(), options.timeoutMs ?? 3000);
    const raw = await new FramedReader(conn).next();
    clearTimeout(timer);
    if (!raw) throw new Error("TCP connection closed without an answer");
    return checkedReply(raw, query, `TCP from port ${port}`);
  } finally {
    try {
      conn.close();
    } catch { /* closed by timer */ }
  }
}
