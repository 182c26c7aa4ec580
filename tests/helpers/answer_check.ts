/**
 * The strict check every end-to-end test applies to each answer keeldns sends (issue 9: whatever
 * comes in, what goes out is valid DNS). The dns_client helpers run it on every answer they
 * receive, so any test anywhere catches the next malformed answer. Rules, in order:
 *
 * 1. {@link messageProblem} from dns/message_check.ts finds nothing (counts, names, pointers only
 *    backwards, rdata lengths, at most one OPT, root-owned, in the additional section, no trailing
 *    bytes);
 * 2. dns-packet decodes it (dns/packet.ts `decodePacket`);
 * 3. QR is set;
 * and, when the query is known:
 * 4. the ID, the opcode and the RD bit are the query's;
 * 5. unless the answer is a header-only FORMERR or NOTIMP (what keeldns legitimately sends for a
 *    query it cannot parse): the question count and section are the query's, byte for byte except
 *    for the case of ASCII letters in names;
 * 6. and, when the query is strictly well-formed (rules 1 and 2), exactly one OPT record if it
 *    carried EDNS0, none if it did not.
 *
 * A violation throws {@link AssertionError} naming the rule and giving the packet in hex.
 *
 * @module
 */
import { messageProblem } from "../../dns/message_check.ts";
import { decodePacket, type Packet } from "../../dns/packet.ts";
import { AssertionError } from "./assert.ts";

const HEADER = 12;
const RCODE_FORMERR = 1;
const RCODE_NOTIMP = 4;

/** Hex of a packet, as quoted in failures. */
export function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Number of OPT records in a decoded message. */
function optCount(packet: Packet): number {
  return (packet.additionals ?? []).filter((r) => r.type === "OPT").length;
}

/**
 * Where the question section of a message that passed {@link messageProblem} ends, and the
 * offsets of its type/class fields (the 4 bytes after each name, compared exactly).
 */
function questionSection(buf: Uint8Array): { end: number; fixed: Set<number> } {
  const count = (buf[4] << 8) | buf[5];
  const fixed = new Set<number>();
  let pos = HEADER;
  for (let i = 0; i < count; i++) {
    while (buf[pos] !== 0 && (buf[pos] & 0xc0) !== 0xc0) pos += buf[pos] + 1;
    pos += buf[pos] === 0 ? 1 : 2;
    for (let j = 0; j < 4; j++) fixed.add(pos + j);
    pos += 4;
  }
  return { end: pos, fixed };
}

/** Whether the query carried EDNS0, judged only for a strictly well-formed query (else null). */
function queryEdns(query: Uint8Array): boolean | null {
  if (messageProblem(query) !== null) return null;
  try {
    return optCount(decodePacket(query)) > 0;
  } catch {
    return null;
  }
}

/** Whether `answer` is the header-only FORMERR/NOTIMP keeldns sends for a query it cannot parse. */
function isHeaderOnlyError(answer: Uint8Array): boolean {
  const rcode = answer[3] & 0x0f;
  return answer.length === HEADER && (rcode === RCODE_FORMERR || rcode === RCODE_NOTIMP);
}

/**
 * Returns what is wrong with `answer` (see the module rules), or null if nothing is. `query`, when
 * given, is the message it answers.
 */
export function answerProblem(answer: Uint8Array, query?: Uint8Array): string | null {
  const structural = messageProblem(answer);
  if (structural !== null) return `malformed (${structural})`;
  let packet: Packet;
  try {
    packet = decodePacket(answer);
  } catch (e) {
    return `dns-packet cannot decode it (${(e as Error).message})`;
  }
  if (!(answer[2] & 0x80)) return "QR bit not set";
  if (query === undefined) return null;
  if (query.length < HEADER) return "an answer to a message shorter than a header (it must be dropped)";
  const id = (answer[0] << 8) | answer[1];
  const queryId = (query[0] << 8) | query[1];
  if (id !== queryId) return `ID ${id} is not the query's ${queryId}`;
  const opcode = (answer[2] >> 3) & 0x0f;
  const queryOpcode = (query[2] >> 3) & 0x0f;
  if (opcode !== queryOpcode) return `opcode ${opcode} is not the query's ${queryOpcode}`;
  if ((answer[2] & 0x01) !== (query[2] & 0x01)) return "RD bit not copied from the query";
  if (isHeaderOnlyError(answer)) return null;
  // The question section, byte for byte but for the case of ASCII letters in names.
  if (answer[4] !== query[4] || answer[5] !== query[5]) return "question count differs from the query's";
  const { end, fixed } = questionSection(answer);
  if (query.length < end) return "question section differs from the query's";
  for (let i = HEADER; i < end; i++) {
    let a = answer[i];
    let b = query[i];
    if (!fixed.has(i)) {
      if (a >= 0x41 && a <= 0x5a) a |= 0x20;
      if (b >= 0x41 && b <= 0x5a) b |= 0x20;
    }
    if (a !== b) return "question section differs from the query's";
  }
  const edns = queryEdns(query);
  const opts = optCount(packet);
  if (edns === true && opts !== 1) return `${opts} OPT records for a query with EDNS0 (expected exactly one)`;
  if (edns === false && opts !== 0) return `${opts} OPT records for a query without EDNS0 (expected none)`;
  return null;
}

/** Throws {@link AssertionError} naming the problem and the packet's hex if `answer` fails the check. */
export function assertValidAnswer(answer: Uint8Array, query?: Uint8Array, context = ""): void {
  const problem = answerProblem(answer, query);
  if (problem === null) return;
  throw new AssertionError(
    `invalid DNS answer${context ? ` (${context})` : ""}: ${problem}\n  answer: ${hex(answer)}` +
      (query ? `\n  query:  ${hex(query)}` : ""),
  );
}
