/**
 * A set of IPv4 and IPv6 prefixes with a value each, matched against address bytes in place: a
 * binary trie per family in typed arrays (no object per prefix). Used by the IP rules on answers
 * and, later, client rules and the ACL. `match` gives every value on the address's path, from the
 * shortest prefix to the longest, so callers can merge flags or take the most specific.
 *
 * @module
 */
import { ipBytes } from "./address.ts";

const NONE = -1;

/** One family's trie. */
class BitTrie {
  private zero = new Int32Array(64).fill(NONE);
  private one = new Int32Array(64).fill(NONE);
  private value = new Int32Array(64).fill(NONE);
  private count = 1;

  /** Nodes in the trie (the root included). */
  get nodes(): number {
    return this.count;
  }

  /** Sets `value` on the prefix of `bits` bits of `bytes`. */
  add(bytes: Uint8Array, bits: number, value: number): void {
    let node = 0;
    for (let i = 0; i < bits; i++) {
      const bit = (bytes[i >> 3] >> (7 - (i & 7))) & 1;
      const next = bit ? this.one : this.zero;
      if (next[node] === NONE) {
        if (this.count === this.zero.length) this.grow();
        (bit ? this.one : this.zero)[node] = this.count++;
      }
      node = (bit ? this.one : this.zero)[node];
    }
    this.value[node] = value;
  }

  /** Calls `visit` with each value on the path of the address at `bytes[offset]`, shortest first. */
  walk(bytes: Uint8Array, offset: number, bits: number, visit: (value: number) => void): void {
    let node = 0;
    for (let i = 0;; i++) {
      const v = this.value[node];
      if (v !== NONE) visit(v);
      if (i === bits) return;
      const bit = (bytes[offset + (i >> 3)] >> (7 - (i & 7))) & 1;
      node = bit ? this.one[node] : this.zero[node];
      if (node === NONE) return;
    }
  }

  private grow(): void {
    const widen = (a: Int32Array) => {
      const b = new Int32Array(a.length * 2).fill(NONE);
      b.set(a);
      return b;
    };
    this.zero = widen(this.zero);
    this.one = widen(this.one);
    this.value = widen(this.value);
  }
}

/** Parses `IP` or `IP/len` to the address bytes and the prefix length. Throws with a reason. */
export function parseCidr(text: string): { bytes: Uint8Array; bits: number } {
  const [ip, len, extra] = text.trim().split("/");
  if (extra !== undefined) throw new Error(`"${text}" is not an address or a prefix`);
  const bytes = ipBytes(ip);
  const max = bytes.length * 8;
  if (len === undefined) return { bytes, bits: max };
  if (!/^\d+$/.test(len) || Number(len) > max) {
    throw new Error(`"${text}": the prefix length must be 0..${max}`);
  }
  return { bytes, bits: Number(len) };
}

/** IPv4 and IPv6 prefixes with values. */
export class CidrSet {
  private readonly v4 = new BitTrie();
  private readonly v6 = new BitTrie();
  private size = 0;

  /** Prefixes added. */
  get prefixes(): number {
    return this.size;
  }

  /** Adds `cidr` (`192.0.2.0/24`, `2001:db8::/32`, or an address) with `value`; a later add replaces. */
  add(cidr: string, value: number): void {
    const { bytes, bits } = parseCidr(cidr);
    (bytes.length === 4 ? this.v4 : this.v6).add(bytes, bits, value);
    this.size++;
  }

  /**
   * Calls `visit` with the value of every prefix that holds the address of `length` (4 or 16)
   * bytes at `bytes[offset]`, from the shortest prefix to the longest.
   */
  match(bytes: Uint8Array, offset: number, length: number, visit: (value: number) => void): void {
    if (length === 4) this.v4.walk(bytes, offset, 32, visit);
    else if (length === 16) this.v6.walk(bytes, offset, 128, visit);
  }

  /** The value of the longest prefix holding the address, or -1. */
  longest(bytes: Uint8Array, offset: number, length: number): number {
    let found = NONE;
    this.match(bytes, offset, length, (v) => found = v);
    return found;
  }
}
