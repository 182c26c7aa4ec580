/**
 * Reads hosts-format files (`hosts-file`, /etc/hosts): `IP name [name…]` lines, `#` comments.
 * Names are answered locally with their addresses, and the addresses' PTR with the first name.
 *
 * @module
 */
import { asciiDomain } from "./smartdns/reader.ts";
import { isIPv4, isIPv6 } from "./values.ts";

/** One name and one of its addresses. */
export interface HostEntry {
  readonly name: string;
  readonly ip: string;
  /** Whether this is the first name of its line (the one PTR answers give). */
  readonly canonical: boolean;
}

/** A line that could not be read. */
export interface HostsProblem {
  readonly file: string;
  readonly line: number;
  readonly col: number;
  readonly reason: string;
}

/** Names SmartDNS skips in hosts files (wildcards and the loopback names every hosts file has). */
const SKIPPED = new Set([
  "*",
  "localhost",
  "localhost.localdomain",
  "ip6-localhost",
  "ip6-loopback",
  "broadcasthost",
]);

/** Parses hosts-format `text` (from `file`) into entries and problems. */
export function parseHostsFile(
  text: string,
  file: string,
): { entries: HostEntry[]; problems: HostsProblem[] } {
  const entries: HostEntry[] = [];
  const problems: HostsProblem[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const content = raw.replace(/#.*$/, "");
    const words = content.trim().split(/\s+/).filter((w) => w !== "");
    if (words.length === 0) return;
    const [ip, ...names] = words;
    const address = ip.replace(/%.*$/, "");
    const col = raw.indexOf(ip) + 1;
    if (!isIPv4(address) && !isIPv6(address)) {
      problems.push({ file, line: i + 1, col, reason: `"${ip}" is not an IP address` });
      return;
    }
    let first = true;
    for (const name of names) {
      if (SKIPPED.has(name.toLowerCase()) || name.includes("*")) continue;
      try {
        entries.push({ name: asciiDomain(name).replace(/\.$/, ""), ip: address, canonical: first });
        first = false;
      } catch (e) {
        problems.push({ file, line: i + 1, col: raw.indexOf(name) + 1, reason: (e as Error).message });
      }
    }
  });
  return { entries, problems };
}
