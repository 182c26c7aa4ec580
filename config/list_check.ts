/**
 * Reads every list file a configuration names (domain sets, hosts files) the way the service
 * will, for `keeldns check`: how many names each gives, and every problem with its `file:line`.
 *
 * @module
 */
import { scanDomainList } from "./domain_list.ts";
import { readFailure } from "./errors.ts";
import type { Config, SourcePosition } from "./schema.ts";

/** A problem in a list file, at its line (line 0: the file as a whole). */
export interface ListFileProblem extends SourcePosition {
  readonly reason: string;
}

/** What reading the lists found. */
export interface ListCheck {
  readonly domains: number;
  readonly problems: readonly ListFileProblem[];
}

/** Scans the domain-set files of `config` (at most `maxProblems` problems reported per file). */
export function checkLists(config: Config, maxProblems = 20): ListCheck {
  let domains = 0;
  const problems: ListFileProblem[] = [];
  for (const set of config.rules.domainSets) {
    let bytes: Uint8Array;
    try {
      bytes = Deno.readFileSync(set.file);
    } catch (e) {
      problems.push({
        file: set.file,
        line: 0,
        col: 0,
        reason: `domain-set "${set.name}": ${readFailure(e)}; the set is empty`,
      });
      continue;
    }
    const scan = scanDomainList(bytes, set.file, () => {}, { maxProblems });
    domains += scan.domains;
    problems.push(...scan.problems);
    if (scan.problemCount > scan.problems.length) {
      problems.push({
        file: set.file,
        line: 0,
        col: 0,
        reason: `${scan.problemCount - scan.problems.length} more lines like these`,
      });
    }
  }
  return { domains, problems };
}
