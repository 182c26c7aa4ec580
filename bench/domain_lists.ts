/**
 * Deterministic ad-list-like domain names for the rules benchmark (bench/rules.ts): a seeded PRNG
 * (mulberry32) draws names such as `ads-123.tracker-45.example-678.com` — one to three labels under
 * many distinct second-level names, over a dozen TLDs (`co.uk` among them) — about 10 % bare
 * second-level names (`adserv-9123.net`, which block everything under them), the rest one or two
 * labels below one. The same seed and count give the same list, in the same order.
 *
 * `unlistedNames` draws names from the same second-level space with a different first-label
 * vocabulary (`www-12.tracker-45.com`) and keeps only those that no listed entry covers (neither
 * the name nor any suffix of it is listed), so a lookup walks deep into the same trie and misses.
 *
 * @module
 */

/** A seeded 32-bit PRNG (mulberry32): `next()` returns an integer in [0, 2^32). */
export class Mulberry32 {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0;
  }
  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }
  /** An integer in [0, n). */
  below(n: number): number {
    return this.next() % n;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.below(items.length)];
  }
}

const TLDS = [
  "com",
  "com",
  "com",
  "com",
  "net",
  "net",
  "org",
  "io",
  "info",
  "xyz",
  "de",
  "ru",
  "cn",
  "co.uk",
];
const SLD_WORDS = [
  "example",
  "tracker",
  "adserv",
  "metrics",
  "pixel",
  "analytics",
  "banner",
  "clickstat",
  "promo",
  "adnet",
  "telemetry",
  "affiliate",
  "popunder",
  "doubleads",
  "mediaserve",
  "counter",
];
/** Second-level names: SLD_WORDS × SLD_NUMBERS × TLDS, ~44 million, far more than any list. */
const SLD_NUMBERS = 200_000;
const LISTED_LABELS = [
  "ads",
  "ad",
  "track",
  "pixel",
  "stats",
  "log",
  "beacon",
  "telemetry",
  "click",
  "banner",
];
const UNLISTED_LABELS = ["www", "img", "static", "api", "mail", "cdn", "m", "shop"];

function sld(r: Mulberry32): string {
  return `${r.pick(SLD_WORDS)}-${r.below(SLD_NUMBERS)}.${r.pick(TLDS)}`;
}

function label(r: Mulberry32, words: readonly string[]): string {
  return `${r.pick(words)}-${r.below(1000)}`;
}

/** `count` distinct listed names for `seed`, in generation order. */
export function listedNames(count: number, seed = 11): string[] {
  const r = new Mulberry32(seed);
  const seen = new Set<string>();
  const out: string[] = [];
  while (out.length < count) {
    const base = sld(r);
    const kind = r.below(10);
    const name = kind === 0
      ? base
      : kind < 7
      ? `${label(r, LISTED_LABELS)}.${base}`
      : `${label(r, LISTED_LABELS)}.${label(r, LISTED_LABELS)}.${base}`;
    if (seen.has(name)) continue;
    seen.add(name);
    out.push(name);
  }
  return out;
}

/** Whether `name` or any of its parent names is in `listed`. */
export function covered(name: string, listed: ReadonlySet<string>): boolean {
  for (let at = 0; at >= 0; at = name.indexOf(".", at) + 1 || -1) {
    if (listed.has(name.slice(at))) return true;
  }
  return false;
}

/**
 * `count` distinct names that no entry of `listed` covers, half of them under second-level names
 * that occur in the list (taken from `listed` entries), half under fresh ones.
 */
export function unlistedNames(
  count: number,
  listed: readonly string[],
  listedSet: ReadonlySet<string>,
  seed = 12,
): string[] {
  const r = new Mulberry32(seed);
  const seen = new Set<string>();
  const out: string[] = [];
  while (out.length < count) {
    let base: string;
    if (r.below(2) === 0) {
      const entry = listed[r.below(listed.length)];
      // the entry's registrable part: its last two labels, three under co.uk
      const parts = entry.split(".");
      base = parts.slice(entry.endsWith(".co.uk") ? -3 : -2).join(".");
    } else {
      base = sld(r);
    }
    const name = `${label(r, UNLISTED_LABELS)}.${base}`;
    if (seen.has(name) || covered(name, listedSet)) continue;
    seen.add(name);
    out.push(name);
  }
  return out;
}

/** The TLDs the names end in (for an upstream that answers them all). */
export const BENCH_TLDS = [...new Set(TLDS.map((t) => t.split(".").at(-1)!))];
