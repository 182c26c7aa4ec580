/**
 * The domain matcher every domain rule shares (SmartDNS's `/domain/` argument): a trie of
 * reversed labels (`com` → `example` → `www`) kept as one hash table of edges in typed arrays,
 * with the labels in one byte store, so a million names cost a few typed arrays and no object per
 * name. A lookup reads the question's wire bytes in place and builds no string.
 *
 * Matching follows SmartDNS (`src/dns_conf/domain_rule.c` and its test-rule.cc):
 * - `/example.com/` (scope `both`) covers example.com and every name below it;
 * - `/*.example.com/` (`sub`) covers the names below only, `/-.example.com/` (`self`) the name only;
 * - `/*a.com/` (a `*` not followed by a dot) is a string-suffix wildcard over the label that
 *   precedes `com`: a.com, xa.com and b.a.com, not ab.com;
 * - the most specific rule wins, kind by kind: values are merged along the path by the caller's
 *   `merge(outer, inner)`, the inner (deeper) one overriding. Merges are done once in
 *   {@link DomainTable.finish}, so a lookup only walks to the deepest node the name reaches.
 *
 * @module
 */
import { HEADER_LENGTH } from "../dns/wire.ts";

/** No rule applies. */
export const NO_RULE = -1;

/** Which names a rule on a domain covers: the domain and below, only below, only the domain. */
export type RuleScope = "both" | "sub" | "self";

/** Combines two rule values, `inner` (the more specific) overriding `outer`; either may be NO_RULE. */
export type RuleMerge = (outer: number, inner: number) => number;

const NONE = -1;
const ROOT = 0;
/** Int32 fields per node in {@link DomainTable}'s node array. */
const NODE_FIELDS = 3;
const PARENT = 0;
const LABEL_AT = 1;
const LABEL_LENGTH = 2;
/**
 * Int32 fields per slot of the edge table (open addressing, linear probing): the parent, the child
 * node with its label length in the top 6 bits, and the label's first 8 bytes. A lookup of a label
 * of up to 8 bytes reads one slot and nothing else: one cache miss per label on a large table.
 */
const SLOT_FIELDS = 4;
const SLOT_PARENT = 0;
const SLOT_NODE = 1;
const SLOT_HASH = 2;
const SLOT_LABEL_AT = 3;
const NODE_BITS = 26;
const NODE_MASK = (1 << NODE_BITS) - 1;
/** Most slots in use before the edge table doubles. */
const SLOT_LOAD = 0.7;
/** Most labels a name can have (255 bytes). */
const MAX_LABELS = 128;
/** Offsets of the labels of the name being matched (module scratch: lookups never overlap). */
const LABELS = new Int32Array(MAX_LABELS);
const encoder = new TextEncoder();

/** A string-suffix wildcard (`*a.com`) hanging off the node of `com`. */
interface SuffixRule {
  readonly suffix: Uint8Array;
  readonly value: number;
}

/** Lower-cases an ASCII letter. */
function lower(c: number): number {
  return c >= 0x41 && c <= 0x5a ? c | 0x20 : c;
}

/** A reversed-label trie of domain rules; build with {@link add}, then {@link finish}, then match. */
export class DomainTable {
  private count = 1; // node 0 is the root
  /** Per node, side by side: parent, label offset, label length (nodes in creation order). */
  private node = new Int32Array(1024 * NODE_FIELDS);
  /** Nodes the arrays have room for. */
  private capacity = 1024;
  private slots = new Int32Array(2048 * SLOT_FIELDS).fill(NONE);
  private slotMask = 2047;
  /** Per node: its own `both` rule; the rarer `sub` and `self` rules are kept aside by node. */
  private both = new Int32Array(1024).fill(NO_RULE);
  private readonly sub = new Map<number, number>();
  private readonly self = new Map<number, number>();
  /**
   * After finish, per node: an index into `merged`, whose pairs are the value for names strictly
   * below the node and the value for the node's own name. Few distinct pairs exist (a million
   * names of one list share one), so a node costs 4 bytes for them.
   */
  private effective = new Int32Array(0);
  private merged = new Int32Array(0);
  private labels = new Uint8Array(16384);
  private labelBytes = 0;
  private readonly suffixRules = new Map<number, SuffixRule[]>();
  /** The free slot and label head the last failed find stopped at (for the create that follows). */
  private lastSlot = 0;
  private lastHash = 0;
  private finished = false;

  constructor(private readonly merge: RuleMerge) {
    this.node[ROOT * NODE_FIELDS + PARENT] = NONE;
  }

  /** Nodes in the trie, the root included. */
  get nodes(): number {
    return this.count;
  }

  /** Bytes held by the trie's arrays (for memory figures). */
  get byteSize(): number {
    const perNode = NODE_FIELDS * 4 + 4;
    return this.capacity * perNode + this.effective.length * 4 + this.merged.length * 4 +
      this.slots.length * 4 + this.labels.length + (this.sub.size + this.self.size) * 40;
  }

  /**
   * Adds a rule for `domain`, given as SmartDNS writes it inside `/…/`: dotted, optionally with a
   * `*.`, `-.` or `*` prefix (which set the scope and override `scope`); "" or "." is every name.
   * A second rule on the same domain and scope is merged over the first. Throws on a bad name.
   */
  add(domain: string, value: number, scope: RuleScope = "both"): void {
    let name = domain.trim().toLowerCase();
    if (name.startsWith("*-.")) {
      this.add(name.slice(3), value, "sub");
      this.add(name.slice(3), value, "self");
      return;
    }
    if (name.startsWith("*.")) [name, scope] = [name.slice(2), "sub"];
    else if (name.startsWith("-.")) [name, scope] = [name.slice(2), "self"];
    else if (name.startsWith("*")) return this.addSuffix(name.slice(1), value);
    const bytes = encoder.encode(name);
    const problem = this.addBytes(bytes, 0, bytes.length, value, scope);
    if (problem) throw new Error(`"${domain}": ${problem}`);
  }

  /**
   * Adds a rule for the dotted name in `src[start, end)` (no prefix; leading dots and one trailing
   * dot are ignored; an empty name is every name), reading the bytes in place: the fast way for
   * list files. Returns why the name is unusable, or null.
   */
  addBytes(
    src: Uint8Array,
    start: number,
    end: number,
    value: number,
    scope: RuleScope = "both",
  ): string | null {
    while (start < end && src[start] === 0x2e) start++;
    if (end > start && src[end - 1] === 0x2e) end--;
    if (end - start > 253) return "name longer than 253 characters";
    let node = ROOT;
    let labelEnd = end;
    for (let i = end - 1; start < end && i >= start - 1; i--) {
      if (i >= start && src[i] !== 0x2e) continue;
      const length = labelEnd - i - 1;
      if (length === 0) return "empty label";
      if (length > 63) return "label longer than 63 bytes";
      const found = this.find(node, src, i + 1, length);
      node = found !== NONE ? found : this.create(node, src, i + 1, length);
      labelEnd = i;
    }
    if (scope === "both") {
      this.both[node] = this.both[node] === NO_RULE ? value : this.merge(this.both[node], value);
    } else {
      const own = scope === "sub" ? this.sub : this.self;
      own.set(node, this.merge(own.get(node) ?? NO_RULE, value));
    }
    this.finished = false;
    return null;
  }

  /** `*a.com`: names whose label before `com` ends with `a` (a.com, xa.com, b.xa.com). */
  private addSuffix(rest: string, value: number): void {
    const dot = rest.indexOf(".");
    const partial = dot < 0 ? rest : rest.slice(0, dot);
    const parentName = dot < 0 ? "" : rest.slice(dot + 1);
    if (partial === "") return this.add(parentName, value, "sub");
    const node = this.nodeFor(parentName === "" ? [] : parentName.split("."));
    const list = this.suffixRules.get(node) ?? [];
    list.push({ suffix: encoder.encode(partial), value });
    this.suffixRules.set(node, list);
    this.finished = false;
  }

  /** The node for `labels` (left to right as written), creating it and its parents as needed. */
  private nodeFor(labels: string[]): number {
    let node = ROOT;
    for (let i = labels.length - 1; i >= 0; i--) {
      const bytes = encoder.encode(labels[i]);
      if (bytes.length === 0) throw new Error(`"${labels.join(".")}" has an empty label`);
      if (bytes.length > 63) throw new Error(`"${labels[i]}" is longer than 63 bytes`);
      const found = this.find(node, bytes, 0, bytes.length);
      node = found !== NONE ? found : this.create(node, bytes, 0, bytes.length);
    }
    return node;
  }

  /** The child of `parent` whose label is `src[start, start + length)` (any case), or NONE. */
  private find(parent: number, src: Uint8Array, start: number, length: number): number {
    let h = (Math.imul(parent, 0x9e3779b1) ^ 0x811c9dc5) >>> 0;
    const end = start + length;
    for (let i = start; i < end; i++) {
      let c = src[i];
      if (c - 0x41 >>> 0 < 26) c |= 0x20;
      h = Math.imul(h ^ c, 0x01000193);
    }
    const slots = this.slots;
    const labels = this.labels;
    const mask = this.slotMask;
    const tagged = length << NODE_BITS;
    for (let slot = (h ^ (h >>> 15)) & mask;; slot = (slot + 1) & mask) {
      const f = slot * SLOT_FIELDS;
      const entry = slots[f + SLOT_NODE];
      if (entry === NONE) {
        this.lastSlot = slot;
        this.lastHash = h;
        return NONE;
      }
      if (
        slots[f + SLOT_HASH] === h && slots[f + SLOT_PARENT] === parent && (entry & ~NODE_MASK) === tagged
      ) {
        // The hash, parent and length agree; the label store settles it (one read for the label).
        const at = slots[f + SLOT_LABEL_AT] - start;
        let i = start;
        for (; i < end; i++) {
          let c = src[i];
          if (c - 0x41 >>> 0 < 26) c |= 0x20;
          if (labels[at + i] !== c) break;
        }
        if (i === end) return entry & NODE_MASK;
      }
    }
  }

  private create(parent: number, src: Uint8Array, start: number, length: number): number {
    if (this.count === this.capacity) this.grow();
    if (this.count >= NODE_MASK) throw new Error("too many names for one table");
    if (this.labelBytes + length > this.labels.length) {
      const bigger = new Uint8Array(Math.max(this.labels.length * 2, this.labelBytes + length, 1024));
      bigger.set(this.labels);
      this.labels = bigger;
    }
    const n = this.count++;
    const f = n * NODE_FIELDS;
    this.node[f + PARENT] = parent;
    this.node[f + LABEL_AT] = this.labelBytes;
    this.node[f + LABEL_LENGTH] = length;
    for (let i = 0; i < length; i++) this.labels[this.labelBytes + i] = lower(src[start + i]);
    this.labelBytes += length;
    // create always follows a failed find of the same label under the same parent: its free slot
    // and label head stand.
    this.fill(this.lastSlot, n, this.lastHash);
    if (this.count > (this.slotMask + 1) * SLOT_LOAD) this.rehash((this.slotMask + 1) * 2);
    return n;
  }

  /** Puts the edge into node `n` (whose label hashes to `hash`) in the free `slot`. */
  private fill(slot: number, n: number, hash: number): void {
    const f = slot * SLOT_FIELDS;
    this.slots[f + SLOT_PARENT] = this.node[n * NODE_FIELDS + PARENT];
    this.slots[f + SLOT_NODE] = n | (this.node[n * NODE_FIELDS + LABEL_LENGTH] << NODE_BITS);
    this.slots[f + SLOT_HASH] = hash;
    this.slots[f + SLOT_LABEL_AT] = this.node[n * NODE_FIELDS + LABEL_AT];
  }

  /**
   * Makes room for `nodes` nodes and `labelBytes` label bytes at once (a list file about to be
   * added), so loading a large list does not grow and rehash the arrays twenty times.
   */
  reserve(nodes: number, labelBytes = nodes * 8): void {
    while (this.capacity < nodes) this.grow();
    if (this.labels.length < labelBytes) {
      const bigger = new Uint8Array(labelBytes);
      bigger.set(this.labels.subarray(0, this.labelBytes));
      this.labels = bigger;
    }
    let slots = this.slotMask + 1;
    while (nodes > slots * SLOT_LOAD) slots *= 2;
    if (slots !== this.slotMask + 1) this.rehash(slots);
  }

  private grow(): void {
    const size = this.capacity * 2;
    const node = new Int32Array(size * NODE_FIELDS);
    node.set(this.node);
    this.node = node;
    const both = new Int32Array(size).fill(NO_RULE);
    both.set(this.both);
    this.both = both;
    this.capacity = size;
  }

  /** Rebuilds the edge table with `size` slots (a power of two). */
  private rehash(size: number): void {
    this.slots = new Int32Array(size * SLOT_FIELDS).fill(NONE);
    this.slotMask = size - 1;
    const node = this.node;
    for (let n = 1; n < this.count; n++) {
      const f = n * NODE_FIELDS;
      // A find of the node's own label under its parent stops at a free slot: the node goes there.
      this.find(node[f + PARENT], this.labels, node[f + LABEL_AT], node[f + LABEL_LENGTH]);
      this.fill(this.lastSlot, n, this.lastHash);
    }
  }

  /**
   * Merges each node's rules with its ancestors' (parents are always created before children),
   * and trims the arrays to what the trie holds.
   */
  finish(): void {
    const merge = this.merge;
    const count = this.count;
    this.trim(count);
    const effective = new Int32Array(count);
    const pairs: number[] = [];
    const index = new Map<number, Map<number, number>>();
    const below = new Int32Array(count);
    const subs = this.sub.size > 0;
    const selves = this.self.size > 0;
    // Most neighbouring nodes (a list's names) share one pair: remember the last one.
    let lastDeeper = NaN;
    let lastOwn = NaN;
    let lastPair = -1;
    for (let n = 0; n < count; n++) {
      const outer = n === ROOT ? NO_RULE : below[this.node[n * NODE_FIELDS + PARENT]];
      const own0 = this.both[n];
      const both = own0 === NO_RULE ? outer : outer === NO_RULE ? own0 : merge(outer, own0);
      const deeper = subs ? merge(both, this.sub.get(n) ?? NO_RULE) : both;
      const own = selves ? merge(both, this.self.get(n) ?? NO_RULE) : both;
      below[n] = deeper;
      if (deeper === lastDeeper && own === lastOwn) {
        effective[n] = lastPair;
        continue;
      }
      let byOwn = index.get(deeper);
      if (!byOwn) index.set(deeper, byOwn = new Map());
      let pair = byOwn.get(own);
      if (pair === undefined) {
        pair = pairs.length / 2;
        pairs.push(deeper, own);
        byOwn.set(own, pair);
      }
      effective[n] = pair;
      lastDeeper = deeper;
      lastOwn = own;
      lastPair = pair;
    }
    this.effective = effective;
    this.merged = Int32Array.from(pairs);
    this.finished = true;
  }

  /** Shrinks the per-node arrays to `count` entries (a later add grows them again). */
  private trim(count: number): void {
    if (this.capacity === count) return;
    this.node = this.node.slice(0, count * NODE_FIELDS);
    this.both = this.both.slice(0, count);
    this.capacity = count;
    this.labels = this.labels.slice(0, this.labelBytes);
  }

  /**
   * The merged rule value for the uncompressed name at `wire[start]` (a question's name), or
   * NO_RULE. Reads bytes only; the name must have been checked (labels within the message).
   */
  match(wire: Uint8Array, start = HEADER_LENGTH): number {
    if (!this.finished) this.finish();
    let n = 0;
    for (let p = start; wire[p] !== 0 && n < MAX_LABELS; p += wire[p] + 1) LABELS[n++] = p;
    let node = ROOT;
    const suffixes = this.suffixRules.size > 0;
    for (let i = n - 1; i >= 0; i--) {
      if (suffixes && this.suffixRules.has(node)) return this.matchWithSuffixes(wire, n);
      const child = this.find(node, wire, LABELS[i] + 1, wire[LABELS[i]]);
      if (child === NONE) return this.merged[this.effective[node] * 2];
      node = child;
    }
    return this.merged[this.effective[node] * 2 + 1];
  }

  /**
   * The slow path for tables with `*a.com` wildcards: folds the rules along the name's path one
   * by one, with a matching suffix rule ranked between its node and the node below it.
   */
  private matchWithSuffixes(wire: Uint8Array, n: number): number {
    const merge = this.merge;
    let value = NO_RULE;
    let node = ROOT;
    for (let i = n - 1; i >= -1; i--) {
      const last = i === -1;
      value = merge(value, this.both[node]);
      value = merge(value, (last ? this.self : this.sub).get(node) ?? NO_RULE);
      if (last) return value;
      const label = LABELS[i] + 1;
      const length = wire[LABELS[i]];
      for (const rule of this.suffixRules.get(node) ?? []) {
        if (endsWith(wire, label, length, rule.suffix)) value = merge(value, rule.value);
      }
      const child = this.find(node, wire, label, length);
      if (child === NONE) return value;
      node = child;
    }
    return value;
  }

  /** {@link match} for a dotted name (tools, `explain`, tests); not for the hot path. */
  matchName(name: string): number {
    const labels = name.replace(/\.$/, "").split(".").filter((l) => l !== "");
    const wire = new Uint8Array(labels.reduce((sum, l) => sum + l.length + 1, 1) + HEADER_LENGTH);
    let p = HEADER_LENGTH;
    for (const label of labels) {
      const bytes = encoder.encode(label);
      wire[p] = bytes.length;
      wire.set(bytes, p + 1);
      p += bytes.length + 1;
    }
    return this.match(wire, HEADER_LENGTH);
  }
}

/** Whether the label at `wire[start, start + length)` ends with `suffix` (ASCII case ignored). */
function endsWith(wire: Uint8Array, start: number, length: number, suffix: Uint8Array): boolean {
  if (suffix.length > length) return false;
  const from = start + length - suffix.length;
  for (let i = 0; i < suffix.length; i++) if (lower(wire[from + i]) !== suffix[i]) return false;
  return true;
}
