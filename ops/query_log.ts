/**
 * The in-memory query log: the last N answered queries, for the dashboard to list and search
 * (by name, client, type, reason). Fed by the query recorder off the hot path and kept compact:
 * typed arrays of fixed fields, and the names and answer addresses in one circular byte arena
 * (about 113 bytes an entry: 1.1 MB per 10,000), so a full log costs the same however long it runs.
 *
 * @module
 */
import { nameText } from "../dns/name_text.ts";
import { addressText, scanAnswerAddresses } from "../dns/answer_addresses.ts";
import { typeName } from "../dns/packet.ts";
import { Reason } from "../resolver/query_context.ts";
import type { QueryRecordConsumer, QueryRecords } from "../server/query_recorder.ts";
import { RECORD_ANSWER_BYTES, RECORD_NAME_BYTES, RecordFlag } from "../server/query_recorder.ts";
import { rcodeName, REASON_NAMES, type RecordLookups, ruleWhere } from "./query_record_lookups.ts";

/** One query as the log shows it (plain data, JSON-able). */
export interface QueryLogEntry {
  /** When it was answered (ms since the epoch). */
  readonly time: number;
  /** The client's address ("" when unknown, e.g. a query keeldns made itself). */
  readonly client: string;
  readonly name: string;
  /** Its type's name (`A`, `AAAA`, `UNKNOWN_65` …). */
  readonly type: string;
  /** The answer's rcode name (`NOERROR`, `NXDOMAIN` …). */
  readonly rcode: string;
  /** Why: `upstream`, `cache`, `stale`, `coalesced`, `rule`, `blocked`, `soa`, `servfail`. */
  readonly reason: string;
  /** The upstream's address, or the deciding rule's `file:line`, or "". */
  readonly detail: string;
  /** Receipt to answer. */
  readonly elapsedMs: number;
  /** The answer's A and AAAA addresses (at most {@link MAX_LOGGED_ADDRESSES}). */
  readonly answers: string[];
}

/** What to look for; every given field must match. Newest entries first. */
export interface QueryLogQuery {
  /** Part of the name, any case. */
  readonly name?: string;
  /** The client's address, exactly. */
  readonly client?: string;
  /** A type's name or number. */
  readonly type?: string;
  /** A reason's name (see {@link QueryLogEntry.reason}). */
  readonly reason?: string;
  /** Only entries answered before this time (ms since the epoch), to page back. */
  readonly before?: number;
  /** At most this many (default 100). */
  readonly limit?: number;
}

/** Addresses kept of one answer. */
export const MAX_LOGGED_ADDRESSES = 16;
/** Arena bytes budgeted per entry (names and addresses); longer ones push out older entries sooner. */
const ARENA_BYTES_PER_ENTRY = 64;
/** Distinct detail texts (upstream addresses, rule places) kept; past it new ones show as "". */
const MAX_DETAILS = 65536;

/** The last N answered queries, searchable. */
export class QueryLog implements QueryRecordConsumer {
  readonly capacity: number;
  private readonly time: Float64Array;
  private readonly elapsedUs: Uint32Array;
  private readonly qtype: Uint16Array;
  private readonly rcode: Uint8Array;
  private readonly reason: Uint8Array;
  private readonly detail: Int32Array;
  private readonly clientFamily: Uint8Array;
  private readonly client: Uint8Array;
  /** Where an entry's name and addresses start in the arena (a position that only grows). */
  private readonly dataAt: Float64Array;
  private readonly nameLength: Uint8Array;
  private readonly answerCount: Uint8Array;
  private readonly dataLength: Uint16Array;
  private readonly arena: Uint8Array;
  private arenaEnd = 0;
  /** Entries added since the start; the oldest kept is `added - count`. */
  private added = 0;
  private count = 0;
  private readonly details: string[] = [];
  private readonly detailIndex = new Map<string, number>();
  private readonly scratch = new Uint8Array(RECORD_NAME_BYTES + MAX_LOGGED_ADDRESSES * 17);
  private scratchLength = 0;
  private addresses = 0;
  private readonly collect = (wire: Uint8Array, offset: number, size: 4 | 16) => {
    if (this.addresses >= MAX_LOGGED_ADDRESSES) return;
    this.addresses++;
    const scratch = this.scratch;
    scratch[this.scratchLength++] = size;
    for (let k = 0; k < size; k++) scratch[this.scratchLength++] = wire[offset + k];
  };

  constructor(capacity: number, private readonly lookups: RecordLookups) {
    this.capacity = Math.max(1, Math.floor(capacity));
    const n = this.capacity;
    this.time = new Float64Array(n);
    this.elapsedUs = new Uint32Array(n);
    this.qtype = new Uint16Array(n);
    this.rcode = new Uint8Array(n);
    this.reason = new Uint8Array(n);
    this.detail = new Int32Array(n);
    this.clientFamily = new Uint8Array(n);
    this.client = new Uint8Array(n * 16);
    this.dataAt = new Float64Array(n);
    this.nameLength = new Uint8Array(n);
    this.answerCount = new Uint8Array(n);
    this.dataLength = new Uint16Array(n);
    this.arena = new Uint8Array(Math.max(n * ARENA_BYTES_PER_ENTRY, this.scratch.length));
  }

  /** Entries held now. */
  get size(): number {
    return this.count;
  }

  /** Bytes the log holds (its arrays; the detail texts are shared and few). */
  get bytes(): number {
    return this.capacity * (8 + 4 + 2 + 1 + 1 + 4 + 1 + 16 + 8 + 1 + 1 + 2) + this.arena.length;
  }

  consume(r: QueryRecords, i: number): void {
    // The name and the addresses, laid out in the scratch buffer first.
    const nameLength = Math.min(r.nameLength[i], 255);
    const nameAt = i * RECORD_NAME_BYTES;
    const scratch = this.scratch;
    const names = r.name;
    for (let k = 0; k < nameLength; k++) scratch[k] = names[nameAt + k];
    this.scratchLength = nameLength;
    this.addresses = 0;
    // The answer is read in place: its kept bytes start at the slot's offset of the ring.
    const kept = r.flags[i] & RecordFlag.ANSWER_KEPT ? Math.min(r.answerLength[i], RECORD_ANSWER_BYTES) : 0;
    if (kept > 0) scanAnswerAddresses(r.answer, kept, this.collect, i * RECORD_ANSWER_BYTES);
    const length = this.scratchLength;
    // Room in the arena: contiguous, so skip to its start when the end is too near.
    const size = this.arena.length;
    let at = this.arenaEnd;
    if ((at % size) + length > size) at += size - (at % size);
    const end = at + length;
    while (this.count > 0) {
      const oldest = (this.added - this.count) % this.capacity;
      if (this.count < this.capacity && this.dataAt[oldest] >= end - size) break;
      this.count--;
    }
    const arena = this.arena;
    for (let k = 0, o = at % size; k < length; k++, o++) arena[o] = scratch[k];
    this.arenaEnd = end;
    const s = this.added % this.capacity;
    this.added++;
    this.count++;
    this.dataAt[s] = at;
    this.nameLength[s] = nameLength;
    this.answerCount[s] = this.addresses;
    this.dataLength[s] = length;
    this.time[s] = r.time[i];
    this.elapsedUs[s] = r.elapsedUs[i];
    this.qtype[s] = r.qtype[i];
    this.rcode[s] = r.rcode[i];
    this.reason[s] = r.reason[i];
    this.clientFamily[s] = r.clientFamily[i];
    for (let k = 0, from = i * 16, to = s * 16; k < 16; k++) this.client[to + k] = r.client[from + k];
    this.detail[s] = this.detailOf(r, i);
  }

  /** The interned detail of slot `i` of the records: the upstream, or the rule's place. */
  private detailOf(r: QueryRecords, i: number): number {
    const code = r.reason[i];
    let text: string | undefined;
    if (code === Reason.UPSTREAM || code === Reason.COALESCED) text = this.lookups.upstream(r.upstream[i]);
    else if (code === Reason.RULE || code === Reason.BLOCKED || code === Reason.SOA) {
      const rule = this.lookups.ruleSource(r.ruleGroup[i], r.rule[i]);
      if (rule) text = ruleWhere(rule);
    }
    if (text === undefined) return -1;
    let index = this.detailIndex.get(text);
    if (index === undefined) {
      if (this.details.length >= MAX_DETAILS) return -1;
      this.detailIndex.set(text, index = this.details.push(text) - 1);
    }
    return index;
  }

  /** The entries that match `query`, newest first. */
  search(query: QueryLogQuery = {}): QueryLogEntry[] {
    const limit = Math.max(0, query.limit ?? 100);
    const name = query.name?.toLowerCase();
    const reason = query.reason === undefined ? undefined : REASON_NAMES.indexOf(query.reason.toLowerCase());
    const type = query.type === undefined ? undefined : typeCode(query.type);
    const found: QueryLogEntry[] = [];
    for (let k = 0; k < this.count && found.length < limit; k++) {
      const s = (this.added - 1 - k) % this.capacity;
      if (query.before !== undefined && this.time[s] >= query.before) continue;
      if (reason !== undefined && this.reason[s] !== reason) continue;
      if (type !== undefined && this.qtype[s] !== type) continue;
      const client = this.clientText(s);
      if (query.client !== undefined && client !== query.client) continue;
      const entryName = this.nameText(s);
      if (name !== undefined && !entryName.toLowerCase().includes(name)) continue;
      found.push(this.entry(s, client, entryName));
    }
    return found;
  }

  private entry(s: number, client: string, name: string): QueryLogEntry {
    const answers: string[] = [];
    const size = this.arena.length;
    let pos = (this.dataAt[s] % size) + this.nameLength[s];
    for (let a = 0; a < this.answerCount[s]; a++) {
      const length = this.arena[pos] as 4 | 16;
      answers.push(addressText(this.arena, pos + 1, length));
      pos += 1 + length;
    }
    const detail = this.detail[s];
    return {
      time: this.time[s],
      client,
      name,
      type: typeName(this.qtype[s]),
      rcode: rcodeName(this.rcode[s]),
      reason: REASON_NAMES[this.reason[s]] ?? `reason${this.reason[s]}`,
      detail: detail < 0 ? "" : this.details[detail],
      elapsedMs: this.elapsedUs[s] / 1000,
      answers,
    };
  }

  private clientText(s: number): string {
    const family = this.clientFamily[s];
    return family === 4 || family === 6 ? addressText(this.client, s * 16, family === 4 ? 4 : 16) : "";
  }

  /** The entry's name as text, as the client spelled it ("." for the root). */
  private nameText(s: number): string {
    const start = this.dataAt[s] % this.arena.length;
    return nameText(this.arena, start, start + this.nameLength[s]);
  }
}

/** A type given by name (`AAAA`) or number (`28`); -1 when it is neither. */
function typeCode(text: string): number {
  if (/^\d+$/.test(text)) return Number(text);
  const upper = text.toUpperCase();
  for (let t = 0; t < 65536; t++) if (typeName(t) === upper) return t;
  return -1;
}
