/**
 * The audit file (SmartDNS's `audit-enable`, `audit-file`, `audit-size`, `audit-num`,
 * `audit-file-mode`, `audit-console`, `audit-SOA`): one line per answered query, formatted from
 * the query recorder's records off the hot path and written with one write per batch, rotated at
 * its size to `FILE.1` … `FILE.N`.
 *
 * A line keeps SmartDNS's shape, so scripts reading SmartDNS's audit file read this one, and adds
 * keeldns's fields after a `;`:
 *
 * ```text
 * [2025-01-02 13:04:05,123] 192.168.1.20 query example.com, type 1, time 12ms, speed: -0.1ms, group default, result 93.184.215.14, 2606:2800:21f:cb07:6820:80da:af6b:8b2c; rcode NOERROR, reason upstream udp://9.9.9.9:53, elapsed 11.874ms
 * ```
 *
 * `speed` is SmartDNS's "no measurement" value: the records do not carry the speed check's RTT.
 *
 * @module
 */
import { ByteBuffer } from "../net/byte_buffer.ts";
import type { AuditConfig } from "../config/schema.ts";
import { addressText, scanAnswerAddresses } from "../dns/answer_addresses.ts";
import { Reason } from "../resolver/query_context.ts";
import {
  type QueryRecordConsumer,
  type QueryRecords,
  RECORD_ANSWER_BYTES,
  RECORD_NAME_BYTES,
  RecordFlag,
} from "../server/query_recorder.ts";
import type { Logger } from "./log.ts";
import { rcodeName, REASON_NAMES, type RecordLookups, ruleWhere } from "./query_record_lookups.ts";

/** What the audit file needs of the configuration. */
export type AuditSettings = Pick<AuditConfig, "file" | "size" | "num" | "fileMode" | "console" | "soa">;

const encoder = new TextEncoder();

function two(n: number): string {
  return n < 10 ? `0${n}` : String(n);
}

/** 0–999 in decimal: per number its digit count, then its digits. */
const DIGITS = (() => {
  const table = new Uint8Array(4000);
  for (let n = 0; n < 1000; n++) {
    const text = String(n);
    table[n * 4] = text.length;
    for (let d = 0; d < text.length; d++) table[n * 4 + 1 + d] = text.charCodeAt(d);
  }
  return table;
})();

/** Growable bytes a batch of lines is written into, then to the file in one write. */
export class LineBuffer extends ByteBuffer {
  constructor() {
    super(64 * 1024);
  }

  /** Appends `b` (room reserved). */
  push(b: number): void {
    this.bytes[this.length++] = b;
  }

  /** Appends `text`, which is ASCII. */
  ascii(text: string): void {
    this.reserve(text.length);
    for (let i = 0; i < text.length; i++) this.bytes[this.length++] = text.charCodeAt(i);
  }

  /** Appends `n` (a non-negative integer) in decimal, at least `width` digits. */
  decimal(n: number, width = 1): void {
    this.reserve(20);
    const bytes = this.bytes;
    if (n < 1000) {
      // Most numbers in a line (octets, types, milliseconds) are below 1000: a table gives them.
      const at = n * 4;
      const digits = DIGITS[at];
      for (let d = digits; d < width; d++) bytes[this.length++] = 0x30;
      for (let d = 1; d <= digits; d++) bytes[this.length++] = DIGITS[at + d];
      return;
    }
    let digits = 1;
    for (let v = n; v >= 10; v = Math.floor(v / 10)) digits++;
    for (let d = digits; d < width; d++) bytes[this.length++] = 0x30;
    let at = this.length + digits;
    this.length = at;
    let v = n;
    do {
      bytes[--at] = 0x30 + (v % 10);
      v = Math.floor(v / 10);
    } while (v > 0);
  }
}

/** Strings encoded once (a group's or upstream's name, a reason's): the line writer reuses them. */
class EncodedStrings {
  private readonly cache = new Map<string, Uint8Array>();

  of(text: string): Uint8Array {
    let bytes = this.cache.get(text);
    if (!bytes) {
      if (this.cache.size > 4096) this.cache.clear();
      this.cache.set(text, bytes = encoder.encode(text));
    }
    return bytes;
  }
}

/** Each rcode's name, and each reason's, encoded once. */
const RCODE_BYTES = Array.from({ length: 16 }, (_, rcode) => encoder.encode(rcodeName(rcode)));
const REASON_BYTES = REASON_NAMES.map((name) => encoder.encode(name));

const TEXT = {
  query: encoder.encode(" query "),
  type: encoder.encode(", type "),
  time: encoder.encode(", time "),
  speedGroup: encoder.encode("ms, speed: -0.1ms, group "),
  result: encoder.encode(", result "),
  rcode: encoder.encode("; rcode "),
  reason: encoder.encode(", reason "),
  elapsed: encoder.encode(", elapsed "),
  ms: encoder.encode("ms\n"),
  soa: encoder.encode("soa"),
  api: encoder.encode("API"),
  comma: encoder.encode(", "),
};

/**
 * Writes audit lines as bytes straight into a {@link LineBuffer}: no string per line (formatting
 * runs for every answer, beside answering on one thread). Remembers the last second's time text,
 * as most lines share it.
 */
export class AuditLineFormatter {
  private second = -1;
  private secondBytes = new Uint8Array(0);
  private readonly strings = new EncodedStrings();
  private lastGroup = "";
  private lastGroupBytes: Uint8Array = new Uint8Array(0);
  private out!: LineBuffer;
  private addresses = 0;
  private readonly collect = (wire: Uint8Array, offset: number, size: 4 | 16) => {
    const out = this.out;
    if (this.addresses++ > 0) out.append(TEXT.comma);
    writeAddress(out, wire, offset, size);
  };

  constructor(private readonly lookups: RecordLookups, private readonly withSoa: boolean) {}

  /** Appends `[YYYY-MM-DD HH:MM:SS,mmm]` in local time, as SmartDNS writes it. */
  private time(out: LineBuffer, ms: number): void {
    const second = Math.floor(ms / 1000);
    if (second !== this.second) {
      const d = new Date(second * 1000);
      this.second = second;
      this.secondBytes = encoder.encode(
        `[${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())} ${two(d.getHours())}:${
          two(d.getMinutes())
        }:${two(d.getSeconds())},`,
      );
    }
    out.append(this.secondBytes);
    out.decimal(Math.floor(ms) - second * 1000, 3);
    out.push(0x5d);
  }

  /** The reason field: `cache`, `stale`, `upstream ADDRESS`, `rule FILE:LINE`, `blocked FILE:LINE` … */
  reason(r: QueryRecords, i: number): string {
    const code = r.reason[i];
    const name = REASON_NAMES[code] ?? `reason${code}`;
    if (code === Reason.UPSTREAM || code === Reason.COALESCED) {
      const upstream = this.lookups.upstream(r.upstream[i]);
      return upstream ? `${name} ${upstream}` : name;
    }
    if (code === Reason.RULE || code === Reason.BLOCKED || code === Reason.SOA) {
      const rule = this.lookups.ruleSource(r.ruleGroup[i], r.rule[i]);
      return rule ? `${name} ${ruleWhere(rule)}` : name;
    }
    return name;
  }

  /**
   * Appends slot `i` as one line (with its newline) to `out`; false (nothing appended) when it is
   * not audited (an SOA answer without audit-SOA).
   */
  write(r: QueryRecords, i: number, out: LineBuffer): boolean {
    const start = out.length;
    out.reserve(2 * RECORD_NAME_BYTES * 4 + 256);
    this.time(out, r.time[i]);
    out.push(0x20);
    writeClient(out, r, i);
    out.append(TEXT.query);
    writeName(out, r, i);
    out.append(TEXT.type);
    out.decimal(r.qtype[i]);
    out.append(TEXT.time);
    const elapsedUs = r.elapsedUs[i];
    out.decimal(Math.floor(elapsedUs / 1000));
    out.append(TEXT.speedGroup);
    // Most lines name the group of the line before: its bytes are kept.
    const group = this.lookups.upstreamGroup(r, i);
    if (group !== this.lastGroup) {
      this.lastGroup = group;
      this.lastGroupBytes = this.strings.of(group);
    }
    out.append(this.lastGroupBytes);
    out.append(TEXT.result);
    // The addresses, straight from the kept answer bytes.
    const resultAt = out.length;
    this.out = out;
    this.addresses = 0;
    const kept = r.flags[i] & RecordFlag.ANSWER_KEPT ? Math.min(r.answerLength[i], RECORD_ANSWER_BYTES) : 0;
    const scan = scanAnswerAddresses(r.answer, kept, this.collect, i * RECORD_ANSWER_BYTES);
    const code = r.reason[i];
    if (scan.addresses === 0 && (scan.soa || code === Reason.BLOCKED || code === Reason.SOA)) {
      if (!this.withSoa) {
        out.length = start;
        return false;
      }
      out.length = resultAt;
      out.append(TEXT.soa);
    }
    out.append(TEXT.rcode);
    out.append(RCODE_BYTES[r.rcode[i]]);
    out.append(TEXT.reason);
    if (code === Reason.CACHE || code === Reason.STALE) out.append(REASON_BYTES[code]);
    else out.append(this.strings.of(this.reason(r, i)));
    out.append(TEXT.elapsed);
    out.decimal(Math.floor(elapsedUs / 1000));
    out.push(0x2e);
    out.decimal(elapsedUs % 1000, 3);
    out.append(TEXT.ms);
    return true;
  }
}

/** Appends the client address of slot `i` ("API" when unknown, as SmartDNS writes a local query). */
function writeClient(out: LineBuffer, r: QueryRecords, i: number): void {
  const family = r.clientFamily[i];
  if (family === 4) writeAddress(out, r.client, i * 16, 4);
  else if (family === 6) writeAddress(out, r.client, i * 16, 16);
  else out.append(TEXT.api);
}

/** Appends an IPv4 address as digits, an IPv6 one in its RFC 5952 text. */
function writeAddress(out: LineBuffer, bytes: Uint8Array, offset: number, size: 4 | 16): void {
  if (size === 16) return out.ascii(addressText(bytes, offset, 16));
  out.reserve(16);
  for (let k = 0; k < 4; k++) {
    if (k > 0) out.push(0x2e);
    out.decimal(bytes[offset + k]);
  }
}

/** Appends the question name of slot `i` as text (`\.`, `\\` and `\DDD` for bytes that need it). */
function writeName(out: LineBuffer, r: QueryRecords, i: number): void {
  const bytes = r.name;
  let pos = i * RECORD_NAME_BYTES;
  const end = pos + r.nameLength[i];
  let labels = 0;
  while (pos < end) {
    const length = bytes[pos];
    if (length === 0 || pos + 1 + length > end) break;
    if (labels++ > 0) out.push(0x2e);
    for (let j = pos + 1; j <= pos + length; j++) {
      const c = bytes[j];
      if (c === 0x2e || c === 0x5c) {
        out.push(0x5c);
        out.push(c);
      } else if (c > 0x20 && c < 0x7f) out.push(c);
      else {
        out.push(0x5c);
        out.decimal(c, 3);
      }
    }
    pos += 1 + length;
  }
  if (labels === 0) out.push(0x2e);
}

/** Appends audit lines to a file, one write per batch, rotating it at its size. */
export class AuditFile implements QueryRecordConsumer {
  /** Lines written (to the file, or to stderr only), and lines lost to write errors. */
  lines = 0;
  failed = 0;
  private readonly formatter: AuditLineFormatter;
  private readonly batch = new LineBuffer();
  private batchLines = 0;
  private file?: Deno.FsFile;
  private size = 0;
  private broken = false;

  constructor(
    readonly settings: AuditSettings,
    lookups: RecordLookups,
    private readonly log?: Logger,
  ) {
    this.formatter = new AuditLineFormatter(lookups, settings.soa);
  }

  /** Whether a file is written (`audit-num 0` writes none: only the console, if on). */
  get writesFile(): boolean {
    return this.settings.num > 0;
  }

  consume(records: QueryRecords, i: number): void {
    if (this.formatter.write(records, i, this.batch)) this.batchLines++;
  }

  batchDone(): void {
    if (this.batchLines === 0) return;
    const count = this.batchLines;
    this.batchLines = 0;
    const bytes = this.batch.take();
    if (this.settings.console) {
      try {
        writeAll(Deno.stderr, bytes);
      } catch {
        // stderr gone (the guardian died): the file still gets the lines
      }
    }
    if (!this.writesFile) {
      this.lines += count;
      return;
    }
    if (this.broken) {
      this.failed += count;
      return;
    }
    try {
      if (!this.file) this.open();
      this.writeSplit(bytes);
      this.lines += count;
    } catch (e) {
      this.broken = true;
      this.failed += count;
      this.file?.close();
      this.file = undefined;
      this.log?.error("audit file {file} cannot be written, no more audit lines go to it: {error}", {
        file: this.settings.file,
        error: (e as Error).message,
      });
    }
  }

  /**
   * Writes whole lines: what fits the file in one write, then the rest into the next file after
   * rotating (a batch larger than `audit-size` spans files; a line longer than it gets one alone).
   */
  private writeSplit(bytes: Uint8Array): void {
    const max = this.settings.size;
    let pos = 0;
    while (pos < bytes.length) {
      const left = bytes.length - pos;
      let take = left;
      if (this.size + left > max) {
        const room = Math.max(0, max - this.size);
        const newline = bytes.subarray(pos, pos + room).lastIndexOf(0x0a);
        if (newline >= 0) take = newline + 1;
        else if (this.size > 0) {
          this.rotate();
          continue;
        } else {
          const end = bytes.indexOf(0x0a, pos);
          take = end < 0 ? left : end - pos + 1;
        }
      }
      writeAll(this.file!, bytes.subarray(pos, pos + take));
      this.size += take;
      pos += take;
    }
  }

  private open(): void {
    const { file, fileMode } = this.settings;
    const handle = Deno.openSync(file, { append: true, create: true, mode: fileMode });
    try {
      this.size = handle.statSync().size;
      // The umask may have taken bits off a new file; the configured mode is what it gets.
      if (this.size === 0) Deno.chmodSync(file, fileMode);
    } catch (e) {
      handle.close();
      throw e;
    }
    this.file = handle;
  }

  /** FILE → FILE.1 → … → FILE.N (the oldest dropped), then a new FILE. */
  private rotate(): void {
    const { file, num } = this.settings;
    this.file?.close();
    this.file = undefined;
    for (let n = num - 1; n >= 1; n--) {
      try {
        Deno.renameSync(`${file}.${n}`, `${file}.${n + 1}`);
      } catch {
        // that generation does not exist yet
      }
    }
    Deno.renameSync(file, `${file}.1`);
    this.open();
  }

  /** Closes the file (what was batched is written first). */
  close(): void {
    this.batchDone();
    this.file?.close();
    this.file = undefined;
  }
}

/** Writes all of `bytes` (a file write may take fewer). */
function writeAll(to: { writeSync(p: Uint8Array): number }, bytes: Uint8Array): void {
  let done = 0;
  while (done < bytes.length) done += to.writeSync(bytes.subarray(done));
}
