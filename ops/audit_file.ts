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
import type { AuditConfig } from "../config/schema.ts";
import { addressText, scanAnswerAddresses } from "../dns/answer_addresses.ts";
import { Reason } from "../resolver/query_context.ts";
import type { QueryRecordConsumer, QueryRecords } from "../server/query_recorder.ts";
import type { Logger } from "./log.ts";
import { rcodeName, REASON_NAMES, type RecordLookups, ruleWhere } from "./query_record_lookups.ts";

/** What the audit file needs of the configuration. */
export type AuditSettings = Pick<AuditConfig, "file" | "size" | "num" | "fileMode" | "console" | "soa">;

const encoder = new TextEncoder();

function two(n: number): string {
  return n < 10 ? `0${n}` : String(n);
}

/** Formats audit lines; remembers the last second's time text, as most lines share it. */
export class AuditLineFormatter {
  private second = -1;
  private secondText = "";
  private addresses: string[] = [];
  private readonly collect = (wire: Uint8Array, offset: number, size: 4 | 16) => {
    this.addresses.push(addressText(wire, offset, size));
  };

  constructor(private readonly lookups: RecordLookups, private readonly withSoa: boolean) {}

  /** `[YYYY-MM-DD HH:MM:SS,mmm]` in local time, as SmartDNS writes it. */
  time(ms: number): string {
    const second = Math.floor(ms / 1000);
    if (second !== this.second) {
      const d = new Date(second * 1000);
      this.second = second;
      this.secondText = `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())} ${
        two(d.getHours())
      }:${two(d.getMinutes())}:${two(d.getSeconds())}`;
    }
    const milli = Math.floor(ms) - second * 1000;
    return `[${this.secondText},${milli < 10 ? "00" : milli < 100 ? "0" : ""}${milli}]`;
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

  /** Slot `i` as one line (with its newline), or undefined when it is not audited (an SOA without audit-SOA). */
  line(r: QueryRecords, i: number): string | undefined {
    const answer = r.answerBytes(i);
    this.addresses.length = 0;
    const scan = scanAnswerAddresses(answer, answer.length, this.collect);
    let result = this.addresses.join(", ");
    const code = r.reason[i];
    const soa = scan.addresses === 0 &&
      (scan.soa || code === Reason.BLOCKED || code === Reason.SOA);
    if (soa) {
      if (!this.withSoa) return undefined;
      result = "soa";
    }
    const elapsedUs = r.elapsedUs[i];
    const client = r.clientText(i) || "API";
    return `${this.time(r.time[i])} ${client} query ${r.nameText(i)}, type ${r.qtype[i]}, time ${
      Math.floor(elapsedUs / 1000)
    }ms, speed: -0.1ms, group ${this.lookups.upstreamGroup(r, i)}, result ${result}; rcode ${
      rcodeName(r.rcode[i])
    }, reason ${this.reason(r, i)}, elapsed ${(elapsedUs / 1000).toFixed(3)}ms\n`;
  }
}

/** Appends audit lines to a file, one write per batch, rotating it at its size. */
export class AuditFile implements QueryRecordConsumer {
  /** Lines written (to the file, or to stderr only), and lines lost to write errors. */
  lines = 0;
  failed = 0;
  private readonly formatter: AuditLineFormatter;
  private batch: string[] = [];
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
    const line = this.formatter.line(records, i);
    if (line !== undefined) this.batch.push(line);
  }

  batchDone(): void {
    if (this.batch.length === 0) return;
    const text = this.batch.join("");
    const count = this.batch.length;
    this.batch = [];
    const bytes = encoder.encode(text);
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
