/**
 * The reader of domain list files (`domain-set -name N -type list -file F`): SmartDNS's own one
 * name a line, hosts files, and AdGuard/uBlock DNS filter lists. Lists can hold a million lines,
 * so a file is scanned as bytes and each name is handed to a {@link DomainSink} in place, with no
 * string made per line; only names with non-ASCII letters (converted to punycode), capitals or a
 * problem take a slower path.
 *
 * The format is detected per file from its first 100 meaningful (non-blank, non-`#`) lines:
 * - adblock, if any of them is an adblock rule or header: `[Adblock Plus 2.0]`, `! comment`, a
 *   rule opening with `||`, `|` or `@@`, a cosmetic rule (`##`, `#@#`, `#?#`, `#$#`, `#%#`) or a
 *   name closed by `^` (at the end, or before `$` or `|`);
 * - hosts, if more of them open with an IP address and a space than not;
 * - plain otherwise.
 *
 * @module
 */
import { domainToASCII } from "node:url";

/** The syntax of a list file. */
export type ListFormat = "plain" | "hosts" | "adblock";

/** Which names an entry covers, as DomainTable's scopes: the name and below, only below, only the name. */
export type ListScope = "both" | "sub" | "self";

/**
 * A line that could not be read, at `file:line:col` (col counts characters from 1); line and col
 * are 0 for a problem with the file as a whole. Fits where a `SourcePosition` is wanted.
 */
export interface ListProblem {
  readonly file: string;
  readonly line: number;
  readonly col: number;
  readonly reason: string;
}

/** What a scan found. */
export interface ListScan {
  readonly format: ListFormat;
  /** Lines in the file. */
  readonly lines: number;
  /** Names handed to the sink as "block". */
  readonly domains: number;
  /** Names handed to the sink as "exception" (adblock `@@` rules). */
  readonly exceptions: number;
  /**
   * Well-formed entries that name no domain this reader can use: adblock rules with modifiers
   * other than `$important`, cosmetic, regex and URL rules; v2ray `keyword:`/`regexp:`/`include:`
   * lines; loopback names in hosts files. Comments and blank lines are not counted.
   */
  readonly skipped: number;
  /** Every problem found, also those past `maxProblems`. */
  readonly problemCount: number;
  /** The first `maxProblems` problems, in file order. */
  readonly problems: ListProblem[];
}

/**
 * Receives one listed name, in `src[start, end)`: lower-case ASCII (IDNs as punycode), without a
 * scope prefix or trailing dot. `kind` is "block" for a listed name, "exception" for an adblock
 * `@@` rule. `src` may be the file or a scratch buffer and is valid only during the call.
 */
export type DomainSink = (
  src: Uint8Array,
  start: number,
  end: number,
  kind: "block" | "exception",
  scope: ListScope,
) => void;

/** Options of {@link scanDomainList}. */
export interface ScanOptions {
  /** Most problems kept in {@link ListScan.problems} (all are counted); 20 unless set. */
  readonly maxProblems?: number;
}

// Byte classes.
const OTHER = 0; // not allowed in a name
const LABEL = 1; // a-z 0-9 - _
const UPPER = 2; // A-Z
const DOT = 3;
const HIGH = 4; // non-ASCII: part of an IDN
const STAR = 5;
const CLASS = new Uint8Array(256);
for (let c = 0; c < 256; c++) {
  CLASS[c] = (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x5f
    ? LABEL
    : c >= 0x41 && c <= 0x5a
    ? UPPER
    : c === 0x2e
    ? DOT
    : c === 0x2a
    ? STAR
    : c >= 0x80
    ? HIGH
    : OTHER;
}

/** Bytes that end a name: whitespace and `#` in plain and hosts lines. */
const END_PLAIN = new Uint8Array(256);
for (const c of [0x20, 0x09, 0x0b, 0x0c, 0x0d, 0x23]) END_PLAIN[c] = 1;
/** Bytes that end a name in an adblock rule: those and `^`, `$`, `|`. */
const END_ADBLOCK = END_PLAIN.slice();
for (const c of [0x5e, 0x24, 0x7c]) END_ADBLOCK[c] = 1;

const LF = 0x0a;
const CR = 0x0d;
const SPACE = 0x20;
const TAB = 0x09;
const HASH = 0x23;
const STAR_BYTE = 0x2a;

/** Whether `c` is a blank inside a line. */
function blank(c: number): boolean {
  return c === SPACE || c === TAB || c === 0x0b || c === 0x0c || c === CR;
}

// Outcomes of reading a name.
const OK = 0;
const EMPTY = 1;
const EMPTY_LABEL = 2;
const LONG_LABEL = 3;
const TOO_LONG = 4;
const BAD_CHAR = 5;
const BAD_STAR = 6;
const BAD_IDN = 7;
const NOT_UTF8 = 8;

const REASONS = [
  "",
  "no name",
  "an empty label",
  "a label longer than 63 bytes",
  "longer than 253 bytes",
  "",
  '"*" may only open a name, as "*."',
  "not a valid international name",
  "not UTF-8 text",
];

const strictDecoder = new TextDecoder("utf-8", { fatal: true });
const looseDecoder = new TextDecoder();
const encoder = new TextEncoder();

/** Meaningful lines read to detect the format. */
const DETECT_LINES = 100;
/** Bytes read to tell text from binary. */
const SAMPLE_BYTES = 8192;

/**
 * Reads the list in `bytes` (the contents of `file`, named in problems), handing each listed name
 * to `sink`. A bad line is a problem and the scan goes on; a file that is not text is one problem
 * and no names.
 */
export function scanDomainList(
  bytes: Uint8Array,
  file: string,
  sink: DomainSink,
  options: ScanOptions = {},
): ListScan {
  const scanner = new Scanner(bytes, file, sink, options.maxProblems ?? 20);
  return scanner.scan();
}

/** The format of the list in `bytes`, by the rules in the module doc. */
export function detectListFormat(bytes: Uint8Array): ListFormat {
  let hosts = 0;
  let other = 0;
  let pos = bomLength(bytes);
  for (let seen = 0; pos < bytes.length && seen < DETECT_LINES;) {
    let end = bytes.indexOf(LF, pos);
    if (end < 0) end = bytes.length;
    let s = pos;
    let e = end;
    pos = end + 1;
    while (s < e && blank(bytes[s])) s++;
    while (e > s && blank(bytes[e - 1])) e--;
    if (s === e) continue;
    const c = bytes[s];
    if (c === HASH) {
      if (s + 1 < e && cosmeticMark(bytes[s + 1])) return "adblock";
      continue;
    }
    seen++;
    if (c === 0x21 || c === 0x7c || c === 0x5b) return "adblock"; // ! | [
    if (c === 0x40 && bytes[s + 1] === 0x40) return "adblock"; // @@
    if (findCosmetic(bytes, s, e) >= 0) return "adblock";
    if (caretRule(bytes, s, e)) return "adblock";
    const address = addressEnd(bytes, s, e);
    if (address > s && address < e) hosts++;
    else other++;
  }
  return hosts > other ? "hosts" : "plain";
}

/** 3 if `bytes` opens with a UTF-8 byte-order mark, else 0. */
function bomLength(bytes: Uint8Array): number {
  return bytes.length >= 3 && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf ? 3 : 0;
}

/** Whether `c` may follow `#` in a cosmetic rule's separator (`##`, `#@#`, `#?#`, `#$#`, `#%#`). */
function cosmeticMark(c: number): boolean {
  return c === HASH || c === 0x40 || c === 0x3f || c === 0x24 || c === 0x25;
}

/** Whether `bytes[s, e)` has a name closed by `^` (`x.example^`, `x.example^$important`). */
function caretRule(bytes: Uint8Array, s: number, e: number): boolean {
  for (let i = s + 1; i < e; i++) {
    if (bytes[i] !== 0x5e || CLASS[bytes[i - 1]] !== LABEL) continue;
    if (i + 1 === e || bytes[i + 1] === 0x24 || bytes[i + 1] === 0x7c) return true;
  }
  return false;
}

/** Where `byte` first is in `bytes[s, e)`, or -1. */
function indexIn(bytes: Uint8Array, byte: number, s: number, e: number): number {
  for (let i = s; i < e; i++) if (bytes[i] === byte) return i;
  return -1;
}

/** Where a cosmetic separator starts in `bytes[s, e)`, or -1. */
function findCosmetic(bytes: Uint8Array, s: number, e: number): number {
  for (let i = s; i + 1 < e; i++) if (bytes[i] === HASH && cosmeticMark(bytes[i + 1])) return i;
  return -1;
}

/**
 * If `bytes[s, e)` opens with an IPv4 or IPv6 address followed by a blank or the end, the end of
 * the address; else `s`.
 */
function addressEnd(bytes: Uint8Array, s: number, e: number): number {
  let i = s;
  let dots = 0;
  let colons = 0;
  let hex = false;
  for (; i < e; i++) {
    const c = bytes[i];
    if (c >= 0x30 && c <= 0x39) continue;
    if (c === 0x2e) dots++;
    else if (c === 0x3a) colons++;
    else if ((c | 0x20) >= 0x61 && (c | 0x20) <= 0x66) hex = true;
    else if (c === 0x25 && colons >= 2) { // %zone
      while (i < e && !blank(bytes[i])) i++;
      break;
    } else break;
  }
  if (i === s || (i < e && !blank(bytes[i]))) return s;
  if (colons >= 2) return i;
  return dots === 3 && !hex ? i : s;
}

/** Names hosts files list for the machine itself, not to block. */
const LOOPBACK_NAMES = [
  "localhost",
  "localhost.localdomain",
  "local",
  "broadcasthost",
  "0.0.0.0",
].map((n) => encoder.encode(n));
const IP6_DASH = encoder.encode("ip6-");

/** Whether `src[start, end)` equals `word`. */
function same(src: Uint8Array, start: number, end: number, word: Uint8Array): boolean {
  if (end - start !== word.length) return false;
  for (let i = 0; i < word.length; i++) if (src[start + i] !== word[i]) return false;
  return true;
}

/** Whether the (lower-cased) name in `src[start, end)` is one of {@link LOOPBACK_NAMES} or `ip6-*`. */
function loopback(src: Uint8Array, start: number, end: number): boolean {
  if (end - start >= 4 && same(src, start, start + 4, IP6_DASH)) return true;
  for (const name of LOOPBACK_NAMES) if (same(src, start, end, name)) return true;
  return false;
}

/** v2ray-style prefixes (`domain:x`); null: a form that names no domain (skipped). */
const V2RAY_PREFIXES = new Map<string, ListScope | null>([
  ["domain", "both"],
  ["full", "self"],
  ["keyword", null],
  ["regexp", null],
  ["include", null],
]);

const IMPORTANT = encoder.encode("important");

/** One scan of one file. */
class Scanner {
  private format: ListFormat = "plain";
  private lines = 0;
  private domains = 0;
  private exceptions = 0;
  private skipped = 0;
  private problemCount = 0;
  private readonly problems: ListProblem[] = [];
  /** Start of the line being read. */
  private lineStart = 0;
  /**
   * Set by {@link name}: the name read is `nameBuf[nameStart, nameEnd)` (the file, or
   * {@link scratch} when it had to be rewritten), and reading stopped at `stop` in the file.
   */
  private nameBuf: Uint8Array;
  private nameStart = 0;
  private nameEnd = 0;
  private stop = 0;
  /** Set by {@link name} on a problem: where it is. */
  private at = 0;
  private readonly scratch = new Uint8Array(1024);

  constructor(
    private readonly src: Uint8Array,
    private readonly file: string,
    private readonly sink: DomainSink,
    private readonly maxProblems: number,
  ) {
    this.nameBuf = src;
  }

  scan(): ListScan {
    const src = this.src;
    const binary = notText(src);
    if (binary) {
      this.problemCount = 1;
      this.problems.push({ file: this.file, line: 0, col: 0, reason: binary });
    } else {
      this.format = detectListFormat(src);
      const n = src.length;
      let pos = bomLength(src);
      while (pos < n) {
        let end = src.indexOf(LF, pos);
        if (end < 0) end = n;
        this.lines++;
        this.lineStart = pos;
        let s = pos;
        let e = end;
        while (s < e && blank(src[s])) s++;
        while (e > s && blank(src[e - 1])) e--;
        if (s < e) {
          if (this.format === "plain") this.plain(s, e);
          else if (this.format === "hosts") this.hosts(s, e);
          else this.adblock(s, e);
        }
        pos = end + 1;
      }
    }
    return {
      format: this.format,
      lines: this.lines,
      domains: this.domains,
      exceptions: this.exceptions,
      skipped: this.skipped,
      problemCount: this.problemCount,
      problems: this.problems,
    };
  }

  /** A plain line, `src[s, e)` trimmed and not blank. */
  private plain(s: number, e: number): void {
    const src = this.src;
    const c = src[s];
    if (c === HASH) return;
    let scope: ListScope = "both";
    let from = s;
    if (c === STAR_BYTE && src[s + 1] === 0x2e) {
      from = s + 2;
      scope = "sub";
    } else if (c === 0x2d && src[s + 1] === 0x2e) {
      from = s + 2;
      scope = "self";
    } else if (c === 0x2e) {
      from = s + 1;
    }
    let result = this.name(src, from, e, END_PLAIN);
    if (result === BAD_CHAR && src[this.at] === 0x3a && from === s) {
      // domain:x, full:x, keyword:x …
      const prefix = looseDecoder.decode(src.subarray(s, this.at)).toLowerCase();
      const v2ray = V2RAY_PREFIXES.get(prefix);
      if (v2ray === null) return void this.skipped++;
      if (v2ray !== undefined) {
        scope = v2ray;
        from = this.at + 1;
        result = this.name(src, from, e, END_PLAIN);
      }
    }
    if (result !== OK) return this.nameProblem(result, s, from, e, END_PLAIN);
    let i = this.stop;
    while (i < e && blank(src[i])) i++;
    if (i < e && src[i] !== HASH) {
      return this.problem(
        i,
        `"${this.text(s, this.commentStart(s, e))}" is not a domain name (one name a line)`,
      );
    }
    this.deliver("block", scope);
  }

  /** A hosts line: an address and names, or (leniently) a plain line. */
  private hosts(s: number, e: number): void {
    const src = this.src;
    if (src[s] === HASH) return;
    const address = addressEnd(src, s, e);
    if (address === s) return this.plain(s, e);
    let i = address;
    let names = 0;
    for (;;) {
      while (i < e && blank(src[i])) i++;
      if (i === e || src[i] === HASH) break;
      const result = this.name(src, i, e, END_PLAIN);
      names++;
      if (result !== OK) {
        this.nameProblem(result, i, i, e, END_PLAIN);
        while (i < e && !END_PLAIN[src[i]]) i++;
        continue;
      }
      if (loopback(this.nameBuf, this.nameStart, this.nameEnd)) this.skipped++;
      else this.deliver("block", "both");
      i = this.stop;
    }
    if (names === 0) this.problem(s, `"${this.text(s, address)}" is an address with no name after it`);
  }

  /** An adblock line. */
  private adblock(s: number, e: number): void {
    const src = this.src;
    const c = src[s];
    if (c === 0x21 || c === 0x5b) return; // ! comment, [Adblock Plus 2.0]
    if (c === HASH) {
      if (s + 1 < e && cosmeticMark(src[s + 1])) this.skipped++;
      return;
    }
    if (c === 0x2f) return void this.skipped++; // /regex/
    let kind: "block" | "exception" = "block";
    let i = s;
    if (c === 0x40 && src[s + 1] === 0x40) {
      kind = "exception";
      i = s + 2;
    }
    let scope: ListScope = "both";
    let anchored = true;
    if (src[i] === 0x7c && src[i + 1] === 0x7c) {
      i += 2;
      if (src[i] === STAR_BYTE && src[i + 1] === 0x2e) {
        i += 2;
        scope = "sub";
      }
    } else if (src[i] === 0x7c) {
      i += 1;
      scope = "self";
    } else {
      anchored = false;
      if (findCosmetic(src, s, e) >= 0) return void this.skipped++;
      if (kind === "block" && addressEnd(src, s, e) > s) return this.hosts(s, e);
    }
    const result = this.name(src, i, e, END_ADBLOCK);
    let p = this.stop;
    if (result === BAD_CHAR || result === BAD_STAR) {
      // A URL or pattern rule (|http://x/, ||ad*.example^, /banner/): well-formed, not a domain.
      const bad = src[this.at];
      if (bad > SPACE && bad < 0x7f) return void this.skipped++;
    }
    if (result !== OK) return this.nameProblem(result, i, i, e, END_ADBLOCK);
    if (p < e && src[p] === 0x5e) p++; // ^
    if (p < e && src[p] === 0x7c) p++; // |
    if (p < e && src[p] === 0x24) { // $modifiers
      if (!same(src, p + 1, e, IMPORTANT)) return void this.skipped++;
      p = e;
    }
    if (p < e) {
      if (blank(src[p])) return this.problem(p, `"${this.text(s, e)}" is not a domain rule (a space inside)`);
      return void this.skipped++;
    }
    // A bare line is a name only if it has a dot inside (not `_adserver.`, a pattern rule).
    if (!anchored && indexIn(this.nameBuf, 0x2e, this.nameStart, this.nameEnd) < 0) {
      return void this.skipped++;
    }
    this.deliver(kind, scope);
  }

  /**
   * Reads a name from `buf[s, e)` up to a byte in `stopAt`, setting {@link nameBuf} and the rest,
   * or {@link at} on a problem. Names with capitals or non-ASCII letters are moved to
   * {@link scratch}, lower-cased or in punycode.
   */
  private name(buf: Uint8Array, s: number, e: number, stopAt: Uint8Array): number {
    let labelStart = s;
    let upper = false;
    let i = s;
    for (; i < e; i++) {
      const k = CLASS[buf[i]];
      if (k === LABEL) continue;
      if (k === DOT) {
        if (i === labelStart) return this.fail(EMPTY_LABEL, i);
        if (i - labelStart > 63) return this.fail(LONG_LABEL, labelStart);
        labelStart = i + 1;
      } else if (k === UPPER) {
        upper = true;
      } else if (k === HIGH) {
        return this.international(buf, s, e, stopAt);
      } else if (stopAt[buf[i]]) {
        break;
      } else {
        return this.fail(k === STAR ? BAD_STAR : BAD_CHAR, i);
      }
    }
    this.stop = i;
    let end = i;
    if (i === labelStart) {
      if (i === s) return this.fail(EMPTY, s);
      end = i - 1; // the trailing dot
    } else if (i - labelStart > 63) {
      return this.fail(LONG_LABEL, labelStart);
    }
    if (end - s > 253) return this.fail(TOO_LONG, s);
    if (upper) {
      const out = this.scratch;
      for (let j = s; j < end; j++) {
        const c = buf[j];
        out[j - s] = c >= 0x41 && c <= 0x5a ? c | 0x20 : c;
      }
      this.nameBuf = out;
      this.nameStart = 0;
      this.nameEnd = end - s;
    } else {
      this.nameBuf = buf;
      this.nameStart = s;
      this.nameEnd = end;
    }
    return OK;
  }

  /** The slow path of {@link name} for a name with non-ASCII bytes: to punycode, then checked. */
  private international(buf: Uint8Array, s: number, e: number, stopAt: Uint8Array): number {
    let stop = s;
    while (stop < e && !stopAt[buf[stop]]) stop++;
    let text: string;
    try {
      text = strictDecoder.decode(buf.subarray(s, stop));
    } catch {
      return this.fail(NOT_UTF8, s);
    }
    const ascii = domainToASCII(text);
    if (ascii === "") return this.fail(BAD_IDN, s);
    if (ascii.length > 253 + 1) return this.fail(TOO_LONG, s);
    const { written } = encoder.encodeInto(ascii, this.scratch);
    const result = this.name(this.scratch, 0, written, END_PLAIN);
    if (result !== OK) return this.fail(result === BAD_CHAR ? BAD_IDN : result, s);
    this.stop = stop;
    return OK;
  }

  private fail(result: number, at: number): number {
    this.at = at;
    return result;
  }

  /** Hands the name just read to the sink. */
  private deliver(kind: "block" | "exception", scope: ListScope): void {
    this.sink(this.nameBuf, this.nameStart, this.nameEnd, kind, scope);
    if (kind === "block") this.domains++;
    else this.exceptions++;
  }

  /**
   * Records the problem `result` of {@link name} for the name starting at `s`, quoting the entry
   * from `shown`.
   */
  private nameProblem(result: number, shown: number, s: number, e: number, stopAt: Uint8Array): void {
    let stop = s;
    while (stop < e && !stopAt[this.src[stop]]) stop++;
    const text = this.text(shown, Math.min(e, Math.max(stop, this.at + 1)));
    const at = result === NOT_UTF8 || result === BAD_IDN || result === TOO_LONG ? s : this.at;
    const reason = result === BAD_CHAR
      ? `"${text}" is not a domain name (${this.charName(this.at)} cannot be in a name)`
      : result === NOT_UTF8
      ? `the line is not UTF-8 text`
      : `"${text}" is not a domain name (${REASONS[result]})`;
    this.problem(at, reason);
  }

  /** The character at `at`, quoted, or named when invisible. */
  private charName(at: number): string {
    const c = this.src[at];
    if (c === SPACE || c === TAB) return "a space";
    if (c < SPACE || c === 0x7f) return `control character 0x${c.toString(16).padStart(2, "0")}`;
    return `"${String.fromCharCode(c)}"`;
  }

  /** Where a `#` comment starts in `src[s, e)`, or `e`. */
  private commentStart(s: number, e: number): number {
    const hash = indexIn(this.src, HASH, s, e);
    let end = hash >= 0 ? hash : e;
    while (end > s && blank(this.src[end - 1])) end--;
    return end;
  }

  /** `src[s, e)` as text for a message, shortened when long. */
  private text(s: number, e: number): string {
    const text = looseDecoder.decode(this.src.subarray(s, Math.min(e, s + 300)));
    return text.length > 80 ? text.slice(0, 77) + "…" : text;
  }

  /** Records a problem at byte `at` of the current line. */
  private problem(at: number, reason: string): void {
    this.problemCount++;
    if (this.problems.length >= this.maxProblems) return;
    let col = 1;
    for (let i = this.lineStart; i < at; i++) if ((this.src[i] & 0xc0) !== 0x80) col++;
    this.problems.push({ file: this.file, line: this.lines, col, reason });
  }
}

/** Why `bytes` is not a text file, or null when it is. */
function notText(bytes: Uint8Array): string | null {
  if (bytes.indexOf(0) >= 0) return "not a text file (it holds NUL bytes)";
  const n = Math.min(bytes.length, SAMPLE_BYTES);
  let bad = 0;
  for (let i = 0; i < n;) {
    const c = bytes[i];
    if (c < 0x80) {
      if ((c < SPACE && c !== LF && c !== CR && c !== TAB && c !== 0x0b && c !== 0x0c) || c === 0x7f) bad++;
      i++;
      continue;
    }
    const length = c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
    let valid = length > 0 && i + length <= bytes.length;
    for (let j = 1; valid && j < length; j++) valid = (bytes[i + j] & 0xc0) === 0x80;
    if (valid) i += length;
    else {
      bad++;
      i++;
    }
  }
  return bad * 10 > n ? "not a text file (mostly not UTF-8 text)" : null;
}
