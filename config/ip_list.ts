/**
 * Reads `ip-set` list files: one address or prefix a line, `#` comments, blank lines. A bad line
 * is a problem at its `file:line:col`; the rest of the file is still read.
 *
 * @module
 */
import { parseCidr } from "../net/cidr_set.ts";

/** A line of a list file that could not be read. */
export interface IpListProblem {
  readonly file: string;
  readonly line: number;
  readonly col: number;
  readonly reason: string;
}

/** The prefixes of an ip-set file's `text`, and the lines that are not one. */
export function parseIpList(text: string, file: string): { cidrs: string[]; problems: IpListProblem[] } {
  const cidrs: string[] = [];
  const problems: IpListProblem[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const word = raw.replace(/#.*$/, "").trim();
    if (word === "") return;
    try {
      parseCidr(word);
      cidrs.push(word);
    } catch (e) {
      problems.push({ file, line: i + 1, col: raw.indexOf(word) + 1, reason: (e as Error).message });
    }
  });
  return { cidrs, problems };
}
